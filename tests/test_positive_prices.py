"""The positive-price rule on real crash contexts: no sampled price <= 0 through any face.

The rule matters for checkpoints that normalise prices in price space, as every released
one does; the bundled model reads log prices (its prices are positive by construction), so
these tests use it with its tokenizer set back to the released price space: a price-space
pair of this size, whose crash contexts decode below zero as the released ones do.
"""

import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

from kronos_sk import KronosForecaster, KronosPipeline
from kronos_sk.checkpoints import default_checkpoint
from kronos_sk.data.validation import make_candles_valid

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
def price_space(tmp_path_factory) -> dict[str, str]:
    """The bundled pair, its tokenizer reading candles in price space (no value_transform)."""
    root = tmp_path_factory.mktemp("price-space")
    for kind in ("tokenizer", "predictor"):
        shutil.copytree(default_checkpoint(kind), root / kind)
    config = json.loads((root / "tokenizer" / "config.json").read_text())
    config.pop("value_transform", None)
    (root / "tokenizer" / "config.json").write_text(json.dumps(config))
    (root / "predictor" / "inference.json").write_text('{"max_context": 512}')  # no spread
    return {"model": str(root / "predictor"), "tokenizer": str(root / "tokenizer")}


@pytest.fixture(scope="module")
def pipe(price_space) -> KronosPipeline:
    return KronosPipeline.from_pretrained(price_space["model"], price_space["tokenizer"])


def test_sampled_prices_stay_positive_by_redrawing_the_rejected_paths(crash, pipe):
    settings = dict(horizon=10, n_samples=16, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = pipe.sample(crash, valid_candles=False, **settings)
    rejected = (raw.paths[..., :4] <= 0).any(axis=(2, 3))  # (3, 16)
    assert rejected.sum(axis=1).min() > 0  # each context decodes below zero as released
    with pytest.warns(UserWarning, match=r"series 'GGP': \d+ of 16 sampled paths had a price "
                                         r"<= 0 and were drawn again"), \
            pytest.warns(UserWarning, match=r"series 'GNW': no sampled path kept positive "
                                            r"prices after 8 redraws"):
        valid = pipe.sample(crash, **settings)
    order = list(crash)  # AIG, GGP, GNW
    assert (valid.paths[[order.index("AIG"), order.index("GGP")], ..., :4] > 0).all()
    np.testing.assert_array_equal(valid.redrawn[:, 0], rejected.sum(axis=1))
    # Paths accepted at their first draw are exactly the valid form of the raw ones.
    kept = ~rejected
    np.testing.assert_array_equal(valid.paths[kept], make_candles_valid(raw.paths[kept].copy()))
    # A path replaced after the last redraw is a copy of an accepted path of its series.
    g = order.index("GGP")
    assert valid.redrawn[g, 1] > 0
    distinct = {path.tobytes() for path in valid.paths[g]}
    assert len(distinct) <= 16 - valid.redrawn[g, 1]


def test_volatility_of_a_crash_panel_is_answered_and_the_rule_is_counted(crash, price_space):
    y = pd.concat({k: crash[k] for k in ("AIG", "GGP")}, names=["asset", "time"])
    forecaster = KronosForecaster(n_samples=16, random_state=0, **price_space)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        forecaster.fit(y)
        volatility = forecaster.predict_volatility(fh=list(range(1, 11)))
    assert np.isfinite(volatility.to_numpy()).all() and (volatility["mean"] > 0).all()
    counts = forecaster.redrawn_
    assert list(counts.index) == ["y['AIG']", "y['GGP']"]
    assert (counts["redrawn"] > 0).all() and (counts["replaced"] <= counts["redrawn"]).all()
    raw = KronosForecaster(n_samples=16, random_state=0, valid_candles=False,
                           **price_space).fit(y)
    with warnings.catch_warnings(), pytest.raises(ValueError, match="positive closes; a "
                                                                    "sampled path of y\\['"):
        warnings.simplefilter("ignore")
        raw.predict_volatility(fh=list(range(1, 11)))


def test_a_series_whose_own_values_go_below_zero_is_not_conditioned(price_space):
    # Daily returns as a flat series: negative values are its nature, not a decoding fault.
    r = np.random.default_rng(0).normal(0, 0.01, 90)
    y = pd.DataFrame({"ret": r}, index=pd.bdate_range("2021-01-04", periods=90))
    forecaster = KronosForecaster(n_samples=16, random_state=0, **price_space).fit(y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing redrawn, nothing to warn about
        paths = forecaster.sample(fh=[1, 2, 3, 4, 5])
    assert (paths["ret"] < 0).any() and forecaster.redrawn_.to_numpy().sum() == 0
