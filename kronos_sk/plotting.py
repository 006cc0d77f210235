"""Charts of candles and sampled forecasts (matplotlib, an optional dependency)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kronos_sk.pipeline import ForecastPaths


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("charts need matplotlib: pip install 'kronos-sk[plot]'") from None
    return plt


def _bar_width(index: pd.DatetimeIndex) -> float:
    """Candle width in matplotlib date units: 70% of the typical step."""
    if len(index) < 2:
        return 0.5
    steps = np.diff(index.asi8) / 86_400e9  # days
    return 0.7 * float(np.median(steps))


def _candles(ax, candles: pd.DataFrame) -> None:
    import matplotlib.dates as mdates
    x = mdates.date2num(candles.index.tz_localize(None) if candles.index.tz else candles.index)
    width = _bar_width(candles.index)
    up = candles["close"].to_numpy() >= candles["open"].to_numpy()
    colors = np.where(up, "#26a69a", "#ef5350")
    ax.vlines(x, candles["low"], candles["high"], colors=colors, linewidth=0.8)
    bottom = np.minimum(candles["open"], candles["close"])
    height = np.abs(candles["close"] - candles["open"]).to_numpy()
    ax.bar(x, np.maximum(height, 1e-12), width, bottom=bottom, color=colors)


def plot_forecast(candles: pd.DataFrame, forecast: ForecastPaths, *, series: int = 0,
                  n_context: int = 120, volume: bool = True, title: str | None = None,
                  path: str | None = None):
    """Candlesticks of the context, the mean forecast and 50%/90% fans of the close.

    Parameters
    ----------
    candles : the context of the chosen series (validated, lower-case columns).
    forecast : the `ForecastPaths` returned by `KronosPipeline.sample`.
    series : which series of `forecast` to draw.
    n_context : how many of the last context candles to show.
    volume : add a volume panel (mean forecast volume as bars) when the data has volume.
    path : save the figure there (PNG) when given.

    Returns
    -------
    matplotlib Figure
    """
    plt = _pyplot()
    import matplotlib.dates as mdates
    context = candles.iloc[-n_context:]
    index = forecast.index[series]
    closes = forecast.paths[series, :, :, forecast.columns.index("close")]  # (S, H)
    show_volume = volume and "volume" in context and float(context["volume"].abs().sum()) > 0
    fig, axes = plt.subplots(2 if show_volume else 1, 1, sharex=True, figsize=(11, 6.5),
                             gridspec_kw={"height_ratios": [3, 1]} if show_volume else None,
                             squeeze=False)
    ax = axes[0, 0]
    _candles(ax, context)
    x = mdates.date2num(index.tz_localize(None) if index.tz else index)
    for lo, hi, alpha, label in ((0.05, 0.95, 0.18, "90% band"), (0.25, 0.75, 0.35, "50% band")):
        ax.fill_between(x, np.quantile(closes, lo, axis=0), np.quantile(closes, hi, axis=0),
                        color="#1f77b4", alpha=alpha, linewidth=0, label=label)
    ax.plot(x, closes.mean(axis=0), color="#1f77b4", linewidth=1.6,
            label=f"mean close ({closes.shape[0]} paths)")
    ax.axvline(x[0] - _bar_width(index) / 0.7 / 2, color="grey", linestyle=":", linewidth=1)
    ax.set_ylabel("price")
    ax.legend(loc="upper left", frameon=False)
    ax.grid(alpha=0.25)
    ax.set_title(title or f"Kronos forecast, {len(index)} steps")
    if show_volume:
        vax = axes[1, 0]
        cx = mdates.date2num(context.index.tz_localize(None) if context.index.tz
                             else context.index)
        vax.bar(cx, context["volume"], _bar_width(context.index), color="#9e9e9e")
        mean_volume = forecast.paths[series, :, :, forecast.columns.index("volume")].mean(0)
        vax.bar(x, np.maximum(mean_volume, 0), _bar_width(index), color="#1f77b4", alpha=0.6)
        vax.set_ylabel("volume")
        vax.grid(alpha=0.25)
    axes[-1, 0].xaxis.set_major_formatter(
        mdates.ConciseDateFormatter(axes[-1, 0].xaxis.get_major_locator()))
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def plot_paths(candles: pd.DataFrame, forecast: ForecastPaths, *, series: int = 0,
               n_context: int = 120, max_paths: int = 50, path: str | None = None):
    """Spaghetti plot: the context close and up to `max_paths` sampled close paths."""
    plt = _pyplot()
    context = candles["close"].iloc[-n_context:]
    closes = forecast.paths[series, :max_paths, :, forecast.columns.index("close")]
    fig, ax = plt.subplots(figsize=(11, 5))
    ax.plot(context.index, context.to_numpy(), color="black", linewidth=1.2, label="context")
    for i, row in enumerate(closes):
        ax.plot(forecast.index[series], row, color="#1f77b4", alpha=0.25, linewidth=0.8,
                label="sampled paths" if i == 0 else None)
    ax.legend(loc="upper left", frameon=False)
    ax.grid(alpha=0.25)
    ax.set_ylabel("close")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
