"""Evaluation metrics for candlestick forecasts and generated candlesticks.

Seven families, in the order the Kronos paper reports them:

1. Price IC / RankIC: Pearson / Spearman correlation between the predicted and the true horizon
   path of each window and price column, averaged over columns, then over windows.
2. Return IC / RankIC: the predicted against the realised H-step return (relative to the last
   context close), pooled over all windows.
3. Cross-sectional RankIC, the quant standard: Spearman correlation of predicted and realised
   returns across the assets of one date, one value per date, summarised by mean, std, ICIR,
   t-statistic and hit rate. `make_panel_rank_ic_scorer` wraps it as an sktime scorer.
4. MAE / MSE of prices normalised with the context's mean and std.
5. Realised volatility and its forecast scores (MAE, R²).
6. Probabilistic scores from sample paths: CRPS, pinball loss, interval coverage.
7. Generation fidelity (needs torch): the discriminative and the predictive (TSTR) scores of
   TimeGAN, each from a small post-hoc LSTM.

Everything takes NumPy arrays (or pandas objects where stated) and computes in float64.
Correlations that are undefined (a constant series, fewer than two points, a non-finite value)
are NaN and left out of the averages; each function says how.

Information coefficients are computed on returns or on paths within a window, never on price
levels across assets: levels rank assets by price, not by how well their moves were forecast.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from kronos_sk.data.normalize import STD_EPSILON, normalising_scale

__all__ = [
    "price_ic_by_window",
    "price_ic",
    "price_rank_ic",
    "horizon_return",
    "return_ic",
    "return_rank_ic",
    "reversion_slope",
    "cross_sectional_rank_ic",
    "ic_summary",
    "panel_rank_ic",
    "make_panel_rank_ic_scorer",
    "normalised_errors",
    "log_returns",
    "realized_volatility",
    "volatility_scores",
    "crps_from_samples",
    "sample_quantiles",
    "central_bands",
    "pinball_loss",
    "interval_coverage",
    "coverage_table",
    "discriminative_score",
    "predictive_score",
]

CORRELATION_METHODS = ("pearson", "spearman")
WINDOW_NORMALISATIONS = ("zscore", "first", None)


# --------------------------------------------------------------------------------------------
# Correlation helpers


def _average_ranks(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Ranks 1..n along `axis`, ties sharing their average rank (Spearman's convention)."""
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    n = x.shape[-1]
    order = np.argsort(x, axis=-1, kind="stable")
    ordered = np.take_along_axis(x, order, axis=-1)
    position = np.broadcast_to(np.arange(n), x.shape)
    # A tie group spans positions [first, last] of the sorted values; all of it gets the mean
    # of ranks first+1 .. last+1.
    starts = np.ones(x.shape, dtype=bool)
    starts[..., 1:] = ordered[..., 1:] != ordered[..., :-1]
    ends = np.ones(x.shape, dtype=bool)
    ends[..., :-1] = starts[..., 1:]
    first = np.maximum.accumulate(np.where(starts, position, 0), axis=-1)
    last = np.flip(np.minimum.accumulate(np.flip(np.where(ends, position, n - 1), -1), -1), -1)
    ranks = np.empty(x.shape)
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=-1)
    return np.moveaxis(ranks, -1, axis)


