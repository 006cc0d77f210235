"""Price and return forecasting task: Kronos against the baselines at every origin.

At every origin each model forecasts the next `horizon` candles of every asset (Kronos in
one batched call per origin); the forecasts are compared with what happened:

- price IC / RankIC: per-window correlation of the predicted and true open/high/low/close
  paths, averaged (`price_ic`, `price_rank_ic`);
- return IC / RankIC: predicted against realised H-step close return, pooled over windows;
- cross-sectional RankIC: per origin, Spearman across assets of predicted and realised
  returns, summarised by `ic_summary` (mean, ICIR, t-statistic, hit rate);
- MAE / MSE of prices normalised with each context's mean and std;
- reversion signature: the slope of the predicted H-step return on the context z-score of
  the last close (`reversion_slope`), next to the realised returns' slope, and the mean
  absolute predicted and realised returns; a forecaster that pulls paths back to the
  context mean has a slope well below the realised one;
- for probabilistic models (Kronos): CRPS, pinball loss (levels 0.1..0.9) and coverage of
  central 50/80/90 % intervals of the normalised close, from the sampled paths; `crps` is
  the CRPS of the paths' empirical distribution (what a user of that many paths gets),
  `crps_fair` the unbiased estimate of the CRPS of the distribution they are drawn from
  (it does not favour narrow ensembles of few paths);
  `path_step_std` / `realised_step_std`: the standard deviation of one-step log returns of
  the sampled paths and of the truth (the first from the last context close).

Why a direct loop rather than sktime `evaluate`: the cross-sectional metrics need every asset
of one origin together, while `evaluate` scores each series of a panel separately (unless a
scorer is made panel-wide) and refits per fold and per scorer call; the loop makes one
forecast per model and origin and derives every metric from it. sktime is still used where
it fits: the baselines are sktime forecasters fitted per origin, and `sktime_cross_check`
scores Kronos per series with sktime's `evaluate`, `ExpandingWindowSplitter` and its own
probabilistic metrics (`PinballLoss`, `EmpiricalCoverage`), as an independent check of the
sample-based scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sktime.forecasting.base import BaseForecaster

from kronos_sk.data.normalize import normalising_scale
from kronos_sk.metrics import (central_bands, coverage_table, crps_from_samples,
                               cross_sectional_rank_ic, horizon_return, ic_summary, log_returns,
                               normalised_errors, pinball_loss, price_ic, price_rank_ic,
                               return_ic, return_rank_ic, reversion_slope, sample_quantiles)

from .config import BenchmarkConfig
from .data import PRICE_COLUMNS, Panel, Windows
from .models import Budget, Model
from .report import markdown_table, origin_note, pyplot, save_plot, write_task
from .runner import over_origins

QUANTILES = np.round(np.arange(0.1, 1.0, 0.1), 2)  # pinball levels and calibration curve
COVERAGE_LEVELS = (0.5, 0.8, 0.9)
CLOSE = PRICE_COLUMNS.index("close")


class Collected:
    """Forecasts and truths of one model over all origins, stacked by window."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.pred, self.true, self.samples = [], [], []
        self.mean, self.std = [], []

    def add(self, windows: Windows, mean: np.ndarray, samples: np.ndarray | None) -> None:
        """Append the windows of one origin with their forecasts."""
        contexts = np.stack([c[PRICE_COLUMNS].to_numpy(np.float64) for c in windows.contexts])
        self.rows += [{"date": windows.origin, "asset": a, "last_close": c}
                      for a, c in zip(windows.assets, windows.last_close(), strict=True)]
        self.pred.append(mean)
        self.true.append(windows.target_array())
        self.mean.append(contexts.mean(axis=1))
        self.std.append(contexts.std(axis=1))
        if samples is not None:
            self.samples.append(samples)

    def metrics(self, min_assets: int) -> dict[str, float]:
        """Every metric of the task (probabilistic ones NaN without samples)."""
        pred, true = np.concatenate(self.pred), np.concatenate(self.true)
        mean, std = np.concatenate(self.mean), np.concatenate(self.std)
        frame = pd.DataFrame(self.rows)
        last = frame["last_close"].to_numpy()
        frame["predicted_return"] = horizon_return(pred[..., CLOSE], last)
        frame["realised_return"] = horizon_return(true[..., CLOSE], last)
        daily = ic_summary(cross_sectional_rank_ic(frame, min_assets=min_assets))
        errors = normalised_errors(pred, true, mean, std)
        signature = (last, mean[:, CLOSE], std[:, CLOSE])
        scores = {
            "price_ic": price_ic(pred, true), "price_rank_ic": price_rank_ic(pred, true),
            "return_ic": return_ic(frame["predicted_return"], frame["realised_return"]),
            "return_rank_ic": return_rank_ic(frame["predicted_return"],
                                             frame["realised_return"]),
            "cs_rank_ic": daily["mean"], "cs_icir": daily["icir"],
            "cs_t_stat": daily["t_stat"], "cs_hit_rate": daily["hit_rate"],
            "mae_norm": errors["mae"], "mse_norm": errors["mse"],
            "reversion_slope": reversion_slope(frame["predicted_return"], *signature),
            "realised_slope": reversion_slope(frame["realised_return"], *signature),
            "abs_return": float(frame["predicted_return"].abs().mean()),
            "realised_abs_return": float(frame["realised_return"].abs().mean()),
            "crps": np.nan, "crps_fair": np.nan, "pinball": np.nan,
            **{f"coverage_{round(100 * level)}": np.nan for level in COVERAGE_LEVELS},
            "path_step_std": np.nan,
            "realised_step_std": float(log_returns(true[..., CLOSE], last).std())}
        if self.samples:
            z_samples, z_true = self.normalised_close()
            quantiles = np.moveaxis(sample_quantiles(z_samples, QUANTILES), 0, -1)
            coverage = coverage_table(z_samples, z_true, COVERAGE_LEVELS)["coverage"]
            scores.update({
                "crps": float(crps_from_samples(z_samples, z_true).mean()),
                "crps_fair": float(crps_from_samples(z_samples, z_true, fair=True).mean()),
                "pinball": float(pinball_loss(quantiles, z_true, QUANTILES).mean()),
                **{f"coverage_{round(100 * level)}": float(value)
                   for level, value in coverage.items()}})
            # Day-to-day log returns of the paths, the first from the last close: how much
            # the paths move from one step to the next (calibration should not change it).
            closes = np.concatenate(self.samples)[..., CLOSE]  # (W, S, H)
            scores["path_step_std"] = float(log_returns(closes, last[:, None]).std())
        return scores

    def normalised_close(self) -> tuple[np.ndarray, np.ndarray]:
        """Sampled closes (n_samples, n_windows, horizon) and true closes, z-scored."""
        samples = np.concatenate(self.samples)[..., CLOSE]  # (W, S, H)
        mean = np.concatenate(self.mean)[:, None, CLOSE]
        scale = normalising_scale(mean, np.concatenate(self.std)[:, None, CLOSE])
        true = (np.concatenate(self.true)[..., CLOSE] - mean) / scale
        return np.moveaxis((samples - mean[:, None]) / scale[:, None], 1, 0), true


