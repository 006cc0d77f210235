"""Checkpoints that read log prices (`value_transform = "log"` in the tokenizer's config.json):
the config round-trips, released configs are untouched, and every face forecasts with it."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from kronos_sk import KLineTokenizer, KronosForecaster, KronosPipeline
from kronos_sk.checkpoints import load_tokenizer
from kronos_sk.cli import main
from kronos_sk.data import SeriesWindows, time_features
from kronos_sk.data.normalize import Normalizer, from_model_space, to_model_space
from kronos_sk.nn.config import TokenizerConfig
from kronos_sk.training.config import TrainConfig

PRICES = ["open", "high", "low", "close"]


@pytest.fixture(scope="module")
def log_checkpoint(compat_dir, tmp_path_factory):
    """The fixture pair, its tokenizer declared to read log prices."""
    root = tmp_path_factory.mktemp("log-model")
    shutil.copytree(compat_dir / "tokenizer", root / "tokenizer")
    shutil.copytree(compat_dir / "model", root / "model")
    config = json.loads((root / "tokenizer" / "config.json").read_text())
    (root / "tokenizer" / "config.json").write_text(json.dumps(dict(config,
                                                                    value_transform="log")))
    return root


@pytest.fixture(scope="module")
def crash(compat_candles) -> pd.DataFrame:
    """The fixture's real candles, their prices falling to 3 % of where they start."""
    frame = compat_candles.iloc[:120].copy()
    fall = np.geomspace(1.0, 0.03, len(frame))[:, None]
    frame[PRICES] = frame[PRICES].to_numpy() * fall
    return frame


def test_released_configs_keep_their_keys_and_a_log_config_round_trips(compat_dir, tmp_path):
    released = json.loads((compat_dir / "tokenizer" / "config.json").read_text())
    assert TokenizerConfig.from_dict(released).to_dict() == released  # no new key written
    log = TokenizerConfig.from_dict(dict(released, value_transform="log"))
    assert log.to_dict() == dict(released, value_transform="log")
    with pytest.raises(ValueError, match=r"key 'value_transform' must be one of \['none', "
                                         r"'log'\], got 'ln'"):
        TokenizerConfig.from_dict(dict(released, value_transform="ln"))


