"""Generation task: synthetic K-line windows against the real ones that followed.

At every origin and asset the real window is the next `horizon` candles (open, high, low,
close, volume). Each generator makes one synthetic window continuing the same context:

- Kronos models: the first sampled path of `KronosForecaster.sample`;
- "gbm", "garch", "bootstrap": `GBMGenerator`, `GARCHGenerator` (GARCH(1, 1)) and
  `BlockBootstrapGenerator` fitted on the asset's last `history` candles.

Scores, per generator and seed: the discriminative score (|accuracy - 0.5| of a post-hoc LSTM
telling real from synthetic; 0 is ideal) and the predictive score (MAE of an LSTM trained on
synthetic windows and tested on the real ones; lower is better), both on z-scored windows.
Plots: the distribution of one-step log returns and of per-window realized variance, real
against each generator.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kronos_sk.baselines import BlockBootstrapGenerator, GARCHGenerator, GBMGenerator
from kronos_sk.metrics import discriminative_score, predictive_score

from .config import BenchmarkConfig
from .data import Panel, Windows
from .models import GENERATED_COLUMNS, Budget, Model
from .report import origin_note, pyplot, save_plot, write_task
from .runner import over_origins

GENERATORS = {"gbm": GBMGenerator, "garch": GARCHGenerator,
              "bootstrap": BlockBootstrapGenerator}
GARCH_MIN_ROWS = 50  # GARCHGenerator.fit needs this many candles
CLOSE = GENERATED_COLUMNS.index("close")


def _log_returns(windows: np.ndarray, last_close: np.ndarray) -> np.ndarray:
    """Close-to-close log returns (n_windows, horizon), the first from the last context close."""
    closes = np.concatenate([last_close[:, None], windows[..., CLOSE]], axis=1)
    return np.diff(np.log(closes), axis=1)


def _log_variance(returns: np.ndarray) -> np.ndarray:
    """log10 of each window's realized variance (floored at 1e-12 for flat windows)."""
    return np.log10(np.maximum((returns**2).sum(axis=1), 1e-12))


def _distribution_plot(series: dict[str, np.ndarray], xlabel: str, title: str,
                       path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    values = np.concatenate(list(series.values()))
    low, high = np.quantile(values, [0.005, 0.995])
    bins = np.linspace(low, high, 40)
    for name, data in series.items():
        ax.hist(np.clip(data, low, high), bins=bins, density=True, histtype="step", lw=1.5,
                label=name, color="black" if name == "real" else None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    save_plot(fig, path)


def run_generation(config: BenchmarkConfig, panel: Panel, out: Path,
                   budget: Budget) -> pd.DataFrame:
    """Run the generation task and write `generation.csv`, `generation.md` and two plots.

    The `[generation]` table of the configuration may set `generators` (default all three),
    `epochs` (50) and `hidden_size` (24) of the post-hoc LSTMs.

    Returns
    -------
    DataFrame
        One row per generator: discriminative and predictive scores, averaged over seeds.
    """
    options = config.generation
    names = options.get("generators", list(GENERATORS))
    unknown = sorted(set(names) - set(GENERATORS))
    if unknown:
        raise ValueError(f"unknown generators {unknown}; choose from {sorted(GENERATORS)}")
    kronos = [(spec.name, seed, Model(spec, config, panel, seed))
              for seed in config.seeds for spec in config.models if spec.kind == "kronos"]
    keys = [(name, seed) for name, seed, _ in kronos] + [
        (name, seed) for seed in config.seeds for name in names]
    synthetic: dict[tuple[str, int], list[np.ndarray]] = {key: [] for key in keys}
    real, last_close = [], []

    def work(windows: Windows) -> None:
        keep = [i for i, h in enumerate(windows.histories) if len(h) >= GARCH_MIN_ROWS]
        if not keep:
            return
        windows = Windows(windows.origin, *([items[i] for i in keep] for items in (
            windows.assets, windows.contexts, windows.histories, windows.targets)))
        real.append(windows.target_array(GENERATED_COLUMNS))
        last_close.append(windows.last_close())
        for name, seed, model in kronos:
            synthetic[name, seed].append(model.sample(windows, GENERATED_COLUMNS)[:, 0])
        for seed in config.seeds:
            for name in names:
                paths = [GENERATORS[name]().fit(h[GENERATED_COLUMNS]).sample(
                    config.horizon, 1, random_state=[seed, i, windows.origin.value])[0]
                    for i, h in enumerate(windows.histories)]
                synthetic[name, seed].append(np.stack(paths))

    done, total = over_origins(config, panel, budget, work)
    if not real:
        raise RuntimeError("no window was generated (time budget or too little history)")
    real_windows, closes = np.concatenate(real), np.concatenate(last_close)
    lstm = {"epochs": int(options.get("epochs", 50)),
            "hidden_size": int(options.get("hidden_size", 24))}
    rows, returns, variances = {}, {}, {}
    real_returns = _log_returns(real_windows, closes)
    returns["real"], variances["real"] = real_returns.ravel(), _log_variance(real_returns)
    for (name, seed), parts in synthetic.items():
        fake = np.concatenate(parts)
        discriminative = discriminative_score(real_windows, fake, random_state=seed, **lstm)
        rows[name, seed] = {
            "discriminative": discriminative["score"],
            "predictive": predictive_score(real_windows, fake, target=CLOSE,
                                           random_state=seed, **lstm)}
        if seed == config.seeds[0]:
            fake_returns = _log_returns(fake, closes)
            returns[name], variances[name] = fake_returns.ravel(), _log_variance(fake_returns)
    rows["real (reference)", config.seeds[0]] = {
        "discriminative": np.nan,
        "predictive": predictive_score(real_windows, real_windows, target=CLOSE,
                                       random_state=config.seeds[0], **lstm)}
    table = pd.DataFrame.from_dict(rows, orient="index").groupby(level=0, sort=False).mean()
    table.index.name = "generator"
    table.insert(0, "windows", len(real_windows))
    out.mkdir(parents=True, exist_ok=True)
    _distribution_plot(returns, "one-step log return", "returns: real vs synthetic",
                       out / "generation_returns.png")
    _distribution_plot(variances, "log10 realized variance per window",
                       "volatility: real vs synthetic", out / "generation_volatility.png")
    notes = [origin_note(done, total, len(panel.assets), len(real_windows)),
             f"windows of {config.horizon} candles (OHLCV), z-scored per window; post-hoc "
             f"LSTMs: {lstm['epochs']} epochs, hidden size {lstm['hidden_size']}",
             "discriminative: |accuracy - 0.5|, 0 is ideal; predictive: MAE of a model trained "
             "on synthetic and tested on real windows, lower is better ('real (reference)' "
             "trains and tests on the real windows themselves, an in-sample floor)"]
    write_task(out, "generation", table, notes,
               ["generation_returns.png", "generation_volatility.png"])
    return table
