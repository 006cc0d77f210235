"""Conformal calibration of sampled K-line paths: a spread that grows along each path.

A forecaster's sampled paths are often too narrow (or too wide) at the horizon while their
day-to-day moves are about right: the bundled model's paths move as much as prices do from
day to day, but do not wander as far over ten days. Backtested on origins whose truth is
known, the realised values tell by how much, step by step. The correction keeps every
path's own steps and adds to it a level that grows along the horizon, in the direction the
path itself ends up:

    y'_h = y_h + g_h * D,    D = y_H - m_H,    y = log price (or the value itself)

where m is the median path and ``g_h = g_H * h / H`` ramps from 0 at the origin. Each
step's increment changes only by ``g_H / H * D``, a small drift constant along the path,
so day-to-day returns, realized volatility and the look of generated K-lines stay what
the model made them, while the spread at step h becomes about ``1 + g_h`` times wider
along the paths' terminal direction. The map is monotone in `D`
at the last step, so quantiles there are scaled and stay ordered; the paths are then moved
alike, per step, back to their mean, so the point forecast does not move.

- Close sets the price drift; open, high and low of the same path and step move by the
  close's factor, so the candle envelope holds exactly. Volume gets its own drift, in
  ``log(1 + volume)``; amount moves by both factors.
- Positive prices are calibrated in log space (a multiplicative drift); a column that is
  not a positive price (returns, spreads: a value <= 0 in the backtests) in its own space,
  additively (`price_space` says which).
- ``g_h`` ramps linearly from 0 at the origin to ``g_H``, and ``1 + g_H`` is chosen on a
  grid to minimise the squared coverage error of the central 50/80/90 % intervals pooled
  over every step of the backtest windows. A straight ramp keeps the drift a small,
  steady part of each step.
- One width cannot fit the centre and the tails when the paths' tails are too thin: the
  price drift has a second, tail term, ``g_h * D`` becoming ``(g_h + k_h min(|D| / s, 3))
  * D`` with ``s`` the mean ``|D|`` of the window's paths and ``k_h = k * h / H``
  (``k >= 0``, `price_tail`), so paths that end far out move further out. The map stays
  monotone in ``D``; ``(1 + g_H, k)`` are fitted together on the grid.

This follows split conformal prediction for time series with the nonconformity measured
relative to the model's own spread (normalised conformal prediction, Lei et al. 2018,
"Distribution-free predictive inference for regression") on rolling origins (Stankeviciute
et al. 2021, "Conformal time-series forecasting"). `update` follows adaptive conformal
inference (Gibbs and Candes 2021, "Adaptive conformal inference under distribution
shift"): each new outcome moves ``log(1 + g_H)`` by ``rate`` times the difference between
the observed and the nominal miss rate, without a refit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from kronos_sk.data.schema import FEATURE_COLUMNS
from kronos_sk.data.validation import assemble_features

if TYPE_CHECKING:
    from kronos_sk.checkpoints import Spread

LEVELS = (0.5, 0.8, 0.9)
SCALE_GRID = np.exp(np.linspace(np.log(0.2), np.log(20.0), 241))
MIN_CALIBRATION_CONTEXT = 16  # fewest context rows of a calibration backtest
_OPEN, _HIGH, _LOW, _CLOSE, _VOLUME, _AMOUNT = (
    FEATURE_COLUMNS.index(name) for name in ("open", "high", "low", "close", "volume", "amount"))
_GRID_CHUNK = 24  # grid factors evaluated at once (memory: chunk x windows x samples)
TAIL_GRID = (0.0, 0.15, 0.3, 0.5, 0.8)  # the price drift's tail k
_COARSE_STEP = 4  # the coarse grid of factors, fitted with the tails: every 4th
TAIL_GAIN = 1e-3  # squared coverage error a tail must save (~3 points at one level)
TAIL_CAP = 3.0  # |D| / s beyond which the tail term grows no faster than D


def _to_space(values: np.ndarray, space: str) -> np.ndarray:
    if space == "log":
        return np.log(values)
    if space == "log1p":
        return np.log1p(np.maximum(values, 0.0))
    return values


def _from_space(values: np.ndarray, space: str) -> np.ndarray:
    if space == "log":
        return np.exp(values)
    if space == "log1p":
        return np.expm1(values)
    return values


def _deviations(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(…, S, H) values -> median path (…, 1, H), deviations (…, S, H), terminal D (…, S, 1)."""
    center = np.median(values, axis=-2, keepdims=True)
    deviation = values - center
    return center, deviation, deviation[..., -1:]


