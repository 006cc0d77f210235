"""A lazily read corpus of candlestick panels for pre-training and fine-tuning.

A [`CandleCorpus`][kronos_sk.data.corpus.CandleCorpus] indexes long-format files (one row per asset
and timestamp) without
reading their values: only the asset and timestamp columns are scanned, once. Values are read
per asset on [`CandleCorpus.load`][kronos_sk.data.corpus.CandleCorpus.load], cleaned and cut into
*segments*, runs of rows that a
training window may span. A [`TimeSplit`][kronos_sk.data.corpus.TimeSplit] assigns each market's
rows to train or
validation by time.

Parquet needs pyarrow (``pip install 'kronos-sk[data]'``); CSV needs pandas only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from .schema import FEATURE_COLUMNS, PRICE_COLUMNS, canonical_columns
from .validation import TIMESTAMP_COLUMNS, derived_amount, repair_candles

ASSET_COLUMN = "asset"
DEFAULT_MARKET_KEY = "*"
DEFAULT_GAP_FACTOR = 5.0
SUFFIXES = (".parquet", ".csv")

Split = Literal["train", "validation"]
AssetRef = int | str | tuple[str, str]

# validation_starts() value of an asset without validation rows: later than any timestamp.
NO_VALIDATION = np.iinfo(np.int64).max


@dataclass(frozen=True)
class TimeSplit:
    """Rule splitting a market's rows into train (earlier) and validation (later) rows.

    Parameters
    ----------
    cutoff : str or Timestamp, default=None
        Rows stamped at or after `cutoff` are validation. A naive cutoff is read as wall-clock
        time in each file's time zone, an aware one is converted to it.
    last : str, default=None
        A pandas offset such as ``"30D"``: rows later than the file's last timestamp minus
        `last` are validation.

    Notes
    -----
    With both rules, a row is validation if either says so; with neither, every row is train.
    Either way validation is a suffix in time of every asset, so train windows and validation
    windows never share a row.

    Examples
    --------
    >>> TimeSplit(cutoff="2016-01-01").validation_start(None, pd.Timestamp("2017-04-17"))
    Timestamp('2016-01-01 00:00:00')
    """

    cutoff: str | pd.Timestamp | None = None
    last: str | None = None

    def __post_init__(self) -> None:
        # Parse now so that a bad rule fails where it is written, not at the first batch.
        if self.cutoff is not None:
            pd.Timestamp(self.cutoff)
        if self.last is not None:
            to_offset(self.last)

    def validation_start(self, tz: tzinfo | None, file_last: pd.Timestamp) -> pd.Timestamp | None:
        """The first instant counted as validation in a file.

        Parameters
        ----------
        tz : tzinfo or None
            The file's time zone, None for naive timestamps.
        file_last : Timestamp
            The file's last timestamp.

        Returns
        -------
        Timestamp or None
            Rows stamped at or after it are validation; None when no row is.
        """
        starts = []
        if self.cutoff is not None:
            cutoff = pd.Timestamp(self.cutoff)
            if cutoff.tz is not None and tz is None:
                raise ValueError(
                    f"TimeSplit cutoff {self.cutoff!r} has a time zone but the file's timestamps "
                    "are naive; give the cutoff without a zone"
                )
            if tz is not None:
                cutoff = cutoff.tz_localize(tz) if cutoff.tz is None else cutoff.tz_convert(tz)
            starts.append(cutoff)
        if self.last is not None:
            # "Within the final `last`" excludes the instant exactly `last` before the end.
            starts.append(file_last - to_offset(self.last) + pd.Timedelta(1, "ns"))
        return min(starts) if starts else None


@dataclass(frozen=True)
class _File:
    path: Path
    market: str
    columns: dict[str, str]  # canonical name -> the file's column name
    tz: tzinfo | None
    last: pd.Timestamp

    @property
    def amount_derived(self) -> bool:
        return "amount" not in self.columns


class CandleCorpus:
    """Long-format candlestick files, indexed lazily, read one asset (or block) at a time.

    Each file holds columns ``asset``, a timestamp column (``timestamp``, ``date``, ...),
    ``open, high, low, close, volume`` and optionally ``amount`` (names as accepted by
    [`canonical_columns`][kronos_sk.data.schema.canonical_columns]). Each file is a *market*.

    Parameters
    ----------
    sources : str, Path or sequence of them
        Parquet or CSV files, and directories whose ``*.parquet`` and ``*.csv`` files (not
        recursively) are all used.
    markets : mapping of str to str, default=None
        File stem -> market name; a file left out is the market named by its stem. Several
        files may form one market, but an asset may appear in one file of a market only.
    weights : mapping of str to float, default=None
        Market -> sampling weight (default 1.0 each), used by
        [`WindowSampler`][kronos_sk.data.windows.WindowSampler].
    max_gap_factor : float or mapping of str to float, default=5.0
        A step longer than this many times the asset's median step starts a new segment;
        one value, or one per market with ``"*"`` as the default for the others (intraday
        markets with sessions need a factor that bridges nights and lunch breaks).
    max_abs_log_return : float, mapping of str to float or None, default=None
        A close-to-close move with ``|log(close_t / close_{t-1})|`` above this starts a new
        segment (None: never). A mapping sets it per market (markets left out: None). For the
        unadjusted A-share file, ``log(1.11)`` cuts at ex-rights jumps.

    Attributes
    ----------
    assets : DataFrame
        One row per asset, in file order then asset order: ``market, asset, path, rows, first,
        last, median_step, amount_derived``. ``first`` and ``last`` keep each file's zone.
    markets : tuple of str
        Market names in order of first appearance.
    market_weights : dict of str to float

    Notes
    -----
    Building the corpus reads only the asset and timestamp columns of every file. The index
    keeps, per asset, the runs of rows between timestamp gaps, so that windows per split can be
    estimated without values ([`window_counts`][kronos_sk.data.corpus.CandleCorpus.window_counts]).
    Jumps and bad rows are found on load.
    Parquet reads filter on the asset column, so row groups of other assets are skipped (the
    shared files are sorted by asset). A CSV file has to be read whole on every load.
    """

    def __init__(
        self,
        sources: str | Path | Sequence[str | Path],
        *,
        markets: Mapping[str, str] | None = None,
        weights: Mapping[str, float] | None = None,
        max_gap_factor: float | Mapping[str, float] = DEFAULT_GAP_FACTOR,
        max_abs_log_return: float | Mapping[str, float | None] | None = None,
    ) -> None:
        paths = _find_files(sources)
        stems = {path.stem for path in paths}
        unknown = sorted(set(markets or {}) - stems)
        if unknown:
            raise ValueError(f"markets names files {unknown} that are not among {sorted(stems)}")
        market_of = {stem: (markets or {}).get(stem, stem) for stem in stems}
        self.markets = tuple(dict.fromkeys(market_of[path.stem] for path in paths))
        self.max_gap_factor = self._gap_factors(max_gap_factor)

        self._files: list[_File] = []
        tables, segments, medians = [], [], []
        for path in paths:
            file, table, file_segments, median = self._index_file(path, market_of[path.stem])
            file_segments["asset"] += sum(len(t) for t in tables)
            self._files.append(file)
            tables.append(table)
            segments.append(file_segments)
            medians.append(median)
        self.assets = pd.concat(tables, ignore_index=True)
        self._segments = {key: np.concatenate([s[key] for s in segments]) for key in segments[0]}
        self._median_ns = np.concatenate(medians)  # NaN for an asset with a single timestamp
        self._file_of = np.repeat(np.arange(len(paths)), [len(t) for t in tables])

        duplicated = self.assets.duplicated(["market", "asset"])
        if duplicated.any():
            row = self.assets[duplicated].iloc[0]
            raise ValueError(
                f"asset {row['asset']!r} of market {row['market']!r} appears in more than one "
                "file; map those files to different markets"
            )
        self._position = {key: i for i, key in enumerate(zip(self.assets["market"],
                                                             self.assets["asset"]))}
        self._by_name: dict[object, list[int]] = {}
        for i, name in enumerate(self.assets["asset"]):
            self._by_name.setdefault(name, []).append(i)

        self.market_weights = self._market_weights(weights)
        self._max_jump = self._max_jumps(max_abs_log_return)

    def __len__(self) -> int:
        return len(self.assets)

    def __repr__(self) -> str:
        return (f"CandleCorpus({len(self._files)} file(s), {len(self.markets)} market(s), "
                f"{len(self)} assets, {int(self.assets['rows'].sum())} rows)")

    def load(self, asset_ref: AssetRef) -> pd.DataFrame:
        """Read, clean and segment one asset's rows.

        Parameters
        ----------
        asset_ref : int, str or (market, asset) tuple
            Row of `assets`, an asset name unique across markets, or a (market, asset)
            pair.

        Returns
        -------
        DataFrame
            Columns ``timestamp`` (the file's zone), ``open, high, low, close, volume, amount``
            (float64) and ``segment`` (int64, 0, 1, ...), sorted by time. Rows with a missing or
            non-finite value, a non-positive price, ``high < low``, or a repeated timestamp are
            dropped, and a segment ends at each of them; negative volumes and amounts become 0
            and high/low are widened over open/close (`kronos_sk.data.RULES`). A segment
            also ends before a step longer than ``max_gap_factor`` median steps and before a
            close-to-close jump beyond ``max_abs_log_return``. ``attrs`` holds ``asset``,
            ``market``, ``amount_derived`` (amount is ``volume * mean(open, high, low, close)``)
            ``dropped_rows`` and ``repaired`` (rows fixed per rule).
        """
        return self.load_many([asset_ref])[0]

    def load_many(self, asset_refs: Iterable[AssetRef]) -> list[pd.DataFrame]:
        """[`load`][kronos_sk.data.corpus.CandleCorpus.load] several assets with one read per file;
        frames in the order given."""
        positions = [self._resolve(ref) for ref in asset_refs]
        frames: dict[int, pd.DataFrame] = {}
        for file_id in dict.fromkeys(self._file_of[positions].tolist()):
            wanted = [p for p in positions if self._file_of[p] == file_id]
            file = self._files[file_id]
            names = list(dict.fromkeys(self.assets["asset"].iloc[wanted]))
            parts = dict(list(_read_values(file, names).groupby(ASSET_COLUMN, sort=False)))
            for position in wanted:
                name = self.assets["asset"].iloc[position]
                if name not in parts:
                    raise KeyError(f"{file.path}: asset {name!r} is no longer in the file; "
                                   "build the corpus again")
                frames[position] = self._clean(parts[name], position)
        return [frames[p] for p in positions]

    def validation_starts(self, time_split: TimeSplit | Mapping[str, TimeSplit]) -> np.ndarray:
        """Per asset, the first instant of its validation rows.

        Parameters
        ----------
        time_split : TimeSplit or mapping of str to TimeSplit
            One rule for all markets, or market -> rule, with key ``"*"`` for the markets not
            named. Every market needs a rule.

        Returns
        -------
        ndarray of shape (n_assets,), int64
            Nanoseconds since the epoch (UTC for zoned files, wall clock for naive ones); rows
            stamped at or after it are validation. ``NO_VALIDATION`` where no row is.
        """
        rules = self._split_rules(time_split)
        per_file = np.empty(len(self._files), dtype=np.int64)
        for i, file in enumerate(self._files):
            start = rules[file.market].validation_start(file.tz, file.last)
            per_file[i] = NO_VALIDATION if start is None else start.value
        return per_file[self._file_of]

    def window_counts(
        self, length: int, *, time_split: TimeSplit | Mapping[str, TimeSplit], split: Split
    ) -> np.ndarray:
        """Estimated windows per asset in one split, from the index: rows with at least
        `length` rows left in their segment (a window there may be longer, up to the rows left).

        Exact for segments cut by timestamp gaps; rows are assumed evenly spread in time within
        a segment that the split boundary cuts, and jumps and bad rows (known only on load) are
        not counted.

        Returns
        -------
        ndarray of shape (n_assets,), float64
        """
        if split not in ("train", "validation"):
            raise ValueError(f"split must be 'train' or 'validation', got {split!r}")
        seg = self._segments
        start = self.validation_starts(time_split)[seg["asset"]].astype(float)
        span = np.maximum(seg["last"] - seg["first"], 1).astype(float)
        train_share = np.clip((start - seg["first"]) / span, 0.0, 1.0)
        share = train_share if split == "train" else 1.0 - train_share
        windows = np.maximum(seg["rows"] * share - length + 1, 0.0)
        return np.bincount(seg["asset"], weights=windows, minlength=len(self))

    def _index_file(
        self, path: Path, market: str
    ) -> tuple[_File, pd.DataFrame, dict[str, np.ndarray], np.ndarray]:
        """Per-asset summary, segments between timestamp gaps and median steps of one file."""
        columns = _resolve_columns(path)
        keys = _read_keys(path, columns)
        stamps = pd.DatetimeIndex(keys["timestamp"])
        keys, stamps = keys[~stamps.isna()], stamps[~stamps.isna()]
        if len(keys) == 0:
            raise ValueError(f"{path}: no rows with a timestamp")
        codes, names = pd.factorize(keys[ASSET_COLUMN], sort=True)
        ticks = stamps.as_unit("ns").asi8
        order = np.lexsort((ticks, codes))
        code, tick = codes[order], ticks[order]
        n_assets = len(names)

        step = np.diff(tick)
        same = code[1:] == code[:-1]
        forward = same & (step > 0)
        median = (pd.Series(step[forward]).groupby(code[1:][forward]).median()
                  .reindex(range(n_assets)).to_numpy(dtype=float))
        gap_factor = self.max_gap_factor[market]
        new_segment = np.r_[True, ~same | (step > gap_factor * median[code[1:]])]
        segments = {
            "asset": code[new_segment].astype(np.int64),
            "first": tick[new_segment],
            "last": tick[np.r_[new_segment[1:], True]],
            "rows": np.bincount(np.cumsum(new_segment) - 1),
        }

        tz = stamps.tz

        def as_stamps(ns: np.ndarray) -> pd.DatetimeIndex:
            index = pd.to_datetime(ns, unit="ns")
            return index if tz is None else index.tz_localize("UTC").tz_convert(tz)

        file = _File(path, market, columns, tz, as_stamps(np.array([tick.max()]))[0])
        table = pd.DataFrame({
            "market": market,
            "asset": pd.Index(names, dtype=object),
            "path": str(path),
            "rows": np.bincount(code, minlength=n_assets),
            "first": as_stamps(tick[np.r_[True, ~same]]),
            "last": as_stamps(tick[np.r_[~same, True]]),
            "median_step": pd.to_timedelta(median, unit="ns"),
            "amount_derived": file.amount_derived,
        })
        return file, table, segments, median

    def _resolve(self, ref: AssetRef) -> int:
        if isinstance(ref, (int, np.integer)) and not isinstance(ref, bool):
            if not 0 <= ref < len(self):
                raise IndexError(f"asset position {ref} out of range for {len(self)} assets")
            return int(ref)
        if isinstance(ref, tuple):
            if ref not in self._position:
                raise KeyError(f"no asset {ref[1:]!r} in market {ref[:1]!r}")
            return self._position[ref]
        positions = self._by_name.get(ref, [])
        if len(positions) != 1:
            where = "not in the corpus" if not positions else (
                f"in markets {self.assets['market'].iloc[positions].tolist()}; "
                "pass (market, asset)")
            raise KeyError(f"asset {ref!r} is {where}")
        return positions[0]

    def _clean(self, frame: pd.DataFrame, position: int) -> pd.DataFrame:
        file = self._files[self._file_of[position]]
        frame = frame.sort_values("timestamp", kind="stable", ignore_index=True)
        if file.amount_derived:
            frame["amount"] = derived_amount(frame["volume"], frame[list(PRICE_COLUMNS)])
        repair = repair_candles(frame[["timestamp", *FEATURE_COLUMNS]],
                                name=f"{file.path}: asset {self.assets['asset'].iloc[position]!r}",
                                min_rows=0)
        kept, candles = repair.kept, repair.candles
        breaks = np.diff(kept) > 1
        ticks = candles.index.as_unit("ns").asi8
        gap_factor = self.max_gap_factor[file.market]
        breaks |= np.diff(ticks) > gap_factor * self._median_ns[position]
        max_jump = self._max_jump[file.market]
        if max_jump is not None:
            breaks |= np.abs(np.diff(np.log(candles["close"].to_numpy()))) > max_jump

        clean = candles.rename_axis("timestamp").reset_index()
        clean["segment"] = np.r_[0, np.cumsum(breaks)].astype(np.int64)[: len(kept)]
        clean.attrs = {
            "asset": self.assets["asset"].iloc[position],
            "market": file.market,
            "amount_derived": file.amount_derived,
            "dropped_rows": len(frame) - len(kept),
            "repaired": repair.counts,
        }
        return clean

    def _split_rules(self, time_split: TimeSplit | Mapping[str, TimeSplit]) -> dict[str, TimeSplit]:
        if isinstance(time_split, TimeSplit):
            return dict.fromkeys(self.markets, time_split)
        if not isinstance(time_split, Mapping):
            raise TypeError(
                f"time_split must be a TimeSplit or a mapping market -> TimeSplit, got "
                f"{type(time_split).__name__}"
            )
        self._check_market_keys(time_split, "time_split", DEFAULT_MARKET_KEY)
        missing = [m for m in self.markets if m not in time_split]
        if missing and DEFAULT_MARKET_KEY not in time_split:
            raise ValueError(
                f"time_split has no rule for markets {missing}; add them or a default under "
                f"key {DEFAULT_MARKET_KEY!r}"
            )
        rules = {m: time_split.get(m, time_split.get(DEFAULT_MARKET_KEY)) for m in self.markets}
        for market, rule in rules.items():
            if not isinstance(rule, TimeSplit):
                raise TypeError(f"time_split[{market!r}] must be a TimeSplit, got {rule!r}")
        return rules

    def _market_weights(self, weights: Mapping[str, float] | None) -> dict[str, float]:
        weights = weights or {}
        self._check_market_keys(weights, "weights")
        resolved = {m: float(weights.get(m, 1.0)) for m in self.markets}
        if any(not (np.isfinite(w) and w >= 0) for w in resolved.values()):
            raise ValueError(f"market weights must be finite and >= 0, got {resolved}")
        if not any(resolved.values()):
            raise ValueError("at least one market weight must be positive")
        return resolved

    def _gap_factors(self, max_gap_factor: float | Mapping[str, float]) -> dict[str, float]:
        if not isinstance(max_gap_factor, Mapping):
            per_market = dict.fromkeys(self.markets, max_gap_factor)
        else:
            self._check_market_keys(max_gap_factor, "max_gap_factor", DEFAULT_MARKET_KEY)
            default = max_gap_factor.get(DEFAULT_MARKET_KEY, DEFAULT_GAP_FACTOR)
            per_market = {m: max_gap_factor.get(m, default) for m in self.markets}
        for market, value in per_market.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 1:
                raise ValueError(f"max_gap_factor must be > 1, got {value!r} for {market!r}")
        return {market: float(value) for market, value in per_market.items()}

    def _max_jumps(
        self, max_abs_log_return: float | Mapping[str, float | None] | None
    ) -> dict[str, float | None]:
        if not isinstance(max_abs_log_return, Mapping):
            per_market = dict.fromkeys(self.markets, max_abs_log_return)
        else:
            self._check_market_keys(max_abs_log_return, "max_abs_log_return")
            per_market = {m: max_abs_log_return.get(m) for m in self.markets}
        for market, value in per_market.items():
            if value is not None and not value > 0:
                raise ValueError(
                    f"max_abs_log_return must be > 0 or None, got {value!r} for {market!r}"
                )
        return per_market

    def _check_market_keys(self, mapping: Mapping, what: str, *extra: str) -> None:
        unknown = sorted(set(mapping) - set(self.markets) - set(extra))
        if unknown:
            raise ValueError(f"{what} names unknown markets {unknown}; markets are "
                             f"{list(self.markets)}")


def _find_files(sources: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(sources, (str, Path)):
        sources = [sources]
    paths: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            found = sorted(p for p in source.iterdir() if p.suffix.lower() in SUFFIXES)
            if not found:
                raise ValueError(f"{source}: no *.parquet or *.csv files in this directory")
            paths += found
        elif source.is_file():
            if source.suffix.lower() not in SUFFIXES:
                raise ValueError(f"{source}: expected a .parquet or .csv file")
            paths.append(source)
        else:
            raise FileNotFoundError(f"{source}: no such file or directory")
    if not paths:
        raise ValueError("CandleCorpus needs at least one file or directory")
    return list(dict.fromkeys(paths))


def _parquet():
    try:
        import pyarrow.parquet as pq
    except ImportError as error:
        raise ImportError(
            "reading Parquet files needs pyarrow: pip install 'kronos-sk[data]'"
        ) from error
    return pq


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() == ".parquet"


def _resolve_columns(path: Path) -> dict[str, str]:
    """Canonical name (asset, timestamp, features) -> the column name used in the file."""
    if _is_parquet(path):
        names = _parquet().read_schema(path).names
    else:
        names = pd.read_csv(path, nrows=0).columns.tolist()
    columns = {canonical: name for name, canonical in canonical_columns(names).items()}
    for key, accepted in ((ASSET_COLUMN, (ASSET_COLUMN,)), ("timestamp", TIMESTAMP_COLUMNS)):
        found = [n for n in names if isinstance(n, str) and n.strip().lower() in accepted]
        if len(found) != 1:
            raise ValueError(f"{path}: needs exactly one {key} column (one of {accepted}), "
                             f"found {found} among {names}")
        columns[key] = found[0]
    missing = [c for c in (*PRICE_COLUMNS, "volume") if c not in columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {names}")
    return columns


def _read_keys(path: Path, columns: dict[str, str]) -> pd.DataFrame:
    """The asset and timestamp columns only."""
    wanted = [columns[ASSET_COLUMN], columns["timestamp"]]
    if _is_parquet(path):
        frame = _parquet().read_table(path, columns=wanted).to_pandas()
    else:
        frame = pd.read_csv(path, usecols=wanted)
    frame = frame.rename(columns={columns[ASSET_COLUMN]: ASSET_COLUMN,
                                  columns["timestamp"]: "timestamp"})
    frame["timestamp"] = _as_datetime(frame["timestamp"], path)
    return frame


def _read_values(file: _File, names: list[object]) -> pd.DataFrame:
    """All columns of the rows of assets `names`, under canonical names."""
    wanted = list(file.columns.values())
    if _is_parquet(file.path):
        frame = _parquet().read_table(
            file.path, columns=wanted, filters=[(file.columns[ASSET_COLUMN], "in", names)]
        ).to_pandas()
    else:
        frame = pd.read_csv(file.path, usecols=wanted)
        frame = frame[frame[file.columns[ASSET_COLUMN]].isin(names)]
    frame = frame.rename(columns={name: key for key, name in file.columns.items()})
    for column in FEATURE_COLUMNS:
        if column in frame and not pd.api.types.is_numeric_dtype(frame[column].dtype):
            raise TypeError(f"{file.path}: column {file.columns[column]!r} is not numeric "
                            f"(dtype {frame[column].dtype})")
    frame["timestamp"] = _as_datetime(frame["timestamp"], file.path)
    return frame


def _as_datetime(column: pd.Series, path: Path) -> pd.Series:
    if column.dtype.kind != "M":
        column = pd.to_datetime(column)
    if column.dtype.kind != "M":
        raise ValueError(f"{path}: timestamps must share one time zone, got dtype {column.dtype}")
    return column
