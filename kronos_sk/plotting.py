"""Charts of candles and sampled forecasts (matplotlib, an optional dependency)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kronos_sk._files import write_atomically
from kronos_sk.metrics import central_bands
from kronos_sk.pipeline import ForecastPaths


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("charts need matplotlib: pip install 'kronos-sk[plot]'") from None
    return plt


def _candles(ax, candles: pd.DataFrame, x: np.ndarray) -> None:
    up = candles["close"].to_numpy() >= candles["open"].to_numpy()
    colors = np.where(up, "#26a69a", "#ef5350")
    ax.vlines(x, candles["low"], candles["high"], colors=colors, linewidth=0.8)
    bottom = np.minimum(candles["open"], candles["close"])
    height = np.abs(candles["close"] - candles["open"]).to_numpy()
    ax.bar(x, np.maximum(height, 1e-12), 0.7, bottom=bottom, color=colors)


def _time_axis(ax, stamps: pd.DatetimeIndex, n_ticks: int = 8) -> None:
    """Label bar positions with their timestamps; gaps (nights, weekends) take no space."""
    positions = np.linspace(0, len(stamps) - 1, min(n_ticks, len(stamps))).round().astype(int)
    intraday = len(stamps) > 1 and (stamps[1:] - stamps[:-1]).min() < pd.Timedelta(days=1)
    fmt = "%m-%d %H:%M" if intraday else "%Y-%m-%d"
    ax.set_xticks(positions)
    ax.set_xticklabels([stamps[p].strftime(fmt) for p in positions], rotation=0, fontsize=8)


def plot_forecast(candles: pd.DataFrame, forecast: ForecastPaths, *, series: int = 0,
                  n_context: int = 120, volume: bool = True, title: str | None = None,
                  path: str | None = None):
    """Candlesticks of the context, the mean forecast and 50%/90% fans of the close.

    Bars are drawn one per position, so non-trading time (nights, weekends, lunch breaks)
    takes no space; the axis is labelled with the bars' timestamps.

    Parameters
    ----------
    candles : DataFrame
        The context of the chosen series (validated, lower-case columns).
    forecast : ForecastPaths
        As returned by `KronosPipeline.sample`.
    series : int, default=0
        Which series of `forecast` to draw.
    n_context : int, default=120
        How many of the last context candles to show.
    volume : bool, default=True
        Add a volume panel (mean forecast volume as bars) when the data has volume.
    title : str or None, default=None
        Figure title; None for a generic one.
    path : str or None, default=None
        Save the figure there (PNG) when given.

    Returns
    -------
    matplotlib Figure
    """
    plt = _pyplot()
    context = candles.iloc[-n_context:]
    index = forecast.index[series]
    closes = forecast.paths[series, :, :, forecast.columns.index("close")]  # (S, H)
    show_volume = volume and "volume" in context and float(context["volume"].abs().sum()) > 0
    fig, axes = plt.subplots(2 if show_volume else 1, 1, sharex=True, figsize=(11, 6.5),
                             gridspec_kw={"height_ratios": [3, 1]} if show_volume else None,
                             squeeze=False)
    ax = axes[0, 0]
    cx = np.arange(len(context))
    fx = np.arange(len(context), len(context) + len(index))
    _candles(ax, context, cx)
    # Join the fan to the last close so the forecast reads as a continuation.
    jx = np.r_[cx[-1], fx]
    last = context["close"].iloc[-1]
    for low, high, alpha, label in zip(*central_bands(closes, [0.9, 0.5]), (0.18, 0.35),
                                       ("90% band", "50% band")):
        ax.fill_between(jx, np.r_[last, low], np.r_[last, high], color="#1f77b4",
                        alpha=alpha, linewidth=0, label=label)
    ax.plot(jx, np.r_[last, closes.mean(axis=0)], color="#1f77b4", linewidth=1.6,
            label=f"mean close ({closes.shape[0]} paths)")
    ax.axvline(cx[-1] + 0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_ylabel("price")
    ax.legend(loc="upper left", frameon=False)
    ax.grid(alpha=0.25)
    ax.set_title(title or f"Kronos forecast, {len(index)} steps")
    if show_volume:
        vax = axes[1, 0]
        vax.bar(cx, context["volume"], 0.7, color="#9e9e9e", label="volume")
        mean_volume = forecast.paths[series, :, :, forecast.columns.index("volume")].mean(0)
        vax.bar(fx, np.maximum(mean_volume, 0), 0.7, color="#1f77b4", alpha=0.6,
                label="mean forecast volume")
        vax.set_ylabel("volume")
        vax.grid(alpha=0.25)
    _time_axis(axes[-1, 0], context.index.append(index))
    fig.tight_layout()
    if path is not None:
        write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=110))
    return fig


def plot_paths(candles: pd.DataFrame, forecast: ForecastPaths, *, series: int = 0,
               n_context: int = 120, max_paths: int = 50, path: str | None = None):
    """Spaghetti plot: the context close and up to `max_paths` sampled close paths."""
    plt = _pyplot()
    context = candles["close"].iloc[-n_context:]
    closes = forecast.paths[series, :max_paths, :, forecast.columns.index("close")]
    cx = np.arange(len(context))
    jx = np.arange(len(context) - 1, len(context) + closes.shape[1])
    fig, ax = plt.subplots(figsize=(11, 5))
    ax.plot(cx, context.to_numpy(), color="black", linewidth=1.2, label="context")
    for i, row in enumerate(closes):
        ax.plot(jx, np.r_[context.iloc[-1], row], color="#1f77b4", alpha=0.25, linewidth=0.8,
                label="sampled paths" if i == 0 else None)
    ax.legend(loc="upper left", frameon=False)
    ax.grid(alpha=0.25)
    ax.set_ylabel("close")
    _time_axis(ax, context.index.append(forecast.index[series]))
    fig.tight_layout()
    if path is not None:
        write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=110))
    return fig