def _tail_term(terminal: np.ndarray) -> np.ndarray:
    """``D * min(|D| / s, TAIL_CAP)`` of terminal deviations (…, S, 1), s the mean |D|
    over the paths (the cap keeps a lone outlying path from being thrown further still)."""
    scale = np.abs(terminal).mean(axis=-2, keepdims=True)
    return terminal * np.minimum(np.abs(terminal) / np.where(scale > 0, scale, 1.0), TAIL_CAP)


def _coverage(deviation: np.ndarray, terminal: np.ndarray, realised: np.ndarray,
              factors: np.ndarray, tails: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Coverage at one step of the drifted deviations ``dev + (f - 1) * D + t * D|D|/s``.

    deviation, terminal (W, S), realised (W,), factors and tails (G,) -> (G, len(levels)).
    """
    out = np.empty((len(factors), len(levels)))
    tail = _tail_term(terminal[..., None])[..., 0]
    for lo in range(0, len(factors), _GRID_CHUNK):
        g = factors[lo:lo + _GRID_CHUNK, None, None] - 1.0
        t = tails[lo:lo + _GRID_CHUNK, None, None]
        shifted = deviation[None] + g * terminal[None] + t * tail[None]  # (G, W, S)
        for j, level in enumerate(levels):
            low, high = np.quantile(shifted, [(1 - level) / 2, (1 + level) / 2], axis=-1)
            out[lo:lo + _GRID_CHUNK, j] = ((low <= realised) & (realised <= high)).mean(-1)
    return out


def _ramp(last: float, horizon: int) -> np.ndarray:
    """Factors ``1 + g_h`` of steps 1..horizon, growing linearly to `last` at the last."""
    return 1 + (last - 1) * np.arange(1, horizon + 1) / horizon


def _pooled_coverage(values: np.ndarray, truth: np.ndarray, factors: np.ndarray,
                     tails: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Coverage pooled over the steps of values (W, S, H) against truth (W, H), drifted
    by each row of per-step factors and tails (G, H) -> (G, len(levels))."""
    center, deviation, terminal = _deviations(values)
    realised = truth - center[:, 0]
    horizon = values.shape[-1]
    return sum(_coverage(deviation[..., h], terminal[..., 0], realised[:, h], factors[:, h],
                         tails[:, h], levels) for h in range(horizon)) / horizon


def _fit_factors(values: np.ndarray, truth: np.ndarray, levels: Sequence[float],
                 tails: Sequence[float] = (0.0,)) -> tuple[np.ndarray, float]:
    """Per-step factors ``1 + g_h`` (H,) and the tail ``k`` of values (W, S, H) in their
    space against truth.

    One last-step factor, reached linearly, and one tail among `tails`, chosen on the grid
    to minimise the squared coverage error of the central intervals pooled over every step
    of every window (a coarse grid of both, then the fine grid of the factor at the best
    tail; a tail is kept only where it lowers the error by `TAIL_GAIN`). A linear ramp
    keeps the drift a small constant part of each step (per-step factors, fitted freely,
    are noisy enough to make paths jump: step-return std x1.14-1.55).
    """
    keep = np.isfinite(truth).all(axis=1) & np.isfinite(values).all(axis=(1, 2))
    values, truth = values[keep], truth[keep]
    horizon = values.shape[-1]
    if len(truth) == 0:
        return np.ones(horizon), 0.0

    ramp = np.arange(1, horizon + 1) / horizon

    def errors(lasts: np.ndarray, ks: np.ndarray) -> np.ndarray:
        covered = _pooled_coverage(values, truth, 1 + (lasts[:, None] - 1) * ramp,
                                   ks[:, None] * ramp, levels)
        # Among equally good settings prefer the one nearest the model as it is.
        return ((covered - np.asarray(levels)) ** 2).sum(axis=1) + 1e-9 * (
            np.abs(np.log(lasts)) + ks)

    grid, tail = SCALE_GRID, 0.0
    if len(tails) > 1:  # a coarse grid of both, then the fine grid near the best
        lasts = np.repeat(SCALE_GRID[::_COARSE_STEP], len(tails))
        ks = np.tile(np.asarray(tails, float), len(SCALE_GRID[::_COARSE_STEP]))
        error = errors(lasts, ks)
        best, plain = error.argmin(), np.where(ks == 0, error, np.inf).argmin()
        if not error[best] < error[plain] - TAIL_GAIN:  # one width fits about as well
            best = plain
        tail, at = float(ks[best]), int(np.abs(SCALE_GRID - lasts[best]).argmin())
        grid = SCALE_GRID[max(0, at - _COARSE_STEP):at + _COARSE_STEP + 1]
    last = grid[errors(grid, np.full(len(grid), tail)).argmin()]
    return _ramp(float(last), horizon), tail


def _space_of(paths: np.ndarray, truth: np.ndarray) -> str:
    """"log" where every backtest value is a positive price, else "linear"."""
    return "log" if (paths > 0).all() and (truth[np.isfinite(truth)] > 0).all() else "linear"


@dataclass(frozen=True)
class PathCalibration:
    """Per-step spread factors of prices and volume, learned from backtested paths.

    Attributes
    ----------
    price_scale, volume_scale : ndarray of shape (horizon,)
        ``1 + g_h`` of the close (all four prices) and of the volume: how many times wider
        the spread at step h is made, along each path's terminal direction.
    levels : tuple of float
        The central-interval levels the factors were fitted to.
    n_windows : int
        Backtest windows the factors were learned from.
    price_space : {"log", "linear"}
        "log" for positive prices (a multiplicative drift), "linear" for a column that is
        not a positive price (an additive one).
    price_tail : float
        ``k`` of the prices' tail term at the last calibrated step (0: one width for all).
    """

    price_scale: np.ndarray
    volume_scale: np.ndarray
    levels: tuple[float, ...] = LEVELS
    n_windows: int = 0
    price_space: str = "log"
    price_tail: float = 0.0

    @classmethod
    def fit(cls, paths: np.ndarray, truth: np.ndarray, *,
            levels: Sequence[float] = LEVELS) -> PathCalibration:
        """Learn the factors from sampled paths at backtest origins and what happened.

        Parameters
        ----------
        paths : ndarray of shape (n_windows, n_samples, horizon, 6)
            Sampled paths in original units, features in ``FEATURE_COLUMNS`` order.
        truth : ndarray of shape (n_windows, horizon, 6)
            The realised candles of each window; windows with a non-finite value are left out.
        levels : sequence of float, default=(0.5, 0.8, 0.9)
        """
        paths, truth = np.asarray(paths, np.float64), np.asarray(truth, np.float64)
        if paths.ndim != 4 or truth.shape != paths.shape[:1] + paths.shape[2:]:
            raise ValueError(f"paths must be (windows, samples, horizon, 6) and truth "
                             f"(windows, horizon, 6), got {paths.shape} and {truth.shape}")
        if not all(0 < level < 1 for level in levels):
            raise ValueError(f"levels must lie in (0, 1), got {list(levels)}")
        space = _space_of(paths[..., :4], truth[..., :4])
        (price, tail), (volume, _) = [
            _fit_factors(_to_space(paths[..., column], kind), _to_space(truth[..., column], kind),
                         levels, tails)
            for column, kind, tails in ((_CLOSE, space, TAIL_GRID), (_VOLUME, "log1p", (0.0,)))]
        return cls(price, volume, tuple(float(level) for level in levels), len(paths), space,
                   tail)

    def _factors_for(self, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Price factors, volume factors and price tails of steps 1..horizon; steps past the
        calibrated ones keep the last."""
        steps = np.minimum(np.arange(horizon), len(self.price_scale) - 1)
        tails = self.price_tail * (steps + 1) / len(self.price_scale)
        return self.price_scale[steps], self.volume_scale[steps], tails

    def _drifted(self, values: np.ndarray, factors: np.ndarray, space: str,
                 keep_mean: bool = False, tails: np.ndarray | float = 0.0) -> np.ndarray:
        """(…, S, H) values with the drift ``(f_h - 1) * D + k_h * D|D|/s`` added in `space`;
        with `keep_mean`, then moved (all paths alike, per step) back to the mean they had."""
        center, deviation, terminal = _deviations(_to_space(values, space))
        drift = (factors - 1.0) * terminal + tails * _tail_term(terminal)
        drifted = _from_space(center + deviation + drift, space)
        if not keep_mean:
            return drifted
        mean, moved = values.mean(axis=-2, keepdims=True), drifted.mean(axis=-2, keepdims=True)
        return drifted * (mean / moved) if space == "log" else drifted + (mean - moved)

    def apply(self, paths: np.ndarray) -> np.ndarray:
        """Calibrated copy of (..., n_samples, horizon, 6) paths (the input is not changed)."""
        paths = np.asarray(paths)
        price_factors, volume_factors, tails = self._factors_for(paths.shape[-2])
        out = paths.astype(np.float64, copy=True)
        close = out[..., _CLOSE].copy()
        drifted = self._drifted(close, price_factors, self.price_space, keep_mean=True,
                                tails=tails)
        if self.price_space == "log":
            factor = drifted / close
            for column in (_OPEN, _HIGH, _LOW, _CLOSE):
                out[..., column] *= factor
        else:
            shift = drifted - close
            for column in (_OPEN, _HIGH, _LOW, _CLOSE):
                out[..., column] += shift
            factor = np.ones_like(close)
        volume = out[..., _VOLUME].copy()
        scaled = self._drifted(volume, volume_factors, "log1p")
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
        """The factors after new outcomes, in the adaptive-conformal way (no refit).

        The last step's ``log(1 + g_H)`` moves by `rate` times the observed minus the
        nominal miss rate of the calibrated paths (mean over levels and steps): more misses
        widen, fewer narrow; the steps before keep their straight ramp to it, and the tail
        stays.

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
        scales = []
        tails = self._factors_for(horizon)[2][None]
        for column, space, scale, tail in (
                (_CLOSE, self.price_space, self.price_scale, tails),
                (_VOLUME, "log1p", self.volume_scale, np.zeros_like(tails))):
            covered = _pooled_coverage(_to_space(paths[..., :horizon, column], space),
                                       _to_space(truth[..., :horizon, column], space),
                                       scale[None, :horizon], tail, self.levels)[0]
            miss = np.mean((1 - covered) - (1 - np.asarray(self.levels)))
            scales.append(_ramp(scale[-1] * np.exp(rate * miss), len(scale)))
        price_scale, volume_scale = scales
        return replace(self, price_scale=price_scale, volume_scale=volume_scale,
                       n_windows=self.n_windows + len(paths))


def widen_paths(paths: np.ndarray, spread: Spread, positive: np.ndarray) -> np.ndarray:
    """Paths (B, S, H, 6) widened by a model's own `spread`, in place.

    The prices of every series get the drift of `PathCalibration` (its ramp, its kept
    mean), in log space where the series' prices are `positive` ((B,) bool), additively
    elsewhere; volume and amount move with the prices only.
    """
    horizon = paths.shape[2]
    for space, rows in (("log", positive), ("linear", ~positive)):
        if rows.any():
            widening = PathCalibration(_ramp(spread.factor, horizon), np.ones(horizon),
                                       price_space=space, price_tail=spread.tail)
            paths[rows] = widening.apply(paths[rows])
    return paths


def backtest_windows(frames: Sequence[pd.DataFrame], names: Sequence[tuple], horizon: int, *,
                     origins: int = 2, stride: int | None = None,
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
                    horizon: int, *, origins: int = 2, stride: int | None = None,
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
