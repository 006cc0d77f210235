"""Forecasts of the released-format fixture checkpoints reproduce the reference outputs."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kronos_sk.checkpoints import load_predictor, load_tokenizer
from kronos_sk.data import time_features
from kronos_sk.data.validation import make_candles_valid
from kronos_sk.generation import forecast_paths
from kronos_sk.pipeline import KronosPipeline

FIXTURES = Path(__file__).parent / "fixtures" / "kronos-compat"

CASES = json.loads((FIXTURES / "cases.json").read_text())


@pytest.fixture(scope="module")
def modules(compat_dir):
    return load_tokenizer(compat_dir / "tokenizer"), load_predictor(compat_dir / "model")


def expected(case) -> pd.DataFrame:
    """The reference forecast, made valid as every sampled path is (open and close as they
    are; the reference's raw high, low and volume break the candle envelope)."""
    truth = pd.read_csv(FIXTURES / case["expected"], index_col="timestamps", parse_dates=True)
    columns = CASES["columns"]
    truth[columns] = make_candles_valid(truth[columns].to_numpy(copy=True))
    return truth


@pytest.mark.parametrize("case", CASES["cases"], ids=lambda c: c["expected"])
def test_forecast_procedure_matches_reference(case, modules, compat_candles):
    tokenizer, predictor = modules
    context = compat_candles.iloc[:case["context_rows"]]
    truth = expected(case)
    paths = forecast_paths(
        tokenizer, predictor, [context[CASES["columns"]].to_numpy()],
        [time_features(context.index)], time_features(truth.index)[None],
        n_samples=1, temperature=1.0, top_k=1, top_p=1.0, max_context=CASES["max_context"])
    np.testing.assert_allclose(paths[0, 0], truth[CASES["columns"]].to_numpy(), rtol=1e-4)


@pytest.mark.parametrize("case", CASES["cases"], ids=lambda c: c["expected"])
def test_pipeline_with_future_timestamps_matches_reference(case, compat_dir, compat_candles):
    pipe = KronosPipeline.from_pretrained(compat_dir / "model", compat_dir / "tokenizer",
                                          max_context=CASES["max_context"],
                                          precision="float32")  # exact parity: float32
    truth = expected(case)
    forecast = pipe.sample(compat_candles.iloc[:case["context_rows"]], future=truth.index,
                           top_k=1, prefill_precision="float32")
    pd.testing.assert_frame_equal(forecast.mean(), truth, check_names=False, rtol=1e-4,
                                  check_freq=False)


def test_batched_panel_matches_each_case_alone(modules, compat_candles):
    """All three cases (unequal lengths) in one left-padded batch give the same forecasts."""
    tokenizer, predictor = modules
    cases = CASES["cases"]
    contexts = [compat_candles.iloc[:c["context_rows"]] for c in cases]
    futures = [expected(c) for c in cases]
    paths = forecast_paths(
        tokenizer, predictor, [c.to_numpy() for c in contexts],
        [time_features(c.index) for c in contexts],
        np.stack([time_features(f.index) for f in futures]), top_k=1,
        max_context=CASES["max_context"])
    for i, truth in enumerate(futures):
        np.testing.assert_allclose(paths[i, 0], truth.to_numpy(), rtol=1e-4)


@pytest.mark.parametrize("case", CASES["cases"], ids=lambda c: c["expected"])
def test_raw_candles_reproduce_the_reference_through_every_face(case, compat_dir,
                                                                compat_candles):
    """valid_candles=False: the reference's raw decoding, unchanged (negative volumes,
    highs below closes), through the pipeline and the forecaster."""
    from kronos_sk import KronosForecaster
    raw = pd.read_csv(FIXTURES / case["expected"], index_col="timestamps", parse_dates=True)
    columns = CASES["columns"]
    assert not np.array_equal(make_candles_valid(raw[columns].to_numpy(copy=True)),
                              raw[columns].to_numpy())  # the raw output breaks the envelope
    context = compat_candles.iloc[:case["context_rows"]]
    pipe = KronosPipeline.from_pretrained(compat_dir / "model", compat_dir / "tokenizer",
                                          max_context=CASES["max_context"],
                                          precision="float32")
    piped = pipe.sample(context, future=raw.index, top_k=1, n_samples=1, valid_candles=False,
                        prefill_precision="float32")
    np.testing.assert_allclose(piped.paths[0, 0], raw[columns].to_numpy(), rtol=1e-4)
    forecaster = KronosForecaster(model=str(compat_dir / "model"),
                                  tokenizer=str(compat_dir / "tokenizer"),
                                  max_context=CASES["max_context"], n_samples=1, top_k=1,
                                  precision="float32", prefill_precision="float32",
                                  valid_candles=False)
    predicted = forecaster.fit(context[columns]).predict(fh=raw.index)
    np.testing.assert_allclose(predicted.to_numpy(), raw[columns].to_numpy(), rtol=1e-4)
