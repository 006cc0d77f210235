"""Estimators train in memory, on exactly the device they are given."""

import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from kronos_sk.estimators import KLineTokenizer, KronosForecaster

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kronos-compat"


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "candles.csv", index_col=0, parse_dates=True)


def fine_tune(**params) -> KronosForecaster:
    defaults = dict(model=str(FIXTURES / "model"), tokenizer=str(FIXTURES / "tokenizer"),
                    max_context=128, fit_strategy="fine-tune", finetune_tokenizer=True,
                    max_steps=2, batch_size=2, lookback=16, horizon=4, n_samples=2,
                    random_state=0)
    return KronosForecaster(**{**defaults, **params})


WRITES: list = []
_WATCHING = []


def _audit(event, args):
    # Directories made and files opened for writing while a test watches.
    if _WATCHING and (event == "os.mkdir" or (event == "open" and isinstance(args[1], str)
                                              and any(c in args[1] for c in "wax+"))):
        WRITES.append((event, str(args[0])))


sys.addaudithook(_audit)


def test_training_writes_nothing_to_disk(candles):
    # Warm caches first, so the watched fits have nothing of their own to load or create.
    fine_tune().fit(candles.iloc[:120])
    WRITES.clear()
    _WATCHING.append(True)
    try:
        forecaster = fine_tune().fit(candles.iloc[:120])
        tokenizer = KLineTokenizer(FIXTURES / "tokenizer", fit_strategy="fine-tune", window=16,
                                   max_steps=2, batch_size=2, random_state=0).fit(candles)
    finally:
        _WATCHING.clear()
    assert len(forecaster.loss_curve_) == 4 and len(tokenizer.loss_curve_) == 2
    assert WRITES == []


def test_auto_trains_and_forecasts_on_the_device_it_picks(candles):
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    forecaster = fine_tune(device="auto").fit(candles.iloc[:120])
    for module in (forecaster.tokenizer_, forecaster.predictor_):
        assert next(module.parameters()).device.type == expected
        assert not module.training


@pytest.mark.parametrize("device", ["cuda:1", "mps"])
def test_an_explicit_device_is_used_exactly_or_named(candles, device):
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("MPS is present: nothing to refuse")
    if device == "cuda:1" and torch.cuda.device_count() >= 2:
        forecaster = fine_tune(device=device).fit(candles.iloc[:120])
        assert next(forecaster.predictor_.parameters()).device == torch.device("cuda", 1)
        return
    with pytest.raises(ValueError, match=f"device='{device}' requested but"):
        fine_tune(device=device).fit(candles.iloc[:120])
    with pytest.raises(ValueError, match=f"device='{device}' requested but"):
        KLineTokenizer(FIXTURES / "tokenizer", fit_strategy="fine-tune", window=16,
                       max_steps=1, batch_size=2, device=device).fit(candles)
