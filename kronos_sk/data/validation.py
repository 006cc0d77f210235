"""Validation of candlestick input: the one rule table every entry point uses.

`RULES` names every rule a row can break and what repair does with such a row. Two modes read
it: `validate_candles` / `validate_panel` raise for user input, and `repair_candles` fixes rows
and counts them for data sets (the training corpus, the benchmarks).

Every check is vectorised over rows. When several rows are bad, the error names the first
one (ties within a row go to the rule listed first in `RULES`), with its position, its index
label and the value.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import numpy as np
import pandas as pd

from .schema import FEATURE_COLUMNS, PRICE_COLUMNS, canonical_columns

TIMESTAMP_COLUMNS: tuple[str, ...] = ("timestamp", "timestamps", "date", "datetime", "time")

# Relative slack for the high/low envelope, so that float noise in published data passes.
_RTOL = 1e-9

# Every rule, in the order that breaks ties within a row, and how `repair_candles` fixes a row
# that breaks it.
RULES: dict[str, str] = {
    "missing timestamp": "drop the row",
    "duplicate timestamp": "drop the row (the first of the repeats stays)",
    "unsorted timestamps": "sort the rows by timestamp",
    "missing value": "drop the row",
    "infinite value": "drop the row",
    "non-positive price": "drop the row",
    "negative volume or amount": "set it to 0",
    "high below low": "raise high to max(open, close), lower low to min(open, close)",
    "high below max(open, close)": "raise high to max(open, close)",
    "low above min(open, close)": "lower low to min(open, close)",
}
_DROPPED = tuple(rule for rule, repair in RULES.items() if repair.startswith("drop"))


@dataclass(frozen=True)
class _Check:
    """Rows breaking one rule of `RULES`, and a description of the problem at a row."""

    rule: str
    mask: np.ndarray
    describe: Callable[[int], str]


@dataclass(frozen=True)
class RepairedCandles:
    """What `repair_candles` returns.

    Attributes
    ----------
    candles : DataFrame
        The repaired rows, sorted by time; columns as `validate_candles` returns them.
    counts : dict of str to int
        Rows fixed per rule of `RULES` (rules no row broke are left out); a dropped row is
        counted once, under the first rule it breaks.
    kept : ndarray of int
        Position in the input of every row of `candles`.
    """

    candles: pd.DataFrame
    counts: dict[str, int]
    kept: np.ndarray


def validate_candles(
    frame: pd.DataFrame,
    *,
    name: str = "candles",
    min_rows: int = 1,
    require_datetime_index: bool = True,
) -> pd.DataFrame:
    """Check one series of candles and return a clean copy.

    Parameters
    ----------
    frame : DataFrame
        One row per candle. Columns ``open, high, low, close`` are required, ``volume`` and
        ``amount`` optional; names are matched case-insensitively and through
        `COLUMN_ALIASES`. Timestamps are the index or, when the
        index is not a ``DatetimeIndex``, a column named timestamp, timestamps, date, datetime
        or time (any case). The frame is never modified.
    name : str, default="candles"
        What to call the input in error messages.
    min_rows : int, default=1
        Fewest rows accepted.
    require_datetime_index : bool, default=True
        Require a ``DatetimeIndex``. When False, any other index is accepted as opaque labels
        and the timestamp checks are skipped for it.

    Returns
    -------
    DataFrame
        A new frame with the original index and the canonical columns present, in
        ``FEATURE_COLUMNS`` order, as float64. Other columns are dropped.

    Raises
    ------
    TypeError
        If `frame` is not a DataFrame, a column is not numeric, or the index is not a
        ``DatetimeIndex`` when one is required.
    ValueError
        If the frame is empty, has fewer than `min_rows` rows, lacks a price column, holds NaN,
        infinite, non-positive prices or negative volume/amount, breaks
        ``low <= min(open, close) <= max(open, close) <= high``, or has missing, duplicate,
        unsorted or mixed-time-zone timestamps.
    """
    _check_is_frame(frame, name)
    frame = _timestamps_to_index(frame, name)
    _check_not_empty(frame, name)
    values, columns = _feature_values(frame, name)
    index = frame.index
    if len(frame) < min_rows:
        raise ValueError(f"{name}: has {len(frame)} rows, fewer than min_rows = {min_rows}")

    checks: list[_Check] = []
    if isinstance(index, pd.DatetimeIndex):
        single_series = np.zeros(len(index), dtype=np.intp)
        checks += _timestamp_checks(index, single_series, index)
    elif require_datetime_index:
        _raise_not_datetime(index, index, name, "index")
    checks += _value_checks(values, columns, index)
    _raise_first_problem(checks, name)
    return pd.DataFrame(values, index=index, columns=columns)


def check_values(values: np.ndarray, columns: list, index: pd.Index, name: str) -> None:
    """Raise ValueError for the first row of a (T, k) float array that breaks a value rule.

    The rules of `RULES` that apply to the columns given: missing and infinite values for
    every column, signs for the candle columns present, the envelope when open, high, low and
    close all are. For arrays that are not a frame (e.g. a scikit-learn ``X``).
    """
    _raise_first_problem(_value_checks(np.asarray(values, dtype=np.float64), list(columns),
                                       index), name)


def check_cells(data: pd.DataFrame | pd.Series, name: str) -> None:
    """Raise for a repeated column name, the first non-numeric column, missing/infinite cell
    or repeated/backward time stamp of a frame, naming the column, the row and the value;
    nothing else is checked.

    For faces whose input passes through another library's checks first (sktime's, whose
    messages name neither), so that every face answers bad cells in one way. The time
    stamps are the index's last level (datetimes, periods or integers), ordered within each
    series (the other levels).
    """
    frame = data.to_frame() if isinstance(data, pd.Series) else data
    repeated = frame.columns[frame.columns.duplicated()]
    if len(repeated):
        raise ValueError(f"{name}: column {repeated[0]!r} appears more than once; give each "
                         "column once")
    if _is_nested(frame):
        return
    check_numeric_columns(frame, name)
    values = frame.to_numpy(dtype=np.float64, na_value=np.nan)
    checks = [c for c in _value_checks(values, list(frame.columns), frame.index)
              if c.rule in ("missing value", "infinite value")]
    _raise_first_problem(checks + _time_order_checks(frame.index), name)


def _time_order_checks(index: pd.Index) -> list[_Check]:
    """The repeated and backward stamps of an index's last level, within each series."""
    times = index.get_level_values(-1)
    if isinstance(times, (pd.DatetimeIndex, pd.PeriodIndex)):
        ticks = times.asi8
    elif pd.api.types.is_integer_dtype(times.dtype):
        ticks = times.to_numpy(np.int64)
    else:
        return []
    stamps = pd.DatetimeIndex(ticks.astype("datetime64[ns]"))  # only the order is read
    groups = (pd.factorize(index.droplevel(-1))[0] if isinstance(index, pd.MultiIndex)
              else np.zeros(len(index), dtype=np.intp))
    return [c for c in _timestamp_checks(stamps, groups, index)
            if c.rule in ("duplicate timestamp", "unsorted timestamps")]


