"""Panels of real candles and the forecast origins of the evaluation period.

An *origin* is a timestamp of the evaluation period; at an origin, every selected asset that
has a row there, `lookback` rows up to it (inclusive) and `horizon` rows after it gives one
window: the context (the last `lookback` rows), the history (the last `history` rows, for
baselines that are fitted) and the target (the next `horizon` rows). Steps are rows, so a
holiday or a suspension shifts the calendar, never the step count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from kronos_sk.data import TimeSplit, repair_candles
from kronos_sk.data.normalize import normalising_scale

from .config import BenchmarkConfig

CANDLE_COLUMNS = ("open", "high", "low", "close", "volume", "amount")
PRICE_COLUMNS = ["open", "high", "low", "close"]


@dataclass
class Panel:
    """Candles of the selected assets and the start of the evaluation period.

    Attributes
    ----------
    frames : dict of str to DataFrame
        Asset -> candles indexed by timestamp (sorted), columns open..volume[, amount].
    eval_start : Timestamp
        First instant of the evaluation (validation) period.
    fine_tuned : dict
        Models trained on the rows before `eval_start`, kept so that the tasks of one run
        share them (filled by `benchmarks.suite.models.Model`).
    """

    frames: dict[str, pd.DataFrame]
    eval_start: pd.Timestamp
    fine_tuned: dict = field(default_factory=dict)

    @property
    def assets(self) -> list[str]:
        """Asset names, sorted."""
        return sorted(self.frames)

    def training_panel(self, max_rows: int | None = None) -> pd.DataFrame:
        """Rows before `eval_start` of every asset as an (asset, timestamp) panel."""
        parts = {}
        for asset, frame in self.frames.items():
            rows = frame[frame.index < self.eval_start]
            parts[asset] = rows.iloc[-max_rows:] if max_rows else rows
        return pd.concat(parts, names=["asset", "timestamp"])


@dataclass
class Windows:
    """The windows of one origin, assets sorted.

    Attributes
    ----------
    origin : Timestamp
    assets : list of str
    contexts, histories, targets : list of DataFrame
        Per asset: the last `lookback` rows, the last `history` rows (both ending at the
        origin) and the next `horizon` rows.
    """

    origin: pd.Timestamp
    assets: list[str]
    contexts: list[pd.DataFrame]
    histories: list[pd.DataFrame]
    targets: list[pd.DataFrame]

    def context_panel(self) -> pd.DataFrame:
        """Contexts as an (asset, timestamp) panel."""
        return pd.concat(dict(zip(self.assets, self.contexts, strict=True)),
                         names=["asset", "timestamp"])

    def history_panel(self, columns: list[str]) -> pd.DataFrame:
        """Histories as an (asset, step) panel whose integer steps end at 0 for every asset.

        Ending every series at the same step makes a relative horizon mean the same rows
        for every asset in sktime's per-series broadcasting.
        """
        parts = {}
        for asset, history in zip(self.assets, self.histories, strict=True):
            part = history[columns].reset_index(drop=True)
            part.index = pd.RangeIndex(-len(part) + 1, 1, name="step")
            parts[asset] = part
        return pd.concat(parts, names=["asset", "step"])

    def target_array(self, columns: list[str] = PRICE_COLUMNS) -> np.ndarray:
        """Targets as an array (n_assets, horizon, n_columns)."""
        return np.stack([t[columns].to_numpy(np.float64) for t in self.targets])

    def last_close(self) -> np.ndarray:
        """Last context close per asset, (n_assets,)."""
        return np.array([c["close"].iloc[-1] for c in self.contexts], dtype=np.float64)

    def close_scale(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and normalising scale of each context's closes, (n_assets,) each: closes
        minus the mean over the scale are in the units the price task scores."""
        closes = np.stack([c["close"].to_numpy(np.float64) for c in self.contexts])
        mean = closes.mean(axis=1)
        return mean, normalising_scale(mean, closes.std(axis=1))


