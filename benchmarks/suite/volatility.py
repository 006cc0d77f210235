"""Volatility task: forecast the realized variance of the next `horizon` closes.

The target is the paper's realized volatility, the sum of squared log returns of the closes
over steps 1..H (the first from the last context close). Forecasts:

- Kronos (every Kronos model of the configuration): `KronosForecaster.predict_volatility`,
  the mean over sampled paths of the same sum;
- "garch": GARCH(1, 1) with a constant mean fitted with `arch` on the percent log returns of
  the last `history` closes; the forecast is the sum of its H variance forecasts;
- "naive-rv": the mean squared log return of the lookback window times H.

Scores: `volatility_scores` (MAE and R²) pooled over all windows, and the mean forecast
against the mean realized variance (bias).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from arch import arch_model

from kronos_sk.metrics import realized_volatility, volatility_scores

from .config import BenchmarkConfig
from .data import Panel, Windows
from .models import Budget, Model
from .report import origin_note, pyplot, save_plot, write_task
from .runner import over_origins

PERCENT = 100.0


def garch_variance(closes: np.ndarray, horizon: int) -> float:
    """Sum of the H one-step variance forecasts of GARCH(1, 1) fitted on log returns."""
    returns = PERCENT * np.diff(np.log(closes))
    result = arch_model(returns, mean="Constant", vol="GARCH", p=1, q=1,
                        rescale=False).fit(disp="off", show_warning=False)
    variance = result.forecast(horizon=horizon, reindex=False).variance.to_numpy()[-1]
    return float(variance.sum() / PERCENT**2)


def naive_variance(closes: np.ndarray, horizon: int) -> float:
    """Mean squared log return of `closes`, scaled to `horizon` steps."""
    return float(np.mean(np.diff(np.log(closes)) ** 2) * horizon)


def _scatter(predictions: dict[str, np.ndarray], truth: np.ndarray, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, pred in predictions.items():
        ax.scatter(truth, pred, s=8, alpha=0.6, label=name)
    limits = [max(min(truth.min(), *(p.min() for p in predictions.values())), 1e-12),
              max(truth.max(), *(p.max() for p in predictions.values()))]
    ax.plot(limits, limits, color="grey", ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("realized variance")
    ax.set_ylabel("forecast")
    ax.set_title("realized variance over the horizon")
    ax.legend(fontsize=8)
    save_plot(fig, path)


def run_volatility(config: BenchmarkConfig, panel: Panel, out: Path,
                   budget: Budget) -> pd.DataFrame:
    """Run the volatility task and write `volatility.csv`, `volatility.md` and a scatter plot.

    Returns
    -------
    DataFrame
        One row per model: Kronos models (averaged over seeds), "garch" and "naive-rv".
    """
    kronos = [(spec.name, seed, Model(spec, config, panel, seed))
              for seed in config.seeds for spec in config.models if spec.kind == "kronos"]
    first_seed = config.seeds[0]
    predicted: dict[tuple[str, int], list[np.ndarray]] = {
        key: [] for key in [(name, seed) for name, seed, _ in kronos]
        + [("garch", first_seed), ("naive-rv", first_seed)]}
    truth: list[np.ndarray] = []

    def work(windows: Windows) -> None:
        truth.append(realized_volatility(windows.target_array(["close"])[..., 0],
                                         windows.last_close()))
        for name, seed, model in kronos:
            predicted[name, seed].append(model.predict_volatility(windows))
        predicted["garch", first_seed].append(np.array(
            [garch_variance(h["close"].to_numpy(), config.horizon) for h in windows.histories]))
        predicted["naive-rv", first_seed].append(np.array(
            [naive_variance(c["close"].to_numpy(), config.horizon) for c in windows.contexts]))

    done, total = over_origins(config, panel, budget, work)
    if not done:
        raise RuntimeError("the time budget ran out before the first origin")
    true = np.concatenate(truth)
    rows = {}
    for key, parts in predicted.items():
        pred = np.concatenate(parts)
        rows[key] = {**volatility_scores(pred, true), "mean_forecast": float(pred.mean()),
                     "mean_realized": float(true.mean())}
    table = pd.DataFrame.from_dict(rows, orient="index").groupby(level=0, sort=False).mean()
    table.index.name = "model"
    table.insert(0, "windows", len(true))
    out.mkdir(parents=True, exist_ok=True)
    first = {name: np.concatenate(parts) for (name, seed), parts in predicted.items()
             if seed == first_seed}
    _scatter(first, true, out / "volatility_scatter.png")
    notes = [origin_note(done, total, len(panel.assets), len(true)),
             f"realized variance of {config.horizon} log returns; GARCH fitted on the last "
             f"{config.history} closes, naive on the {config.lookback}-row lookback",
             "mae: lower is better; r2: higher is better (0 = the mean realized variance)"]
    write_task(out, "volatility", table, notes, ["volatility_scatter.png"])
    return table
