"""The sktime contract on a real universe: trading-day panels of unequal lengths, lagging
series, updates inside backtests, calibration updates, covariance."""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sktime.forecasting.model_evaluation import evaluate
from sktime.split import ExpandingWindowSplitter

from kronos_sk.estimators import KronosForecaster

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kronos-compat"
ASSETS = ["AAPL", "MSFT", "XOM"]


@pytest.fixture(scope="module")
def stocks(us_stocks_daily_file) -> dict[str, pd.DataFrame]:
    """Real daily candles of three US stocks in 2015 (NYSE sessions, no pandas frequency)."""
    frame = pd.read_parquet(us_stocks_daily_file)
    frame = frame[frame["asset"].isin(ASSETS) & (frame["timestamp"] >= "2015-01-01")
                  & (frame["timestamp"] < "2016-01-01")]
    return {asset: group.set_index("timestamp")[["open", "high", "low", "close", "volume"]]
            .rename_axis("time") for asset, group in frame.groupby("asset")}


def panel(parts: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(parts, names=["asset", "time"])


def forecaster(**params) -> KronosForecaster:
    defaults = dict(model=str(FIXTURES / "model"), tokenizer=str(FIXTURES / "tokenizer"),
                    max_context=128, n_samples=4, random_state=0)
    return KronosForecaster(**{**defaults, **params})


def test_relative_fh_on_a_panel_of_series_starting_on_other_days(stocks):
    y = panel({"A": stocks["AAPL"].iloc[10:90], "B": stocks["MSFT"].iloc[:90]})
    f = forecaster().fit(y)
    predicted = f.predict(fh=[1, 2])
    nxt = stocks["AAPL"].index[90:92]  # the next two sessions (a weekend is skipped)
    assert list(predicted.loc["A"].index) == list(nxt)
    assert list(predicted.loc["B"].index) == list(nxt)
    assert f.calendar_ == {"y['A']": "every day on Mon-Fri (observed)",
                           "y['B']": "every day on Mon-Fri (observed)"}


def test_a_series_ending_early_is_forecast_through_the_sessions_it_missed(stocks):
    # A stops 5 sessions before the panel's cutoff: its forecast for the panel's next
    # session is its own 6-step forecast (greedy, so the two are comparable exactly; no
    # holiday falls in those sessions of June 2015).
    a, b = stocks["AAPL"].iloc[:100], stocks["MSFT"].iloc[:105]
    greedy = dict(n_samples=1, top_k=1)
    in_panel = forecaster(**greedy).fit(panel({"A": a, "B": b})).predict(fh=[1])
    alone = forecaster(**greedy).fit(a).predict(fh=[6])
    np.testing.assert_allclose(in_panel.loc["A"].to_numpy(), alone.to_numpy(), rtol=1e-5)
    assert in_panel.loc["A"].index[0] == stocks["MSFT"].index[105] == alone.index[0]


def test_a_series_lagging_more_than_the_horizon_warns(stocks):
    y = panel({"A": stocks["AAPL"].iloc[:60], "B": stocks["MSFT"].iloc[:100]})
    with pytest.warns(UserWarning, match=r"y\['A'\] ends 40 steps .* before the cutoff"):
        forecaster(n_samples=1).fit(y).predict(fh=[1, 2])


def test_update_accepts_rows_of_a_lagging_series_only(stocks):
    a, b = stocks["AAPL"], stocks["MSFT"]
    f = forecaster().fit(panel({"A": a.iloc[:95], "B": b.iloc[:100]}))
    cutoff = f.cutoff
    f.update(panel({"A": a.iloc[95:100]}))
    assert f.cutoff.equals(cutoff)
    assert [len(s.candles) for s in f._contexts] == [100, 100]
    with pytest.raises(ValueError, match="adds no row after the end of any series"):
        f.update(panel({"A": a.iloc[40:50]}))


def test_update_with_a_gap_after_the_cutoff_is_refused(stocks):
    hourly = stocks["AAPL"].iloc[:170].set_axis(
        pd.date_range("2024-01-01", periods=170, freq="h", name="time"))
    f = forecaster().fit(hourly.iloc[:150])
    with pytest.raises(ValueError, match=r"y ends at 2024-01-07 05:00:00 and the rows sent "
                                         r"leave 10 step\(s\) missing from 2024-01-07 06:00"):
        f.update(hourly.iloc[160:170])
    f.update(hourly.iloc[150:160])  # the rows that follow are fine
    assert f.cutoff[0] == hourly.index[159]
    # Trading days: missing sessions may be holidays, so they are warned about.
    daily = forecaster().fit(stocks["AAPL"].iloc[:100])
    with pytest.warns(UserWarning, match=r"leave 5 step\(s\) missing from 2015-05-28"):
        daily.update(stocks["AAPL"].iloc[105:110])


def test_the_canonical_backtest_runs_on_trading_days_as_typed(stocks):
    y = panel({asset: stocks[asset].iloc[:190] for asset in ASSETS})
    cv = ExpandingWindowSplitter(fh=[1, 2, 3, 4, 5], initial_window=150, step_length=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # sktime's own deprecation notices
        scores = evaluate(forecaster(n_samples=2), cv, y, strategy="update")
    assert len(scores) == 2 and np.isfinite(scores.iloc[:, 0]).all()


def test_update_adapts_the_calibration_however_the_rows_are_sent(stocks):
    y = stocks["AAPL"].iloc[:120]
    settings = dict(calibration="conformal", calibration_origins=4, horizon=3, n_samples=8)
    f = forecaster(**settings).fit(y.iloc[:100])
    before = f.calibration_
    f.predict_interval(fh=[1, 2, 3])
    f.update(y.iloc[:103])  # the whole window resent, as evaluate(strategy="update") does
    assert f.calibration_.n_windows == before.n_windows + 1
    # update_params=False: only the cutoff and the data move.
    g = forecaster(**settings).fit(y.iloc[:100])
    g.predict_interval(fh=[1, 2, 3])
    kept = g.calibration_
    g.update(y.iloc[100:103], update_params=False)
    assert g.calibration_ is kept and g.cutoff[0] == y.index[102]


def test_predict_var_with_cov_is_the_covariance_of_the_paths(stocks):
    y = stocks["AAPL"].iloc[:100]
    f = forecaster(n_samples=16).fit(y[["close"]])
    cov = f.predict_var(fh=[1, 2, 3], cov=True)
    paths = f.sample(fh=[1, 2, 3])["close"].unstack("time").to_numpy()  # (S, 3)
    np.testing.assert_allclose(cov.to_numpy(), np.cov(paths, rowvar=False, ddof=0), rtol=1e-4)
    np.testing.assert_allclose(np.diag(cov.to_numpy()),
                               f.predict_var(fh=[1, 2, 3])["close"].to_numpy(), rtol=1e-4)
    assert list(cov.columns) == list(cov.index)
    multi = forecaster(n_samples=4).fit(y).predict_var(fh=[1, 2], cov=True)
    assert multi.shape == (2, 10) and multi.columns[0] == ("open", multi.index[0])