def test_the_log_space_normalises_log_prices_and_inverts_exactly(compat_candles):
    values = compat_candles.to_numpy(np.float32)
    normalizer = Normalizer.fit([values[:100]], value_transform="log")
    expected = np.log(values[:100, :4].astype(np.float64))
    np.testing.assert_allclose(normalizer.mean[0, :4], expected.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(normalizer.mean[0, 4:],
                               np.log1p(values[:100, 4:].astype(np.float64)).mean(axis=0),
                               rtol=1e-6)
    wide = Normalizer(normalizer.mean, normalizer.std, 50.0, "log")  # a spike clips at 5
    restored = wide.inverse_transform(wide.transform(values[None, :120]))
    np.testing.assert_allclose(restored[0], values[:120], rtol=2e-5)
    np.testing.assert_allclose(from_model_space(to_model_space(values, "log"), "log"), values,
                               rtol=2e-6)
    # "none" is the reference's normalisation, unchanged.
    plain = Normalizer.fit([values[:100]])
    np.testing.assert_array_equal(plain.mean[0], values[:100].mean(axis=0))


def test_training_windows_are_cut_in_the_tokenizers_value_space(compat_candles):
    values = compat_candles.to_numpy(np.float64)
    series = [(values, time_features(compat_candles.index))]
    batch = SeriesWindows(series, 64, 16, 4, min_context=32, seed=3,
                          value_transform="log").batch(0)
    plain = SeriesWindows(series, 64, 16, 4, min_context=32, seed=3).batch(0)
    np.testing.assert_array_equal(batch["context"], plain["context"])  # the same windows
    for window, context, length, mean, std in zip(batch["values"], batch["context"],
                                                  batch["length"], batch["mean"], batch["std"]):
        # Undo the normalisation in log space: the window's rows of the real candles.
        logs = window[:length].astype(np.float64) * (std + 1e-5) + mean
        start = int(np.abs(values[:, 3] - np.exp(logs[0, 3])).argmin())
        rows = values[start:start + length]
        unclipped = np.abs(window[:length, :4]) < 5
        np.testing.assert_allclose(np.exp(logs[:, :4])[unclipped], rows[:, :4][unclipped],
                                   rtol=1e-4)
        np.testing.assert_allclose(mean[:4], np.log(rows[:context, :4]).mean(axis=0),
                                   rtol=1e-5)
        np.testing.assert_allclose(mean[4:], np.log1p(rows[:context, 4:]).mean(axis=0),
                                   rtol=1e-5)


def test_every_face_forecasts_positive_prices_with_a_log_checkpoint(log_checkpoint, crash,
                                                                    tmp_path):
    model, tokenizer = str(log_checkpoint / "model"), str(log_checkpoint / "tokenizer")
    assert load_tokenizer(tokenizer).config.value_transform == "log"
    settings = dict(n_samples=8, random_state=0, valid_candles=False)
    future = pd.date_range(crash.index[-1], periods=13, freq="5min")[1:]
    paths = KronosPipeline.from_pretrained(model, tokenizer).sample(crash, future=future,
                                                                    **settings)
    assert (paths.paths[..., :4] > 0).all()  # positive by construction, raw decoding too
    assert paths.redrawn.sum() == 0
    forecaster = KronosForecaster(model=model, tokenizer=tokenizer, **settings).fit(crash)
    sampled = forecaster.sample(fh=future).to_numpy().reshape(8, 12, 6)
    np.testing.assert_array_equal(sampled, paths.paths[0])
    csv, out = tmp_path / "candles.csv", tmp_path / "paths.parquet"
    crash.rename_axis("timestamp").to_csv(csv)
    assert main(["sample", "--input", str(csv), "--horizon", "12", "--out", str(out),
                 "--model", model, "--tokenizer", tokenizer, "--samples", "8", "--seed", "0",
                 "--freq", "5min", "--raw-candles"]) in (0, None)
    cli = pd.read_parquet(out)[["open", "high", "low", "close", "volume", "amount"]]
    np.testing.assert_array_equal(cli.to_numpy().reshape(8, 12, 6), paths.paths[0])


def test_a_log_checkpoint_names_a_value_it_cannot_read(log_checkpoint, crash):
    model, tokenizer = log_checkpoint / "model", log_checkpoint / "tokenizer"
    bad = crash.copy()
    bad.iloc[40, bad.columns.get_loc("low")] = 0.0
    with pytest.raises(ValueError, match=r"candles\['XYZ'\]: column 'low' at row 40 .* is 0\.0, "
                                         r"but prices must be positive"):
        KronosPipeline.from_pretrained(model, tokenizer).sample({"XYZ": bad}, horizon=4)
    # A series of values (a spread) may go below zero; a log-price model cannot read it.
    spread = pd.Series(np.sin(np.arange(100) / 5), name="spread",
                       index=pd.date_range("2024-01-01", periods=100, freq="D"))
    forecaster = KronosForecaster(model=model, tokenizer=tokenizer, n_samples=2).fit(spread)
    with pytest.raises(ValueError, match=r"y\['spread'\]: row 2024-01-01 00:00:00 of the context "
                                         r"has close = 0\.0; this model reads log prices"):
        forecaster.predict(fh=[1, 2])


def test_kline_tokenizer_reads_the_value_space_from_its_checkpoint(log_checkpoint, crash):
    tokenizer = KLineTokenizer(tokenizer=log_checkpoint / "tokenizer").fit(crash)
    assert tokenizer.value_transform_ == "log"
    np.testing.assert_allclose(tokenizer.mean_[:4], np.log(crash[PRICES].to_numpy()).mean(0),
                               rtol=1e-5)
    decoded = tokenizer.inverse_transform(tokenizer.transform(crash))
    assert (decoded[:, :4] > 0).all()
    bad = crash.copy()
    bad.iloc[7, bad.columns.get_loc("close")] = -1.0
    with pytest.raises(ValueError, match=r"X: column 'close' at row 7 .* is -1\.0, but prices "
                                         r"must be positive"):
        tokenizer.transform(bad)
    with pytest.raises(ValueError, match=r"value_transform='log' reads candle columns"):
        KLineTokenizer(fit_strategy="from-scratch",
                       config={"value_transform": "log"}).fit(np.ones((50, 3)))


def test_training_may_move_a_checkpoint_into_the_log_space_and_nothing_else():
    TrainConfig(task="tokenizer", init_checkpoint="x", model={"value_transform": "log"})
    with pytest.raises(ValueError, match="with init_checkpoint \\[model\\] may only set "
                                         "\\['value_transform'\\]"):
        TrainConfig(task="tokenizer", init_checkpoint="x", model={"d_model": 64})
    with pytest.raises(ValueError, match="may only set nothing"):
        TrainConfig(task="predictor", init_checkpoint="x", tokenizer_checkpoint="t",
                    model={"value_transform": "log"})