def _select_assets(files: tuple, assets: int | tuple[str, ...]) -> dict:
    """File -> asset names to read: the named ones, or the N with the most rows."""
    counts = []
    for path in files:
        keys = pq.read_table(path, columns=["asset"]).column("asset").to_pandas()
        counts.append(keys.value_counts().rename_axis("asset").reset_index(name="rows")
                      .assign(path=path))
    table = pd.concat(counts, ignore_index=True)
    if isinstance(assets, tuple):
        missing = sorted(set(assets) - set(table["asset"]))
        if missing:
            raise ValueError(f"assets {missing} are not in {[str(f) for f in files]}")
        table = table[table["asset"].isin(assets)]
    else:
        table = table.sort_values(["rows", "asset"], ascending=[False, True]).head(assets)
    return {path: sorted(group["asset"]) for path, group in table.groupby("path", sort=False)}


def load_panel(config: BenchmarkConfig) -> Panel:
    """Read the configured assets and find the evaluation start.

    The evaluation period starts at `config.start` (wall-clock time in the file's zone) or
    within the file's final `config.last`, as `kronos_sk.data.TimeSplit` defines it; with
    several files, at the earliest of their starts.
    """
    split = TimeSplit(cutoff=config.start, last=config.last)
    frames, starts = {}, []
    for path, names in _select_assets(config.files, config.assets).items():
        table = pd.read_parquet(path, filters=[("asset", "in", names)])
        columns = [c for c in CANDLE_COLUMNS if c in table.columns]
        stamps = pd.DatetimeIndex(table["timestamp"])
        start = split.validation_start(stamps.tz, stamps.max())
        if start is None:
            raise ValueError("give evaluation.start or evaluation.last")
        starts.append(start)
        for asset, rows in table.groupby("asset", sort=True):
            frame = rows.set_index("timestamp")[columns].astype(np.float64).sort_index()
            frames[str(asset)] = repair_candles(frame, name=f"{path}: {asset!r}").candles
    return Panel(frames=frames, eval_start=min(starts))


def origins(panel: Panel, config: BenchmarkConfig) -> list[pd.Timestamp]:
    """Forecast origins: evenly spaced (`config.origins`) or every `config.stride`-th stamp.

    Candidates are the stamps of the evaluation period (union over assets) after which at
    least `horizon` further stamps exist.
    """
    stamps = sorted(set().union(*(f.index[f.index >= panel.eval_start]
                                  for f in panel.frames.values())))
    candidates = stamps[:len(stamps) - config.horizon]
    if not candidates:
        raise ValueError("the evaluation period is shorter than the horizon")
    if config.stride is not None:
        return candidates[::config.stride]
    count = min(config.origins, len(candidates))
    picks = np.unique(np.linspace(0, len(candidates) - 1, count).round().astype(int))
    return [candidates[i] for i in picks]


def windows_at(panel: Panel, origin: pd.Timestamp, config: BenchmarkConfig) -> Windows:
    """The windows of every asset that can be evaluated at `origin`.

    With `config.max_abs_log_return`, an asset whose context or target holds a close-to-close
    move beyond it (an unadjusted split, a data error) is left out at this origin.
    """
    assets, contexts, histories, targets = [], [], [], []
    for asset in panel.assets:
        frame = panel.frames[asset]
        position = frame.index.searchsorted(origin)
        if position == len(frame) or frame.index[position] != origin:
            continue
        end = position + 1
        if end < config.lookback or end + config.horizon > len(frame):
            continue
        if config.max_abs_log_return is not None:
            closes = frame["close"].to_numpy()[end - config.lookback:end + config.horizon]
            if np.abs(np.diff(np.log(closes))).max() > config.max_abs_log_return:
                continue
        assets.append(asset)
        contexts.append(frame.iloc[end - config.lookback:end])
        histories.append(frame.iloc[max(0, end - config.history):end])
        targets.append(frame.iloc[end:end + config.horizon])
    return Windows(origin, assets, contexts, histories, targets)
