import collections
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from kronos_sk.checkpoints import load_predictor, load_tokenizer
from kronos_sk.data import time_features, validate_candles
from kronos_sk.data.schema import FEATURE_COLUMNS
from kronos_sk.generation import (filter_logits, forecast_paths, generate_tokens,
                                  generate_tokens_recompute, ids_by_close, nucleus, path_uniforms,
                                  sample_ids, series_seeds)
from kronos_sk.nn.config import PredictorConfig
from kronos_sk.nn.predictor import KronosPredictor
from kronos_sk.runtime import native_bf16


@pytest.fixture(scope="module")
def tiny_predictor():
    torch.manual_seed(0)
    config = PredictorConfig(s1_bits=4, s2_bits=4, n_layers=2, d_model=32, n_heads=2,
                             ff_dim=64)
    return KronosPredictor(config).eval()


@pytest.fixture(scope="module")
def tokens():
    g = torch.Generator().manual_seed(1)
    B, T, H = 3, 20, 12
    s1 = torch.randint(0, 16, (B, T), generator=g)
    s2 = torch.randint(0, 16, (B, T), generator=g)
    stamps = torch.stack([torch.randint(0, n, (B, T + H), generator=g)
                          for n in (60, 24, 7, 32, 13)], -1)
    return s1, s2, stamps, H


def test_temperature_divides_logits_and_input_is_untouched():
    logits = torch.tensor([[1.0, 2.0, 4.0]])
    before = logits.clone()
    torch.testing.assert_close(filter_logits(logits, temperature=2.0),
                               torch.tensor([[0.5, 1.0, 2.0]]))
    assert torch.equal(logits, before)


def test_top_k_keeps_the_k_largest():
    out = filter_logits(torch.tensor([[0.1, 3.0, 2.0, -1.0]]), top_k=2)
    assert torch.isinf(out[0, [0, 3]]).all() and torch.isfinite(out[0, [1, 2]]).all()


def test_top_p_keeps_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    kept = torch.isfinite(filter_logits(logits, top_p=0.8))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(filter_logits(logits, top_p=0.81))
    assert kept.tolist() == [[True, True, True, False]]
    kept = torch.isfinite(filter_logits(logits, top_p=0.1))
    assert kept.tolist() == [[True, False, False, False]]


def test_top_p_applies_to_the_top_k_distribution():
    # top-k=3 renormalises to 0.5/0.95, 0.3/0.95, 0.15/0.95 = .526, .316, .158, so top-p=0.82
    # keeps two ids (.526 + .316 = .842); on the unrenormalised .5 + .3 = .8 it would keep three.
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    kept = torch.isfinite(filter_logits(logits, top_k=3, top_p=0.82))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(filter_logits(logits, top_k=2, top_p=1.0))
    assert kept.tolist() == [[True, True, False, False]]


def sorted_filter(logits, top_k=0, top_p=1.0):
    """Top-k then top-p by sorting the whole vocabulary, equal probabilities lower id first."""
    logits = logits.float().clone()
    if 0 < top_k < logits.shape[-1]:
        kth_largest = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits[logits < kth_largest] = float("-inf")
    probs = logits.softmax(-1)
    ranked, order = probs.sort(dim=-1, descending=True, stable=True)
    mass_before = ranked.cumsum(-1) - ranked
    kept = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, mass_before < top_p)
    return logits.masked_fill(~kept, float("-inf"))


def adversarial_logits():
    g = torch.Generator().manual_seed(3)
    V = 1024
    yield "gaussian", torch.randn(64, V, generator=g) * 2
    yield "flat", torch.zeros(4, V)  # every id tied: the lowest ids form the nucleus
    yield "few levels", torch.randint(0, 4, (64, V), generator=g).float()  # many ties
    yield "one spike", torch.full((3, V), -30.0).index_fill_(1, torch.tensor([700]), 0.0)
    yield "long tail", -torch.arange(V).float().expand(5, V) * 1e-3  # nucleus beyond 64
    peaked = torch.randn(64, V, generator=g)
    peaked[:, :3] += 12  # three near-certain ids
    yield "peaked", peaked
    yield "3-d", torch.randn(2, 5, V, generator=g)


