import copy
import os
import pickle
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from kronos_sk import checkpoints
from kronos_sk.estimators import _weights
from kronos_sk.estimators.tokenizer import KLineTokenizer
from kronos_sk.nn.tokenizer import KronosTokenizer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kronos-compat"

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TOKENIZER_DIR = FIXTURES / "tokenizer"
COLUMNS = ["open", "high", "low", "close", "volume", "amount"]
TINY = {"d_model": 8, "n_heads": 2, "ff_dim": 16}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    """The fixture's first 64 candles, the rows `intermediates.npz` was computed on."""
    return pd.read_csv(FIXTURES / "candles.csv", index_col="timestamps",
                       parse_dates=True).iloc[:64]


@pytest.fixture(scope="module")
def pretrained(candles) -> KLineTokenizer:
    return KLineTokenizer(TOKENIZER_DIR).fit(candles)


def tiny(**params) -> KLineTokenizer:
    """A from-scratch tokenizer that trains in a fraction of a second."""
    defaults = dict(fit_strategy="from-scratch", config=TINY, window=8, max_steps=2,
                    batch_size=2, random_state=0)
    return KLineTokenizer(**{**defaults, **params})


# ------------------------------------------------------------------ scikit-learn contract
ORDER_REASON = ("the tokenizer is causal over time-ordered rows: a row's ids depend on the rows "
                "before it, so they change when rows are {}")


def expected_failed_checks(estimator) -> dict[str, str]:
    return {
        "check_methods_sample_order_invariance": ORDER_REASON.format("shuffled"),
        "check_methods_subset_invariance": ORDER_REASON.format("split into subsets"),
    }