def _fan_plot(windows: Windows, samples: np.ndarray, name: str, path: Path) -> None:
    """Forecast fan (50 % and 90 % of sampled closes) and the truth, first asset."""
    plt = pyplot()
    context = windows.contexts[0]["close"].to_numpy()
    truth = windows.targets[0]["close"].to_numpy()
    closes = samples[0, :, :, CLOSE]
    steps = np.arange(len(context), len(context) + len(truth))
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(np.arange(len(context)), context, color="black", lw=1, label="context")
    levels = (0.9, 0.5)
    for level, lo, hi, alpha in zip(levels, *central_bands(closes, levels), (0.2, 0.4)):
        ax.fill_between(steps, lo, hi, color="tab:blue", alpha=alpha,
                        label=f"{round(100 * level)} % band")
    ax.plot(steps, closes.mean(axis=0), color="tab:blue", label="mean forecast")
    ax.plot(steps, truth, color="tab:red", label="truth")
    ax.set_title(f"{name}: {windows.assets[0]} from {windows.origin:%Y-%m-%d %H:%M}")
    ax.set_xlabel("row")
    ax.set_ylabel("close")
    ax.legend(fontsize=8)
    save_plot(fig, path)


def _calibration_plot(curves: dict[str, pd.Series], path: Path) -> None:
    """Empirical against nominal coverage of central intervals, one line per model."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", ls="--", label="ideal")
    for name, curve in curves.items():
        ax.plot(curve.index, curve.to_numpy(), marker="o", label=name)
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("empirical coverage")
    ax.set_title("interval calibration (normalised close)")
    ax.legend(fontsize=8)
    save_plot(fig, path)


def sktime_cross_check(config: BenchmarkConfig, panel: Panel,
                       forecasters: dict[str, BaseForecaster]) -> pd.DataFrame:
    """Per-series probabilistic scores of the Kronos models with sktime's `evaluate`.

    For the first `[price] sktime_assets` assets (default 2), the open/high/low/close series
    from `lookback` rows before the evaluation start onwards is split by an
    `ExpandingWindowSplitter` (initial window `lookback`, about as many folds as origins) and
    scored with sktime's `PinballLoss` (levels 0.1, 0.5, 0.9) and `EmpiricalCoverage` (90 %),
    in the asset's price units, with the first seed. The index is made integer, so Kronos
    sees calendar stamps counted in steps of `freq`. `forecasters` (model name -> Kronos
    forecaster, fine-tuned ones already pretrained) are cloned by `evaluate` for every fold.

    Returns
    -------
    DataFrame
        One row per (model, asset): folds, pinball and coverage_90 averaged over folds.
    """
    from sktime.forecasting.model_evaluation import evaluate
    from sktime.performance_metrics.forecasting.probabilistic import (EmpiricalCoverage,
                                                                      PinballLoss)
    from sktime.split import ExpandingWindowSplitter

    fh = list(range(1, config.horizon + 1))
    rows = {}
    for name, forecaster in forecasters.items():
        for asset in panel.assets[:int(config.price.get("sktime_assets", 2))]:
            frame = panel.frames[asset]
            start = max(0, frame.index.searchsorted(panel.eval_start) - config.lookback)
            y = frame[PRICE_COLUMNS].iloc[start:].reset_index(drop=True)
            span = len(y) - config.lookback - config.horizon
            if span < 0:
                continue
            folds = config.origins or max(1, span // (config.stride or 1) + 1)
            step = config.stride or max(1, span // max(1, folds - 1))
            splitter = ExpandingWindowSplitter(fh=fh, initial_window=config.lookback,
                                               step_length=step)
            result = evaluate(forecaster, splitter, y, strategy="refit",
                              scoring=[PinballLoss(alpha=[0.1, 0.5, 0.9]),
                                       EmpiricalCoverage(coverage=0.9)])
            rows[name, asset] = {"folds": len(result),
                                 "pinball": result["test_PinballLoss"].mean(),
                                 "coverage_90": result["test_EmpiricalCoverage"].mean()}
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.names = ["model", "asset"]
    return table


def run_price(config: BenchmarkConfig, panel: Panel, out: Path, budget: Budget) -> pd.DataFrame:
    """Run the price/return task and write `price.csv`, `price.md` and its plots.

    Returns
    -------
    DataFrame
        One row per model (metrics averaged over seeds).
    """
    models = [(spec.name, seed, Model(spec, config, panel, seed))
              for seed in config.seeds for spec in config.models]
    collected = {(name, seed): Collected() for name, seed, _ in models}
    last: dict[str, tuple[Windows, np.ndarray]] = {}

    def work(windows: Windows) -> None:
        for name, seed, model in models:
            forecast = model.forecast(windows)
            collected[name, seed].add(windows, forecast.mean, forecast.samples)
            if forecast.samples is not None and seed == config.seeds[0]:
                last[name] = (windows, forecast.samples)

    done, total = over_origins(config, panel, budget, work)
    if not done:
        raise RuntimeError("the time budget ran out before the first origin")
    min_assets = max(2, min(5, len(panel.assets)))
    rows = {key: value.metrics(min_assets) for key, value in collected.items()}
    table = pd.DataFrame.from_dict(rows, orient="index").groupby(level=0, sort=False).mean()
    table.index.name = "model"
    n_windows = len(next(iter(collected.values())).rows)
    table.insert(0, "windows", n_windows)
    out.mkdir(parents=True, exist_ok=True)
    plots = []
    for name, (windows, samples) in last.items():
        plots.append(f"price_fan_{name}.png")
        _fan_plot(windows, samples, name, out / plots[-1])
    curves = {}
    for name, seed, model in models:
        if model.spec.probabilistic and seed == config.seeds[0]:
            z_samples, z_true = collected[name, seed].normalised_close()
            curves[name] = coverage_table(z_samples, z_true, QUANTILES)["coverage"]
    if curves:
        plots.append("price_calibration.png")
        _calibration_plot(curves, out / plots[-1])
    notes = [origin_note(done, total, len(panel.assets), n_windows),
             f"lookback {config.lookback}, horizon {config.horizon}, samples "
             f"{config.n_samples}, seeds {list(config.seeds)}",
             "IC columns: higher is better; mae/mse_norm, crps, pinball: lower is better; "
             "coverage_X should be close to X %; – marks a score that is undefined (the "
             "correlations of a constant forecast such as naive-last) or needs samples"]
    extra = ""
    if budget.exceeded():
        notes.append("the sktime cross-check was skipped: the time budget was spent")
    else:
        check = sktime_cross_check(config, panel, {
            name: model.forecaster for name, seed, model in models
            if model.spec.probabilistic and seed == config.seeds[0]})
        if len(check):
            check.to_csv(out / "price_sktime.csv")
            extra = ("Cross-check with sktime `evaluate` (`ExpandingWindowSplitter`, refit per "
                     "fold) and sktime's `PinballLoss` / `EmpiricalCoverage`, per series, in "
                     "price units:\n\n" + markdown_table(check))
    write_task(out, "price", table, notes, plots, extra)
    return table