@pytest.mark.parametrize("top_p", [1e-6, 0.05, 0.5, 0.9, 0.999, 1 - 1e-7])
@pytest.mark.parametrize("top_k", [0, 1, 7, 300])
def test_top_p_without_sorting_keeps_what_sorting_keeps(top_p, top_k):
    for name, logits in adversarial_logits():
        expected = torch.isfinite(sorted_filter(logits, top_k, top_p))
        kept = torch.isfinite(filter_logits(logits, top_k=top_k, top_p=top_p))
        assert torch.equal(kept, expected), name
        assert kept.any(-1).all()


def test_nucleus_reaching_past_its_candidates_sorts_its_row():
    probs = torch.full((2, 1024), 1 / 1024)
    probs[0] = 0.0
    probs[0, [9, 3, 5, 1]] = torch.tensor([0.5, 0.3, 0.15, 0.05])
    kept = nucleus(probs, 0.9, candidates=4)  # 3 ids are needed in row 0, 922 in row 1
    assert kept[0].nonzero().flatten().tolist() == [3, 5, 9]
    assert kept[1].nonzero().flatten().tolist() == list(range(922))  # ties: the lowest ids


def test_sample_ids_inverts_the_cdf():
    logits = torch.tensor([[0.2, 0.0, 0.3, 0.5]]).log().repeat(5, 1)
    u = torch.tensor([0.0, 0.19, 0.21, 0.55, 0.99])
    assert sample_ids(logits, u).tolist() == [0, 0, 2, 3, 3]


def test_sample_ids_never_draws_a_filtered_id_at_the_cdf_end():
    logits = filter_logits(torch.tensor([[3.0, 2.0, 1.0, 0.5]]), top_k=2)
    assert sample_ids(logits.repeat(3, 1), torch.tensor([1.0, 1 - 2 ** -24, 0.9])).tolist() \
        == [1, 1, 1]


def test_path_uniforms_depend_only_on_seed_and_sample():
    one = path_uniforms([7], 2, 5)
    many = path_uniforms([3, 7, 9], 4, 5)
    torch.testing.assert_close(one, many[4:6])
    assert not torch.equal(many[0], many[1])
    assert series_seeds(1, ["a", "b"]) == series_seeds(1, ["a", "b"])
    assert series_seeds(1, ["a"]) != series_seeds(2, ["a"])


@pytest.mark.parametrize("max_context", [64, 25, 15, 8])
def test_cached_generation_equals_full_recompute(tiny_predictor, tokens, max_context):
    s1, s2, stamps, H = tokens
    u = path_uniforms([1, 2, 3], 4, H)
    kwargs = dict(n_samples=4, max_context=max_context, temperature=1.3, top_p=0.9)
    cached = generate_tokens(tiny_predictor, s1, s2, stamps, H, u, **kwargs)
    reference = generate_tokens_recompute(tiny_predictor, s1, s2, stamps, H, u, **kwargs)
    assert torch.equal(cached[0], reference[0]) and torch.equal(cached[1], reference[1])


@pytest.mark.parametrize("max_context", [64, 15])
def test_left_padded_series_equal_unpadded(tiny_predictor, tokens, max_context):
    s1, s2, stamps, H = tokens
    u = path_uniforms([1, 2, 3], 2, H)
    valid = torch.ones(s1.shape, dtype=torch.bool)
    valid[0, :5] = False
    kwargs = dict(n_samples=2, max_context=max_context, temperature=1.5)
    padded = generate_tokens(tiny_predictor, s1, s2, stamps, H, u, valid=valid, **kwargs)
    alone = generate_tokens_recompute(tiny_predictor, s1[:1, 5:], s2[:1, 5:], stamps[:1, 5:],
                                      H, u[:2], **kwargs)
    assert torch.equal(padded[0][:2], alone[0]) and torch.equal(padded[1][:2], alone[1])