def _is_nested(frame: pd.DataFrame) -> bool:
    """Whether cells hold whole series (sktime's "nested_univ" panels), not values."""
    for column in frame.columns:
        if frame[column].dtype == object and len(frame):
            if isinstance(frame[column].iloc[0], (pd.Series, np.ndarray)):
                return True
    return False


def repair_candles(frame: pd.DataFrame, *, name: str = "candles",
                   min_rows: int = 1) -> RepairedCandles:
    """Fix or drop the rows of one series that `validate_candles` would reject, with counts.

    For data sets, where a few broken rows are expected: each rule of `RULES` is repaired as
    that table says. Problems no row-level repair fixes (a missing price column, a text
    column, no timestamps) still raise, as in `validate_candles`. The frame is never modified.

    Parameters
    ----------
    frame : DataFrame
        As for `validate_candles`; timestamps are required.
    name : str, default="candles"
        What to call the input in error messages.
    min_rows : int, default=1
        Fewest rows accepted after the repair.

    Returns
    -------
    RepairedCandles
    """
    _check_is_frame(frame, name)
    frame = _timestamps_to_index(frame, name)
    _check_not_empty(frame, name)
    values, columns = _feature_values(frame, name)
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex):
        _raise_not_datetime(index, index, name, "index")
    counts = dict.fromkeys(RULES, 0)

    kept = np.flatnonzero(~index.isna())
    counts["missing timestamp"] = len(index) - len(kept)
    ticks = index.asi8[kept]
    counts["unsorted timestamps"] = int((np.diff(ticks) < 0).sum())
    order = np.argsort(ticks, kind="stable")
    kept, ticks = kept[order], ticks[order]
    repeated = np.r_[False, ticks[1:] == ticks[:-1]]
    counts["duplicate timestamp"] = int(repeated.sum())
    kept = kept[~repeated]

    values = values[kept]
    broken = {rule: np.zeros(len(kept), dtype=bool) for rule in RULES}
    with np.errstate(invalid="ignore"):
        for check in _value_checks(values, columns, index[kept]):
            broken[check.rule] |= check.mask
    dropped = np.zeros(len(kept), dtype=bool)
    for rule in _DROPPED:
        counts[rule] += int((broken[rule] & ~dropped).sum())
        dropped |= broken[rule]
    kept, values = kept[~dropped], values[~dropped]
    data = dict(zip(columns, values.T))  # views: repairs below write into `values`
    negative = np.zeros(len(kept), dtype=bool)
    for column in ("volume", "amount"):
        if column in data:
            negative |= data[column] < 0
            np.maximum(data[column], 0.0, out=data[column])
    counts["negative volume or amount"] = int(negative.sum())
    envelope = np.zeros(len(kept), dtype=bool)
    for rule in ("high below low", "high below max(open, close)", "low above min(open, close)"):
        counts[rule] = int((broken[rule][~dropped] & ~envelope).sum())
        envelope |= broken[rule][~dropped]
    # Exact, so that float noise within the validator's tolerance goes too.
    np.maximum(data["high"], np.maximum(data["open"], data["close"]), out=data["high"])
    np.minimum(data["low"], np.minimum(data["open"], data["close"]), out=data["low"])

    if len(kept) < min_rows:
        raise ValueError(f"{name}: has {len(kept)} rows after repair ({_fixed(counts)}), "
                         f"fewer than min_rows = {min_rows}")
    candles = pd.DataFrame(values, index=index[kept], columns=columns)
    return RepairedCandles(candles, {rule: n for rule, n in counts.items() if n}, kept)