@parametrize_with_checks([tiny()], expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


# ----------------------------------------------------------------------- reference parity
def test_pretrained_transform_matches_reference_ids(pretrained, candles):
    reference = np.load(FIXTURES / "intermediates.npz")
    ids = pretrained.transform(candles)
    assert ids.shape == (64, 2) and ids.dtype == np.int64
    np.testing.assert_array_equal(ids[:, 0], reference["s1_ids"][0])
    np.testing.assert_array_equal(ids[:, 1], reference["s2_ids"][0])


def test_pretrained_inverse_transform_matches_reference_decoding(pretrained, candles):
    reference = np.load(FIXTURES / "intermediates.npz")
    features = candles[COLUMNS].to_numpy(np.float32)
    mean, std = features.mean(axis=0), features.std(axis=0)
    # float32 sums: one ulp apart depending on the summation order numpy picks
    np.testing.assert_allclose(pretrained.mean_, mean, rtol=1e-6)
    np.testing.assert_allclose(pretrained.std_, std, rtol=1e-6)
    expected = reference["decoded"][0] * (std + 1e-5) + mean
    decoded = pretrained.inverse_transform(pretrained.transform(candles))
    assert decoded.shape == (64, 6) and decoded.dtype == np.float64
    np.testing.assert_allclose(decoded, expected, rtol=1e-4)


def test_pretrained_uses_the_shared_cached_module(candles):
    tokenizer = KLineTokenizer(TOKENIZER_DIR).fit(candles)
    assert tokenizer.tokenizer_ is _weights.cached_tokenizer(TOKENIZER_DIR)
    assert tokenizer.candle_columns_ == COLUMNS
    assert tokenizer.n_iter_ == 0 and tokenizer.loss_curve_ == []


# ------------------------------------------------------------------------- input handling
def test_columns_are_matched_by_name_alias_and_position(pretrained, candles):
    expected = pretrained.transform(candles)
    renamed = candles.rename(columns={"open": "Open", "close": "c", "volume": "Vol"})
    shuffled = renamed[["c", "amount", "Vol", "low", "high", "Open"]].assign(symbol="X")
    fitted = KLineTokenizer(TOKENIZER_DIR).fit(shuffled)
    np.testing.assert_array_equal(fitted.transform(shuffled), expected)
    assert list(fitted.feature_names_in_) == ["c", "amount", "Vol", "low", "high", "Open"]
    assert fitted.inverse_transform(expected).shape == (64, 6)
    array = KLineTokenizer(TOKENIZER_DIR).fit(candles[COLUMNS].to_numpy())
    np.testing.assert_array_equal(array.transform(candles[COLUMNS].to_numpy()), expected)
    assert not hasattr(array, "feature_names_in_")


def test_missing_volume_and_amount_follow_the_reference_rules(candles):
    prices = candles[COLUMNS[:4]]
    zeros = candles.assign(volume=0.0, amount=0.0)
    four = KLineTokenizer(TOKENIZER_DIR).fit(prices)
    np.testing.assert_array_equal(
        four.transform(prices), KLineTokenizer(TOKENIZER_DIR).fit(zeros).transform(zeros))
    assert four.n_features_in_ == 4
    assert four.inverse_transform(four.transform(prices)).shape == (64, 4)
    no_amount = candles[COLUMNS[:5]]
    derived = candles.assign(amount=candles["volume"] * candles[COLUMNS[:4]].mean(axis=1))
    np.testing.assert_array_equal(
        KLineTokenizer(TOKENIZER_DIR).fit(no_amount).transform(no_amount),
        KLineTokenizer(TOKENIZER_DIR).fit(derived).transform(derived))


def test_from_scratch_reads_unnamed_tables_as_they_are(candles):
    X = candles[COLUMNS].to_numpy()[:, [3, 4]]
    tokenizer = tiny().fit(X)
    assert tokenizer.candle_columns_ is None and tokenizer.tokenizer_.config.d_in == 2
    assert tokenizer.mean_.shape == (2,)
    assert tokenizer.inverse_transform(tokenizer.transform(X)).shape == (64, 2)
    named = tiny().fit(candles[COLUMNS[:5]])
    assert named.candle_columns_ == COLUMNS[:5] and named.tokenizer_.config.d_in == 6


def test_ids_of_a_prefix_are_the_prefix_of_the_ids(pretrained, candles):
    # Causal encoder and fitted statistics: earlier rows never see later ones.
    np.testing.assert_array_equal(pretrained.transform(candles.iloc[:20]),
                                  pretrained.transform(candles)[:20])


def test_input_is_not_modified(candles):
    frame, array = candles.copy(), candles[COLUMNS].to_numpy()
    array_copy = array.copy()
    for X in (frame, array):
        tokenizer = tiny().fit(X)
        tokenizer.inverse_transform(tokenizer.transform(X))
        tokenizer.score(X)
    pd.testing.assert_frame_equal(frame, candles)
    np.testing.assert_array_equal(array, array_copy)


def test_set_output_pandas_keeps_the_index(pretrained, candles):
    tokenizer = clone(pretrained).set_output(transform="pandas").fit(candles)
    out = tokenizer.transform(candles)
    assert list(out.columns) == ["coarse_id", "fine_id"]
    assert out.index.equals(candles.index)
    assert (out.dtypes == np.int64).all()
    np.testing.assert_array_equal(out.to_numpy(), pretrained.transform(candles))
    np.testing.assert_allclose(tokenizer.inverse_transform(out),
                               pretrained.inverse_transform(out.to_numpy()))


def test_get_feature_names_out(pretrained):
    assert list(pretrained.get_feature_names_out()) == ["coarse_id", "fine_id"]
    with pytest.raises(ValueError, match="input_features"):
        pretrained.get_feature_names_out(["a", "b", "c", "d", "e", "f"])


# --------------------------------------------------------------------------- bad input
def test_non_finite_value_names_column_and_row(candles):
    bad = candles.copy()
    bad.iloc[5, 3] = np.nan
    with pytest.raises(ValueError, match=r"column 'close' at row 5 \(2025-03-03 10:00:00\) "
                                         r"is NaN"):
        KLineTokenizer(TOKENIZER_DIR).fit(bad)
    array = candles[COLUMNS].to_numpy()
    array[7, 4] = np.inf
    with pytest.raises(ValueError, match="column 'volume' at row 7 is inf"):
        KLineTokenizer(TOKENIZER_DIR).fit(array)


def test_candle_columns_are_read_by_name_in_any_order(pretrained, candles):
    expected = pretrained.transform(candles)
    np.testing.assert_array_equal(pretrained.transform(candles[candles.columns[::-1]]), expected)


def test_text_columns_are_named_with_their_first_bad_cell(candles):
    text = candles.astype({"open": object})
    text.iloc[5, text.columns.get_loc("open")] = "abc"
    with pytest.raises(TypeError, match=r"X: column 'open' has non-numeric dtype object; row 5 "
                                        r"\(2025-03-03 10:00:00\) holds 'abc'"):
        KLineTokenizer(TOKENIZER_DIR).fit(text)
    with pytest.raises(TypeError, match="X: column 'close' has non-numeric dtype"):
        KLineTokenizer(TOKENIZER_DIR).fit(candles.astype({"close": str}))


def test_missing_price_column_is_named(candles):
    with pytest.raises(ValueError, match=r"missing price column\(s\) \['low'\]"):
        KLineTokenizer(TOKENIZER_DIR).fit(candles.drop(columns="low"))


@pytest.mark.parametrize("width", [3, 7])
def test_unsupported_width_is_explained(width):
    X = np.ones((10, width))
    with pytest.raises(ValueError, match=f"X has {width} columns; with a checkpoint "
                                         "KLineTokenizer reads 4 to 6"):
        KLineTokenizer(TOKENIZER_DIR).fit(X)


def test_transform_checks_the_fitted_columns(pretrained, candles):
    with pytest.raises(ValueError, match="Feature names seen at fit time, yet now missing"):
        pretrained.transform(candles[COLUMNS[:4]])
    array = KLineTokenizer(TOKENIZER_DIR).fit(candles[COLUMNS].to_numpy())
    with pytest.raises(ValueError, match="expecting 6 features"):
        array.transform(candles[COLUMNS[:4]].to_numpy())


def test_fit_needs_two_candles(candles):
    with pytest.raises(ValueError, match="minimum of 2 is required"):
        KLineTokenizer(TOKENIZER_DIR).fit(candles.iloc[:1])


@pytest.mark.parametrize("ids, message", [
    ([[16, 0]], r"coarse_id at row 0 is 16; it must be an integer in \[0, 16\)"),
    ([[0, 1], [0, -1]], r"fine_id at row 1 is -1"),
    ([[0.5, 1]], r"coarse_id at row 0 is 0.5"),
    ([[1, 2, 3]], "ids must have 2 columns"),
])
def test_bad_ids_are_named(pretrained, ids, message):
    with pytest.raises(ValueError, match=message):
        pretrained.inverse_transform(ids)


@pytest.mark.parametrize("fit_strategy", ["zero-shot", "fine-tune"])
def test_tokenizer_none_needs_a_bundled_default(candles, tmp_path, monkeypatch, fit_strategy):
    monkeypatch.setattr(checkpoints, "DEFAULT_MODEL_DIR", tmp_path)
    with pytest.raises(ValueError, match="no bundled default tokenizer.*or use "
                                         "fit_strategy='from-scratch'"):
        KLineTokenizer(fit_strategy=fit_strategy).fit(candles)
    shutil.copytree(TOKENIZER_DIR, tmp_path / "tokenizer")
    default = KLineTokenizer(fit_strategy="zero-shot").fit(candles)
    np.testing.assert_array_equal(default.transform(candles),
                                  KLineTokenizer(TOKENIZER_DIR).fit(candles).transform(candles))


@pytest.mark.parametrize("params, message", [
    ({"tokenizer": TOKENIZER_DIR, "config": TINY}, "config is only used with"),
    ({"tokenizer": TOKENIZER_DIR, "fit_strategy": "from-scratch"}, "does not use tokenizer"),
    ({"fit_strategy": "from-scratch", "config": {"d_in": 5}}, "remove 'd_in'"),
    ({"fit_strategy": "from-scratch", "config": {"width": 5}}, r"unknown key\(s\) \['width'\]"),
    ({"tokenizer": "no/such-dir-here"}, "no/such-dir-here"),
])
def test_contradictory_options_are_rejected(candles, params, message):
    with pytest.raises(ValueError, match=message):
        KLineTokenizer(**params).fit(candles)


def test_parameters_are_validated(candles):
    with pytest.raises(InvalidParameterError, match="fit_strategy"):
        KLineTokenizer(TOKENIZER_DIR, fit_strategy="finetune").fit(candles)
    with pytest.raises(InvalidParameterError, match="window"):
        tiny(window=1).fit(candles)
    with pytest.raises(InvalidParameterError, match=r"'max_steps' parameter of KLineTokenizer "
                                                    r"must be an int .*Got True instead"):
        tiny(max_steps=True).fit(candles)


def test_the_former_strategy_name_points_to_the_new_one(candles):
    with pytest.raises(InvalidParameterError, match=r"'pretrained' is now called 'zero-shot'; "
                                                    r"pass fit_strategy='zero-shot'"):
        KLineTokenizer(TOKENIZER_DIR, fit_strategy="pretrained").fit(candles)
    assert KLineTokenizer().fit_strategy == "zero-shot"  # the forecaster's name and default


def test_from_scratch_builds_the_forecasters_small_network(candles):
    from kronos_sk.nn.config import SMALL_TOKENIZER
    fitted = tiny(config=None).fit(candles)
    config = fitted.tokenizer_.config
    assert {key: getattr(config, key) for key in SMALL_TOKENIZER} == SMALL_TOKENIZER
    assert config.d_in == 6


def test_device_defaults_to_auto_and_runs_on_the_cpu_here(candles):
    assert KLineTokenizer().device == "auto"
    fitted = KLineTokenizer(TOKENIZER_DIR).fit(candles)
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert fitted.tokenizer_.head.weight.device.type == expected


# ----------------------------------------------------------------------------- training
def test_random_state_makes_fit_deterministic(candles):
    first, second = tiny(max_steps=3).fit(candles), tiny(max_steps=3).fit(candles)
    assert first.n_iter_ == 3 and len(first.loss_curve_) == 3
    assert first.loss_curve_ == second.loss_curve_
    np.testing.assert_array_equal(first.transform(candles), second.transform(candles))
    assert tiny(max_steps=3, random_state=1).fit(candles).loss_curve_ != first.loss_curve_


def test_fit_leaves_global_random_states_alone(candles):
    np.random.seed(123)
    torch.manual_seed(123)
    numpy_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state()
    tiny().fit(candles)
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_a_table_shorter_than_the_window_is_one_window(candles):
    tokenizer = tiny(window=64).fit(candles.iloc[:10])
    assert tokenizer.n_iter_ == 2
    assert tokenizer.transform(candles.iloc[:10]).shape == (10, 2)


def test_fine_tuning_trains_a_copy_and_leaves_the_cache_alone(candles):
    cached = _weights.cached_tokenizer(TOKENIZER_DIR)
    before = copy.deepcopy(cached.state_dict())
    tuned = KLineTokenizer(TOKENIZER_DIR, fit_strategy="fine-tune", window=32, max_steps=3,
                           batch_size=2, random_state=0).fit(candles)
    assert tuned.tokenizer_ is not cached and tuned.n_iter_ == 3
    assert not tuned.tokenizer_.training
    for key, value in cached.state_dict().items():
        assert torch.equal(value, before[key]), key
    changed = [key for key, value in tuned.tokenizer_.state_dict().items()
               if value.is_floating_point() and not torch.equal(value, before[key])]
    assert changed


def test_training_from_scratch_improves_reconstruction_on_real_data():
    path = SHARED_DATA / "cn_stock_5min_2024.parquet"
    if not path.is_file():
        pytest.skip(f"real data {path} not available")
    frame = pd.read_parquet(path).set_index("timestamp").drop(columns="asset")
    train, test = frame.iloc[:2000], frame.iloc[2000:]
    trained = KLineTokenizer(fit_strategy="from-scratch", max_steps=150, random_state=0
                             ).fit(train)
    untrained = copy.deepcopy(trained)
    torch.manual_seed(0)
    untrained.tokenizer_ = KronosTokenizer(trained.tokenizer_.config).eval()
    assert trained.loss_curve_[-1] < trained.loss_curve_[0]
    for X in (train, test):
        assert trained.score(X) > untrained.score(X) + 0.1


# ------------------------------------------------------------------------ pickle / clone
def test_pickle_round_trip_gives_identical_transforms(pretrained, candles):
    for tokenizer in (pretrained, tiny().fit(candles)):
        restored = pickle.loads(pickle.dumps(tokenizer))
        np.testing.assert_array_equal(restored.transform(candles), tokenizer.transform(candles))
        ids = tokenizer.transform(candles)
        np.testing.assert_array_equal(restored.inverse_transform(ids),
                                      tokenizer.inverse_transform(ids))


def test_clone_refits_to_identical_transforms(pretrained, candles):
    for tokenizer in (pretrained, tiny().fit(candles)):
        refit = clone(tokenizer)
        assert not hasattr(refit, "tokenizer_")
        np.testing.assert_array_equal(refit.fit(candles).transform(candles),
                                      tokenizer.transform(candles))


# --------------------------------------------------------------------------- weight cache
@pytest.fixture
def checkpoint_copy(tmp_path) -> Path:
    _weights.clear_cache()
    yield Path(shutil.copytree(TOKENIZER_DIR, tmp_path / "tokenizer"))
    _weights.clear_cache()


def test_cache_returns_the_same_module_for_the_same_checkpoint(checkpoint_copy):
    first = _weights.cached_tokenizer(checkpoint_copy)
    same = _weights.cached_tokenizer(str(checkpoint_copy) + "/", device=torch.device("cpu"))
    assert same is first
    assert isinstance(first, KronosTokenizer) and not first.training


def test_cache_loads_once_under_concurrent_calls(checkpoint_copy):
    with ThreadPoolExecutor(4) as pool:
        modules = list(pool.map(_weights.cached_tokenizer, [checkpoint_copy] * 8))
    assert all(module is modules[0] for module in modules)


def test_cache_reloads_a_rewritten_checkpoint(checkpoint_copy):
    first = _weights.cached_tokenizer(checkpoint_copy)
    weights = checkpoint_copy / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9))
    assert _weights.cached_tokenizer(checkpoint_copy) is not first


def test_cache_evicts_the_least_recently_used(checkpoint_copy, monkeypatch):
    monkeypatch.setattr(_weights, "MAX_ENTRIES", 2)
    other = Path(shutil.copytree(checkpoint_copy, checkpoint_copy.parent / "other"))
    third = Path(shutil.copytree(checkpoint_copy, checkpoint_copy.parent / "third"))
    first = _weights.cached_tokenizer(checkpoint_copy)
    second = _weights.cached_tokenizer(other)
    assert _weights.cached_tokenizer(checkpoint_copy) is first  # now the most recent
    _weights.cached_tokenizer(third)  # evicts `other`
    assert _weights.cached_tokenizer(checkpoint_copy) is first
    assert _weights.cached_tokenizer(other) is not second


def test_predictor_cache(compat_dir):
    predictor = _weights.cached_predictor(compat_dir / "model")
    assert _weights.cached_predictor(compat_dir / "model") is predictor
