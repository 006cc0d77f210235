"""The bundled default model: small, loadable offline, and used when no model is given."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from kronos_sk.checkpoints import (DEFAULT_MODEL_DIR, load_predictor, load_tokenizer,
                                   model_context, model_spread)
from kronos_sk import KronosPipeline
from kronos_sk.estimators import KLineTokenizer, KronosForecaster

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def test_weights_are_small_and_load_in_the_released_layout():
    files = [DEFAULT_MODEL_DIR / kind / name for kind in ("tokenizer", "predictor")
             for name in ("config.json", "model.safetensors")]
    assert sum(f.stat().st_size for f in files) <= 25 * 2**20
    tokenizer, predictor = load_tokenizer(files[0].parent), load_predictor(files[2].parent)
    assert tokenizer.config.s1_bits == predictor.config.s1_bits
    assert model_context(DEFAULT_MODEL_DIR / "predictor") >= 64


def test_model_card_is_shipped_and_matches_the_docs():
    card = (DEFAULT_MODEL_DIR / "MODEL_CARD.md").read_text()
    assert card == (ROOT / "docs" / "model-card.md").read_text()
    assert "RankIC" in card


def test_forecaster_without_a_model_uses_the_bundled_one():
    path = SHARED_DATA / "cn_index_daily_2011_2017.parquet"
    if not path.is_file():
        pytest.skip(f"real data {path} not available")
    frame = pd.read_parquet(path)
    y = frame[frame["asset"] == frame["asset"].iloc[0]].set_index("timestamp")
    y = y[["open", "high", "low", "close", "volume", "amount"]].iloc[-200:]
    future = pd.bdate_range(y.index[-1], periods=6)[1:]
    forecaster = KronosForecaster(n_samples=16, top_p=0.9, random_state=0).fit(y)
    quantiles = forecaster.predict_quantiles(fh=future, alpha=[0.05, 0.95])
    close = y["close"].iloc[-1]
    low, high = quantiles[("close", 0.05)], quantiles[("close", 0.95)]
    assert (low < high).all()
    # A sensible model keeps a 5-day daily forecast within 30% of the last close.
    assert (np.abs(forecaster.predict(fh=future)["close"] / close - 1) < 0.3).all()


def test_tokenizer_without_a_checkpoint_uses_the_bundled_one():
    candles = pd.read_csv(ROOT / "tests" / "fixtures" / "kronos-compat" / "candles.csv",
                          index_col=0)
    tokenizer = KLineTokenizer().fit(candles)
    ids = tokenizer.transform(candles)
    assert ids.shape == (len(candles), 2)
    # The trained tokenizer reconstructs real candles far better than noise would.
    assert tokenizer.score(candles) > -0.5


def test_the_bundled_models_candles_are_shaped_like_the_contexts():
    """Real 5-minute candles: the paths' open gaps are distributed as the context's and
    lean against the intraday move as its do (the decoded ones do neither), the wicks, here
    shorter than the context's, are left as sampled, and the closes are as drawn."""
    candles = pd.read_csv(ROOT / "tests" / "fixtures" / "kronos-compat" / "candles.csv",
                          index_col=0, parse_dates=True).iloc[:300]
    assert model_spread(DEFAULT_MODEL_DIR / "predictor").candles
    future = pd.date_range(candles.index[-1], periods=11, freq="5min")[1:]
    forecaster = KronosForecaster(n_samples=100, random_state=0).fit(candles)
    paths = forecaster.sample(fh=future).to_numpy().reshape(100, 10, 6)
    pipe = KronosPipeline.from_pretrained(DEFAULT_MODEL_DIR / "predictor",
                                          DEFAULT_MODEL_DIR / "tokenizer")
    pipe.spread = replace(pipe.spread, candles=False)
    drawn = pipe.sample(candles, future=future, n_samples=100, random_state=0).paths[0]
    np.testing.assert_array_equal(paths[..., 3:], drawn[..., 3:])

    def parts(frame, previous_close):
        """Open gaps, intraday moves, wick over close move (medians, both sides pooled)
        and the share of bars without an upper wick, in log prices."""
        o, h, l, c = np.moveaxis(np.log(frame[..., :4]), -1, 0)
        gap, upper = o - np.log(previous_close), h - np.maximum(o, c)
        wicks = np.concatenate([upper.ravel(), (np.minimum(o, c) - l).ravel()])
        return (gap.ravel(), (c - o).ravel(),
                np.median(wicks) / np.median(np.abs(c - np.log(previous_close))),
                np.mean(upper < 1e-9))

    def leaning(gap, intraday):
        return pd.Series(gap).corr(pd.Series(intraday), method="spearman")

    context = candles.to_numpy()
    wanted = parts(context[1:], context[:-1, 3])
    before = np.concatenate([np.full((100, 1), context[-1, 3]), paths[:, :-1, 3]], axis=1)
    got, sampled = parts(paths, before), parts(drawn, before)
    # Decoded gaps are about six times this market's and lean with the intraday move,
    # where the market's lean against it; shaped, they are the market's.
    assert ks_2samp(sampled[0], wanted[0]).statistic > 0.3
    assert leaning(*sampled[:2]) > 0.1 and leaning(*wanted[:2]) < -0.1
    assert ks_2samp(got[0], wanted[0]).statistic < 0.08
    assert leaning(*got[:2]) == pytest.approx(leaning(*wanted[:2]), abs=0.08)
    # The wicks are shorter than the context's: each path keeps its own (the mean path's
    # candle moves are drawn in afterwards, every path's wicks scaled alike per step), and
    # its bars without a wick.
    assert sampled[2] < 0.5 * wanted[2]
    assert got[2] == pytest.approx(sampled[2], rel=0.05)
    assert got[3] == pytest.approx(sampled[3], abs=1e-9)
