"""Conformal calibration of sampled K-line paths: a spread that grows along each path.

A forecaster's sampled paths are often too narrow (or too wide) at the horizon while their
day-to-day moves are about right: the bundled model's paths move as much as prices do from
day to day, but do not wander as far over ten days. Backtested on origins whose truth is
known, the realised values tell by how much, step by step. The correction moves each path
towards where it ends up, by a level that grows along the horizon, and keeps the size of
its day-to-day moves:

    y'_h = m_h + a * d_h + ((f_h - 1) + (1 - a) * h / H) * D,
    d_h = y_h - m_h,    D = d_H,    y = log price (or the value itself)

where m is the median path and ``f_h = 1 + g_H * (h / H) ** p`` ramps from 1 at the
origin to ``1 + g_H`` at the last step, where the deviation becomes exactly
``(1 + g_H) * D``: the quantiles there are scaled and stay ordered. With a linear ramp
(p = 1) each step becomes ``a`` times the path's own step plus a constant drift of
``(1 + g_H - a) * D / H``; with p = 1/2 the drift is front-loaded as a random walk's
spread grows (a third of it by step 1 of 10), so the first steps widen too. The share
``a`` (per forecast, from its paths) is the one that keeps the paths' mean squared step,
so realized volatility and the step-return spread stay what the model made them (a
linear drift alone, a = 1, would add ``((1 + g_H)^2 - 1) / H`` to the realised variance:
+12 % at 1.5 over ten steps; ``a`` is bounded to [`MIN_STEP_SHARE`, 1 /
`MIN_STEP_SHARE`], beyond which a very wide setting does raise it). Widening trades some
of each path's jitter for a trend, which is how prices that wander further than the
model's steps imply do it. The paths are then moved alike, per step, back to their mean,
so the point forecast does not move.

- Close sets the price drift; open, high and low of the same path and step move by the
  close's factor, so the candle envelope holds exactly. Volume gets its own drift, in
  ``log(1 + volume)``, and keeps its mean as the close does; amount moves by both factors.
- Positive prices are calibrated in log space (a multiplicative drift); a column that is
  not a positive price (returns, spreads: a value <= 0 in the backtests) in its own space,
  additively (`price_space` says which).
- ``f_h`` ramps smoothly, so the drift is a smooth part of each step. ``1 + g_H``, the
  power ``p`` (`RAMP_GRID`: paths too narrow from the first step on call for 1/2, paths
  too narrow only over the horizon for 1) and the tail below are chosen on a grid for
  sharpness subject to calibration (Gneiting, Balabdaoui and Raftery 2007, "Probabilistic
  forecasts, calibration and sharpness"):
  among the settings whose central 50/80/90 % intervals, pooled over every step of the
  backtest windows, all cover within `COVERAGE_TOLERANCE` of nominal, the one with the
  lowest CRPS; where none does, the smallest squared coverage error; both only among
  the settings whose CRPS is within `CRPS_SLACK` of the lowest. Coverage alone cannot
  choose: a narrow centre with a heavy tail and a wider centre cover alike at CRPS
  several per cent apart, and with few windows a far-fetched width can cover by chance.
- One width cannot fit the centre and the tails when the paths' tails are too thin: the
  price drift has a second, tail term, ``k_h * D * min(|D| / s, 3)`` with ``s`` the mean
  ``|D|`` of the window's paths and ``k_h = k * (h / H) ** p`` (``k >= 0``, `price_tail`), so
  paths that end far out move further out (``a`` keeps the mean squared step with it
  too). The map stays monotone in ``D``; ``(1 + g_H, k, p)`` are fitted together on the
  grid.
- Paths that are calibrated already (a model's own spread, fitted on many dates) are
  checked origin against origin (`PathCalibration.fit`'s ``origins``): the setting chosen
  on the other backtest origins must bring each origin's bands closer to nominal without
  raising its CRPS, else the paths stay as they are. A backtest origin is a stretch of
  dates every series of a panel shares, and the width one stretch calls for says little
  about the next (0.2 to 2.1 over the 20 US origins of the benchmarks); applied to a model
  that covers by itself, it cost 3-6 % CRPS.

This follows split conformal prediction for time series with the nonconformity measured
relative to the model's own spread (normalised conformal prediction, Lei et al. 2018,
"Distribution-free predictive inference for regression") on rolling origins (Stankeviciute
et al. 2021, "Conformal time-series forecasting"). `update` follows adaptive conformal
inference (Gibbs and Candes 2021, "Adaptive conformal inference under distribution
shift"): each new outcome moves ``log(1 + g_H)`` by ``rate`` times the difference between
the observed and the nominal miss rate, without a refit.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.special import ndtri

from kronos_sk._params import check_positive_int
from kronos_sk.checkpoints import Spread
from kronos_sk.data.schema import FEATURE_COLUMNS
from kronos_sk.data.validation import assemble_features, make_candles_valid
from kronos_sk.metrics import _average_ranks, _correlate, central_bands, crps_from_samples

LEVELS = (0.5, 0.8, 0.9)
SCALE_GRID = np.exp(np.linspace(np.log(0.2), np.log(20.0), 241))
MIN_CALIBRATION_CONTEXT = 16  # fewest context rows of a calibration backtest
_OPEN, _HIGH, _LOW, _CLOSE, _VOLUME, _AMOUNT = (
    FEATURE_COLUMNS.index(name) for name in ("open", "high", "low", "close", "volume", "amount"))
_GRID_VALUES = 4_000_000  # drifted values held at once while a grid is evaluated
MIN_STEP_SHARE = 0.5  # the least share of its own steps a drifted path keeps
TAIL_GRID = (0.0, 0.15, 0.3, 0.5, 0.8)  # the price drift's tail k
RAMP_GRID = (1.0, 0.5)  # the price ramp's power p: linear, or as a random walk's spread grows
_COARSE_STEP = 4  # the coarse grid of factors, fitted with the tails: every 4th
COVERAGE_TOLERANCE = 0.02  # bands this close to nominal count as calibrated
CRPS_SLACK = 0.05  # the most CRPS a calibration gives up against the sharpest setting
TAIL_CAP = 3.0  # |D| / s beyond which the tail term grows no faster than D
# The share of the paths' mean move kept: down to a tenth, since at 0 every point forecast
# is the last close and the forecasts' ranking is lost.
DRIFT_GRID = np.round(np.arange(0.1, 1.01, 0.1), 1)
MIN_SHAPE_ROWS = 20  # `shape_candles` shapes a series' paths from more context rows than this


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


def _step_share(deviation: np.ndarray, terminal: np.ndarray, tail: np.ndarray,
                factors: np.ndarray, tails: np.ndarray) -> np.ndarray:
    """Share ``a`` of its own steps each path keeps, so that the paths' mean squared step
    (their realised variance) stays what it was under the drift of `_moved`.

    Step h of a moved path is ``a * (u_h - D / H) + A_h`` (u_h its own step, D its terminal
    deviation, ``A_h = (df_h + 1 / H) * D + dk_h * T`` with df_h, dk_h the growth of the
    factor and the tail at step h and T the tail term of `_tail_term`), so the paths' mean
    squared step sum is the quadratic ``a^2 P + 2 a R + S`` in ``a``; ``a`` is its root
    that sets it back to Q, the sum as it was (the least-squares ``a = -R / P`` where none
    does), clipped to [`MIN_STEP_SHARE`, 1 / `MIN_STEP_SHARE`] (1 for a single step, where
    a step is the horizon). Along a linear ramp ``A_h`` is the same at every step, R = 0 and
    ``a^2 = (Q - S) / P``. deviation (…, S, H), terminal and tail (…, S, 1); per-step
    factors and tails broadcast against (…, H) -> (…, 1, 1).
    """
    horizon = deviation.shape[-1]
    steps = np.diff(deviation, axis=-1, prepend=0.0)
    own = steps - terminal / horizon
    added = (np.diff(factors, axis=-1, prepend=1.0) + 1.0 / horizon) * terminal \
        + np.diff(tails, axis=-1, prepend=0.0) * tail

    def mean_sum(values: np.ndarray) -> np.ndarray:
        return values.sum(axis=-1, keepdims=True).mean(axis=-2, keepdims=True)

    squared, room = mean_sum(steps ** 2), mean_sum(own ** 2)
    cross, drift = mean_sum(own * added), mean_sum(added ** 2)
    safe = np.where(room > 0, room, 1.0)
    share = (np.sqrt(np.maximum(cross ** 2 - room * (drift - squared), 0.0)) - cross) / safe
    bounded = np.clip(share, MIN_STEP_SHARE, 1 / MIN_STEP_SHARE)
    return np.where(room > 1e-9 * squared, bounded, 1.0)


def _moved(deviation: np.ndarray, terminal: np.ndarray, tail: np.ndarray, share: np.ndarray,
           factors: np.ndarray, tails: np.ndarray, mean_space: str | None = None,
           ) -> np.ndarray:
    """Deviations (…, S, H) after the drift: ``a * d_h + ((f_h - 1) + (1 - a) h / H) * D
    + k_h * D|D|/s``, per-step factors ``f_h`` and tails ``k_h`` broadcast against (…, H).

    With `mean_space`, then shifted alike, per step, back to the paths' mean: the mean of
    the prices ``exp(y)`` for "log", of the volumes ``exp(y) - 1`` for "log1p" (the same
    shift: the 1 cancels), of the values for "linear".
    """
    ramp = np.arange(1, deviation.shape[-1] + 1) / deviation.shape[-1]
    moved = share * deviation + (factors - 1.0 + (1.0 - share) * ramp) * terminal + tails * tail
    if mean_space in ("log", "log1p"):
        moved += np.log(np.exp(deviation).mean(axis=-2, keepdims=True)
                        / np.exp(moved).mean(axis=-2, keepdims=True))
    elif mean_space == "linear":
        moved += deviation.mean(axis=-2, keepdims=True) - moved.mean(axis=-2, keepdims=True)
    return moved


def _pooled_scores(values: np.ndarray, truth: np.ndarray, factors: np.ndarray,
                   tails: np.ndarray, levels: Sequence[float], mean_space: str | None = None,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Coverage (G, len(levels)) pooled over the steps of values (W, S, H) against truth
    (W, H), and the mean fair CRPS (G,) in the values' space (log prices: scale-free; fair:
    that of the distribution the paths are drawn from, which does not favour narrow sets
    of few paths), of the values drifted by each row of per-step factors and tails (G, H)
    as `_moved` drifts them. For stratified paths (the default) the fair estimate runs a
    few per cent low and the plain one a few per cent high; on the bundled model's fit
    windows both rank the same setting first (tail 0.15, square-root ramp)."""
    center, deviation, terminal = _deviations(values)
    realised = truth - center[:, 0]
    tail = _tail_term(terminal)
    chunk = max(1, _GRID_VALUES // values.size)
    covered, crps = np.empty((len(factors), len(levels))), np.empty(len(factors))
    for lo in range(0, len(factors), chunk):
        f = factors[lo:lo + chunk, None, None, :]  # (g, 1, 1, H)
        k = tails[lo:lo + chunk, None, None, :]
        share = _step_share(deviation, terminal, tail, f, k)
        moved = _moved(deviation, terminal, tail, share, f, k, mean_space)  # (g, W, S, H)
        low, high = central_bands(moved, levels, axis=-2)  # (levels, g, W, H) each
        covered[lo:lo + chunk] = ((low <= realised) & (realised <= high)).mean(axis=(2, 3)).T
        crps[lo:lo + chunk] = crps_from_samples(np.moveaxis(moved, -2, 0), realised,
                                                fair=values.shape[-2] > 1).mean(axis=(1, 2))
    return covered, crps


def _sharpest_calibrated(covered: np.ndarray, crps: np.ndarray, levels: Sequence[float],
                         ) -> int:
    """Row of the grid to keep, among the settings whose CRPS is within `CRPS_SLACK` of the
    lowest: the lowest CRPS of those whose bands all cover within `COVERAGE_TOLERANCE` of
    nominal (sharpness subject to calibration), or the smallest squared coverage error
    where none does (a setting far from the sharpest, which can cover by chance with few
    backtests, is never kept)."""
    error = covered - np.asarray(levels)
    near = crps <= (1 + CRPS_SLACK) * crps.min()
    calibrated = near & (np.abs(error) <= COVERAGE_TOLERANCE).all(axis=1)
    if calibrated.any():
        return int(np.where(calibrated, crps, np.inf).argmin())
    return int(np.where(near, (error ** 2).sum(axis=1), np.inf).argmin())


def _ramp_shape(horizon: int, power: float = 1.0) -> np.ndarray:
    """``(h / H) ** power`` of steps h = 1..horizon: how much of the last step's factor
    and tail each step has."""
    return (np.arange(1, horizon + 1) / horizon) ** power


def _ramp(last: float, horizon: int, power: float = 1.0) -> np.ndarray:
    """Factors ``1 + g_h`` of steps 1..horizon, growing to `last` at the last along
    `_ramp_shape`."""
    return 1 + (last - 1) * _ramp_shape(horizon, power)


def _choose_factors(values: np.ndarray, truth: np.ndarray, levels: Sequence[float],
                    tails: Sequence[float], ramps: Sequence[float], mean_space: str | None,
                    ) -> tuple[float, float, float]:
    """Last-step factor ``1 + g_H``, tail ``k`` and ramp power ``p`` of finite values
    (W, S, H) against truth, chosen by `_sharpest_calibrated`: for each tail and power the
    coarse grid of the factor, then its fine grid about the coarse choice, then the choice
    among those fine grids (a coarse step moves the coverage by a few points, so the coarse
    grid alone can step over a tail's calibrated factors)."""
    horizon = values.shape[-1]

    def choose(lasts: np.ndarray, ks: np.ndarray, powers: np.ndarray) -> int:
        shapes = np.stack([_ramp_shape(horizon, power) for power in powers])
        covered, crps = _pooled_scores(values, truth, 1 + (lasts[:, None] - 1) * shapes,
                                       ks[:, None] * shapes, levels, mean_space)
        return _sharpest_calibrated(covered, crps, levels)

    coarse = SCALE_GRID[::_COARSE_STEP]
    settings = []
    for tail in np.asarray(tails, float):
        for power in np.asarray(ramps, float):
            best = choose(coarse, np.full(len(coarse), tail), np.full(len(coarse), power))
            at = best * _COARSE_STEP  # coarse[best] in SCALE_GRID
            settings += [(last, tail, power) for last in
                         SCALE_GRID[max(0, at - _COARSE_STEP):at + _COARSE_STEP + 1]]
    lasts, ks, powers = (np.array(column) for column in zip(*settings))
    chosen = choose(lasts, ks, powers)
    return float(lasts[chosen]), float(ks[chosen]), float(powers[chosen])


def _carries_over(values: np.ndarray, truth: np.ndarray, origins: np.ndarray,
                  levels: Sequence[float], tails: Sequence[float], ramps: Sequence[float],
                  mean_space: str | None) -> bool | None:
    """Whether, on every backtest origin, the setting chosen on the other origins' windows
    brings that origin's bands closer to nominal (squared coverage error) and does not raise
    its CRPS, against the values as they are (None with fewer than two origins)."""
    if len(np.unique(origins)) < 2:
        return None
    horizon = values.shape[-1]
    for origin in np.unique(origins):
        held = origins == origin
        last, tail, power = _choose_factors(values[~held], truth[~held], levels, tails, ramps,
                                            mean_space)
        shape = _ramp_shape(horizon, power)
        covered, crps = _pooled_scores(
            values[held], truth[held], np.stack([np.ones(horizon), _ramp(last, horizon, power)]),
            np.stack([np.zeros(horizon), tail * shape]), levels, mean_space)
        error = ((covered - np.asarray(levels)) ** 2).sum(axis=1)
        if not (error[1] < error[0] and crps[1] <= crps[0]):
            return False
    return True


def _fit_factors(values: np.ndarray, truth: np.ndarray, levels: Sequence[float],
                 tails: Sequence[float] = (0.0,), ramps: Sequence[float] = (1.0,),
                 mean_space: str | None = None, origins: np.ndarray | None = None,
                 ) -> tuple[np.ndarray, float, float, bool | None]:
    """Per-step factors ``1 + g_h`` (H,), the tail ``k`` and the ramp power ``p`` of values
    (W, S, H) in their space against truth, and whether they carried over
    (`_carries_over`; None: not checked).

    One last-step factor, reached along ``(h / H) ** p``, one tail among `tails` and one
    power among `ramps`, chosen on the grid by `_sharpest_calibrated` from the coverage and
    the CRPS pooled over every step of every window. A smooth ramp keeps the drift a smooth
    part of each step (per-step factors, fitted freely, are noisy enough to make paths
    jump: step-return std x1.14-1.55); p = 1 leaves the first steps almost as they are,
    p = 1/2 widens them too, as paths too narrow from the first step on need. With the
    backtest `origins` of the windows, a setting that does not carry over from some origins
    to the others leaves the values as they are (factors 1, tail 0, a linear ramp).
    """
    keep = np.isfinite(truth).all(axis=1) & np.isfinite(values).all(axis=(1, 2))
    values, truth = values[keep], truth[keep]
    horizon = values.shape[-1]
    if len(truth) == 0:
        return np.ones(horizon), 0.0, 1.0, None
    carried = None if origins is None else _carries_over(
        values, truth, np.asarray(origins)[keep], levels, tails, ramps, mean_space)
    if carried is False:
        return np.ones(horizon), 0.0, 1.0, carried
    last, tail, power = _choose_factors(values, truth, levels, tails, ramps, mean_space)
    return _ramp(last, horizon, power), tail, power, carried


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
    price_ramp : float
        Power ``p`` of the ramp ``(h / H) ** p`` along which the price factors and the tail
        grow to their last step's (1: linearly; 1/2: like a random walk's spread).
    price_carried_over, volume_carried_over : bool or None
        Whether the setting of the close (resp. the volume), chosen on some backtest
        origins, improved both the coverage and the CRPS of each other origin; False: it
        did not, and the paths are left as the model made them (factors 1, tail 0, until
        `update` moves them). None: not checked (`fit` without `origins`, or a single
        origin).
    """

    price_scale: np.ndarray
    volume_scale: np.ndarray
    levels: tuple[float, ...] = LEVELS
    n_windows: int = 0
    price_space: str = "log"
    price_tail: float = 0.0
    price_ramp: float = 1.0
    price_carried_over: bool | None = None
    volume_carried_over: bool | None = None

    @classmethod
    def fit(cls, paths: np.ndarray, truth: np.ndarray, *, levels: Sequence[float] = LEVELS,
            origins: Sequence[int] | None = None) -> PathCalibration:
        """Learn the factors from sampled paths at backtest origins and what happened.

        Parameters
        ----------
        paths : ndarray of shape (n_windows, n_samples, horizon, 6)
            Sampled paths in original units, features in ``FEATURE_COLUMNS`` order.
        truth : ndarray of shape (n_windows, horizon, 6)
            The realised candles of each window; windows with a non-finite value are left out.
        levels : sequence of float, default=(0.5, 0.8, 0.9)
        origins : sequence of int, optional
            The backtest origin of each window (`backtest_windows`): check that the
            calibration carries over from origin to origin, and leave the paths as they
            are where it does not. Meant for paths that are calibrated already (a model's
            own spread, fitted on many dates): a width learned from two stretches of
            dates, which all the series of a panel share, is kept only where it helps on
            a stretch it was not learned from.
        """
        paths, truth = np.asarray(paths, np.float64), np.asarray(truth, np.float64)
        if paths.ndim != 4 or truth.shape != paths.shape[:1] + paths.shape[2:]:
            raise ValueError(f"paths must be (windows, samples, horizon, 6) and truth "
                             f"(windows, horizon, 6), got {paths.shape} and {truth.shape}")
        if not all(0 < level < 1 for level in levels):
            raise ValueError(f"levels must lie in (0, 1), got {list(levels)}")
        space = _space_of(paths[..., :4], truth[..., :4])
        if origins is not None and len(origins) != len(paths):
            raise ValueError(f"origins must name the origin of each of the {len(paths)} "
                             f"windows, got {len(origins)}")
        (price, tail, ramp, price_carried), (volume, _, _, volume_carried) = [
            _fit_factors(_to_space(paths[..., column], kind), _to_space(truth[..., column], kind),
                         levels, tails, ramps, mean_space, origins)
            for column, kind, tails, ramps, mean_space in (
                (_CLOSE, space, TAIL_GRID, RAMP_GRID, space),
                (_VOLUME, "log1p", (0.0,), (1.0,), "log1p"))]
        return cls(price, volume, tuple(float(level) for level in levels), len(paths), space,
                   price_tail=tail, price_ramp=ramp, price_carried_over=price_carried,
                   volume_carried_over=volume_carried)

    def as_spread(self) -> Spread:
        """The price setting as a model's own `Spread` (its last factor, tail and ramp,
        rounded as inference.json stores them)."""
        return Spread(round(float(self.price_scale[-1]), 4), round(self.price_tail, 4),
                      self.price_ramp)

    def _factors_for(self, horizon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Price factors, volume factors and price tails of steps 1..horizon; steps past the
        calibrated ones keep the last."""
        steps = np.minimum(np.arange(horizon), len(self.price_scale) - 1)
        tails = self.price_tail * _ramp_shape(len(self.price_scale), self.price_ramp)[steps]
        return self.price_scale[steps], self.volume_scale[steps], tails

    def _drifted(self, values: np.ndarray, factors: np.ndarray, space: str,
                 keep_mean: bool = False, tails: np.ndarray | None = None) -> np.ndarray:
        """(…, S, H) values drifted in `space` by `_moved`, each path keeping the share of
        its steps that keeps its mean squared step; with `keep_mean`, the paths' mean too."""
        tails = np.zeros_like(factors) if tails is None else tails
        center, deviation, terminal = _deviations(_to_space(values, space))
        tail = _tail_term(terminal)
        share = _step_share(deviation, terminal, tail, factors, tails)
        moved = _moved(deviation, terminal, tail, share, factors, tails,
                       space if keep_mean else None)
        return _from_space(center + moved, space)

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
        scaled = self._drifted(volume, volume_factors, "log1p", keep_mean=True)
        volume_factor = np.where(volume > 0, scaled / np.where(volume > 0, volume, 1.0), 1.0)
        out[..., _VOLUME] = np.where(volume > 0, np.maximum(scaled, 0.0), volume)
        out[..., _AMOUNT] *= factor * volume_factor
        return out.astype(paths.dtype, copy=False)

    def coverage(self, paths: np.ndarray, truth: np.ndarray) -> dict[float, float]:
        """Empirical coverage of the central intervals of the calibrated closes."""
        close = np.asarray(truth)[..., _CLOSE]
        lows, highs = central_bands(self.apply(paths)[..., _CLOSE], self.levels, axis=-2)
        return {level: float(((low <= close) & (close <= high)).mean())
                for level, low, high in zip(self.levels, lows, highs)}

    def update(self, paths: np.ndarray, truth: np.ndarray, *, rate: float = 0.05,
               ) -> PathCalibration:
        """The factors after new outcomes, in the adaptive-conformal way (no refit).

        The last step's ``log(1 + g_H)`` moves by `rate` times the observed minus the
        nominal miss rate of the calibrated paths (mean over levels and steps): more misses
        widen, fewer narrow, within the factors a fit can choose (`SCALE_GRID`); the steps
        before keep their ramp to it (the price's power, linear for the volume), and the
        tail stays.

        Parameters
        ----------
        paths : ndarray of shape (n_windows, n_samples, horizon, 6)
            Uncalibrated paths of forecasts whose truth has arrived.
        truth : ndarray of shape (n_windows, horizon, 6)
        rate : float, default=0.05
            In (0, 1]: one update moves the factor by at most ``exp(rate)``.
        """
        if not 0 < rate <= 1:
            raise ValueError(f"rate must be in (0, 1], got {rate!r}")
        paths, truth = np.asarray(paths, np.float64), np.asarray(truth, np.float64)
        horizon = min(paths.shape[-2], len(self.price_scale))
        scales = []
        tails = self._factors_for(horizon)[2][None]
        for column, space, scale, tail, power, mean_space in (
                (_CLOSE, self.price_space, self.price_scale, tails, self.price_ramp,
                 self.price_space),
                (_VOLUME, "log1p", self.volume_scale, np.zeros_like(tails), 1.0, "log1p")):
            covered = _pooled_scores(_to_space(paths[..., :horizon, column], space),
                                     _to_space(truth[..., :horizon, column], space),
                                     scale[None, :horizon], tail, self.levels,
                                     mean_space)[0][0]
            miss = np.mean((1 - covered) - (1 - np.asarray(self.levels)))
            last = np.clip(scale[-1] * np.exp(rate * miss), SCALE_GRID[0], SCALE_GRID[-1])
            scales.append(_ramp(last, len(scale), power))
        price_scale, volume_scale = scales
        return replace(self, price_scale=price_scale, volume_scale=volume_scale,
                       n_windows=self.n_windows + len(paths))


