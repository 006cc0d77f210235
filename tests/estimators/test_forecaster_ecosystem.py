"""KronosForecaster inside sktime's pipelines, tuning and backtesting, on real candles."""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sktime.forecasting.compose import ForecastingPipeline, TransformedTargetForecaster
from sktime.forecasting.model_evaluation import evaluate
from sktime.forecasting.model_selection import ForecastingGridSearchCV
from sktime.performance_metrics.forecasting.probabilistic import (CRPS, EmpiricalCoverage,
                                                                  PinballLoss)
from sktime.split import ExpandingWindowSplitter
from sktime.transformations.series.exponent import ExponentTransformer

from kronos_sk.estimators import KronosForecaster

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kronos-compat"
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def hourly() -> pd.DataFrame:
    """160 hourly candles of one Binance pair, with a regular hourly index."""
    path = SHARED_DATA / "crypto_binance_1h_2024-01_2024-07.parquet"
    if not path.is_file():
        pytest.skip(f"real data {path} not available")
    frame = pd.read_parquet(path, filters=[("asset", "==", "ETH_USDT")])
    candles = frame.set_index("timestamp")[["open", "high", "low", "close", "volume"]]
    candles = candles.iloc[-160:]
    candles.index = pd.DatetimeIndex(candles.index, freq="h")
    return candles


def forecaster(**params) -> KronosForecaster:
    defaults = dict(model=str(FIXTURES / "model"), tokenizer=str(FIXTURES / "tokenizer"),
                    max_context=128, n_samples=6, top_p=0.9, random_state=0)
    return KronosForecaster(**{**defaults, **params})


def test_transformed_target_forecaster_inverts_the_transform(hourly):
    pipe = TransformedTargetForecaster([("sqrt", ExponentTransformer(power=0.5)),
                                        ("kronos", forecaster())])
    predicted = pipe.fit(hourly.iloc[:120]).predict(fh=[1, 2, 3])
    plain = forecaster().fit(hourly.iloc[:120]).predict(fh=[1, 2, 3])
    assert predicted.shape == plain.shape == (3, 5)
    # Back in price units: within a few percent of the last close, not of its square root.
    last_close = hourly["close"].iloc[119]
    assert np.all(np.abs(predicted["close"] / last_close - 1) < 0.2)


def test_forecasting_pipeline_runs_without_exogenous_data(hourly):
    pipe = ForecastingPipeline([("kronos", forecaster())])
    predicted = pipe.fit(hourly.iloc[:120]).predict_interval(fh=[1, 2], coverage=0.9)
    assert predicted.shape == (2, 10)
    lower = predicted.xs("lower", axis=1, level=2).to_numpy()
    upper = predicted.xs("upper", axis=1, level=2).to_numpy()
    assert (lower <= upper).all()


def test_grid_search_over_sampling_parameters(hourly):
    cv = ExpandingWindowSplitter(initial_window=100, step_length=20, fh=[1, 2, 3])
    search = ForecastingGridSearchCV(
        forecaster(), cv=cv, param_grid={"temperature": [0.5, 1.0], "top_p": [0.5, 1.0]},
        scoring=PinballLoss(alpha=[0.1, 0.5, 0.9]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(hourly.iloc[:140])
    assert set(search.best_params_) == {"temperature", "top_p"}
    assert len(search.cv_results_) == 4
    assert np.isfinite(search.cv_results_["mean_test_PinballLoss"]).all()


@pytest.mark.parametrize("strategy", ["refit", "update"])
def test_evaluate_with_probabilistic_scorers(hourly, strategy):
    cv = ExpandingWindowSplitter(initial_window=100, step_length=20, fh=[1, 2, 3, 4])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # CRPS of a multivariate y is the energy score (sktime: multivariate=True).
        results = evaluate(forecaster(), cv, hourly, strategy=strategy,
                           scoring=[CRPS(multivariate=True), PinballLoss(),
                                    EmpiricalCoverage(coverage=0.9)])
    assert len(results) == 3
    assert (results["test_CRPS"] > 0).all()
    assert (results["test_PinballLoss"] > 0).all()
    coverage = results["test_EmpiricalCoverage"]
    assert ((coverage >= 0) & (coverage <= 1)).all()


def test_evaluate_a_close_series_with_univariate_crps(hourly):
    cv = ExpandingWindowSplitter(initial_window=100, step_length=30, fh=[1, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = evaluate(forecaster(), cv, hourly["close"], scoring=[CRPS()])
    assert (results["test_CRPS"] > 0).all() and len(results) == 2
