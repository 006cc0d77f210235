"""The models of a benchmark behind one interface: forecast the windows of an origin.

Kronos forecasts every asset of an origin in one batched call (one `fit` on the context
panel, one `sample`); fine-tuned Kronos is trained once, with `pretrain`, on the rows before
the evaluation period, and keeps those weights at every origin and in every task of a run.
Kronos's future timestamps are the next `horizon` steps of the configured `freq` (they feed
its calendar features; a holiday shifts a stamp, never the step count). Baselines come from
`kronos_sk.baselines.baseline_forecasters`; they are fitted at every origin on the last
`history` rows of each asset (sktime fits univariate ones per asset and column), which is an
expanding-then-rolling window refit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone

from kronos_sk.baselines import baseline_forecasters
from kronos_sk.estimators import KronosForecaster

from .config import BenchmarkConfig, ModelSpec
from .data import PRICE_COLUMNS, Panel, Windows

GENERATED_COLUMNS = [*PRICE_COLUMNS, "volume"]


class Budget:
    """A wall-clock budget; `exceeded()` is True once `minutes` have passed since creation.

    Parameters
    ----------
    minutes : float or None
        None: no limit.
    """

    def __init__(self, minutes: float | None):
        self.minutes = minutes
        self.start = time.monotonic()

    def exceeded(self) -> bool:
        """Whether the budget is spent."""
        return self.minutes is not None and time.monotonic() - self.start > 60 * self.minutes


@dataclass
class Forecast:
    """Forecasts of the windows of one origin.

    Attributes
    ----------
    mean : ndarray of shape (n_assets, horizon, 4)
        Point forecast of open, high, low, close (Kronos: the mean of the paths).
    samples : ndarray of shape (n_assets, n_samples, horizon, 4) or None
        Sampled paths of probabilistic models.
    """

    mean: np.ndarray
    samples: np.ndarray | None = None


class Model:
    """One configured model, prepared once and applied at every origin.

    Parameters
    ----------
    spec : ModelSpec
    config : BenchmarkConfig
    panel : Panel
        The data; fine-tuned Kronos trains on its rows before the evaluation period.
    seed : int
        Seeds sampling and training.
    """

    def __init__(self, spec: ModelSpec, config: BenchmarkConfig, panel: Panel, seed: int):
        self.spec, self.config, self.seed = spec, config, seed
        self.fh = list(range(1, config.horizon + 1))
        if spec.kind == "kronos":
            self.forecaster = KronosForecaster(
                model=spec.model, tokenizer=spec.tokenizer, max_context=spec.max_context,
                n_samples=config.n_samples, random_state=seed, freq=config.freq,
                lookback=config.lookback, horizon=config.horizon,
                fit_strategy="fine-tune" if spec.max_steps else "zero-shot",
                max_steps=max(spec.max_steps, 1), **spec.params)
            if spec.max_steps:
                key = (spec.name, seed, repr(self.forecaster.get_params()))
                if key not in panel.fine_tuned:
                    panel.fine_tuned[key] = self.forecaster.pretrain(panel.training_panel())
                self.forecaster = panel.fine_tuned[key]
        else:
            forecaster = baseline_forecasters(config.lookback, config.horizon, seed)
            if spec.baseline not in forecaster:
                raise ValueError(f"unknown baseline {spec.baseline!r}; one of {sorted(forecaster)}")
            forecaster = forecaster[spec.baseline]
            params = dict(spec.params)
            if spec.max_steps:
                params["max_steps"] = spec.max_steps
            self.forecaster = forecaster.set_params(**params)

    def _kronos_fit(self, windows: Windows) -> KronosForecaster:
        return self.forecaster.fit(windows.context_panel())

    def sample(self, windows: Windows, columns: list[str] = PRICE_COLUMNS) -> np.ndarray:
        """Kronos paths of the origin's assets, (n_assets, n_samples, horizon, n_columns)."""
        frame = self._kronos_fit(windows).sample(fh=self.fh).sort_index()
        values = frame[columns].to_numpy(np.float64)
        shape = (self.config.n_samples, len(windows.assets), len(self.fh), len(columns))
        return values.reshape(shape).transpose(1, 0, 2, 3)

    def forecast(self, windows: Windows) -> Forecast:
        """Forecast open, high, low, close of every asset of the origin."""
        if self.spec.kind == "kronos":
            samples = self.sample(windows)
            return Forecast(mean=samples.mean(axis=1), samples=samples)
        forecaster = clone(self.forecaster)
        predicted = forecaster.fit(windows.history_panel(PRICE_COLUMNS), fh=self.fh).predict()
        values = predicted.sort_index()[PRICE_COLUMNS].to_numpy(np.float64)
        return Forecast(mean=values.reshape(len(windows.assets), len(self.fh), 4))

    def predict_volatility(self, windows: Windows) -> np.ndarray:
        """Kronos realized-variance forecast over the horizon per asset, (n_assets,)."""
        table = self._kronos_fit(windows).predict_volatility(fh=self.fh)
        return table["mean"].reindex(pd.Index(windows.assets)).to_numpy(np.float64)
