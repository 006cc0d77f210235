"""Investment task: a top-k long portfolio from predicted returns, against equal weight.

At every origin (one holding period of one row; use `stride = 1` for a contiguous daily
backtest) each model's signal for an asset is its predicted return at step `signal_step`
(default: the horizon) relative to the last close. `simulate` turns the signals into a
portfolio:

1. eligible assets have a finite signal and a finite return for the period; the target is
   equal weight on the `top_k` eligible assets with the highest signals (ties broken by
   asset name);
2. the book before trading is last period's weights after the period's returns (drift);
   on the first period the target is bought outright;
3. turnover cap: with trade = target - book and turnover = 0.5 * sum |trade| (1.0 replaces
   the whole book), only the fraction min(1, max_turnover / turnover) of the trade is done;
4. costs: `cost_bps` basis points of the traded weight sum |new - book| are subtracted from
   the period's return;
5. the benchmark is the equal-weight portfolio of the eligible assets (no costs).

Scores: annualized mean return of the portfolio and the benchmark, annualized mean excess
return, information ratio (mean / std of the excess return times sqrt(periods per year)),
mean turnover and total cost. Plot: cumulative returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .config import BenchmarkConfig
from .data import PRICE_COLUMNS, Panel, Windows
from .models import Budget, Model
from .report import origin_note, pyplot, save_plot, write_task
from .runner import over_origins

CLOSE = PRICE_COLUMNS.index("close")


@dataclass
class Simulation:
    """Result of `simulate`.

    Attributes
    ----------
    weights : DataFrame
        Weights held over each period (dates x assets), after the capped trade.
    periods : DataFrame
        Per date: `portfolio` (net of costs), `benchmark`, `excess`, `turnover`
        (0.5 * traded weight) and `cost`.
    """

    weights: pd.DataFrame
    periods: pd.DataFrame

    def scores(self, periods_per_year: int) -> dict[str, float]:
        """Annualized return, benchmark, excess return, information ratio, turnover, cost."""
        excess = self.periods["excess"]
        std = excess.std(ddof=1)
        return {
            "ann_return": float(self.periods["portfolio"].mean() * periods_per_year),
            "ann_benchmark": float(self.periods["benchmark"].mean() * periods_per_year),
            "ann_excess": float(excess.mean() * periods_per_year),
            "information_ratio": float(excess.mean() / std * np.sqrt(periods_per_year))
            if len(excess) > 1 and std > 0 else np.nan,
            "mean_turnover": float(self.periods["turnover"].mean()),
            "total_cost": float(self.periods["cost"].sum()),
        }


def simulate(signals: pd.DataFrame, returns: pd.DataFrame, top_k: int, max_turnover: float,
             cost_bps: float) -> Simulation:
    """Simulate the capped top-k long portfolio (see the module docstring).

    Parameters
    ----------
    signals, returns : DataFrame
        Dates x assets: the predicted return known at each date and the asset's return over
        the period that follows it (simple returns). NaN marks an asset out of the universe.
    top_k : int
        Assets held at target.
    max_turnover : float
        Largest turnover per period, in (0, 1]; 1 leaves trades uncapped.
    cost_bps : float
        Cost per unit of traded weight, in basis points.

    Returns
    -------
    Simulation
    """
    if top_k < 1 or not 0 < max_turnover <= 1:
        raise ValueError("top_k must be >= 1 and max_turnover in (0, 1]")
    assets = sorted(set(signals.columns) | set(returns.columns))
    dates = sorted(set(signals.index) & set(returns.index))
    signals = signals.reindex(index=dates, columns=assets)
    returns = returns.reindex(index=dates, columns=assets)
    book = np.zeros(len(assets))
    held, rows = [], []
    for date in dates:
        signal, ret = signals.loc[date].to_numpy(float), returns.loc[date].to_numpy(float)
        eligible = np.flatnonzero(np.isfinite(signal) & np.isfinite(ret))
        target = np.zeros(len(assets))
        if len(eligible):
            order = eligible[np.argsort(-signal[eligible], kind="stable")][:top_k]
            target[order] = 1.0 / len(order)
        trade = target - book
        turnover = 0.5 * np.abs(trade).sum()
        if book.any() and turnover > max_turnover:
            trade *= max_turnover / turnover
        weights = book + trade
        realised = np.where(np.isfinite(ret), ret, 0.0)
        gross = float(weights @ realised)
        cost = cost_bps / 1e4 * float(np.abs(trade).sum())
        benchmark = float(realised[eligible].mean()) if len(eligible) else 0.0
        rows.append({"portfolio": gross - cost, "benchmark": benchmark,
                     "excess": gross - cost - benchmark,
                     "turnover": 0.5 * float(np.abs(trade).sum()), "cost": cost})
        held.append(weights)
        book = weights * (1.0 + realised) / (1.0 + gross)
    return Simulation(weights=pd.DataFrame(held, index=dates, columns=assets),
                      periods=pd.DataFrame(rows, index=pd.Index(dates, name="date")))


def _cumulative_plot(simulations: dict[str, Simulation], path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for name, simulation in simulations.items():
        periods = simulation.periods
        ax.plot(periods.index, (1 + periods["portfolio"]).cumprod() - 1, label=name)
    ax.plot(periods.index, (1 + periods["benchmark"]).cumprod() - 1, color="black", ls="--",
            label="equal weight")
    ax.set_ylabel("cumulative return")
    ax.set_title("top-k portfolios (net of costs)")
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    save_plot(fig, path)


def run_investment(config: BenchmarkConfig, panel: Panel, out: Path,
                   budget: Budget) -> pd.DataFrame:
    """Run the investment task and write `investment.csv`, `investment.md` and a plot.

    The `[investment]` table of the configuration sets `top_k` (default 10),
    `max_turnover` (0.5), `cost_bps` (10) and `signal_step` (the horizon).

    Returns
    -------
    DataFrame
        One row per model, scores averaged over seeds.
    """
    options = config.investment
    top_k = int(options.get("top_k", 10))
    max_turnover = float(options.get("max_turnover", 0.5))
    cost_bps = float(options.get("cost_bps", 10.0))
    step = int(options.get("signal_step", config.horizon))
    if not 1 <= step <= config.horizon:
        raise ValueError(f"investment.signal_step must be in 1..{config.horizon}")
    models = [(spec.name, seed, Model(spec, config, panel, seed))
              for seed in config.seeds for spec in config.models]
    signals: dict[tuple[str, int], dict] = {(name, seed): {} for name, seed, _ in models}
    returns: dict = {}

    def work(windows: Windows) -> None:
        last = windows.last_close()
        first_close = windows.target_array(["close"])[:, 0, 0]
        returns[windows.origin] = pd.Series(first_close / last - 1.0, index=windows.assets)
        for name, seed, model in models:
            predicted = model.forecast(windows).mean[:, step - 1, CLOSE]
            signals[name, seed][windows.origin] = pd.Series(predicted / last - 1.0,
                                                            index=windows.assets)

    done, total = over_origins(config, panel, budget, work)
    if not returns:
        raise RuntimeError("the time budget ran out before the first origin")
    realised = pd.DataFrame(returns).T
    rows, first = {}, {}
    for (name, seed), by_date in signals.items():
        simulation = simulate(pd.DataFrame(by_date).T, realised, top_k, max_turnover, cost_bps)
        rows[name, seed] = simulation.scores(config.periods_per_year)
        if seed == config.seeds[0]:
            first[name] = simulation
    table = pd.DataFrame.from_dict(rows, orient="index").groupby(level=0, sort=False).mean()
    table.index.name = "model"
    table.insert(0, "periods", len(realised))
    out.mkdir(parents=True, exist_ok=True)
    _cumulative_plot(first, out / "investment_cumulative.png")
    notes = [origin_note(done, total, len(panel.assets), int(realised.notna().sum().sum())),
             f"top {top_k} of the universe by predicted {step}-step return, rebalanced every "
             f"origin; turnover cap {max_turnover:g}, costs {cost_bps:g} bps of traded weight; "
             f"annualized with {config.periods_per_year} periods per year",
             "benchmark: equal weight over the same universe, no costs"]
    write_task(out, "investment", table, notes, ["investment_cumulative.png"])
    return table
