"""A checkpoint's own spread (``spread`` in inference.json): read once, applied by every face
to valid paths, never to the raw decoding."""

import shutil

import numpy as np
import pandas as pd
import pytest

from kronos_sk import KronosForecaster, KronosPipeline
from kronos_sk.calibration import widen_paths
from kronos_sk.checkpoints import CheckpointError, Spread, model_context, model_spread
from kronos_sk.metrics import realized_volatility

SETTINGS = dict(n_samples=16, random_state=0)


@pytest.fixture(scope="module")
def widened(compat_dir, tmp_path_factory):
    """The fixture predictor with a spread of 1.5 in its inference.json."""
    model = tmp_path_factory.mktemp("spread") / "model"
    shutil.copytree(compat_dir / "model", model)
    (model / "inference.json").write_text(
        '{"max_context": 128, "spread": 1.5, "tail": 0.3, "ramp": 0.5}')
    return model


def test_the_spread_is_read_from_inference_json_and_checked(compat_dir, widened, tmp_path):
    assert model_spread(widened) == Spread(1.5, 0.3, 0.5) and model_context(widened) == 128
    assert model_spread(compat_dir / "model") == Spread()  # released checkpoints: as sampled
    model = tmp_path / "model"
    shutil.copytree(compat_dir / "model", model)
    for text, message in (('{"spread": 0}', "spread must be a positive number, got 0"),
                          ('{"spread": "wide"}', "spread must be a positive number"),
                          ('{"tail": -0.1}', r"tail must be a number >= 0, got -0\.1"),
                          ('{"ramp": 0}', "ramp must be a positive number, got 0"),
                          ('{"spreads": 1.2}', r"unknown key\(s\) \['spreads'\]"),
                          ('[512]', "expected a JSON object, got list")):
        (model / "inference.json").write_text(text)
        with pytest.raises(CheckpointError, match=message):
            model_spread(model)
    (model / "inference.json").write_text('{"spread": 1.2, "tail": 0.5}')  # written before ramps
    assert model_spread(model) == Spread(1.2, 0.5, 1.0)


def test_widened_paths_keep_the_mean_and_the_steps_and_spread_at_the_horizon(compat_candles):
    rng = np.random.default_rng(0)
    steps = rng.normal(0, 0.01, size=(3, 200, 10))
    close = 20 * np.exp(np.cumsum(steps, axis=-1))
    paths = np.repeat(close[..., None], 6, axis=-1)
    paths[..., 4:] = 1000.0
    out = widen_paths(paths.copy(), Spread(1.5), np.array([True, True, True]))
    np.testing.assert_allclose(out[..., 3].mean(axis=1), close.mean(axis=1), rtol=1e-12)
    log_spread = np.log(out[..., -1, 3]).std(axis=1) / np.log(close[..., -1]).std(axis=1)
    np.testing.assert_allclose(log_spread, 1.5, rtol=0.02)
    # A tail widens the outer quantiles more than the inner ones.
    tailed = np.log(widen_paths(paths.copy(), Spread(1.5, 0.5), np.ones(3, bool))[..., -1, 3])
    plain = np.log(out[..., -1, 3])

    def ratio(values):
        q = np.quantile(values, [0.05, 0.25, 0.75, 0.95], axis=1)
        return (q[3] - q[0]) / (q[2] - q[1])
    assert (ratio(tailed) > 1.1 * ratio(plain)).all()
    # The square-root ramp widens from the first step on; the linear one leaves it alone.
    rooted = widen_paths(paths.copy(), Spread(1.5, 0.0, 0.5), np.ones(3, bool))
    first = [np.log(p[..., 0, 3]).std(axis=1) / np.log(close[..., 0]).std(axis=1)
             for p in (out, rooted)]
    assert (first[0] < 1.05).all() and (first[1] > 1.15).all()
    np.testing.assert_allclose(np.log(rooted[..., -1, 3]).std(axis=1)
                               / np.log(close[..., -1]).std(axis=1), 1.5, rtol=0.02)
    # Paths go further, not faster: the mean squared step (realized volatility, first step
    # included) is kept, where a drift added to every step would raise it by
    # (1.5^2 - 1) / 10 = 12.5 %.
    for widened in (out, rooted, widen_paths(paths.copy(), Spread(0.7, 0.8), np.ones(3, bool)),
                    widen_paths(paths.copy(), Spread(0.7, 0.8, 0.5), np.ones(3, bool))):
        kept = realized_volatility(widened[..., 3], 20).mean(axis=1) / realized_volatility(
            close, 20).mean(axis=1)
        np.testing.assert_allclose(kept, 1.0, atol=0.02)
    np.testing.assert_allclose(out[..., 4], 1000.0, rtol=1e-12)  # volume as sampled


def test_every_face_widens_valid_paths_by_the_checkpoints_spread(compat_dir, widened,
                                                                 compat_candles):
    tokenizer, context = compat_dir / "tokenizer", compat_candles.iloc[:100]
    plain = KronosPipeline.from_pretrained(compat_dir / "model", tokenizer, max_context=128)
    pipe = KronosPipeline.from_pretrained(widened, tokenizer)
    assert pipe.spread == Spread(1.5, 0.3, 0.5)
    sampled = plain.sample(context, horizon=8, **SETTINGS).paths
    paths = pipe.sample(context, horizon=8, **SETTINGS).paths
    np.testing.assert_allclose(paths, widen_paths(sampled.copy(), Spread(1.5, 0.3, 0.5),
                                                  np.array([True])),
                               rtol=1e-6)
    raw = pipe.sample(context, horizon=8, valid_candles=False, **SETTINGS).paths
    np.testing.assert_array_equal(raw, plain.sample(context, horizon=8, valid_candles=False,
                                                    **SETTINGS).paths)
    future = pd.date_range(context.index[-1], periods=9, freq="5min")[1:]
    forecaster = KronosForecaster(model=widened, tokenizer=tokenizer, **SETTINGS).fit(context)
    np.testing.assert_allclose(forecaster.sample(fh=future).to_numpy().reshape(16, 8, 6),
                               pipe.sample(context, future=future, **SETTINGS).paths[0],
                               rtol=1e-6)
