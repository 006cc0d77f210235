"""Grids built with numpy give numpy scalars; panels' messages name the asset key; futures
come in the shape of the candles."""

import numpy as np
import pandas as pd
import pytest

from kronos_sk import KLineTokenizer, KronosForecaster, KronosPipeline

FIXTURES = "tests/fixtures/kronos-compat"
MODEL, TOKENIZER = f"{FIXTURES}/model", f"{FIXTURES}/tokenizer"


@pytest.fixture(scope="module")
def pipe(compat_dir) -> KronosPipeline:
    return KronosPipeline.from_pretrained(compat_dir / "model", compat_dir / "tokenizer",
                                          max_context=128)


def test_numpy_scalars_are_accepted_wherever_python_ones_are(compat_dir, compat_candles, pipe):
    context = compat_candles.iloc[:64]
    numpy = KronosForecaster(model=str(compat_dir / "model"),
                             tokenizer=str(compat_dir / "tokenizer"), max_context=np.int64(128),
                             n_samples=np.int64(4), temperature=np.float32(0.7),
                             top_p=np.float32(0.9), top_k=np.int64(0),
                             random_state=np.int64(0), valid_candles=np.bool_(True),
                             calibration_rate=np.float64(0.1))
    python = KronosForecaster(model=str(compat_dir / "model"),
                              tokenizer=str(compat_dir / "tokenizer"), max_context=128,
                              n_samples=4, temperature=float(np.float32(0.7)),
                              top_p=float(np.float32(0.9)), random_state=0)
    pd.testing.assert_frame_equal(numpy.fit(context).predict(fh=[1, 2]),
                                  python.fit(context).predict(fh=[1, 2]))
    paths = pipe.sample(context, np.int64(3), n_samples=np.int64(2), temperature=np.float32(0.8),
                        top_p=np.float64(0.9), random_state=np.int64(1)).paths
    assert paths.shape == (1, 2, 3, 6)
    tokenizer = KLineTokenizer(tokenizer=str(compat_dir / "tokenizer"), window=np.int64(32),
                               clip=np.float32(5.0)).fit(context)
    assert tokenizer.transform(context).shape == (64, 2)
    with pytest.raises(ValueError, match="top_p must be in \\(0, 1\\], got np.float32\\(1.5\\)"):
        pipe.sample(context, 2, top_p=np.float32(1.5))
    with pytest.raises(ValueError, match="n_samples must be a positive integer, got "
                                         "np.True_"):
        pipe.sample(context, 2, n_samples=np.bool_(True))


def test_a_too_short_asset_is_named_by_its_key(compat_dir, compat_candles, pipe):
    panel = pd.concat({"AAA": compat_candles.iloc[:64], "BBB": compat_candles.iloc[64:65]},
                      names=["asset", "timestamp"])
    forecaster = KronosForecaster(model=str(compat_dir / "model"),
                                  tokenizer=str(compat_dir / "tokenizer"), max_context=128)
    with pytest.raises(ValueError, match=r"y\[.BBB.\]: a context of 1 row"):
        forecaster.fit(panel).predict(fh=[1])
    with pytest.raises(ValueError, match=r"candles\['BBB'\]: has 1 rows"):
        pipe.sample({"AAA": compat_candles.iloc[:64], "BBB": compat_candles.iloc[64:65]}, 2)


def test_futures_come_in_the_shape_of_the_candles(compat_candles, pipe):
    candles = {"A": compat_candles.iloc[:64], "B": compat_candles.iloc[70:90]}
    future = {"B": compat_candles.index[90:92], "A": compat_candles.index[64:66]}
    by_dict = pipe.sample(candles, future=future, random_state=0)
    assert [list(i) for i in by_dict.index] == [list(future["A"]), list(future["B"])]
    by_list = pipe.sample(candles, future=[future["A"], future["B"]], random_state=0)
    np.testing.assert_array_equal(by_dict.paths, by_list.paths)
    panel = pd.concat(candles, names=["asset", "timestamp"])
    np.testing.assert_array_equal(pipe.sample(panel, future=future, random_state=0).paths,
                                  by_dict.paths)
    with pytest.raises(ValueError, match=r"one index per asset; missing \['B'\], unknown "
                                         r"\['C'\]"):
        pipe.sample(candles, future={"A": future["A"], "C": future["B"]})
