import math

import numpy as np
import pytest
import torch

from kronos_sk.checkpoints import load_predictor
from kronos_sk.nn.config import PredictorConfig
from kronos_sk.nn.layers import KVCache
from kronos_sk.nn.predictor import KronosPredictor


@pytest.fixture(scope="module")
def reference(compat_dir):
    return load_predictor(compat_dir / "model"), np.load(compat_dir / "intermediates.npz")


def tiny_config(**overrides) -> PredictorConfig:
    values = dict(s1_bits=3, s2_bits=3, n_layers=1, d_model=16, n_heads=2, ff_dim=32,
                  ffn_dropout_p=0.0, attn_dropout_p=0.0, resid_dropout_p=0.0,
                  token_dropout_p=0.0)
    values.update(overrides)
    return PredictorConfig(**values)


def test_hidden_and_logits_match_reference(reference):
    predictor, ref = reference
    s1, s2 = torch.from_numpy(ref["s1_ids"]), torch.from_numpy(ref["s2_ids"])
    with torch.no_grad():
        h = predictor.hidden(s1, s2, torch.from_numpy(ref["stamp"]))
        np.testing.assert_allclose(h.numpy(), ref["context"], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(predictor.coarse_logits(h).numpy(), ref["s1_logits"],
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(predictor.fine_logits(h, s1).numpy(),
                                   ref["s2_logits_given_s1"], rtol=1e-4, atol=1e-5)


def test_single_query_dependency_layer_matches_reference(reference):
    predictor, ref = reference
    h = torch.from_numpy(ref["context"]).expand(16, -1, -1)
    attn = predictor.dep_layer.cross_attn
    cache = KVCache.empty(16, attn.n_heads, h.shape[1], attn.head_dim, h.dtype, "cpu")
    with torch.no_grad():
        attn.extend_cache(h, cache)
        query = predictor.embedding.emb_s1(torch.arange(16)).unsqueeze(1)
        out = predictor.head.proj_s2(predictor.dep_layer.step(h[:, -1:], query, cache))
    np.testing.assert_allclose(out[:, 0].numpy(), ref["s2_logits_last_query"], rtol=1e-4,
                               atol=1e-5)


def test_fixed_time_embedding_is_the_sinusoid_table():
    predictor = KronosPredictor(tiny_config(learn_te=False))
    table = predictor.time_emb.hour_embed.emb.weight
    d = 16
    for p in (0, 5, 23):
        for i in range(0, d, 2):
            div = math.exp(i * -math.log(10000.0) / d)
            assert math.isclose(table[p, i], math.sin(p * div), abs_tol=1e-6)
            assert math.isclose(table[p, i + 1], math.cos(p * div), abs_tol=1e-6)
    assert not table.requires_grad
    keys = predictor.state_dict().keys()
    assert "time_emb.hour_embed.emb.weight" in keys


def test_dependency_layer_is_causal_in_training_only():
    torch.manual_seed(0)
    predictor = KronosPredictor(tiny_config())
    h = torch.randn(1, 6, 16)
    moved = h.clone()
    moved[0, -1] += 1.0  # the last key/value moves
    s1 = torch.randint(0, 8, (1, 6))
    for training, first_rows_equal in ((True, True), (False, False)):
        predictor.train(training)
        with torch.no_grad():
            a = predictor.fine_logits(h, s1)
            b = predictor.fine_logits(moved, s1)
        assert torch.allclose(a[:, :-1], b[:, :-1]) == first_rows_equal


def test_training_forward_shapes_and_gradients():
    torch.manual_seed(0)
    predictor = KronosPredictor(tiny_config())
    s1 = torch.randint(0, 8, (2, 5))
    s2 = torch.randint(0, 8, (2, 5))
    stamps = torch.zeros(2, 5, 5, dtype=torch.long)
    coarse, fine = predictor(s1, s2, stamps)
    assert coarse.shape == (2, 5, 8) and fine.shape == (2, 5, 8)
    (coarse.sum() + fine.sum()).backward()
    assert predictor.head.proj_s2.weight.grad.abs().sum() > 0
    assert predictor.transformer[0].ffn.w1.weight.grad.abs().sum() > 0


def test_fine_tuning_a_loaded_predictor_changes_its_fused_outputs(compat_dir, tmp_path):
    from kronos_sk.checkpoints import save_checkpoint
    predictor = load_predictor(compat_dir / "model", device="cpu")
    g = torch.Generator().manual_seed(0)
    s1 = torch.randint(0, 2 ** predictor.config.s1_bits, (2, 12), generator=g)
    s2 = torch.randint(0, 2 ** predictor.config.s2_bits, (2, 12), generator=g)
    stamps = torch.zeros(2, 12, 5, dtype=torch.long)
    with torch.no_grad():
        before = predictor.coarse_logits(predictor.hidden(s1, s2, stamps))  # fused
    predictor.train()
    optimizer = torch.optim.SGD(predictor.parameters(), lr=0.1)
    coarse, fine = predictor(s1[:, :-1], s2[:, :-1], stamps[:, :-1], s1[:, 1:])
    loss = torch.nn.functional.cross_entropy(coarse.flatten(0, 1), s1[:, 1:].flatten())
    loss.backward()
    assert predictor.transformer[0].self_attn.k_proj.weight.grad.abs().sum() > 0
    optimizer.step()
    predictor.eval()
    with torch.no_grad():
        after = predictor.coarse_logits(predictor.hidden(s1, s2, stamps))
    unfused = predictor.coarse_logits(predictor.hidden(s1, s2, stamps)).detach()
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, unfused)
    reloaded = load_predictor(save_checkpoint(predictor, tmp_path / "tuned"), device="cpu")
    assert reloaded.state_dict().keys() == predictor.state_dict().keys()
    for key, value in predictor.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], value), key