def test_rolling_equals_exact_while_the_window_does_not_slide(tiny_predictor, tokens):
    s1, s2, stamps, H = tokens
    u = path_uniforms([4, 5, 6], 3, H)
    exact = generate_tokens(tiny_predictor, s1, s2, stamps, H, u, n_samples=3, max_context=40)
    rolling = generate_tokens(tiny_predictor, s1, s2, stamps, H, u, n_samples=3,
                              max_context=40, sliding="rolling")
    assert torch.equal(exact[0], rolling[0]) and torch.equal(exact[1], rolling[1])


@pytest.mark.parametrize("sliding", ["exact", "rolling"])
@pytest.mark.parametrize("max_context", [25, 8])
def test_paths_do_not_depend_on_the_number_of_samples(tiny_predictor, tokens, max_context,
                                                      sliding):
    # Samples share their series' context cache (S > 1) or own it (S = 1): same tokens.
    s1, s2, stamps, H = tokens
    kwargs = dict(max_context=max_context, sliding=sliding, temperature=1.3, top_p=0.9)
    many = generate_tokens(tiny_predictor, s1, s2, stamps, H, path_uniforms([1, 2, 3], 4, H),
                           n_samples=4, **kwargs)
    one = generate_tokens(tiny_predictor, s1, s2, stamps, H, path_uniforms([1, 2, 3], 1, H),
                          n_samples=1, **kwargs)
    assert torch.equal(many[0][::4], one[0]) and torch.equal(many[1][::4], one[1])


def test_first_coarse_draws_follow_the_model_distribution(tiny_predictor, tokens):
    s1, s2, stamps, _ = tokens
    n = 4000
    u = path_uniforms([11], n, 1)
    coarse, _ = generate_tokens(tiny_predictor, s1[:1], s2[:1], stamps[:1, :21], 1, u,
                                n_samples=n, temperature=1.0)
    with torch.no_grad():
        h = tiny_predictor.hidden(s1[:1], s2[:1], stamps[:1, :20])
        probs = tiny_predictor.coarse_logits(h[:, -1]).softmax(-1)[0]
    frequency = torch.bincount(coarse[:, 0], minlength=16).float() / n
    # Binomial standard error is at most 0.5 / sqrt(4000) = 0.008; allow 4 of them.
    assert (frequency - probs).abs().max() < 0.032


def test_stratified_uniforms_take_one_stratum_each_and_keep_each_path_uniform():
    n, H = 5, 3
    stratified = path_uniforms([1, 2], n, H, stratified=True).view(2, n, H, 2)
    independent = path_uniforms([1, 2], n, H).view(2, n, H, 2)
    strata = (stratified * n).floor()
    assert torch.equal(strata.sort(dim=1).values,
                       torch.arange(n).float().view(1, n, 1, 1).expand(2, n, H, 2))
    torch.testing.assert_close(stratified * n - strata, independent)  # the within-stratum draw
    assert not torch.equal(strata[:, :, 0], strata[:, :, 1])  # new strata at each step
    torch.testing.assert_close(path_uniforms([3], 1, H, stratified=True), path_uniforms([3], 1, H))


def test_stratified_draws_match_the_model_counts_within_two(tiny_predictor, tokens):
    s1, s2, stamps, _ = tokens
    n = 400
    with torch.no_grad():
        h = tiny_predictor.hidden(s1[:1], s2[:1], stamps[:1, :20])
        probs = tiny_predictor.coarse_logits(h[:, -1]).softmax(-1)[0]
    order = torch.randperm(16, generator=torch.Generator().manual_seed(2))
    counts = {}
    for mode, uniforms, id_order in (
            ("independent", path_uniforms([11], n, 1), None),
            ("stratified", path_uniforms([11], n, 1, stratified=True), (order, order))):
        coarse, _ = generate_tokens(tiny_predictor, s1[:1], s2[:1], stamps[:1, :21], 1, uniforms,
                                    n_samples=n, id_order=id_order)
        counts[mode] = torch.bincount(coarse[:, 0], minlength=16).float()
    # One draw per stratum: each id's count is within 2 of n p (binomial: sd up to 10).
    assert (counts["stratified"] - n * probs).abs().max() < 2
    assert (counts["independent"] - n * probs).abs().max() > 2


