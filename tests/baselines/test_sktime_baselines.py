"""The sktime comparison set fits and forecasts a real index series."""

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kronos_sk.baselines import ITransformerForecaster, baseline_forecasters

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
NAMES = ["naive-last", "naive-drift", "ets", "arima", "dlinear", "itransformer", "garch"]
COLUMNS = ["open", "high", "low", "close", "volume"]
# sktime's own forecasters announce, at every construction, the remember_data default that
# changes in sktime 1.3.0; fit and predict do not depend on it.
pytestmark = pytest.mark.filterwarnings(
    "ignore:The default of config ``remember_data``:FutureWarning")


@pytest.fixture(scope="module")
def csi300() -> pd.DataFrame:
    """The last 300 daily CSI 300 candles, on an integer index (trading days have no freq)."""
    path = DATA / "cn_index_daily_2011_2017.parquet"
    if not path.is_file():
        pytest.skip(f"real data {path} not available")
    frame = pd.read_parquet(path, filters=[("asset", "==", "sh000300")])
    return frame[COLUMNS].iloc[-300:].reset_index(drop=True)


def test_the_set_and_its_settings():
    baselines = baseline_forecasters(lookback=32, horizon=8, random_state=3)
    assert list(baselines) == NAMES
    assert isinstance(baselines["itransformer"], ITransformerForecaster)
    assert baselines["itransformer"].get_params()["random_state"] == 3
    dlinear = baselines["dlinear"].get_params()
    assert (dlinear["dlinear__seq_len"], dlinear["dlinear__pred_len"]) == (32, 8)
    assert baselines["garch"].get_params()["random_state"] == 3
    assert baseline_forecasters()["itransformer"] is not baselines["itransformer"]


@pytest.mark.parametrize("name", NAMES)
def test_each_baseline_forecasts_three_steps_of_a_real_series(name, csi300):
    forecaster = baseline_forecasters(lookback=32, horizon=8)[name]
    if name == "garch":  # the volatility baseline models percent log returns
        y = 100 * np.log(csi300[["close"]]).diff().dropna()
    else:
        y = csi300
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' starting-value notices and the like
        prediction = forecaster.fit(y, fh=[1, 2, 3]).predict()
    # univariate forecasters are broadcast over the columns by sktime
    assert list(prediction.columns) == list(y.columns)
    assert list(prediction.index) == [300, 301, 302]
    assert np.isfinite(prediction.to_numpy()).all()
    if name != "garch":
        last = csi300["close"].iloc[-1]
        assert (np.abs(prediction["close"] / last - 1) < 0.2).all()


def test_garch_variance_forecast_is_positive(csi300):
    returns = 100 * np.log(csi300["close"]).diff().dropna()
    garch = baseline_forecasters()["garch"].fit(returns, fh=[1, 2, 3])
    variance = garch.predict_var().to_numpy()
    assert variance.shape == (3,)
    assert (variance > 0.2 * returns.var()).all() and (variance < 5 * returns.var()).all()


def test_docs_page_example_runs(monkeypatch):
    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    page = (root / "docs" / "api" / "baselines.md").read_text()
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for block in re.findall(r"```python\n(.*?)```", page, re.S):
            exec(compile(block, "docs/api/baselines.md", "exec"), namespace)
    assert list(namespace["forecasts"]) == NAMES
    assert all(np.isfinite(f.to_numpy()).all() for f in namespace["forecasts"].values())
