"""Pickles: loaded checkpoints travel as a reference (path + sha256), trained weights inline."""

import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from kronos_sk.checkpoints import CheckpointError
from kronos_sk.estimators import KLineTokenizer, KronosForecaster
from kronos_sk.estimators._weights import CheckpointReference, cached_predictor

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "kronos-compat"


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "candles.csv", index_col=0, parse_dates=True)


@pytest.fixture
def checkpoint(tmp_path) -> tuple[Path, Path]:
    """A private copy of the fixture model, free to rewrite."""
    for name in ("model", "tokenizer"):
        shutil.copytree(FIXTURES / name, tmp_path / name)
    return tmp_path / "model", tmp_path / "tokenizer"


def forecaster(model, tokenizer, **params) -> KronosForecaster:
    return KronosForecaster(model=str(model), tokenizer=str(tokenizer), max_context=128,
                            n_samples=3, random_state=0, device="cpu", **params)


def weight_bytes(directory: Path) -> int:
    return (directory / "model.safetensors").stat().st_size


def perturb(directory: Path) -> None:
    weights = load_file(directory / "model.safetensors")
    save_file({k: v + 1e-3 if v.is_floating_point() else v for k, v in weights.items()},
              directory / "model.safetensors")


def test_loaded_weights_pickle_as_a_reference_and_reload_through_the_cache(candles,
                                                                           checkpoint):
    fitted = forecaster(*checkpoint).fit(candles.iloc[:64])
    fh = candles.index[64:68]
    expected = fitted.predict(fh)
    blob = pickle.dumps(fitted)
    assert len(blob) < weight_bytes(checkpoint[0]) / 2  # the predictor is not inside
    state = fitted.__getstate__()
    assert isinstance(state["predictor_"], CheckpointReference)
    assert state["predictor_"].path == str(checkpoint[0].resolve())
    assert len(state["predictor_"].sha256) == 64
    restored = pickle.loads(blob)
    assert restored.predictor_ is fitted.predictor_  # the cached module, not a copy
    assert restored.predictor_ is cached_predictor(checkpoint[0], "cpu")
    pd.testing.assert_frame_equal(restored.predict(fh), expected)


def test_a_fresh_process_reloads_the_referenced_files(candles, checkpoint, tmp_path):
    fitted = forecaster(*checkpoint).fit(candles.iloc[:64])
    fh = candles.index[64:68]
    (tmp_path / "f.pkl").write_bytes(pickle.dumps(fitted))
    code = ("import pickle, sys, pandas as pd; f = pickle.load(open(sys.argv[1], 'rb')); "
            "f.predict(fh=pd.DatetimeIndex(sys.argv[2:])).to_pickle(sys.argv[1] + '.out')")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "f.pkl"),
                    *map(str, fh)], check=True, cwd=ROOT, timeout=300,
                   env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                        "PATH": "/usr/bin:/bin"})
    pd.testing.assert_frame_equal(pd.read_pickle(tmp_path / "f.pkl.out"), fitted.predict(fh))


def test_a_changed_or_missing_checkpoint_is_a_clear_error(candles, checkpoint):
    blob = pickle.dumps(forecaster(*checkpoint).fit(candles.iloc[:64]))
    perturb(checkpoint[0])
    with pytest.raises(CheckpointError, match=r"predictor checkpoint .*model' changed since "
                                              r"this estimator was pickled \(sha256 "):
        pickle.loads(blob)
    shutil.rmtree(checkpoint[0])
    with pytest.raises(CheckpointError, match="which no longer exists"):
        pickle.loads(blob)


def test_weights_whose_file_changed_after_loading_travel_in_the_pickle(candles, checkpoint):
    fitted = forecaster(*checkpoint).fit(candles.iloc[:64])
    fh = candles.index[64:68]
    expected = fitted.predict(fh)
    perturb(checkpoint[0])  # the file no longer holds the weights in use
    blob = pickle.dumps(fitted)
    assert len(blob) > weight_bytes(checkpoint[0])
    pd.testing.assert_frame_equal(pickle.loads(blob).predict(fh), expected)


def test_trained_weights_travel_in_the_pickle(candles, checkpoint):
    tuned = forecaster(*checkpoint, fit_strategy="fine-tune", max_steps=2, batch_size=2,
                       lookback=16, horizon=4).fit(candles.iloc[:100])
    fh = candles.index[100:103]
    expected = tuned.predict(fh)
    state = tuned.__getstate__()
    assert isinstance(state["tokenizer_"], CheckpointReference)  # not trained: a reference
    assert isinstance(state["predictor_"], torch.nn.Module)  # trained: the weights
    blob = pickle.dumps(tuned)
    assert len(blob) > weight_bytes(checkpoint[0])
    restored = pickle.loads(blob)
    assert restored.predictor_ is not tuned.predictor_
    pd.testing.assert_frame_equal(restored.predict(fh), expected)


def test_the_tokenizer_estimator_pickles_a_reference_too(candles, checkpoint):
    fitted = KLineTokenizer(checkpoint[1], device="cpu").fit(candles)
    state = fitted.__getstate__()
    assert isinstance(state["tokenizer_"], CheckpointReference)
    restored = pickle.loads(pickle.dumps(fitted))
    assert restored.tokenizer_ is fitted.tokenizer_
    np.testing.assert_array_equal(restored.transform(candles), fitted.transform(candles))
    blob = pickle.dumps(fitted)
    perturb(checkpoint[1])
    with pytest.raises(CheckpointError, match="tokenizer checkpoint .* changed since"):
        pickle.loads(blob)
