"""The positive-price rule on real crash contexts: no sampled price <= 0 through any face."""

import warnings

import numpy as np
import pandas as pd
import pytest

from kronos_sk import KronosForecaster, KronosPipeline
from kronos_sk.checkpoints import default_checkpoint
from kronos_sk.generation import make_candles_valid

CRASH_END = pd.Timestamp("2008-11-20")
FALLEN = ["GGP", "AIG", "GNW"]  # 1.3 %, 5.8 % and 6.2 % of their price 90 sessions before


@pytest.fixture(scope="module")
def crash(us_stocks_daily_file) -> dict[str, pd.DataFrame]:
    """90 real sessions of three US stocks ending 2008-11-20, each after a deep fall."""
    frame = pd.read_parquet(us_stocks_daily_file)
    frame = frame[frame["asset"].isin(FALLEN) & (frame["timestamp"] <= CRASH_END)]
    return {asset: group.set_index("timestamp")[["open", "high", "low", "close", "volume"]]
            .iloc[-90:] for asset, group in frame.groupby("asset")}


@pytest.fixture(scope="module")
def pipe() -> KronosPipeline:
    return KronosPipeline.from_pretrained(default_checkpoint("predictor"),
                                          default_checkpoint("tokenizer"))


def test_sampled_prices_stay_positive_by_redrawing_the_rejected_paths(crash, pipe):
    settings = dict(horizon=10, n_samples=16, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = pipe.sample(crash, valid_candles=False, **settings)
    rejected = (raw.paths[..., :4] <= 0).any(axis=(2, 3))  # (3, 16)
    assert rejected.sum(axis=1).min() > 0  # each context decodes below zero as released
    with pytest.warns(UserWarning, match=r"series 'GGP': \d+ of 16 sampled paths had a price "
                                         r"<= 0 and were drawn again"):
        valid = pipe.sample(crash, **settings)
    assert (valid.paths[..., :4] > 0).all()
    np.testing.assert_array_equal(valid.redrawn[:, 0], rejected.sum(axis=1))
    # Paths accepted at their first draw are exactly the valid form of the raw ones.
    kept = ~rejected
    np.testing.assert_array_equal(valid.paths[kept], make_candles_valid(raw.paths[kept].copy()))
    # A path replaced after the last redraw is a copy of an accepted path of its series.
    g = FALLEN.index("GNW")
    assert valid.redrawn[g, 1] > 0
    distinct = {path.tobytes() for path in valid.paths[g]}
    assert len(distinct) <= 16 - valid.redrawn[g, 1]


def test_volatility_of_a_crash_panel_is_answered_and_the_rule_is_counted(crash):
    y = pd.concat(crash, names=["asset", "time"])
    forecaster = KronosForecaster(n_samples=16, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        forecaster.fit(y)
        volatility = forecaster.predict_volatility(fh=list(range(1, 11)))
    assert np.isfinite(volatility.to_numpy()).all() and (volatility["mean"] > 0).all()
    counts = forecaster.redrawn_
    assert list(counts.index) == ["y['AIG']", "y['GGP']", "y['GNW']"]
    assert (counts["redrawn"] > 0).all() and (counts["replaced"] <= counts["redrawn"]).all()
    raw = KronosForecaster(n_samples=16, random_state=0, valid_candles=False).fit(y)
    with warnings.catch_warnings(), pytest.raises(ValueError, match="positive closes; a "
                                                                    "sampled path of y\\['"):
        warnings.simplefilter("ignore")
        raw.predict_volatility(fh=list(range(1, 11)))


def test_a_series_whose_own_values_go_below_zero_is_not_conditioned():
    # Daily returns as a flat series: negative values are its nature, not a decoding fault.
    r = np.random.default_rng(0).normal(0, 0.01, 90)
    y = pd.DataFrame({"ret": r}, index=pd.bdate_range("2021-01-04", periods=90))
    forecaster = KronosForecaster(n_samples=16, random_state=0).fit(y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing redrawn, nothing to warn about
        paths = forecaster.sample(fh=[1, 2, 3, 4, 5])
    assert (paths["ret"] < 0).any() and forecaster.redrawn_.to_numpy().sum() == 0
