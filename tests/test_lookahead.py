"""The look-ahead guard: which dates a checkpoint has seen, and a warning inside them."""

import warnings

import pandas as pd
import pytest

import kronos_sk
from kronos_sk import KronosForecaster, LookAheadWarning
from kronos_sk.checkpoints import default_checkpoint
from kronos_sk.lookahead import (RELEASED_PERIODS, DataPeriod, corpus_periods, data_periods,
                                 look_ahead, write_data_periods)


@pytest.fixture(scope="module")
def aapl(us_stocks_daily_file) -> pd.DataFrame:
    frame = pd.read_parquet(us_stocks_daily_file)
    return frame[frame["asset"] == "AAPL"].set_index("timestamp")[
        ["open", "high", "low", "close", "volume"]]


def test_a_2014_origin_warns_and_a_2021_one_does_not(aapl):
    y = aapl[aapl.index < "2014-07-01"].iloc[-90:]
    forecaster = KronosForecaster(n_samples=2, random_state=0)
    with pytest.warns(LookAheadWarning, match=r"y: the forecast origin lies inside data the "
                                              r"bundled model was trained .*us_stocks train "
                                              r"2008-01-02"):
        forecaster.fit(y)
    assert any(str(p).startswith("us_stocks train") for p in forecaster.look_ahead_["y"])
    # The same real candles moved to 2021, a year none of the bundled model's data covers.
    later = y.set_axis(pd.bdate_range("2021-03-01", periods=len(y)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", LookAheadWarning)
        assert KronosForecaster(n_samples=2).fit(later).look_ahead_ == {}
    with warnings.catch_warnings(), pytest.raises(LookAheadWarning):
        warnings.simplefilter("error", LookAheadWarning)  # the standard way to make it fatal
        KronosForecaster(n_samples=2).fit(y)
    assert issubclass(LookAheadWarning, UserWarning) and "LookAheadWarning" in kronos_sk.__all__


def test_periods_of_the_bundled_released_and_written_checkpoints(tmp_path, compat_dir):
    bundled = data_periods(default_checkpoint("predictor"))
    ends = {p.market: pd.Timestamp(p.end) for p in bundled if p.split == "validation"}
    assert ends["us_stocks"].year == 2017 and ends["btc_1h"].year == 2019
    assert ends["crypto_1h"].year == 2024
    assert data_periods("NeoQuasar/Kronos-small") == RELEASED_PERIODS
    assert look_ahead(RELEASED_PERIODS, {"x": pd.Timestamp("2024-04-15")})["x"][0].split == \
        "validation"
    assert look_ahead(RELEASED_PERIODS, {"x": pd.Timestamp("2024-06-03")}) == {}
    assert data_periods(compat_dir / "model") is None  # nothing known: no warning
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "data_periods.json").write_text('[{"market": 1}]')
    with pytest.raises(ValueError, match="data_periods.json: not a list of periods"):
        data_periods(tmp_path / "bad")


def test_a_corpus_records_its_train_and_validation_periods(tmp_path):
    assets = pd.DataFrame({"market": ["us", "us", "btc"],
                           "first": pd.to_datetime(["2010-01-04", "2012-01-03", "2018-01-01"]),
                           "last": pd.to_datetime(["2017-06-30", "2017-06-30", "2019-06-30"])})
    starts = pd.to_datetime(["2016-01-01", "2016-01-01", "2019-06-01"]).as_unit("ns").asi8
    periods = corpus_periods(assets, starts)
    assert periods[0] == DataPeriod("us", "train", "2010-01-04 00:00:00",
                                    "2015-12-31 23:59:59.999999999")
    assert periods[1] == DataPeriod("us", "validation", "2016-01-01 00:00:00",
                                    "2017-06-30 00:00:00")
    write_data_periods(tmp_path, periods)
    assert data_periods(tmp_path) == periods