def _by_space(positive: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The series adjusted in log prices (`positive`, (B,) bool) and the rest, additively,
    each as (space, rows) where there are any."""
    return [(space, rows) for space, rows in (("log", positive), ("linear", ~positive))
            if rows.any()]


def _move(paths: np.ndarray, rows: np.ndarray, columns: tuple[int, ...], change: np.ndarray,
          space: str) -> None:
    """Move `columns` of the `rows` of paths (B, S, H, 6) by `change` in `space`, in place:
    a factor ``exp(change)`` in log space, a shift in linear space."""
    if space == "log":
        factor = np.exp(change)
        for column in columns:
            paths[rows, ..., column] *= factor
    else:
        for column in columns:
            paths[rows, ..., column] += change


def widen_paths(paths: np.ndarray, spread: Spread, positive: np.ndarray) -> np.ndarray:
    """Paths (B, S, H, 6) widened by a model's own `spread`, in place.

    The prices of every series get the drift of `PathCalibration` (its ramp, its kept
    mean), in log space where the series' prices are `positive` ((B,) bool), additively
    elsewhere; volume and amount move with the prices only.
    """
    horizon = paths.shape[2]
    for space, rows in _by_space(positive):
        widening = PathCalibration(_ramp(spread.factor, horizon, spread.ramp),
                                   np.ones(horizon), price_space=space,
                                   price_tail=spread.tail, price_ramp=spread.ramp)
        paths[rows] = widening.apply(paths[rows])
    return paths


def keep_drift(paths: np.ndarray, share: float, last_close: np.ndarray,
               positive: np.ndarray) -> np.ndarray:
    """Paths (B, S, H, 6) whose mean close moves from the last close by `share` of the
    sampled mean's move, in place.

    At each step the paths of a series are drawn together towards the last close
    (`last_close`, (B,)), so that their mean, the point forecast, becomes
    ``last + share * (mean - last)``, and spread about it by ``k = sqrt((1 - share**2 / S)
    / (1 - 1 / S))``: the mean of S paths carries 1 / S of their variance, and moving it
    would otherwise take that share from each path as well (for independent paths, each
    keeps its variance about the model's own mean). Both in log prices where the series'
    prices are `positive` ((B,) bool; open, high, low, close and amount of a path scale by
    one factor, so candles and positive prices hold), in prices elsewhere (the four prices
    of a path shift alike). A single path (S = 1) carries no mean of its own and is left
    as sampled; volume never moves. `apply_spread` then draws in the mean path's candles
    by the same share.

    Parameters
    ----------
    paths : ndarray of shape (B, S, H, 6)
        Valid paths, changed in place.
    share : float
        In [0, 1]: 1 leaves the paths as they are, 0 puts their mean at the last close.
    last_close : ndarray of shape (B,)
    positive : ndarray of shape (B,), bool

    Returns
    -------
    ndarray
        `paths`.
    """
    if not 0 <= share <= 1:
        raise ValueError(f"share must be in [0, 1], got {share!r}")
    n_samples = paths.shape[1]
    if share == 1 or n_samples == 1:
        return paths
    k = np.sqrt((1 - share ** 2 / n_samples) / (1 - 1 / n_samples))
    close = paths[..., _CLOSE].astype(np.float64)
    last = np.asarray(last_close, np.float64)[:, None, None]
    target = last + share * (close.mean(axis=1, keepdims=True) - last)  # (B, 1, H)
    for space, rows in _by_space(positive):
        values = _to_space(close[rows], space)
        scaled = k * (values - values.mean(axis=1, keepdims=True))
        level = _from_space(scaled, space).mean(axis=1, keepdims=True)
        moved = scaled + _to_space(target[rows], space) - _to_space(level, space)
        columns = (_OPEN, _HIGH, _LOW, _CLOSE) + ((_AMOUNT,) if space == "log" else ())
        _move(paths, rows, columns, moved - values, space)
    return paths


def _keep_candle_moves(paths: np.ndarray, share: float, positive: np.ndarray) -> None:
    """Draw the open, high and low of each series' mean path about its close towards their
    average over the horizon, keeping `share` of their moves from step to step, in place.

    Drawing in the close alone (`keep_drift`) leaves the mean's candles their whole move,
    which is mostly the sampling noise of S paths: the point forecast's open, high and low
    would follow it rather than the kept trend. The opens of every path move by one factor
    per step (a shift where the series' prices are not `positive`); the wicks beyond the
    bodies are then scaled, one factor (>= 0) per step and side for every path, until the
    mean's high and low are where they are drawn to, so that each path keeps its candles'
    shape and its wickless bars (shifted, short wicks would end inside the body). One path
    (S = 1) is left as sampled.
    """
    if share == 1 or paths.shape[1] == 1:
        return
    for space, rows in _by_space(positive):
        prices = paths[rows, ..., :_VOLUME].astype(np.float64)
        mean = _to_space(prices.mean(axis=1, keepdims=True), space)  # the mean path's
        offset = mean[..., (_OPEN, _HIGH, _LOW)] - mean[..., _CLOSE, None]
        drawn = offset + (1 - share) * (offset.mean(axis=2, keepdims=True) - offset)
        _move(paths, rows, (_OPEN,), drawn[..., 0] - offset[..., 0], space)
        wanted = _from_space(mean[..., _CLOSE, None] + drawn[..., 1:], space)  # high, low
        sampled, opens = prices[..., _OPEN], paths[rows, ..., _OPEN].astype(np.float64)
        close = prices[..., _CLOSE]
        for index, column, side in ((0, _HIGH, np.maximum), (1, _LOW, np.minimum)):
            wick = prices[..., column] - side(sampled, close)  # a high's >= 0, a low's <= 0
            body = side(opens, close)
            mean_wick = wick.mean(axis=1, keepdims=True)
            factor = np.divide(wanted[..., index] - body.mean(axis=1, keepdims=True),
                               mean_wick, out=np.ones_like(mean_wick), where=mean_wick != 0)
            paths[rows, ..., column] = body + np.maximum(factor, 0) * wick
    make_candles_valid(paths)


def _candle_parts(prices: np.ndarray, previous_close: np.ndarray,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Open gaps, close moves, upper and lower wicks of candles (..., 4: open, high, low,
    close in their space) from the closes before them (...)."""
    top = np.maximum(prices[..., _OPEN], prices[..., _CLOSE])
    bottom = np.minimum(prices[..., _OPEN], prices[..., _CLOSE])
    return (prices[..., _OPEN] - previous_close, prices[..., _CLOSE] - previous_close,
            prices[..., _HIGH] - top, bottom - prices[..., _LOW])


def _previous_closes(closes: np.ndarray, last_close: np.ndarray) -> np.ndarray:
    """The close before each step of paths' closes (B, S, H): the last close (B,), then each
    path's own."""
    start = np.broadcast_to(last_close[:, None, None], closes.shape[:2] + (1,))
    return np.concatenate([start, closes[..., :-1]], axis=2)


def _probabilities(values: np.ndarray) -> np.ndarray:
    """Each value's mid-rank in its row of `values` (rows, n) over n, in (0, 1); ties alike."""
    return (_average_ranks(values, axis=1) - 0.5) / values.shape[1]


def _sample_in_rank_order(values: np.ndarray) -> np.ndarray:
    """For each row of `values` (rows, n): n independent uniforms, handed out smallest
    first in the order of the row's values (ties in turn), from a generator seeded by that
    order, so that the same values always get the same uniforms (values that swap places
    get another sample)."""
    out = np.empty(values.shape)
    for row, value in enumerate(values):
        order = np.argsort(value, kind="stable")
        uniforms = np.random.default_rng(zlib.crc32(order.astype(np.int64).tobytes()))
        out[row, order] = np.sort(uniforms.random(value.size))
    return out


def _quantile_mapped(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each row of `values` (rows, n) replaced by an independent sample of the empirical
    distribution (linear, as `np.quantile`'s) of the same row of `reference` (rows, m),
    sorted and handed out in the order of the row's values."""
    ordered = np.sort(reference, axis=1)
    position = _sample_in_rank_order(values) * (ordered.shape[1] - 1)
    below = np.minimum(np.floor(position).astype(np.int64), ordered.shape[1] - 1)
    low = np.take_along_axis(ordered, below, axis=1)
    high = np.take_along_axis(ordered, np.minimum(below + 1, ordered.shape[1] - 1), axis=1)
    return low + (position - below) * (high - low)


def _spread_of(values: np.ndarray) -> np.ndarray:
    """Interquartile range of each row of `values` (rows, n)."""
    upper, lower = np.quantile(values, [0.75, 0.25], axis=1)
    return upper - lower


def _gap_scores(gap: np.ndarray, move: np.ndarray, context_gaps: np.ndarray,
                context_moves: np.ndarray) -> np.ndarray:
    """Scores to rank each series' sampled gaps (rows, n) by, such that gaps of its
    context's sizes ranked by them have the context's rank correlation with the intraday
    move (close over open) about their close moves (`move`, (rows, n)).

    The normal scores of the moves and of the sampled gaps less their least-squares
    dependence on the moves, mixed at the correlation ``r`` of gap and move that gives a
    gap of spread ``a`` times the move's the wanted correlation ``c`` with move less gap
    (normal, Pearson's): ``r = a (1 - c**2) + c sqrt(1 - a**2 (1 - c**2))``. Series whose
    sampled moves do not spread keep the gaps' own order.
    """
    centred = move - move.mean(axis=1, keepdims=True)
    variance = (centred ** 2).sum(axis=1)
    slope = np.divide(((gap - gap.mean(axis=1, keepdims=True)) * centred).sum(axis=1),
                      variance, out=np.zeros(len(gap)), where=variance > 0)[:, None]
    own = ndtri(_probabilities(gap - slope * move))
    intraday = np.nan_to_num(_correlate(context_gaps, context_moves - context_gaps, 1,
                                        "spearman"))  # 0 where either is constant
    wanted = 2 * np.sin(np.pi / 6 * intraday)  # Pearson's for Spearman's, if normal
    kept = 1 - wanted ** 2
    spread = _spread_of(move)
    a = np.divide(_spread_of(context_gaps), spread, out=np.zeros(len(spread)),
                  where=spread > 0)
    mixed = np.clip(a * kept + wanted * np.sqrt(np.maximum(1 - a ** 2 * kept, 0.0)), -1, 1)
    mixed = np.where(spread > 0, mixed, 0.0)[:, None]
    return mixed * ndtri(_probabilities(move)) + np.sqrt(1 - mixed ** 2) * own


def _wick_ratio(move: np.ndarray, upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Each row's (rows, n) median wick (both sides pooled) over its median |close move|;
    NaN where the median move is 0 (nothing to measure against)."""
    size = np.median(np.abs(move), axis=1)
    wick = np.median(np.concatenate([upper, lower], axis=1), axis=1)
    return np.divide(wick, size, out=np.full_like(wick, np.nan), where=size > 0)


def shape_candles(paths: np.ndarray, contexts: Sequence[np.ndarray], last_close: np.ndarray,
                  positive: np.ndarray) -> np.ndarray:
    """Paths (B, S, H, 6) whose open gaps are distributed as their context's, and whose
    wicks are no longer, relative to their close moves, than the context's, in place.

    A sampled candle carries the tokenizer's decoding error in each of its prices: the
    open strays from the close before it and the high and low from the body more than
    prices do (US daily: a median open gap of 0.55 % against 0.35 %, wicks of 0.65 %
    against 0.39 %, at the same close moves), and a market whose opens are the previous
    close (crypto hourly) gets gaps all the same. Per series whose context (`contexts`)
    has more than `MIN_SHAPE_ROWS` rows (shorter ones are left as sampled), over all its
    paths' candles:

    - the open gaps from the close before are replaced by an independent sample of the
      context's gaps (its empirical distribution, interpolated), sorted and handed out in
      the order of scores that give them the context's rank correlation with the intraday
      move (close over open). The prices of a decoded candle share much of one error,
      which enters the gap and the close move alike: ranked as sampled, gaps would follow
      the intraday move (rank correlations of +.2 to +.4 where prices have -.09 to 0);
      the scores mix the move's rank with the gap's own, less its dependence on the move
      (`_gap_scores`). The sample is drawn with a generator seeded by that order, so the
      same paths always give the same candles, and a single path's gaps vary as a
      market's do instead of taking one of each decile;
    - where the paths' median wick beyond the body (both sides pooled) over their median
      |close move| is larger than the context's, every wick is scaled down by one factor
      so that it becomes the context's.

    Opens, highs and lows move; closes, volume and amount do not, so every output of the
    close is unchanged. In log prices where the series' prices are `positive` ((B,)
    bool), in prices elsewhere; the candles stay valid.

    Parameters
    ----------
    paths : ndarray of shape (B, S, H, 6)
        Valid paths, changed in place.
    contexts : sequence of B arrays of shape (n_rows, 6)
        Each series' context candles (open, high, low, close first).
    last_close : ndarray of shape (B,)
    positive : ndarray of shape (B,), bool

    Returns
    -------
    ndarray
        `paths`.
    """
    last = np.asarray(last_close, np.float64)
    lengths = np.array([len(context) for context in contexts])
    for space, rows in _by_space(positive):
        for length in np.unique(lengths[rows & (lengths > MIN_SHAPE_ROWS)]):
            group = np.flatnonzero(rows & (lengths == length))  # contexts as long at once
            context = _to_space(np.stack([np.asarray(contexts[i], np.float64)[:, :_VOLUME]
                                          for i in group]), space)  # (g, n, 4)
            gaps, moves, uppers, lowers = _candle_parts(context[:, 1:], context[:, :-1, _CLOSE])
            prices = _to_space(paths[group, ..., :_VOLUME].astype(np.float64), space)
            close = prices[..., _CLOSE]  # (g, S, H)
            previous = _previous_closes(close, _to_space(last[group], space))
            gap, move, upper, lower = (part.reshape(len(group), -1)
                                       for part in _candle_parts(prices, previous))
            opens = previous + _quantile_mapped(_gap_scores(gap, move, gaps, moves),
                                                gaps).reshape(close.shape)
            wanted, sampled = _wick_ratio(moves, uppers, lowers), _wick_ratio(move, upper, lower)
            factor = np.divide(wanted, sampled, out=np.ones_like(sampled),
                               where=sampled > wanted)[:, None]
            highs = np.maximum(opens, close) + (factor * upper).reshape(close.shape)
            lows = np.minimum(opens, close) - (factor * lower).reshape(close.shape)
            for column, values in ((_OPEN, opens), (_HIGH, highs), (_LOW, lows)):
                paths[group, ..., column] = _from_space(values, space)
    return make_candles_valid(paths)  # a wick of 0 comes back from log space a bit inside


def fit_drift(paths: np.ndarray, truth: np.ndarray, last_close: np.ndarray) -> float:
    """The share of `DRIFT_GRID` whose `keep_drift` paths have the lowest mean fair CRPS
    of the log close against the truth, pooled over steps (scale-free, as the spread's).

    Parameters
    ----------
    paths : ndarray of shape (n_windows, n_samples, horizon, 6)
        Paths with positive prices.
    truth : ndarray of shape (n_windows, horizon, 6)
        What followed each window.
    last_close : ndarray of shape (n_windows,)
        The close each window's paths start from.

    Returns
    -------
    float
        The share; 1.0 (the whole drift) for one path per window, which has no mean of
        its own to draw in.
    """
    if np.shape(paths)[1] == 1:
        return 1.0
    paths = np.asarray(paths, np.float64)
    realised = np.log(np.asarray(truth, np.float64)[..., _CLOSE])
    positive = np.ones(len(paths), bool)
    scores = []
    for share in DRIFT_GRID:
        moved = keep_drift(paths.copy(), share, last_close, positive)[..., _CLOSE]
        scores.append(crps_from_samples(np.moveaxis(np.log(moved), 1, 0), realised,
                                        fair=True).mean())
    return float(DRIFT_GRID[int(np.argmin(scores))])


def apply_spread(paths: np.ndarray, spread: Spread, positive: np.ndarray,
                 last_close: np.ndarray, contexts: Sequence[np.ndarray] = ()) -> np.ndarray:
    """Paths (B, S, H, 6) adjusted by a model's own `spread`, in place: their mean drawn
    towards the last close (`keep_drift`), then widened about it (`widen_paths`, which
    keeps the mean), with ``spread.candles`` each path's open gaps drawn from its context's
    and its wicks no longer than the context's (`shape_candles`), and last the mean's open,
    high and low about its close drawn in by the drift share (their moves from step to
    step: shaped after that, the mean's candles would take up the sampling noise of the
    paths' gaps and wicks again).

    Parameters
    ----------
    paths : ndarray of shape (B, S, H, 6)
        Valid paths, changed in place.
    spread : Spread
        A model's own (`kronos_sk.checkpoints.model_spread`).
    positive : ndarray of shape (B,), bool
        The series adjusted in log prices (every price > 0); the rest additively.
    last_close : ndarray of shape (B,)
    contexts : sequence of B arrays of shape (n_rows, 6)
        Each series' context candles; needed with ``spread.candles`` only.

    Returns
    -------
    ndarray
        `paths`.
    """
    keep_drift(paths, spread.drift, last_close, positive)
    if spread.widens:
        widen_paths(paths, spread, positive)
    if spread.candles:
        if len(contexts) != len(paths):
            raise ValueError(f"shaping candles needs one context per series: got "
                             f"{len(contexts)} contexts for {len(paths)} series")
        shape_candles(paths, contexts, last_close, positive)
    _keep_candle_moves(paths, spread.drift, positive)
    return paths


class Backtests(NamedTuple):
    """Backtest windows: contexts, their future stamps, the truths (n_windows, horizon, 6),
    the seed keys, and the origin number k of each window."""

    contexts: list[pd.DataFrame]
    futures: list[pd.DatetimeIndex]
    truths: np.ndarray
    keys: list[str]
    origins: np.ndarray


def backtest_windows(frames: Sequence[pd.DataFrame], names: Sequence[tuple], horizon: int, *,
                     origins: int = 2, stride: int | None = None) -> Backtests:
    """The calibration backtests inside validated candle frames.

    Origin k of a series ends its context ``horizon + k * stride`` rows before the series'
    end (`stride` default: `horizon`, non-overlapping); the next `horizon` rows are the truth.
    Origins that would leave fewer than `MIN_CALIBRATION_CONTEXT` rows of context are skipped.

    Returns
    -------
    Backtests
        The seed key of origin k of the series named ``(a, b)`` is
        ``repr(("calibration", a, b, k))``.
    """
    check_positive_int(horizon, "horizon")
    check_positive_int(origins, "origins")
    stride = horizon if stride is None else check_positive_int(stride, "stride")
    contexts, futures, truths, keys, numbers = [], [], [], [], []
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
            numbers.append(k)
    if not contexts:
        raise ValueError(
            f"calibration needs series of at least {MIN_CALIBRATION_CONTEXT + horizon} rows "
            f"({MIN_CALIBRATION_CONTEXT} of context + a horizon of {horizon}); the longest "
            f"has {max(len(frame) for frame in frames)}")
    return Backtests(contexts, futures, np.stack(truths), keys, np.array(numbers))


def fit_calibration(pipeline, frames: Sequence[pd.DataFrame], names: Sequence[tuple],
                    horizon: int, *, origins: int = 2, stride: int | None = None,
                    **sampling) -> PathCalibration:
    """Backtest `pipeline` inside the frames (all origins in one batched generation) and
    learn a `PathCalibration` from what happened.

    Where the paths carry the model's own spread (fitted on many dates when it was
    trained), the calibration is checked origin against origin and kept only where it
    carries over (`PathCalibration.fit`'s `origins`): two backtest origins, shared by all
    the series of a panel, tell less about the next dates than that spread does.

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
    backtests = backtest_windows(frames, names, horizon, origins=origins, stride=stride)
    paths = pipeline.sample_validated(backtests.contexts, backtests.futures, backtests.keys,
                                      **sampling)
    widened = sampling.get("valid_candles", True) and pipeline.spread.adjusts
    return PathCalibration.fit(paths, backtests.truths,
                               origins=backtests.origins if widened else None)


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
