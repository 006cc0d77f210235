"""The bundled default model: small, loadable offline, and used when no model is given."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kronos_sk.checkpoints import DEFAULT_MODEL_DIR, load_predictor, load_tokenizer, model_context
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
