"""From sktime's `y` to the candles of each series, and back to the columns of `y`.

A frame whose columns name the candle fields is one candle series per instance; any other
frame is forecast column by column, each column a "flat candle" (open = high = low = close =
value, no volume), so that any univariate price series works.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd

from kronos_sk.data import FEATURE_COLUMNS, PRICE_COLUMNS, canonical_columns, validate_candles
from kronos_sk.data.horizon import (CALENDAR_GAP_STEPS, SYNTHETIC_ORIGIN, first_gap, wall_clock,
                                    without_freq)
from kronos_sk.data.validation import check_cells, check_values


NON_PRICE_FIELDS = ("volume", "amount")  # a lone column of these is not a price series


class Series(NamedTuple):
    key: object  # the instance key (None for a lone series)
    column: object  # the column of a flat series, None for candles
    candles: pd.DataFrame  # validated, on a DatetimeIndex (synthetic for integer indexes)
    index: pd.Index  # the series' own time index, as y gives it


def layout(y: pd.DataFrame) -> tuple[str, dict]:
    """("candles", {user column: field}) or ("flat", {}) for the columns of `y`.

    Columns that name no candle field, and a lone column not named volume or amount (a
    close, a `value` column of long-format data), are flat series; columns that name
    some candle fields must name the four prices.
    """
    mapping = canonical_columns(y.columns)
    lone = len(y.columns) == 1 and str(y.columns[0]).strip().lower() not in NON_PRICE_FIELDS
    if not mapping or lone:
        return "flat", {}
    missing = [c for c in PRICE_COLUMNS if c not in mapping.values()]
    if missing:
        raise ValueError(
            f"y: columns {list(y.columns)} name some candle fields but not {missing}; "
            "give open, high, low and close (+ volume, amount), or columns that are not "
            "candle fields to forecast each as a flat series")
    extra = [c for c in y.columns if c not in mapping]
    if extra:
        raise ValueError(f"y: column(s) {extra} are not candle fields (open, high, low, "
                         "close, volume, amount); drop them")
    return "candles", mapping


def split_series(y: pd.DataFrame, mode: str, mapping: dict, freq=None) -> list[Series]:
    """Split `y` into its series, in the order of `y`, each validated and named by key."""
    if isinstance(y.index, pd.MultiIndex):
        levels = list(range(y.index.nlevels - 1))
        missing = y.index.droplevel(-1).to_frame().isna().any(axis=1).to_numpy()
        if missing.any():  # groupby would drop those rows without a word
            pos = int(missing.argmax())
            raise ValueError(f"y: the series name at row {pos} {y.index[pos]} is missing; "
                             "drop or name those rows")
        groups = [(key if len(levels) > 1 else key[0], frame.droplevel(levels))
                  for key, frame in y.groupby(level=levels, sort=False)]
    else:
        groups = [(None, y)]
    out = []
    for key, frame in groups:
        name = "y" if key is None else f"y[{key!r}]"
        stamps = wall_clock(frame.index, freq)
        if mode == "flat":
            for column in frame.columns:
                values = frame[column].astype(float)
                candles = pd.DataFrame({c: values.to_numpy() for c in PRICE_COLUMNS},
                                       index=stamps)
                check_values(candles[["close"]].to_numpy(), ["value"], candles.index,
                             f"{name}[{column!r}]")
                out.append(Series(key, column, candles, frame.index))
        else:
            candles = frame.rename(columns=mapping).set_axis(stamps)
            out.append(Series(key, None, validate_candles(candles, name=name), frame.index))
    return out


def check_cells_of(y) -> None:
    """Name the first text, missing or infinite cell or backward time stamp of a pandas `y`
    (sktime's own checks would answer "categorical features", "missing data" or a list of
    every mtype it tried, without saying where)."""
    if isinstance(y, (pd.DataFrame, pd.Series)):
        check_cells(y, "y")


def time_kind(index: pd.Index) -> str:
    """How messages name what a time index holds: timestamps and their zone, periods, ..."""
    if isinstance(index, pd.DatetimeIndex):
        return f"timestamps in {index.tz}" if index.tz is not None else \
            "timestamps without a time zone"
    if isinstance(index, pd.PeriodIndex):
        return f"periods of {index.freqstr}"
    return f"{index.dtype} values"


def same_time_kind(new: pd.Index, old: pd.Index) -> bool:
    """Whether `new` holds time values of `old`'s kind: timestamps in a zone that shows the
    same wall clock on `new`'s rows (or both naive; units may differ), periods of the same
    frequency, or integers of any width."""
    if isinstance(new, pd.DatetimeIndex) and isinstance(old, pd.DatetimeIndex):
        if new.tz is None or old.tz is None:
            return new.tz is None and old.tz is None
        return bool(new.tz_convert(old.tz).tz_localize(None).equals(new.tz_localize(None)))
    if isinstance(new, pd.PeriodIndex) and isinstance(old, pd.PeriodIndex):
        return new.freq == old.freq
    if isinstance(new, (pd.DatetimeIndex, pd.PeriodIndex)) \
            or isinstance(old, (pd.DatetimeIndex, pd.PeriodIndex)):
        return False
    integers = "iu"
    return new.dtype.kind == old.dtype.kind or (new.dtype.kind in integers
                                                and old.dtype.kind in integers)


def check_like_fit(y: pd.DataFrame, fitted: pd.DataFrame) -> None:
    """Refuse update rows laid out otherwise than the `fitted` y: other index levels, time
    kind or zone, columns, or series that fit did not see (one line, before sktime's own
    checks answer with a list of every mtype they tried or pandas' comparison error)."""
    names = [name if name is not None else f"level {i}"
             for i, name in enumerate(fitted.index.names)]
    if y.index.nlevels != fitted.index.nlevels:
        raise ValueError(f"update: y has {y.index.nlevels} index level(s) but the forecaster "
                         f"was fitted on {len(names)} ({names}); send rows indexed like fit's")
    new, old = y.index.get_level_values(-1), fitted.index.get_level_values(-1)
    if not same_time_kind(new, old):
        raise ValueError(f"update: y's time index holds {time_kind(new)} but fit's held "
                         f"{time_kind(old)}; send rows on fit's time index")
    if set(y.columns) != set(fitted.columns):
        raise ValueError(f"update: y has columns {list(y.columns)} but the forecaster was "
                         f"fitted on {list(fitted.columns)}; send the same columns")
    if isinstance(y.index, pd.MultiIndex):
        unseen = y.index.droplevel(-1).unique().difference(fitted.index.droplevel(-1).unique())
        if len(unseen):
            raise ValueError(f"update: y holds series {list(unseen)[:5]} that fit did not "
                             "see; update extends the series of fit (fit again to add some)")


def series_name(series: Series) -> str:
    """How messages name a series: ``y``, ``y['AAPL']``, ``y['AAPL']['close']``."""
    name = "y" if series.key is None else f"y[{series.key!r}]"
    return name if series.column is None else f"{name}[{series.column!r}]"


def warn_without_timestamps(y: pd.DataFrame, freq=None) -> None:
    """Warn that an integer time index gives the model invented calendar stamps."""
    times = y.index.get_level_values(-1)
    if not isinstance(times, (pd.DatetimeIndex, pd.PeriodIndex)):
        warnings.warn(
            f"y has no timestamps (its time index is a {type(times).__name__}): Kronos's "
            f"calendar embeddings see invented dates, one {freq or 'D'} step apart from "
            f"{SYNTHETIC_ORIGIN.date()}; give y a DatetimeIndex or PeriodIndex for real "
            "calendar features", UserWarning, stacklevel=5)


def check_update(contexts: list[Series], arriving: list[Series], cutoff, freq=None) -> None:
    """Refuse update rows that leave a step of a series' fixed calendar missing after its
    end (naming the series and the first missing step), and rows that add nothing after
    any series' end while ending before the cutoff (they would move it back)."""
    known = {(s.key, s.column): s for s in contexts}
    added, end = 0, max(new.index[-1] for new in arriving)
    for new in arriving:
        old = known.get((new.key, new.column))
        if old is None:
            continue
        gap, missing, fixed = first_gap(old.index, new.index, freq)
        message = (f"update: {series_name(new)} ends at {old.index[-1]} and the rows sent "
                   f"leave {missing} step(s) missing from {gap}")
        if gap is not None and fixed:
            raise ValueError(f"{message}; send the rows that follow its end")
        if gap is not None and missing >= CALENDAR_GAP_STEPS:
            warnings.warn(f"{message} on the calendar its rows show; holidays are fine, "
                          "otherwise send the rows that follow its end", UserWarning,
                          stacklevel=4)
        added += int((new.index > old.index[-1]).sum())
    if not added and end < cutoff:
        raise ValueError(f"update: y ends at {end}, before the cutoff {cutoff}, and adds no "
                         "row after the end of any series; pass the rows that follow them")


def output_index(keys: list, y_index: pd.Index, absolute: pd.Index,
                 n_samples: int = 0) -> pd.Index:
    """Rows of an output: the fh timestamps of each instance, instances in the order of
    `keys` (repeated keys count once), named like `y_index`; with `n_samples`, that block
    once per sample under a first level "sample"."""
    instances = list(dict.fromkeys(keys))
    times = without_freq(absolute)
    n_i, n_t = len(instances), len(times)
    instance_codes = np.repeat(np.arange(n_i), n_t)
    time_codes = np.tile(np.arange(n_t), n_i)
    arrays, names = [], list(y_index.names)
    if n_samples:
        arrays.append(np.repeat(np.arange(n_samples), n_i * n_t))
        instance_codes = np.tile(instance_codes, n_samples)
        time_codes = np.tile(time_codes, n_samples)
        names = ["sample", *names]
    if isinstance(y_index, pd.MultiIndex):
        keys = [key if isinstance(key, tuple) else (key,) for key in instances]
        arrays += [pd.Index([key[j] for key in keys]).take(instance_codes)
                   for j in range(len(keys[0]))]
    arrays.append(times.take(time_codes))
    if len(arrays) == 1:
        return arrays[0].rename(names[-1])
    return pd.MultiIndex.from_arrays(arrays, names=names)


def columns_of(paths: np.ndarray, steps: np.ndarray, mode: str, mapping: dict,
               columns: list) -> np.ndarray:
    """The paths (n_series, S, H, 6) at each series' fh `steps` (n_series, F), in the
    columns of y: (n_instances, S, F, len(columns)); flat series give their closes."""
    picked = np.take_along_axis(paths, steps[:, None, :, None] - 1, axis=2)  # (n, S, F, 6)
    if mode == "flat":  # one series per (instance, column)
        n, S, F = picked.shape[:3]
        closes = picked[..., FEATURE_COLUMNS.index("close")].reshape(-1, len(columns), S, F)
        return closes.transpose(0, 2, 3, 1)
    return picked[..., [FEATURE_COLUMNS.index(mapping[c]) for c in columns]]


class Outputs(NamedTuple):
    """sktime's output frames of (n_instances, ...) arrays, rows as `output_index`."""

    keys: list  # the instance key of each series (repeated for the columns of flat series)
    y_index: pd.Index  # y's index, for the level names
    columns: list  # y's columns

    def index(self, absolute: pd.Index, n_samples: int = 0) -> pd.Index:
        return output_index(self.keys, self.y_index, absolute, n_samples)

    def frame(self, values: np.ndarray, absolute: pd.Index, columns=None) -> pd.DataFrame:
        """One frame of (n_instances, len(fh), k) values."""
        n_i, n_t, k = values.shape
        return pd.DataFrame(values.reshape(n_i * n_t, k), index=self.index(absolute),
                            columns=self.columns if columns is None else columns)

    def samples(self, values: np.ndarray, absolute: pd.Index) -> pd.DataFrame:
        """Every path of (n_instances, S, len(fh), k) values, indexed (sample, ..., time)."""
        n_i, S, n_t, k = values.shape
        flat = values.transpose(1, 0, 2, 3).reshape(S * n_i * n_t, k)
        return pd.DataFrame(flat, index=self.index(absolute, S), columns=self.columns)

    def covariance(self, covariance: np.ndarray, absolute: pd.Index) -> pd.DataFrame:
        """sktime's ``predict_var(cov=True)`` frame of (n_instances, k, F, F) covariances:
        rows (instance, fh), columns fh (one column) or (column, fh)."""
        n_i, k, F, _ = covariance.shape
        times = without_freq(absolute)
        columns = times if k == 1 else pd.MultiIndex.from_product([self.columns, times])
        blocks = covariance.transpose(0, 2, 1, 3).reshape(n_i * F, k * F)
        return pd.DataFrame(blocks, index=self.index(absolute), columns=columns)
