"""The estimators in sktime's and scikit-learn's parallel tools, on the real fixture candles.

Backtests, grid search and cross-validation give the same scores in joblib processes
("loky") as serially: paths depend only on random_state and the series' identity.
"""

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import TimeSeriesSplit, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from sktime.forecasting.model_evaluation import evaluate
from sktime.forecasting.model_selection import ForecastingGridSearchCV
from sktime.performance_metrics.forecasting.probabilistic import CRPS, PinballLoss
from sktime.split import ExpandingWindowSplitter

from kronos_sk.estimators import KLineTokenizer, KronosForecaster

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kronos-compat"
SCORES = ["test_CRPS", "test_PinballLoss"]


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "candles.csv", index_col=0, parse_dates=True)


@pytest.fixture(scope="module")
def bars(candles) -> pd.DataFrame:
    """240 real 5-minute candles on an integer index (synthetic stamps, see the docs)."""
    return candles.iloc[:240].reset_index(drop=True)


def forecaster(**params) -> KronosForecaster:
    defaults = dict(model=str(FIXTURES / "model"), tokenizer=str(FIXTURES / "tokenizer"),
                    max_context=128, n_samples=6, random_state=0, device="cpu")
    return KronosForecaster(**{**defaults, **params})


def quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


def backtest(bars, **backend):
    cv = ExpandingWindowSplitter(initial_window=120, step_length=40, fh=[1, 2, 3])
    return quiet(evaluate, forecaster(), cv, bars, strategy="refit",
                 scoring=[CRPS(multivariate=True), PinballLoss()], **backend)


def test_evaluate_in_loky_processes_scores_as_serial(bars):
    serial = backtest(bars)
    parallel = backtest(bars, backend="loky", backend_params={"n_jobs": 2})
    assert len(serial) == 3 and np.isfinite(serial[SCORES].to_numpy()).all()
    pd.testing.assert_frame_equal(parallel[SCORES], serial[SCORES], check_exact=True)
    pd.testing.assert_series_equal(parallel["cutoff"], serial["cutoff"])


@pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                    reason="dask.distributed is not installed (pip install 'kronos-sk[dask]')")
def test_evaluate_on_a_dask_local_cluster_scores_as_serial(bars):
    from dask.distributed import Client, LocalCluster

    serial = backtest(bars)
    # Two worker processes, as on a real cluster: each unpickles the forecaster and loads
    # the checkpoint files it references (the same paths must exist on every worker).
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        parallel = backtest(bars, backend="dask")
    pd.testing.assert_frame_equal(parallel[SCORES], serial[SCORES], check_exact=True)


@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="ray is not installed (pip install 'kronos-sk[ray]')")
def test_evaluate_with_ray_scores_as_serial(bars):
    serial = backtest(bars)
    parallel = backtest(bars, backend="ray",
                        backend_params={"ray_remote_args": {"num_cpus": 1},
                                        "shutdown_ray": True})
    pd.testing.assert_frame_equal(parallel[SCORES], serial[SCORES], check_exact=True)


def test_grid_search_in_two_processes_matches_serial(bars):
    def search(**backend):
        cv = ExpandingWindowSplitter(initial_window=120, step_length=60, fh=[1, 2])
        return quiet(ForecastingGridSearchCV(
            forecaster(), cv=cv, param_grid={"temperature": [0.7, 1.0], "top_k": [0, 8]},
            scoring=PinballLoss(), **backend).fit, bars.iloc[:200])

    serial = search(backend=None)
    parallel = search(backend="loky", backend_params={"n_jobs": 2})
    columns = ["mean_test_PinballLoss", "params"]
    assert len(serial.cv_results_) == 4
    pd.testing.assert_frame_equal(parallel.cv_results_[columns], serial.cv_results_[columns])
    assert parallel.best_params_ == serial.best_params_
    pd.testing.assert_frame_equal(parallel.predict(fh=[1, 2]), serial.predict(fh=[1, 2]))


def direction_data(candles):
    """Candles and whether the next bar closes higher (the last bar has no label)."""
    up = (candles["close"].shift(-1) > candles["close"]).to_numpy()[:-1]
    return candles.iloc[:-1], up.astype(int)


def token_classifier() -> Pipeline:
    return Pipeline([("tokens", KLineTokenizer(FIXTURES / "tokenizer", device="cpu")),
                     ("onehot", OneHotEncoder(handle_unknown="ignore")),
                     ("classify", LogisticRegression(max_iter=1000))])


def test_a_sklearn_pipeline_classifies_next_bar_direction_from_token_ids(candles):
    X, y = direction_data(candles)
    train, test = slice(0, 400), slice(400, None)
    pipe = token_classifier().fit(X.iloc[train], y[train])
    predicted = pipe.predict(X.iloc[test])
    # The same as composing the steps by hand: the ids of the candles, one-hot, a classifier.
    tokens = KLineTokenizer(FIXTURES / "tokenizer", device="cpu").fit(X.iloc[train])
    ids = tokens.transform(X.iloc[train])
    assert ids.shape == (400, 2) and ids.dtype == np.int64
    onehot = OneHotEncoder(handle_unknown="ignore").fit(ids)
    model = LogisticRegression(max_iter=1000).fit(onehot.transform(ids), y[train])
    expected = model.predict(onehot.transform(tokens.transform(X.iloc[test])))
    np.testing.assert_array_equal(predicted, expected)
    assert set(np.unique(predicted)) <= {0, 1}
    assert 0.0 <= pipe.score(X.iloc[test], y[test]) <= 1.0


def test_time_series_cross_validation_of_the_pipeline_in_two_processes(candles):
    X, y = direction_data(candles)
    cv = TimeSeriesSplit(n_splits=3)
    serial = cross_val_score(token_classifier(), X, y, cv=cv)
    parallel = cross_val_score(token_classifier(), X, y, cv=cv, n_jobs=2)
    assert serial.shape == (3,) and ((serial >= 0) & (serial <= 1)).all()
    np.testing.assert_array_equal(parallel, serial)
