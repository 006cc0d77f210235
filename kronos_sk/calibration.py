"""Conformal calibration of sampled K-line paths: one spread scale per horizon step.

A forecaster's sampled paths are often too narrow (or too wide). Backtested on origins whose
truth is known, the realised closes tell by how much, step by step. The correction here
scales every path's deviation from the median path, in log space, by a factor ``c_h`` per
horizon step ``h``:

    log x' = log m_h + c_h * (log x - log m_h),    m_h = the median path (log space)

- Close sets the price factor; open, high and low of the same path and step are multiplied
  by the close's factor ``x'/x``, so the candle envelope (high >= max(open, close) >= ...)
  holds exactly as it did. Volume gets its own factor, learned in ``log(1 + volume)``, and
  amount is multiplied by both factors (amount ~ volume x price).
- The transform is monotone in each path's value, so quantiles stay ordered, the median
  (in log space) does not move, and every statistic of the paths — quantiles, intervals,
  variance, the skpro distribution, the samples — is calibrated together.
- ``c_h`` is chosen on a grid to minimise the squared coverage error of the central
  50/80/90 % intervals over the backtest windows; where a step has fewer than
  `min_windows` windows, one pooled factor serves every step.

This follows split conformal prediction for time series, with the nonconformity measured
relative to the model's own spread (normalised / locally weighted conformal, Lei et al.,
2018, "Distribution-free predictive inference for regression"), and the rolling-origin
backtests of Stankeviciute et al. (2021, "Conformal time-series forecasting"). `update`
follows adaptive conformal inference (Gibbs and Candès, 2021, "Adaptive conformal inference
under distribution shift"): each new outcome moves ``log c_h`` by ``rate`` times the
difference between the observed and the nominal miss rate, without a refit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from kronos_sk.data.schema import FEATURE_COLUMNS
from kronos_sk.data.validation import assemble_features

LEVELS = (0.5, 0.8, 0.9)
MIN_CALIBRATION_CONTEXT = 16  # fewest context rows of a calibration backtest
SCALE_GRID = np.exp(np.linspace(np.log(0.2), np.log(20.0), 401))
_OPEN, _HIGH, _LOW, _CLOSE, _VOLUME, _AMOUNT = (
    FEATURE_COLUMNS.index(name) for name in ("open", "high", "low", "close", "volume", "amount"))
_TINY = 1e-12


def _log_price(values: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(values, _TINY))


def _centered(logs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(…, S, H) log values -> their median over samples (…, 1, H) and the deviations."""
    center = np.median(logs, axis=-2, keepdims=True)
    return center, logs - center


def _coverage(deviation: np.ndarray, realised: np.ndarray, scales: np.ndarray,
              levels: Sequence[float]) -> np.ndarray:
    """Coverage of central intervals of scaled deviations.

    deviation (W, S, H), realised (W, H), scales (G,) or (G, H) -> (G, len(levels), H).
    """
    scales = np.asarray(scales, np.float64)
    scales = scales.reshape(scales.shape[0], 1, -1)  # (G, 1, 1) or (G, 1, H)
    out = np.empty((len(scales), len(levels), deviation.shape[-1]))
    for j, level in enumerate(levels):
        low, high = np.quantile(deviation, [(1 - level) / 2, (1 + level) / 2], axis=1)
        inside = (scales * low <= realised) & (realised <= scales * high)  # (G, W, H)
        out[:, j] = inside.mean(axis=1)
    return out


def _fit_scales(deviation: np.ndarray, realised: np.ndarray, levels: Sequence[float],
                min_windows: int) -> np.ndarray:
    """Per-step scale from the grid minimising the squared coverage error (H,)."""
    keep = np.isfinite(realised).all(axis=1) & np.isfinite(deviation).all(axis=(1, 2))
    deviation, realised = deviation[keep], realised[keep]
    horizon = deviation.shape[-1]
    if len(realised) == 0:
        return np.ones(horizon)
    target = np.asarray(levels)[None, :, None]
    error = ((_coverage(deviation, realised, SCALE_GRID, levels) - target) ** 2).sum(axis=1)
    # Among equally good scales prefer the one nearest 1 (the model as it is).
    error = error + 1e-9 * np.abs(np.log(SCALE_GRID))[:, None]
    if len(realised) < min_windows:
        return np.full(horizon, SCALE_GRID[error.sum(axis=1).argmin()])
    return SCALE_GRID[error.argmin(axis=0)]


def _volume_logs(values: np.ndarray) -> np.ndarray:
    return np.log1p(np.maximum(values, 0.0))