def test_each_stratified_path_follows_the_model_distribution(tiny_predictor, tokens):
    s1, s2, stamps, _ = tokens
    n_series, n = 2000, 4
    order = torch.randperm(16, generator=torch.Generator().manual_seed(3))
    coarse, _ = generate_tokens(
        tiny_predictor, s1[:1].expand(n_series, -1), s2[:1].expand(n_series, -1),
        stamps[:1, :21].expand(n_series, -1, -1), 1,
        path_uniforms(range(n_series), n, 1, stratified=True), n_samples=n,
        id_order=(order, order))
    with torch.no_grad():
        h = tiny_predictor.hidden(s1[:1], s2[:1], stamps[:1, :20])
        probs = tiny_predictor.coarse_logits(h[:, -1]).softmax(-1)[0]
    first_paths = coarse.view(n_series, n)[:, 0]  # one path of each series
    frequency = torch.bincount(first_paths, minlength=16).float() / n_series
    # Binomial standard error is at most 0.5 / sqrt(2000) = 0.011; allow 4 of them.
    assert (frequency - probs).abs().max() < 0.045


def test_ids_by_close_follow_the_tokenizer_weights(compat_modules):
    import copy
    tokenizer = copy.deepcopy(compat_modules[0])
    coarse, fine = ids_by_close(tokenizer)
    with torch.no_grad():
        tokenizer.head.weight.neg_()  # every decoded value changes sign: the order reverses
        tokenizer.head.bias.neg_()
    flipped_coarse, flipped_fine = ids_by_close(tokenizer)
    assert torch.equal(flipped_coarse, coarse.flip(0))
    assert torch.equal(flipped_fine, fine.flip(0))