def _fixed(counts: dict[str, int]) -> str:
    fixed = [f"{n} {rule}" for rule, n in counts.items() if n]
    return ", ".join(fixed) if fixed else "nothing to fix"


def validate_panel(
    frame: pd.DataFrame, *, name: str = "candles", min_rows: int = 1
) -> pd.DataFrame:
    """Check candles of several assets and return a clean copy.

    The same checks as [`validate_candles`][kronos_sk.data.validation.validate_candles], applied to
    every asset at once: timestamps
    must be unique and increasing within each asset, and messages name the asset. Assets may
    have different lengths and need not be contiguous.

    Parameters
    ----------
    frame : DataFrame
        Indexed by a 2-level MultiIndex (asset, timestamp), the timestamp level a datetime
        level; columns as for [`validate_candles`][kronos_sk.data.validation.validate_candles]. The
        frame is never modified.
    name : str, default="candles"
        What to call the input in error messages.
    min_rows : int, default=1
        Fewest rows accepted per asset.

    Returns
    -------
    DataFrame
        A new frame with the original index and the canonical columns present, in
        ``FEATURE_COLUMNS`` order, as float64.

    Raises
    ------
    TypeError, ValueError
        As for [`validate_candles`][kronos_sk.data.validation.validate_candles]; TypeError also for
        an index that is not a 2-level
        MultiIndex; ValueError also for a missing (NaN) asset name.
    """
    _check_is_frame(frame, name)
    index = frame.index
    if not isinstance(index, pd.MultiIndex) or index.nlevels != 2:
        raise TypeError(
            f"{name}: a panel needs a 2-level MultiIndex (asset, timestamp), got "
            f"{type(index).__name__} with {index.nlevels} level(s); "
            "build one with frame.set_index(['asset', 'timestamp'])"
        )
    _check_not_empty(frame, name)
    values, columns = _feature_values(frame, name)
    stamps = index.get_level_values(1)
    if not isinstance(stamps, pd.DatetimeIndex):
        _raise_not_datetime(stamps, index, name, "timestamp level")

    keys = index.get_level_values(0)
    if keys.hasnans:
        pos = int(keys.isna().argmax())
        raise ValueError(f"{name}: the asset name at {_row(index, pos)} is missing; drop or "
                         "name those rows")
    groups, assets = pd.factorize(keys)
    rows_per_asset = np.bincount(groups)
    if (rows_per_asset < min_rows).any():
        short = int((rows_per_asset < min_rows).argmax())
        raise ValueError(
            f"{name}: asset {assets[short]!r} has {rows_per_asset[short]} rows, "
            f"fewer than min_rows = {min_rows}"
        )

    checks = _timestamp_checks(stamps, groups, index) + _value_checks(values, columns, index)
    _raise_first_problem(checks, name)
    return pd.DataFrame(values, index=index, columns=columns)