@dataclass(frozen=True)
class PathCalibration:
    """Per-step spread scales of prices and volume, learned from backtested paths.

    Attributes
    ----------
    price_scale, volume_scale : ndarray of shape (horizon,)
        ``c_h`` of the close (all four prices) and of the volume.
    levels : tuple of float
        The central-interval levels the scales were fitted to.
    n_windows : int
        Backtest windows the scales were learned from.
    """

    price_scale: np.ndarray
    volume_scale: np.ndarray
    levels: tuple[float, ...] = LEVELS
    n_windows: int = 0

    @classmethod
    def fit(cls, paths: np.ndarray, truth: np.ndarray, *,
            levels: Sequence[float] = LEVELS, min_windows: int = 30) -> PathCalibration:
        """Learn the scales from sampled paths at backtest origins and what happened.

        Parameters
        ----------
        paths : ndarray of shape (n_windows, n_samples, horizon, 6)
            Sampled paths in original units, features in ``FEATURE_COLUMNS`` order.
        truth : ndarray of shape (n_windows, horizon, 6)
            The realised candles of each window; windows with a non-finite value are left out.
        levels : sequence of float, default=(0.5, 0.8, 0.9)
        min_windows : int, default=30
            Fewer windows than this: one pooled scale for every step.
        """
        paths, truth = np.asarray(paths, np.float64), np.asarray(truth, np.float64)
        if paths.ndim != 4 or truth.shape != paths.shape[:1] + paths.shape[2:]:
            raise ValueError(f"paths must be (windows, samples, horizon, 6) and truth "
                             f"(windows, horizon, 6), got {paths.shape} and {truth.shape}")
        if not all(0 < level < 1 for level in levels):
            raise ValueError(f"levels must lie in (0, 1), got {list(levels)}")
        scales = []
        for column, logs in ((_CLOSE, _log_price), (_VOLUME, _volume_logs)):
            center, deviation = _centered(logs(paths[..., column]))
            realised = logs(truth[..., column]) - center[:, 0]
            scales.append(_fit_scales(deviation, realised, levels, min_windows))
        return cls(scales[0], scales[1], tuple(float(level) for level in levels), len(paths))

    def _scales_for(self, horizon: int) -> tuple[np.ndarray, np.ndarray]:
        """Scales of steps 1..horizon; steps past the calibrated ones keep the last scale."""
        steps = np.minimum(np.arange(horizon), len(self.price_scale) - 1)
        return self.price_scale[steps], self.volume_scale[steps]

    def apply(self, paths: np.ndarray) -> np.ndarray:
        """Calibrated copy of (..., n_samples, horizon, 6) paths (the input is not changed)."""
        paths = np.asarray(paths)
        price_scale, volume_scale = self._scales_for(paths.shape[-2])
        out = paths.astype(np.float64, copy=True)
        center, deviation = _centered(_log_price(out[..., _CLOSE]))
        factor = np.exp(center + price_scale * deviation) / np.maximum(out[..., _CLOSE], _TINY)
        for column in (_OPEN, _HIGH, _LOW, _CLOSE):
            out[..., column] *= factor
        volume = out[..., _VOLUME]
        center, deviation = _centered(_volume_logs(volume))
        scaled = np.expm1(center + volume_scale * deviation)
        volume_factor = np.where(volume > 0, scaled / np.where(volume > 0, volume, 1.0), 1.0)
        out[..., _VOLUME] = np.where(volume > 0, scaled, volume)
        out[..., _AMOUNT] *= factor * volume_factor
        return out.astype(paths.dtype, copy=False)

    def coverage(self, paths: np.ndarray, truth: np.ndarray) -> dict[float, float]:
        """Empirical coverage of the central intervals of the calibrated closes."""
        calibrated = self.apply(paths)[..., _CLOSE]
        out = {}
        for level in self.levels:
            low, high = np.quantile(calibrated, [(1 - level) / 2, (1 + level) / 2], axis=-2)
            close = np.asarray(truth)[..., _CLOSE]
            out[level] = float(((low <= close) & (close <= high)).mean())
        return out

    def update(self, paths: np.ndarray, truth: np.ndarray, *, rate: float = 0.05,
               ) -> PathCalibration:
        """The scales after new outcomes, in the adaptive-conformal way (no refit).

        For each step, ``log c_h`` moves by `rate` times the mean over levels of the observed
        minus the nominal miss rate of the calibrated paths: more misses widen, fewer narrow.

        Parameters
        ----------
        paths : ndarray of shape (n_windows, n_samples, horizon, 6)
            Uncalibrated paths of forecasts whose truth has arrived.
        truth : ndarray of shape (n_windows, horizon, 6)
        rate : float, default=0.05
        """
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate!r}")
        paths, truth = np.asarray(paths, np.float64), np.asarray(truth, np.float64)
        horizon = min(paths.shape[-2], len(self.price_scale))
        price_scale, volume_scale = self.price_scale.copy(), self.volume_scale.copy()
        for column, logs, scale in ((_CLOSE, _log_price, price_scale),
                                    (_VOLUME, _volume_logs, volume_scale)):
            center, deviation = _centered(logs(paths[..., :horizon, column]))
            realised = logs(truth[..., :horizon, column]) - center[:, 0]
            covered = _coverage(deviation, realised, scale[None, :horizon], self.levels)[0]
            miss = (1 - covered) - (1 - np.asarray(self.levels))[:, None]  # (levels, H)
            scale[:horizon] *= np.exp(rate * miss.mean(axis=0))
        return replace(self, price_scale=price_scale, volume_scale=volume_scale,
                       n_windows=self.n_windows + len(paths))