def _correlate(a: np.ndarray, b: np.ndarray, axis: int, method: str) -> np.ndarray:
    """Pearson or Spearman correlation along `axis`; NaN where undefined.

    Undefined: fewer than two points, a non-finite value, or either side constant (checked
    exactly with `max == min`, as the centred values of a constant series need not be 0).
    """
    if method not in CORRELATION_METHODS:
        raise ValueError(f"method must be one of {CORRELATION_METHODS}, got {method!r}")
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"cannot correlate shapes {a.shape} and {b.shape}")
    if a.shape[axis] < 2:
        return np.full(np.delete(a.shape, axis), np.nan)[()]
    finite = np.isfinite(a).all(axis=axis) & np.isfinite(b).all(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        constant = (np.ptp(a, axis=axis) == 0) | (np.ptp(b, axis=axis) == 0)
        if method == "spearman":
            a, b = _average_ranks(a, axis), _average_ranks(b, axis)
        a_c = a - a.mean(axis=axis, keepdims=True)
        b_c = b - b.mean(axis=axis, keepdims=True)
        r = (a_c * b_c).sum(axis=axis) / np.sqrt(
            (a_c**2).sum(axis=axis) * (b_c**2).sum(axis=axis))
    return np.where(finite & ~constant, np.clip(r, -1.0, 1.0), np.nan)[()]


def _nanmean(x: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Mean over the non-NaN entries; NaN (without a warning) where there are none."""
    x = np.asarray(x, dtype=np.float64)
    valid = ~np.isnan(x)
    count = valid.sum(axis=axis)
    total = np.where(valid, x, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)[()]


# --------------------------------------------------------------------------------------------
# 1. Price IC / RankIC per window


def _paths(pred: Any, true: Any) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape:
        raise ValueError(f"pred and true must have the same shape, got {pred.shape} and "
                         f"{true.shape}")
    if pred.ndim == 2:
        pred, true = pred[..., None], true[..., None]
    if pred.ndim != 3:
        raise ValueError("pred and true must be (n_windows, horizon) or "
                         f"(n_windows, horizon, n_columns), got shape {pred.shape}")
    return pred, true


def price_ic_by_window(pred: Any, true: Any, method: str = "pearson") -> np.ndarray:
    """Correlation between the predicted and the true horizon path of each window.

    Parameters
    ----------
    pred, true : array-like of shape (n_windows, horizon, n_columns) or (n_windows, horizon)
        Predicted and realised prices. Pass only the price columns (for the Kronos column
        order, `pred[..., :4]` is open, high, low, close).
    method : {"pearson", "spearman"}, default="pearson"
        Pearson gives the IC, Spearman (Pearson of average ranks) the RankIC.

    Returns
    -------
    ndarray of shape (n_windows,)
        `ic[w] = mean over columns c of corr(pred[w, :, c], true[w, :, c])`, where the
        correlation runs over the horizon. A (window, column) pair whose predicted or true path
        is constant (zero variance) or non-finite has no correlation and is left out of that
        window's mean; a window with no column left is NaN.
    """
    pred, true = _paths(pred, true)
    by_column = _correlate(pred, true, axis=1, method=method)  # (n_windows, n_columns)
    return np.asarray(_nanmean(by_column, axis=1), dtype=np.float64).reshape(-1)


def price_ic(pred: Any, true: Any) -> float:
    """Price IC of the Kronos paper: mean over windows of the per-window Pearson correlation.

    Parameters
    ----------
    pred, true : array-like of shape (n_windows, horizon, n_columns) or (n_windows, horizon)
        Predicted and realised price paths (the price columns only).

    Returns
    -------
    float
        `mean over windows w of mean over columns c of pearson(pred[w, :, c], true[w, :, c])`.
        Windows without a defined correlation (see
        [`price_ic_by_window`][kronos_sk.metrics.price_ic_by_window], which returns them as
        NaN and so counts them) are skipped; NaN when none is left.
    """
    return float(_nanmean(price_ic_by_window(pred, true, "pearson")))


def price_rank_ic(pred: Any, true: Any) -> float:
    """Price RankIC of the Kronos paper: mean over windows of the per-window Spearman correlation.

    As [`price_ic`][kronos_sk.metrics.price_ic], with Spearman's correlation (Pearson of
    average ranks within the horizon).

    Parameters
    ----------
    pred, true : array-like of shape (n_windows, horizon, n_columns) or (n_windows, horizon)

    Returns
    -------
    float
        `mean over windows w of mean over columns c of spearman(pred[w, :, c], true[w, :, c])`,
        skipping windows where it is undefined; NaN when none is left.
    """
    return float(_nanmean(price_ic_by_window(pred, true, "spearman")))


# --------------------------------------------------------------------------------------------
# 2. Return IC / RankIC pooled over windows


def horizon_return(closes: Any, last_close: Any) -> np.ndarray:
    """H-step simple return of each path relative to its last context close.

    Parameters
    ----------
    closes : array-like of shape (..., horizon)
        Close prices over the horizon.
    last_close : array-like of shape (...)
        Last close of each context (positive).

    Returns
    -------
    ndarray of shape (...)
        `closes[..., -1] / last_close - 1`.
    """
    closes = np.asarray(closes, dtype=np.float64)
    return closes[..., -1] / np.asarray(last_close, dtype=np.float64) - 1.0


def reversion_slope(returns: Any, last_close: Any, context_mean: Any,
                    context_std: Any) -> float:
    """Least-squares slope of H-step returns on the context z-score of the last close.

    ``z = (last_close - context_mean) / context_std`` says how far a context ended above its
    own mean. A forecaster that pulls every path back towards the context mean has a clearly
    negative slope of its predicted returns on z; comparing it with the slope of the
    realised returns shows how much reversion the data supports.

    Parameters
    ----------
    returns : array-like of shape (n,)
        Predicted or realised H-step returns (see `horizon_return`).
    last_close, context_mean, context_std : array-like of shape (n,)
        Last close, mean and population std of the close over each context.

    Returns
    -------
    float
        ``cov(z, returns) / var(z)``; NaN for fewer than two finite pairs or constant z.
    """
    returns = np.asarray(returns, dtype=np.float64)
    z = ((np.asarray(last_close, dtype=np.float64) - np.asarray(context_mean, dtype=np.float64))
         / np.asarray(context_std, dtype=np.float64))
    keep = np.isfinite(returns) & np.isfinite(z)
    if keep.sum() < 2:
        return float("nan")
    z, returns = z[keep] - z[keep].mean(), returns[keep] - returns[keep].mean()
    variance = float(np.dot(z, z))
    return float(np.dot(z, returns) / variance) if variance > 0 else float("nan")


def _pooled(pred_return: Any, true_return: Any, method: str) -> float:
    pred_return = np.asarray(pred_return, dtype=np.float64)
    true_return = np.asarray(true_return, dtype=np.float64)
    if pred_return.shape != true_return.shape:
        raise ValueError("pred_return and true_return must have the same shape, got "
                         f"{pred_return.shape} and {true_return.shape}")
    pred_return, true_return = pred_return.reshape(-1), true_return.reshape(-1)
    keep = np.isfinite(pred_return) & np.isfinite(true_return)
    if keep.sum() < 2:
        return math.nan
    return float(_correlate(pred_return[keep], true_return[keep], axis=0, method=method))


def return_ic(pred_return: Any, true_return: Any) -> float:
    """Pooled Pearson correlation of predicted and realised H-step returns (return IC).

    Parameters
    ----------
    pred_return, true_return : array-like of the same shape, e.g. (n_windows,)
        Returns relative to the last context close, e.g. from
        [`horizon_return`][kronos_sk.metrics.horizon_return]. All entries are pooled.

    Returns
    -------
    float
        `pearson(pred_return.ravel(), true_return.ravel())` over the pairs where both are
        finite; NaN when fewer than two pairs remain or either side is constant.
    """
    return _pooled(pred_return, true_return, "pearson")


def return_rank_ic(pred_return: Any, true_return: Any) -> float:
    """Pooled Spearman correlation of predicted and realised H-step returns (return RankIC).

    Parameters
    ----------
    pred_return, true_return : array-like of the same shape

    Returns
    -------
    float
        `spearman(pred_return.ravel(), true_return.ravel())` (Pearson of average ranks) over
        the finite pairs; NaN when undefined. Spearman is invariant to increasing transforms,
        so simple and log returns give the same value.
    """
    return _pooled(pred_return, true_return, "spearman")


# --------------------------------------------------------------------------------------------
# 3. Cross-sectional RankIC


def cross_sectional_rank_ic(frame: pd.DataFrame, min_assets: int = 5, *, date: str = "date",
                            asset: str = "asset", pred: str = "predicted_return",
                            true: str = "realised_return") -> pd.Series:
    """Daily cross-sectional RankIC: Spearman correlation across assets, one value per date.

    Parameters
    ----------
    frame : DataFrame
        Long table with one row per (date, asset); `date` and `asset` may be columns or index
        levels. Rows with a non-finite prediction or realisation are dropped first.
    min_assets : int, default=5
        Dates with fewer assets than this are skipped.
    date, asset, pred, true : str
        Names of the date, asset, predicted-return and realised-return columns.

    Returns
    -------
    Series of float, indexed by date (sorted), named "rank_ic"
        `ic[d] = pearson(rank(pred[d, :]), rank(true[d, :]))` over the assets of date `d`,
        ranks averaged over ties. Dates with fewer than `min_assets` assets, or whose predicted
        or realised returns are all equal (no defined correlation), are left out.

    Raises
    ------
    ValueError
        When an asset appears twice on one date, or a column is missing.
    """
    if min_assets < 2:
        raise ValueError(f"min_assets must be at least 2, got {min_assets}")
    missing = [name for name in (date, asset) if name not in frame.columns]
    if missing:
        frame = frame.reset_index(level=[n for n in missing if n in frame.index.names])
    missing = [name for name in (date, asset, pred, true) if name not in frame.columns]
    if missing:
        raise ValueError(f"frame has no column or index level {missing}")
    data = frame[[date, asset, pred, true]].astype({pred: "float64", true: "float64"})
    data = data[np.isfinite(data[pred]) & np.isfinite(data[true])]
    if data.duplicated([date, asset]).any():
        raise ValueError(f"some ({date}, {asset}) pairs occur more than once; aggregate first")
    count = data.groupby(date)[asset].transform("size")
    data = data[count >= min_assets]
    groups = data.groupby(date, sort=True)
    rank_pred = groups[pred].rank(method="average")
    rank_true = groups[true].rank(method="average")
    # Per-date Pearson of the ranks from grouped sums; ranks are exact halves, so a constant
    # cross-section gives an exactly zero denominator.
    d_pred = rank_pred - rank_pred.groupby(data[date]).transform("mean")
    d_true = rank_true - rank_true.groupby(data[date]).transform("mean")
    sums = pd.DataFrame({"cross": d_pred * d_true, "pred": d_pred**2, "true": d_true**2,
                         date: data[date]}).groupby(date, sort=True).sum()
    denominator = np.sqrt(sums["pred"] * sums["true"])
    ic = (sums["cross"] / denominator.where(denominator > 0)).clip(-1.0, 1.0)
    return ic.dropna().rename("rank_ic").astype("float64")


def ic_summary(series: pd.Series | Sequence[float] | np.ndarray) -> dict[str, float]:
    """Summary statistics of a per-date IC series.

    Parameters
    ----------
    series : Series or array-like of shape (n_dates,)
        Per-date IC values, e.g. from
        [`cross_sectional_rank_ic`][kronos_sk.metrics.cross_sectional_rank_ic]. NaNs are
        dropped.

    Returns
    -------
    dict
        With `n` the number of values, `mean`, `std` (sample std, ddof=1), `icir = mean / std`
        (per period, not annualised), `t_stat = mean / (std / sqrt(n)) = icir * sqrt(n)` and
        `hit_rate` = fraction of values > 0. `std`, `icir` and `t_stat` are NaN when n < 2,
        `icir` and `t_stat` also when std == 0.
    """
    values = np.asarray(series, dtype=np.float64).reshape(-1)
    values = values[~np.isnan(values)]
    n = values.size
    mean = float(values.mean()) if n else math.nan
    std = float(values.std(ddof=1)) if n >= 2 else math.nan
    icir = mean / std if n >= 2 and std > 0 else math.nan
    return {"n": n, "mean": mean, "std": std, "icir": icir,
            "t_stat": icir * math.sqrt(n) if n else math.nan,
            "hit_rate": float((values > 0).mean()) if n else math.nan}


def _panel_column(y: pd.DataFrame | pd.Series, column: str | None, name: str) -> pd.Series:
    """The `column` of a panel as a Series with its (asset, ..., time) MultiIndex."""
    if isinstance(y, pd.DataFrame):
        if column is None:
            if y.shape[1] != 1:
                raise ValueError(f"{name} has columns {list(y.columns)}; pass column=")
            column = y.columns[0]
        y = y[column]
    if not isinstance(y.index, pd.MultiIndex):
        raise ValueError(f"{name} must be a panel with an (asset, time) MultiIndex")
    return y.astype("float64").sort_index()


def _final_rows(y: pd.Series) -> pd.Series:
    """The last time point of each asset, indexed by asset (the time level dropped)."""
    return y.groupby(level=list(range(y.index.nlevels - 1))).tail(1)


def panel_rank_ic(y_true: pd.DataFrame | pd.Series, y_pred: pd.DataFrame | pd.Series,
                  last_close: pd.Series | pd.DataFrame, *, column: str | None = None,
                  min_assets: int = 5) -> float:
    """Cross-sectional RankIC of one panel forecast from a common cutoff.

    IC on price levels is meaningless across assets (it ranks assets by price), so the
    forecast is turned into a return first, with the last close of each asset's context:
    `pred_ret = y_pred_last / last_close - 1` and `true_ret = y_true_last / last_close - 1`,
    where `_last` is the final forecast step (the last time point of each asset in `y_pred`,
    matched by timestamp in `y_true`). The result is the Spearman correlation of the two
    across assets.

    Parameters
    ----------
    y_true, y_pred : DataFrame or Series with an (asset, time) MultiIndex
        Realised and predicted prices over the horizon. With several levels before time,
        those levels together name the asset.
    last_close : Series indexed by asset, or a panel in the (asset, time) layout
        The last context close of each asset; of a panel (such as the training data), the
        last row per asset is used.
    column : str, optional
        Column of the frames to use (e.g. "close"); optional for one-column frames.
    min_assets : int, default=5
        With fewer assets having all three values, the result is NaN.

    Returns
    -------
    float
        `spearman over assets a of (pred_ret[a], true_ret[a])`; NaN when undefined (too few
        assets, or all predicted or all realised returns equal).
    """
    pred = _final_rows(_panel_column(y_pred, column, "y_pred"))
    true = _panel_column(y_true, column, "y_true").reindex(pred.index)
    if isinstance(last_close, pd.DataFrame) or (
            isinstance(last_close.index, pd.MultiIndex)
            and last_close.index.nlevels == pred.index.nlevels):
        last_close = _final_rows(_panel_column(last_close, column, "last_close"))
        last_close.index = last_close.index.droplevel(-1)
    assets = pred.index.droplevel(-1)
    frame = pd.DataFrame({"pred": pred.to_numpy(), "true": true.to_numpy(),
                          "close": last_close.astype("float64").reindex(assets).to_numpy()},
                         index=assets).dropna()
    if len(frame) < min_assets:
        return math.nan
    pred_ret = frame["pred"].to_numpy() / frame["close"].to_numpy() - 1.0
    true_ret = frame["true"].to_numpy() / frame["close"].to_numpy() - 1.0
    return float(_correlate(pred_ret, true_ret, axis=0, method="spearman"))


def make_panel_rank_ic_scorer(column: str | None = None, min_assets: int = 5) -> Any:
    """sktime scorer for [`panel_rank_ic`][kronos_sk.metrics.panel_rank_ic] (needs sktime).

    Built with `make_forecasting_scorer(..., greater_is_better=True,
    multilevel="uniform_average_time")`, so the function sees the whole (asset, time) panel
    rather than one series at a time. The last close comes from `y_train`, which sktime's
    `evaluate` passes to every scorer; one score per fold is one date of the cross-sectional
    RankIC series, to be summarised with [`ic_summary`][kronos_sk.metrics.ic_summary].

    Parameters
    ----------
    column : str, optional
        Column to rank (e.g. "close"); optional for one-column panels.
    min_assets : int, default=5
        Fewer assets in a fold give NaN.

    Returns
    -------
    sktime forecasting metric
        Called as `scorer(y_true, y_pred, y_train=y_context)`; raises ValueError without
        `y_train`. y_true, y_pred and y_train must be DataFrames (sktime rejects a Series with
        a MultiIndex).
    """
    from sktime.performance_metrics.forecasting import make_forecasting_scorer

    def panel_rank_ic_score(y_true: pd.DataFrame, y_pred: pd.DataFrame,
                            y_train: pd.DataFrame | None = None) -> float:
        if y_train is None:
            raise ValueError("PanelRankIC needs the context's last close: call "
                             "scorer(y_true, y_pred, y_train=y_context), as sktime's "
                             "evaluate does")
        return panel_rank_ic(y_true, y_pred, y_train, column=column, min_assets=min_assets)

    return make_forecasting_scorer(panel_rank_ic_score, name="PanelRankIC",
                                   greater_is_better=True, multilevel="uniform_average_time")


# --------------------------------------------------------------------------------------------
# 4. Errors on normalised prices


def normalised_errors(pred: Any, true: Any, mean: Any, std: Any,
                      eps: float = STD_EPSILON) -> dict[str, float]:
    """MAE and MSE after normalising prediction and truth with the context's statistics.

    Parameters
    ----------
    pred, true : array-like of shape (n_windows, horizon, n_columns) or (n_windows, horizon)
    mean, std : array-like
        Mean and (population) std of each window's lookback context: shape
        (n_windows, n_columns), resp. (n_windows,) for 2-D input, is broadcast over the
        horizon; any shape that broadcasts against `pred`, such as per-column (n_columns,),
        is used as is.
    eps : float, default=1e-5
        The floor of the model's own normalisation: `std + eps * min(1, |mean|)` divides
        (see `kronos_sk.data.normalize`). No clipping is applied.

    Returns
    -------
    dict
        With `z(x) = (x - mean) / (std + eps * min(1, |mean|))`:
        `mae = mean |z(pred) - z(true)|` and
        `mse = mean (z(pred) - z(true))^2` over all windows, steps and columns.
    """
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape:
        raise ValueError(f"pred and true must have the same shape, got {pred.shape} and "
                         f"{true.shape}")
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    if mean.ndim == pred.ndim - 1:
        mean = np.expand_dims(mean, 1)
    if std.ndim == pred.ndim - 1:
        std = np.expand_dims(std, 1)
    scale = normalising_scale(mean, std, eps)
    diff = (pred - mean) / scale - (true - mean) / scale
    return {"mae": float(np.abs(diff).mean()), "mse": float((diff**2).mean())}


# --------------------------------------------------------------------------------------------
# 5. Realised volatility


def log_returns(closes: Any, last_close: Any | None = None) -> np.ndarray:
    """Step-to-step log returns of closes along their last axis.

    Parameters
    ----------
    closes : array-like of shape (..., horizon)
        Positive close prices.
    last_close : array-like broadcastable to (...), optional
        Last context close; when given, the first return is `log(closes[..., 0] / last_close)`,
        so there are `horizon` returns instead of `horizon - 1`.

    Returns
    -------
    ndarray of shape (..., horizon) with `last_close`, else (..., horizon - 1)
    """
    closes = np.asarray(closes, dtype=np.float64)
    if last_close is not None:
        last = np.broadcast_to(np.asarray(last_close, dtype=np.float64), closes.shape[:-1])
        closes = np.concatenate([last[..., None], closes], axis=-1)
    return np.diff(np.log(closes), axis=-1)


def realized_volatility(closes: Any, last_close: Any | None = None) -> np.ndarray:
    """Realised variance over the horizon: the sum of squared log returns of the closes.

    Parameters
    ----------
    closes : array-like of shape (..., horizon)
        Positive close prices.
    last_close : array-like of shape (...), optional
        Last context close; when given, the first return is `log(closes[..., 0] / last_close)`,
        so the horizon contributes `horizon` returns instead of `horizon - 1`.

    Returns
    -------
    ndarray of shape (...)
        `sum over t of log(c[t] / c[t - 1])^2` (no square root, no annualisation).
    """
    returns = log_returns(closes, last_close)
    if returns.shape[-1] < 1:
        raise ValueError("need at least two prices (or one with last_close) for a return")
    return (returns**2).sum(axis=-1)


def volatility_scores(pred_rv: Any, true_rv: Any) -> dict[str, float]:
    """MAE and R² of realised-volatility forecasts.

    Parameters
    ----------
    pred_rv, true_rv : array-like of the same shape, e.g. (n_windows,)
        Predicted and realised volatility (e.g. from
        [`realized_volatility`][kronos_sk.metrics.realized_volatility]); all entries pooled.

    Returns
    -------
    dict
        `mae = mean |pred_rv - true_rv|` and `r2 = 1 - SSE / SST` with
        `SSE = sum (pred_rv - true_rv)^2` and `SST = sum (true_rv - mean(true_rv))^2`, the
        mean of the realised values themselves (as scikit-learn's `r2_score`); `r2` is NaN when
        SST is 0.
    """
    pred_rv = np.asarray(pred_rv, dtype=np.float64).reshape(-1)
    true_rv = np.asarray(true_rv, dtype=np.float64).reshape(-1)
    if pred_rv.shape != true_rv.shape:
        raise ValueError("pred_rv and true_rv must have the same number of values")
    sse = float(((pred_rv - true_rv) ** 2).sum())
    sst = float(((true_rv - true_rv.mean()) ** 2).sum())
    return {"mae": float(np.abs(pred_rv - true_rv).mean()),
            "r2": 1.0 - sse / sst if sst > 0 else math.nan}


# --------------------------------------------------------------------------------------------
# 6. Probabilistic scores


def crps_from_samples(samples: Any, y: Any, *, fair: bool = False) -> np.ndarray:
    """CRPS of a sample forecast in the energy form, per forecast point.

    Parameters
    ----------
    samples : array-like of shape (n_samples, ...)
        Sample paths; the first axis indexes samples.
    y : array-like of shape (...)
        Observations (broadcast against `samples[0]`).
    fair : bool, default=False
        False: `E|X - X'|` averages over all n_samples^2 pairs, which is exactly the CRPS of
        the empirical distribution of the samples. True: over the n(n - 1) distinct pairs,
        the unbiased ("fair") estimate of the CRPS of the distribution they are drawn from.

    Returns
    -------
    ndarray of shape (...)
        `E|X - y| - 0.5 * E|X - X'|`, with `E|X - X'|` from the sorted samples
        `x_(1) <= ... <= x_(m)` as `2 * sum over i of (2i - m - 1) * x_(i) / m^2`
        (`/ (m (m - 1))` when fair). Average it for a single score.
    """
    samples = np.asarray(samples, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m = samples.shape[0]
    if fair and m < 2:
        raise ValueError("fair=True needs at least two samples")
    spread = np.abs(samples - y).mean(axis=0)
    ordered = np.sort(samples, axis=0)
    weights = (2.0 * np.arange(1, m + 1) - m - 1).reshape((m,) + (1,) * (samples.ndim - 1))
    pair_sum = 2.0 * (weights * ordered).sum(axis=0)  # sum over all ordered pairs |xi - xj|
    pair_mean = pair_sum / (m * (m - 1) if fair else m * m)
    return spread - 0.5 * pair_mean


def sample_quantiles(samples: Any, alpha: Any, axis: int = 0) -> np.ndarray:
    """Quantiles of equally weighted samples, as every output of kronos-sk reads them.

    The alpha-quantile is the smallest sample whose cumulative weight (1/S each, summed in
    order as skpro's `Empirical` sums them, so that ties with alpha resolve alike) reaches
    alpha: the inverse of the samples' empirical CDF. `KronosForecaster.predict_quantiles`,
    its intervals and `predict_proba().ppf` give these values, and so do the pipeline's
    quantiles, the calibration's coverage and the benchmarks': a band is scored as a user
    gets it. The float sums decide ties: of 20 samples, alpha 0.5 gives the 11th. (NumPy's
    default, linear interpolation, gives narrower central bands: of 20 samples its 90 % band
    runs from the 1.95th to the 19.05th, this one from the 1st to the 19th.) NaN samples sort
    last.

    Parameters
    ----------
    samples : array-like
        The samples lie along `axis`.
    alpha : float or array-like of float in [0, 1]
    axis : int, default=0

    Returns
    -------
    ndarray of float64
        The shape of `alpha` followed by that of `samples` without `axis`, as `np.quantile`.
    """
    values = np.sort(np.asarray(samples, dtype=np.float64), axis=axis)
    n = values.shape[axis]
    levels = np.asarray(alpha, dtype=np.float64)
    if n == 0:
        raise ValueError("sample_quantiles needs at least one sample along axis")
    if np.any(~((levels >= 0) & (levels <= 1))):
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}")
    cumulative = np.cumsum(np.full(n, 1.0 / n))
    ranks = np.minimum(np.searchsorted(cumulative, levels), n - 1)
    axis = axis % values.ndim
    picked = np.take(values, ranks, axis=axis)
    return np.moveaxis(picked, list(range(axis, axis + levels.ndim)), list(range(levels.ndim)))


def central_bands(samples: Any, levels: Sequence[float],
                  axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of the central intervals ``[q_(1 - level)/2, q_(1 + level)/2]``
    of each level, read by `sample_quantiles` in one sort.

    Returns
    -------
    lower, upper : ndarray of float64
        Each of shape ``(len(levels),)`` followed by that of `samples` without `axis`.
    """
    levels = np.asarray(levels, dtype=np.float64)
    return tuple(sample_quantiles(samples, np.stack([(1 - levels) / 2, (1 + levels) / 2]),
                                  axis=axis))


def pinball_loss(quantile_preds: Any, y: Any, alphas: Sequence[float] | np.ndarray) -> np.ndarray:
    """Mean pinball (quantile) loss for each quantile level.

    Parameters
    ----------
    quantile_preds : array-like of shape (..., n_alphas)
        Predicted quantiles, the level on the last axis (the package's quantile layout).
    y : array-like of shape (...)
        Observations.
    alphas : sequence of float in (0, 1), length n_alphas

    Returns
    -------
    ndarray of shape (n_alphas,)
        With `u = y - q_alpha`: `mean of max(alpha * u, (alpha - 1) * u)` over all points (no
        factor 2). `.mean()` gives the usual average over levels.
    """
    q = np.asarray(quantile_preds, dtype=np.float64)
    alphas = np.asarray(alphas, dtype=np.float64).reshape(-1)
    if q.shape[-1] != alphas.size:
        raise ValueError(f"quantile_preds has {q.shape[-1]} levels on its last axis but "
                         f"{alphas.size} alphas were given")
    if np.any((alphas <= 0) | (alphas >= 1)):
        raise ValueError("alphas must lie strictly between 0 and 1")
    u = np.asarray(y, dtype=np.float64)[..., None] - q
    loss = np.maximum(alphas * u, (alphas - 1.0) * u)
    return loss.reshape(-1, alphas.size).mean(axis=0)


def interval_coverage(lower: Any, upper: Any, y: Any) -> float:
    """Empirical coverage: the fraction of observations inside their interval.

    Parameters
    ----------
    lower, upper, y : array-like, broadcastable to one shape

    Returns
    -------
    float
        `mean of (lower <= y) & (y <= upper)`, bounds included.
    """
    lower, upper, y = np.broadcast_arrays(np.asarray(lower, dtype=np.float64),
                                          np.asarray(upper, dtype=np.float64),
                                          np.asarray(y, dtype=np.float64))
    if np.any(lower > upper):
        raise ValueError("some lower bounds exceed their upper bounds")
    return float(((lower <= y) & (y <= upper)).mean())


def coverage_table(samples: Any, y: Any,
                   levels: Sequence[float] = (0.5, 0.8, 0.9)) -> pd.DataFrame:
    """Empirical coverage of central intervals taken from sample quantiles.

    Parameters
    ----------
    samples : array-like of shape (n_samples, ...)
    y : array-like of shape (...)
    levels : sequence of float in (0, 1), default=(0.5, 0.8, 0.9)
        Nominal coverage of each central interval.

    Returns
    -------
    DataFrame indexed by level
        Columns `coverage` (as [`interval_coverage`][kronos_sk.metrics.interval_coverage]) and
        `mean_width` of the interval `[q_(1 - level)/2, q_(1 + level)/2]`, the quantiles taken
        over the sample axis by `central_bands` (the forecaster's intervals).
        Well calibrated forecasts have coverage close to level.
    """
    for level in levels:
        if not 0 < level < 1:
            raise ValueError(f"levels must lie strictly between 0 and 1, got {level}")
    rows = {float(level): {"coverage": interval_coverage(lower, upper, y),
                           "mean_width": float((upper - lower).mean())}
            for level, lower, upper in zip(levels, *central_bands(samples, levels))}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "level"
    return table


# --------------------------------------------------------------------------------------------
# 7. Generation fidelity (torch)


def _windows(x: Any, normalize: str | None) -> np.ndarray:
    """(n, length[, features]) -> float32 (n, length, features), normalised per window."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3:
        raise ValueError(f"windows must be (n, length) or (n, length, features), got {x.shape}")
    if normalize == "zscore":
        mean = x.mean(axis=1, keepdims=True)
        x = (x - mean) / normalising_scale(mean, x.std(axis=1, keepdims=True))
    elif normalize == "first":
        if np.any(x[:, 0] == 0):
            raise ValueError("normalize='first' divides by each window's first row, which has "
                             "zeros; use normalize='zscore'")
        x = x / x[:, :1] - 1.0
    elif normalize is not None:
        raise ValueError(f"normalize must be one of {WINDOW_NORMALISATIONS}, got {normalize!r}")
    return x.astype(np.float32)


def _lstm(n_features: int, hidden_size: int, per_step: bool) -> Any:
    """One-layer LSTM and linear head: (B, T, F) -> (B, T) per step, else (B,) from the last."""
    import torch

    class LSTMHead(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(n_features, hidden_size, num_layers=1, batch_first=True)
            self.head = torch.nn.Linear(hidden_size, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            hidden, _ = self.lstm(x)  # (B, T, H)
            if not per_step:
                hidden = hidden[:, -1]  # (B, H)
            return self.head(hidden).squeeze(-1)

    return LSTMHead()


def _fit(model: Any, inputs: Any, targets: Any, loss_fn: Callable, *, epochs: int,
         batch_size: int, lr: float, generator: Any) -> None:
    import torch

    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(inputs), generator=generator).to(inputs.device)
        for start in range(0, len(inputs), batch_size):
            batch = order[start:start + batch_size]
            optimiser.zero_grad(set_to_none=True)
            loss_fn(model(inputs[batch]), targets[batch]).backward()
            optimiser.step()
    model.eval()


def _seed(random_state: int | np.random.RandomState | None) -> int:
    from sklearn.utils import check_random_state

    return int(check_random_state(random_state).randint(2**31 - 1))


def discriminative_score(real: Any, synthetic: Any, *, hidden_size: int = 24, epochs: int = 50,
                         batch_size: int = 128, lr: float = 1e-3, test_size: float = 0.2,
                         normalize: str | None = "zscore",
                         random_state: int | np.random.RandomState | None = None,
                         device: str = "cpu") -> dict[str, float]:
    """Post-hoc discriminative score (TimeGAN): how well an LSTM tells real from synthetic.

    A one-layer LSTM classifier (last hidden state -> linear -> logit, binary cross-entropy,
    Adam) is trained on a stratified 80/20 split of the real (label 1) and synthetic (label 0)
    windows and scored on the held-out 20 %.

    Parameters
    ----------
    real, synthetic : array-like of shape (n, length, features) or (n, length)
        Equally many windows of each (so that chance accuracy is 0.5).
    hidden_size : int, default=24
        Width of the LSTM.
    epochs, batch_size, lr : int, int, float, default=50, 128, 1e-3
        Passes over the training split, mini-batch size and Adam learning rate.
    test_size : float, default=0.2
        Held-out fraction of the windows, stratified by label.
    normalize : {"zscore", "first", None}, default="zscore"
        Per-window normalisation: "zscore" subtracts each window's per-feature mean and divides
        by its std (floored as the model's normalisation is), so the classifier compares
        shapes, not price levels; "first" divides by the window's first row and subtracts 1
        (positive data only); None keeps the values.
    random_state : int, RandomState or None
        Seeds the split, the initialisation and the batch order (global torch RNG restored).
    device : str, default="cpu"
        Torch device to train on.

    Returns
    -------
    dict
        `accuracy` on the test split; `test_error = 1 - accuracy` (0.5 is ideal: the
        classifier is at chance); `score = |accuracy - 0.5| = |test_error - 0.5|`, the
        distance from chance that the Kronos paper reports (0 is ideal).
    """
    import torch
    from sklearn.model_selection import train_test_split

    real = _windows(real, normalize)
    synthetic = _windows(synthetic, normalize)
    if real.shape != synthetic.shape:
        raise ValueError(f"real {real.shape} and synthetic {synthetic.shape} windows must have "
                         "the same shape; subsample the larger set to equal counts")
    x = np.concatenate([real, synthetic])
    labels = np.concatenate([np.ones(len(real)), np.zeros(len(synthetic))]).astype(np.float32)
    seed = _seed(random_state)
    train, test = train_test_split(np.arange(len(x)), test_size=test_size, stratify=labels,
                                   random_state=seed)
    inputs = torch.from_numpy(x).to(device)
    targets = torch.from_numpy(labels).to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _lstm(x.shape[-1], hidden_size, per_step=False).to(device)
    train_idx = torch.from_numpy(train).to(device)
    _fit(model, inputs[train_idx], targets[train_idx], torch.nn.BCEWithLogitsLoss(),
         epochs=epochs, batch_size=batch_size, lr=lr,
         generator=torch.Generator().manual_seed(seed))
    test_idx = torch.from_numpy(test).to(device)
    with torch.no_grad():
        predicted = (model(inputs[test_idx]) > 0).float()
    accuracy = float((predicted == targets[test_idx]).float().mean())
    return {"accuracy": accuracy, "test_error": 1.0 - accuracy, "score": abs(accuracy - 0.5)}


def predictive_score(real: Any, synthetic: Any, *, target: int = 3, hidden_size: int = 24,
                     epochs: int = 50, batch_size: int = 128, lr: float = 1e-3,
                     normalize: str | None = "zscore",
                     random_state: int | np.random.RandomState | None = None,
                     device: str = "cpu") -> float:
    """Post-hoc predictive score (TimeGAN), train on synthetic, test on real (TSTR).

    A one-layer LSTM reads steps `0 .. t-1` of a window (all features) and predicts feature
    `target` at step `t`, for every t; it is trained on the synthetic windows with an L1 loss
    and Adam, and its mean absolute error is measured on the real windows. Synthetic data
    that carries the real dynamics gives a lower score.

    Parameters
    ----------
    real, synthetic : array-like of shape (n, length, features) or (n, length)
        Window counts may differ; length and features must match; length >= 2.
    target : int, default=3
        Feature to predict: 3 is the close in the Kronos column order (open, high, low, close,
        volume, amount); use 0 for univariate windows.
    hidden_size, epochs, batch_size, lr : int, int, int, float, default=24, 50, 128, 1e-3
        As in [`discriminative_score`][kronos_sk.metrics.discriminative_score].
    normalize : {"zscore", "first", None}, default="zscore"
        Per-window normalisation as in `discriminative_score`. The statistics of "zscore" span
        the whole window, steps to be predicted included; this is the same for training and
        test, so scores stay comparable between generators.
    random_state : int, RandomState or None
        Seeds the initialisation and the batch order (global torch RNG restored).
    device : str, default="cpu"
        Torch device to train on.

    Returns
    -------
    float
        `mean |f(real[:, :t]) - real[:, t, target]|` over real windows and steps t = 1 ..
        length-1, in normalised units.
    """
    import torch

    real = _windows(real, normalize)
    synthetic = _windows(synthetic, normalize)
    if real.shape[1:] != synthetic.shape[1:]:
        raise ValueError(f"real {real.shape} and synthetic {synthetic.shape} windows must share "
                         "length and features")
    if real.shape[1] < 2:
        raise ValueError("windows need at least two steps")
    if not -real.shape[2] <= target < real.shape[2]:
        raise ValueError(f"target {target} is not one of the {real.shape[2]} features")
    seed = _seed(random_state)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _lstm(real.shape[-1], hidden_size, per_step=True).to(device)
    train = torch.from_numpy(synthetic).to(device)
    _fit(model, train[:, :-1], train[:, 1:, target], torch.nn.L1Loss(), epochs=epochs,
         batch_size=batch_size, lr=lr, generator=torch.Generator().manual_seed(seed))
    test = torch.from_numpy(real).to(device)
    with torch.no_grad():
        return float((model(test[:, :-1]) - test[:, 1:, target]).abs().mean())