def assemble_features(candles: pd.DataFrame) -> np.ndarray:
    """Build the model's six input features following the reference rules.

    Parameters
    ----------
    candles : DataFrame
        Output of [`validate_candles`][kronos_sk.data.validation.validate_candles] (canonical
        columns, float64).

    Returns
    -------
    ndarray of shape (T, 6), float32
        Columns in ``FEATURE_COLUMNS`` order.

    Notes
    -----
    - No ``volume`` column: volume and amount are both zero. The reference zeroes amount
      even when an ``amount`` column is given; this is kept for parity with its checkpoints.
    - ``volume`` but no ``amount``: ``amount = volume * mean(open, high, low, close)``,
      computed in float64 before the cast to float32, as the reference does.
    """
    # numpy throughout: this runs once per series of every forecast
    prices = candles[list(PRICE_COLUMNS)].to_numpy(dtype=np.float64)
    features = np.zeros((len(candles), len(FEATURE_COLUMNS)), dtype=np.float32)
    features[:, :len(PRICE_COLUMNS)] = prices
    if "volume" in candles.columns:
        volume = candles["volume"].to_numpy(dtype=np.float64)
        features[:, 4] = volume
        features[:, 5] = (candles["amount"].to_numpy(dtype=np.float64)
                          if "amount" in candles.columns else derived_amount(volume, prices))
    return features