def backtest_windows(frames: Sequence[pd.DataFrame], names: Sequence[tuple], horizon: int, *,
                     origins: int = 8, stride: int | None = None,
                     ) -> tuple[list[pd.DataFrame], list[pd.DatetimeIndex], np.ndarray, list[str]]:
    """The calibration backtests inside validated candle frames.

    Origin k of a series ends its context ``horizon + k * stride`` rows before the series'
    end (`stride` default: `horizon`, non-overlapping); the next `horizon` rows are the truth.
    Origins that would leave fewer than `MIN_CALIBRATION_CONTEXT` rows of context are skipped.

    Returns
    -------
    contexts, futures, truths (n_windows, horizon, 6), seed keys
        The seed key of origin k of the series named ``(a, b)`` is
        ``repr(("calibration", a, b, k))``.
    """
    stride = stride or horizon
    contexts, futures, truths, keys = [], [], [], []
    for candles, name in zip(frames, names):
        values = assemble_features(candles)
        for k in range(origins):
            origin = len(candles) - horizon - k * stride
            if origin < MIN_CALIBRATION_CONTEXT:
                break
            contexts.append(candles.iloc[:origin])
            futures.append(candles.index[origin:origin + horizon])
            truths.append(values[origin:origin + horizon])
            keys.append(repr(("calibration", *name, k)))
    if not contexts:
        raise ValueError(
            f"calibration needs series of at least {MIN_CALIBRATION_CONTEXT + horizon} rows "
            f"({MIN_CALIBRATION_CONTEXT} of context + a horizon of {horizon}); the longest "
            f"has {max(len(frame) for frame in frames)}")
    return contexts, futures, np.stack(truths), keys


def fit_calibration(pipeline, frames: Sequence[pd.DataFrame], names: Sequence[tuple],
                    horizon: int, *, origins: int = 8, stride: int | None = None,
                    **sampling) -> PathCalibration:
    """Backtest `pipeline` inside the frames (all origins in one batched generation) and
    learn a `PathCalibration` from what happened.

    Parameters
    ----------
    pipeline : KronosPipeline
    frames : sequence of DataFrame
        Validated candles (`kronos_sk.data.validate_candles`).
    names : sequence of tuple
        The identity of each series, which seeds its backtest paths.
    horizon, origins, stride
        See `backtest_windows`.
    **sampling
        Settings of `KronosPipeline.sample_validated` (n_samples, top_p, random_state, ...).
    """
    contexts, futures, truths, keys = backtest_windows(frames, names, horizon,
                                                       origins=origins, stride=stride)
    paths = pipeline.sample_validated(contexts, futures, keys, **sampling)
    return PathCalibration.fit(paths, truths)


def arrived_truth(grids: Sequence[pd.DatetimeIndex], candles: Sequence[pd.DataFrame],
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The rows of forecast grids that have arrived in the series' candles.

    For each series, the longest first part of its grid (the future stamps of a kept
    forecast) found in its candles, wherever those rows sit; series with none are left out.

    Returns
    -------
    rows : ndarray of int
        The series with arrived truth.
    truth : ndarray of shape (len(rows), H, 6)
        Their candles at the first H stamps, H the shortest arrived part.
    """
    rows, truths = [], []
    for i, (grid, frame) in enumerate(zip(grids, candles)):
        present = grid.isin(frame.index)
        n = len(grid) if present.all() else int(present.argmin())
        if n:
            rows.append(i)
            truths.append(assemble_features(frame.loc[grid[:n]]))
    if not rows:
        return np.array([], dtype=int), np.empty((0, 0, len(FEATURE_COLUMNS)))
    H = min(len(t) for t in truths)
    return np.array(rows), np.stack([t[:H] for t in truths])


def adapt_calibration(calibration: PathCalibration, paths: np.ndarray,
                      grids: Sequence[pd.DatetimeIndex], candles: Sequence[pd.DataFrame],
                      rate: float) -> PathCalibration:
    """`calibration` after scoring kept forecast paths (n_series, S, H, 6), made for the
    stamps `grids`, against the rows of those stamps that have arrived in `candles`
    (`arrived_truth`); unchanged when none has."""
    rows, truth = arrived_truth(grids, candles)
    if not len(rows):
        return calibration
    return calibration.update(paths[rows, :, :truth.shape[1]], truth, rate=rate)