def test_stratified_paths_give_a_steadier_mean_with_the_bundled_model(compat_candles):
    from kronos_sk.checkpoints import default_checkpoint
    from kronos_sk.pipeline import KronosPipeline
    pipe = KronosPipeline.from_pretrained(default_checkpoint("predictor"),
                                          default_checkpoint("tokenizer"))
    coarse_order, fine_order = ids_by_close(pipe.tokenizer)
    n1, n2 = pipe.tokenizer.config.s1_bits, pipe.tokenizer.config.s2_bits
    assert sorted(coarse_order.tolist()) == list(range(2 ** n1))
    assert sorted(fine_order.tolist()) == list(range(2 ** n2))
    with torch.no_grad():  # one fine id after another, with a coarse id of the middle close
        middle = coarse_order[2 ** n1 // 2].item()
        closes = pipe.tokenizer.decode(torch.full((2 ** n2, 1), middle),
                                       fine_order[:, None])[:, 0, FEATURE_COLUMNS.index("close")]
    # The fine order averages 4 coarse ids: with one it still rises across its range
    # (correlation of position and close measured 0.78; a random order gives about 0).
    assert np.corrcoef(np.arange(2 ** n2), closes.numpy())[0, 1] > 0.6
    contexts = {i: compat_candles.iloc[40 * i:40 * i + 90] for i in range(4)}
    spread = {}
    for stratified in (False, True):
        means = np.stack([pipe.sample(contexts, 5, n_samples=20, random_state=seed,
                                      stratified=stratified).paths[:, :, -1, 3].mean(1)
                          for seed in range(12)])  # (seeds, series): the mean last close
        spread[stratified] = (means.std(0) / means.mean(0)).mean()
    # Measured 0.40 of the independent paths' seed-to-seed spread (all series together).
    assert spread[True] < 0.7 * spread[False]


@pytest.fixture(scope="module")
def compat_modules(compat_dir):
    return load_tokenizer(compat_dir / "tokenizer"), load_predictor(compat_dir / "model")


def _fixture_inputs(candles, rows=(64, 100), horizon=10):
    contexts = [candles.iloc[:n] for n in rows]
    future = [candles.index[n:n + horizon] for n in rows]
    return ([c.to_numpy() for c in contexts], [time_features(c.index) for c in contexts],
            np.stack([time_features(f) for f in future]))


def test_paths_do_not_depend_on_batch_order_or_chunking(compat_modules, compat_candles):
    tokenizer, predictor = compat_modules
    contexts, stamps, future = _fixture_inputs(compat_candles)
    kwargs = dict(n_samples=5, temperature=1.2, top_p=0.95, max_context=128, random_state=3)
    both = forecast_paths(tokenizer, predictor, contexts, stamps, future, **kwargs)
    swapped = forecast_paths(tokenizer, predictor, contexts[::-1], stamps[::-1], future[::-1],
                             **kwargs)
    chunked = forecast_paths(tokenizer, predictor, contexts, stamps, future, max_paths=5,
                             **kwargs)
    alone = forecast_paths(tokenizer, predictor, contexts[1:], stamps[1:], future[1:], **kwargs)
    assert both.shape == (2, 5, 10, 6)
    np.testing.assert_allclose(both, swapped[::-1], rtol=1e-5)
    np.testing.assert_allclose(both, chunked, rtol=1e-5)
    np.testing.assert_allclose(both[1], alone[0], rtol=1e-5)
    assert np.ptp(both[0, :, -1, 3]) > 0  # samples differ


def test_bfloat16_forecast_stays_close_to_float32(compat_dir, compat_candles):
    contexts, stamps, future = _fixture_inputs(compat_candles, rows=(64,))
    out = {}
    for precision in ("float32", "bfloat16"):
        tokenizer = load_tokenizer(compat_dir / "tokenizer", precision=precision)
        predictor = load_predictor(compat_dir / "model", precision=precision)
        out[precision] = forecast_paths(tokenizer, predictor, contexts, stamps, future,
                                        n_samples=1, top_k=1, max_context=128)
    assert np.isfinite(out["bfloat16"]).all()
    close_error = np.abs(out["bfloat16"][..., 3] - out["float32"][..., 3]).mean()
    assert close_error < 0.05 * np.std(contexts[0][:, 3])


class MatmulDtypes(TorchDispatchMode):
    """Counts the matrix products run under it, by output dtype."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.__name__.split(".")[0] in ("mm", "addmm", "bmm", "baddbmm"):
            self.counts[out.dtype] += 1
        return out


@pytest.mark.parametrize("sliding", ["exact", "rolling"])
def test_bfloat16_prefill_computes_only_the_batched_passes_in_bfloat16(tiny_predictor, tokens,
                                                                       sliding):
    s1, s2, stamps, _ = tokens
    counts = {}
    for precision, horizon in (("float32", 4), ("bfloat16", 4), ("bfloat16", 8)):
        with warnings.catch_warnings(), MatmulDtypes() as products:
            warnings.simplefilter("ignore")  # a CPU without native bfloat16 warns
            generate_tokens(tiny_predictor, s1, s2, stamps[:, :20 + horizon], horizon,
                            path_uniforms([1, 2, 3], 2, horizon), n_samples=2,
                            max_context=22, sliding=sliding, prefill_precision=precision)
        counts[precision, horizon] = products.counts
    assert counts["float32", 4][torch.bfloat16] == 0
    bf16_4, bf16_8 = counts["bfloat16", 4], counts["bfloat16", 8]
    assert bf16_4[torch.bfloat16] > 0 and bf16_8[torch.float32] > bf16_4[torch.float32]
    if sliding == "rolling":  # the context only: the steps all run in float32
        assert bf16_8[torch.bfloat16] == bf16_4[torch.bfloat16]
    else:  # from step 3 on, the sliding window is recomputed at every step
        assert bf16_8[torch.bfloat16] > bf16_4[torch.bfloat16]


@pytest.mark.parametrize("max_context", [128, 40])  # 40: the window slides, is recomputed
def test_bfloat16_prefill_stays_close_to_float32(compat_modules, compat_candles, max_context):
    contexts, stamps, future = _fixture_inputs(compat_candles, rows=(64,))
    kwargs = dict(n_samples=1, top_k=1, max_context=max_context)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        full = forecast_paths(*compat_modules, contexts, stamps, future, **kwargs)
    if native_bf16("cpu"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fast = forecast_paths(*compat_modules, contexts, stamps, future,
                                  prefill_precision="bfloat16", **kwargs)
    else:
        with pytest.warns(UserWarning, match="no native bfloat16"):
            fast = forecast_paths(*compat_modules, contexts, stamps, future,
                                  prefill_precision="bfloat16", **kwargs)
    assert fast.dtype == np.float32 and np.isfinite(fast).all()
    close_error = np.abs(fast[..., 3] - full[..., 3]).mean()
    assert close_error < 0.05 * np.std(contexts[0][:, 3])
    with pytest.raises(ValueError, match="'half'"):
        forecast_paths(*compat_modules, contexts, stamps, future, prefill_precision="half",
                       **kwargs)


@pytest.mark.parametrize("name, value", [("n_samples", 0), ("temperature", 0.0),
                                         ("top_k", -1), ("top_p", 0.0), ("top_p", 1.5),
                                         ("max_context", 0), ("sliding", "fast"),
                                         ("n_samples", True), ("stratified", "yes")])
def test_bad_sampling_settings_are_named(compat_modules, compat_candles, name, value):
    tokenizer, predictor = compat_modules
    contexts, stamps, future = _fixture_inputs(compat_candles, rows=(64,))
    with pytest.raises(ValueError, match=f"{name} must be"):
        forecast_paths(tokenizer, predictor, contexts, stamps, future, **{name: value})


def test_context_too_short_is_rejected(compat_modules, compat_candles):
    tokenizer, predictor = compat_modules
    contexts, stamps, future = _fixture_inputs(compat_candles, rows=(64,))
    with pytest.raises(ValueError, match="context of 1 row.*too short"):
        forecast_paths(tokenizer, predictor, [contexts[0][:1]], [stamps[0][:1]], future)


def test_very_long_context_is_cut_with_a_warning(compat_modules, compat_candles):
    tokenizer, predictor = compat_modules
    contexts, stamps, future = _fixture_inputs(compat_candles, rows=(100,))
    with pytest.warns(UserWarning, match="context of 100 rows cut to its last 80"):
        cut = forecast_paths(tokenizer, predictor, contexts, stamps, future, top_k=1,
                             max_context=10)
    kept = forecast_paths(tokenizer, predictor, [contexts[0][-80:]], [stamps[0][-80:]],
                          future, top_k=1, max_context=10)
    np.testing.assert_array_equal(cut, kept)


def test_horizon_beyond_the_window_warns(compat_modules, compat_candles):
    tokenizer, predictor = compat_modules
    contexts, stamps, future = _fixture_inputs(compat_candles, rows=(64,))
    with pytest.warns(UserWarning, match="horizon 10 exceeds max_context 8"):
        paths = forecast_paths(tokenizer, predictor, contexts, stamps, future, max_context=8)
    assert np.isfinite(paths).all()


def test_sampled_candles_are_valid(compat_modules, compat_candles):
    # The tiny random fixture model decodes wild highs and lows, and an all-zero volume
    # context gives volumes around zero: every sampled candle must still be valid.
    tokenizer, predictor = compat_modules
    contexts, stamps, future = _fixture_inputs(compat_candles)
    contexts[1] = contexts[1].copy()
    contexts[1][:, 4:] = 0.0
    paths = forecast_paths(tokenizer, predictor, contexts, stamps, future, n_samples=20,
                           temperature=1.5, max_context=128, random_state=0)
    open_, high, low, close = (paths[..., i] for i in range(4))
    assert (high >= np.maximum(open_, close)).all() and (low <= np.minimum(open_, close)).all()
    assert (paths[..., 4:] >= 0).all()
    frame = pd.DataFrame(paths.reshape(-1, 6), columns=list(FEATURE_COLUMNS),
                         index=pd.date_range("2024-01-01", periods=paths[..., 0].size,
                                             freq="min"))
    validate_candles(frame)  # the library's own validator accepts them