def derived_amount(volume: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """The amount traded where a source has none: ``volume * mean(open, high, low, close)``,
    in float64 (the reference rule), from (T,) volumes and (T, 4) prices."""
    return np.asarray(volume, dtype=np.float64) * np.asarray(prices, dtype=np.float64).mean(axis=1)


def _check_is_frame(frame: object, name: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{name}: expected a pandas DataFrame, got {type(frame).__name__}")


def _check_not_empty(frame: pd.DataFrame, name: str) -> None:
    if len(frame) == 0:
        raise ValueError(f"{name}: is empty (0 rows)")


def _timestamps_to_index(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """Move a timestamp column to the index unless the index already holds datetimes."""
    if isinstance(frame.index, pd.DatetimeIndex):
        return frame
    found = [
        c for c in frame.columns if isinstance(c, str) and c.strip().lower() in TIMESTAMP_COLUMNS
    ]
    if len(found) > 1:
        raise ValueError(
            f"{name}: several timestamp columns {found}; keep one, or set the index to the "
            "timestamps yourself"
        )
    return frame.set_index(found[0]) if found else frame


def _feature_values(frame: pd.DataFrame, name: str) -> tuple[np.ndarray, list[str]]:
    """Return the canonical columns present as a fresh (T, k) float64 array, and their names."""
    source = {canonical: user for user, canonical in canonical_columns(frame.columns).items()}
    missing = [c for c in PRICE_COLUMNS if c not in source]
    if missing:
        raise ValueError(
            f"{name}: missing required column(s) {missing}; found columns "
            f"{list(frame.columns)} (names match case-insensitively; aliases such as "
            "'o', 'h', 'l', 'c', 'vol' are accepted)"
        )
    columns = [c for c in FEATURE_COLUMNS if c in source]
    picked = frame[[source[c] for c in columns]]
    check_numeric_columns(picked, name)
    return np.column_stack([picked[user].to_numpy(dtype=np.float64, na_value=np.nan)
                            for user in picked.columns]), columns


def check_numeric_columns(frame: pd.DataFrame, name: str) -> None:
    """Raise TypeError for the first column of `frame` that is not of a real number dtype
    (text, even where it reads as numbers; categories; booleans), naming its first cell
    that is not a number."""
    for column in frame.columns:
        if not _is_real_dtype(frame[column].dtype):
            raise TypeError(_non_numeric_message(frame[column], frame.index, name))


def _is_real_dtype(dtype: object) -> bool:
    return (
        pd.api.types.is_numeric_dtype(dtype)
        and not pd.api.types.is_bool_dtype(dtype)
        and not pd.api.types.is_complex_dtype(dtype)
    )


def _non_numeric_message(column: pd.Series, index: pd.Index, name: str) -> str:
    message = f"{name}: column {column.name!r} has non-numeric dtype {column.dtype}"
    for pos, value in enumerate(column):
        is_missing = pd.api.types.is_scalar(value) and pd.isna(value)
        if not is_missing and not _is_number(value):
            message += f"; {_row(index, pos)} holds {value!r}"
            break
    return message + ("; convert it with pd.to_numeric or astype('float64') (candles are "
                      "numbers, not text or categorical values)")


def _is_number(value: object) -> bool:
    """A real number, or text that reads as one (a CSV column with one bad cell is text)."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, numbers.Real):
        return True
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)


def _raise_not_datetime(stamps: pd.Index, index: pd.Index, name: str, what: str) -> NoReturn:
    """Raise for timestamps that are not a DatetimeIndex: ValueError for mixed zones."""
    if stamps.dtype == object and pd.api.types.infer_dtype(stamps, skipna=True) == "datetime":
        _raise_mixed_time_zones(stamps, index, name, what)
    raise TypeError(
        f"{name}: the {what} must hold datetimes (a DatetimeIndex), got dtype {stamps.dtype}; "
        "convert it with pd.to_datetime, or pass the timestamps in a 'timestamp' column"
    )


def _raise_mixed_time_zones(stamps: pd.Index, index: pd.Index, name: str, what: str) -> None:
    first: tuple[int, str] | None = None
    for pos, stamp in enumerate(stamps):
        if pd.isna(stamp):
            continue
        zone = "tz-naive" if stamp.tzinfo is None else f"in time zone {stamp.tzinfo}"
        if first is None:
            first = (pos, zone)
        elif zone != first[1]:
            raise ValueError(
                f"{name}: the {what} mixes time zones: {_row(index, pos)} is {zone} but "
                f"{_row(index, first[0])} is {first[1]}; convert every timestamp to one zone, "
                "e.g. pd.to_datetime(stamps, utc=True)"
            )


def _timestamp_checks(
    stamps: pd.DatetimeIndex, groups: np.ndarray, index: pd.Index
) -> list[_Check]:
    """Missing, repeated and backward timestamps within each group of rows."""
    # Visit each group's rows in their original order, so that neighbours share a group.
    order = np.argsort(groups, kind="stable")
    same_group = groups[order][1:] == groups[order][:-1]
    ticks = stamps.asi8[order]
    previous = np.zeros(len(stamps), dtype=np.intp)
    previous[order[1:]] = order[:-1]
    repeated = np.zeros(len(stamps), dtype=bool)
    repeated[order[1:]] = same_group & (ticks[1:] == ticks[:-1])
    backwards = np.zeros(len(stamps), dtype=bool)
    backwards[order[1:]] = same_group & (ticks[1:] < ticks[:-1])
    return [
        _Check("missing timestamp", stamps.isna(),
               lambda pos: f"the timestamp at {_row(index, pos)} is missing"),
        _Check(
            "duplicate timestamp",
            repeated,
            lambda pos: (
                f"duplicate timestamp: {_row(index, pos)} repeats {_row(index, previous[pos])}; "
                "drop duplicates, e.g. frame[~frame.index.duplicated()]"
            ),
        ),
        _Check(
            "unsorted timestamps",
            backwards,
            lambda pos: (
                f"timestamps are not sorted: {_row(index, pos)} comes after "
                f"{_row(index, previous[pos])}; sort with frame.sort_index()"
            ),
        ),
    ]


def _value_checks(values: np.ndarray, columns: list, index: pd.Index) -> list[_Check]:
    """The value rules of `RULES` that apply to these (T, k) columns, in table order."""
    data = dict(zip(columns, values.T))

    def check(rule: str, mask: np.ndarray, column, relation: str = "",
              bound: np.ndarray | None = None) -> _Check:
        def describe(pos: int) -> str:
            message = f"column {column!r} at {_row(index, pos)} is {_number(data[column][pos])}"
            if relation:
                message += f", {relation}"
            if bound is not None:
                message += f" = {_number(bound[pos])}"
            return message

        return _Check(rule, mask, describe)

    checks = [check("missing value", np.isnan(x), column) for column, x in data.items()]
    checks += [check("infinite value", np.isinf(x), column) for column, x in data.items()]
    checks += [check("non-positive price", data[c] <= 0, c, "but prices must be positive")
               for c in PRICE_COLUMNS if c in data]
    checks += [check("negative volume or amount", data[c] < 0, c,
                     f"but {c} must not be negative") for c in ("volume", "amount") if c in data]
    if all(c in data for c in PRICE_COLUMNS):
        high, low = data["high"], data["low"]
        body_top = np.maximum(data["open"], data["close"])
        body_bottom = np.minimum(data["open"], data["close"])
        checks += [
            check("high below low", high < low * (1 - _RTOL), "high", "below low", low),
            check("high below max(open, close)", high < body_top * (1 - _RTOL), "high",
                  "below max(open, close)", body_top),
            check("low above min(open, close)", low > body_bottom * (1 + _RTOL), "low",
                  "above min(open, close)", body_bottom),
        ]
    return checks


def _raise_first_problem(checks: list[_Check], name: str) -> None:
    """Raise ValueError for the earliest row any check flags; ties go to the earlier check."""
    first: tuple[int, _Check] | None = None
    for check in checks:
        if check.mask.any():
            pos = int(check.mask.argmax())
            if first is None or pos < first[0]:
                first = (pos, check)
    if first is not None:
        pos, check = first
        raise ValueError(f"{name}: {check.describe(pos)}")


def _row(index: pd.Index, pos: int) -> str:
    """Describe a row by position and label, e.g. ``row 17 (2024-01-05 10:00:00)``."""
    label = index[pos]
    if isinstance(index, pd.RangeIndex) and label == pos:
        return f"row {pos}"
    if isinstance(index, pd.MultiIndex):
        *keys, stamp = label
        asset = keys[0] if len(keys) == 1 else tuple(keys)
        return f"row {pos} (asset {asset!r}, {stamp})"
    return f"row {pos} ({label})"


def _number(value: float) -> str:
    return "NaN" if np.isnan(value) else repr(float(value))


def make_candles_valid(values: np.ndarray) -> np.ndarray:
    """Make decoded candles valid in place and return them.

    The tokenizer decodes each feature separately, so a sampled high can fall below the open
    or close, and a volume slightly below zero. Here ``high = max(high, open, close)``,
    ``low = min(low, open, close)`` and volume and amount are clipped at 0; open and close
    are never changed.

    Parameters
    ----------
    values : ndarray of shape (..., d_in)
        Features in `FEATURE_COLUMNS` order (open, high, low, close, volume, amount).
    """
    open_, close = values[..., 0], values[..., 3]
    np.maximum(values[..., 1], np.maximum(open_, close), out=values[..., 1])
    np.minimum(values[..., 2], np.minimum(open_, close), out=values[..., 2])
    np.maximum(values[..., 4:], 0.0, out=values[..., 4:])
    return values
