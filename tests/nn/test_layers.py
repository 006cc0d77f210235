import math

import pytest
import torch

from kronos_sk.nn.layers import (Attention, Block, KVCache, RMSNorm, RotaryEmbedding,
                                 SharedPrefixCache, apply_rotary, attention_mask,
                                 positions_from_valid)


def test_rmsnorm_matches_formula():
    torch.manual_seed(0)
    norm = RMSNorm(8)
    norm.weight.data = torch.randn(8)
    x = torch.randn(3, 5, 8)
    expected = x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + 1e-5) * norm.weight
    torch.testing.assert_close(norm(x), expected)


def test_rotary_rotates_each_pair_by_position_times_frequency():
    head_dim = 4
    rotary = RotaryEmbedding(head_dim)
    x = torch.randn(1, 1, 3, head_dim)
    cos, sin = rotary(torch.arange(3))
    y = apply_rotary(x, cos, sin)
    for pos in range(3):
        for j in range(head_dim // 2):
            angle = pos / 10000 ** (2 * j / head_dim)
            a, b = x[0, 0, pos, j], x[0, 0, pos, j + head_dim // 2]
            assert math.isclose(y[0, 0, pos, j], a * math.cos(angle) - b * math.sin(angle),
                                abs_tol=1e-6)
            assert math.isclose(y[0, 0, pos, j + head_dim // 2],
                                b * math.cos(angle) + a * math.sin(angle), abs_tol=1e-6)


def test_attention_matches_manual_computation():
    torch.manual_seed(1)
    attn = Attention(8, 2).eval()
    x = torch.randn(2, 4, 8)
    cos, sin = attn.rotary(torch.arange(4))
    q = attn._heads(attn.q_proj(x))
    k = attn._heads(attn.k_proj(x))
    v = attn._heads(attn.v_proj(x))
    q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    scores = q @ k.transpose(-1, -2) / math.sqrt(4)
    scores = scores.masked_fill(torch.ones(4, 4, dtype=torch.bool).triu(1), float("-inf"))
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 4, 8)
    torch.testing.assert_close(attn(x, rope=(cos, sin), causal=True), attn.out_proj(y))


def test_cached_steps_equal_full_causal_pass():
    torch.manual_seed(2)
    block = Block(16, 4, 32).eval()
    x = torch.randn(2, 7, 16)
    rotary = block.self_attn.rotary
    full = block(x, rotary(torch.arange(7)))
    cache = KVCache.empty(2, 4, 7, 4, torch.float32, "cpu")
    prefix = block(x[:, :4], rotary(torch.arange(4)), cache=cache)
    steps = [block(x[:, t:t + 1], rotary(torch.tensor([t])), cache=cache) for t in range(4, 7)]
    torch.testing.assert_close(torch.cat([prefix] + steps, 1), full)


def test_left_padding_does_not_change_real_rows():
    torch.manual_seed(3)
    block = Block(16, 4, 32).eval()
    x = torch.randn(1, 5, 16)
    padded = torch.cat((torch.randn(1, 3, 16), x), 1)
    valid = torch.tensor([[False] * 3 + [True] * 5])
    rotary = block.self_attn.rotary
    out = block(padded, rotary(positions_from_valid(valid, 8, "cpu")),
                attention_mask(valid, 8, causal=True))
    torch.testing.assert_close(out[:, 3:], block(x, rotary(torch.arange(5))))
    assert torch.isfinite(out).all()


def test_shared_prefix_cache_attends_like_a_copy_of_the_prefix_per_row():
    torch.manual_seed(4)
    B, G, nh, Tp, hd = 2, 3, 2, 5, 4
    kp, vp = torch.randn(B, nh, Tp, hd), torch.randn(B, nh, Tp, hd)
    prefix = KVCache.empty(B, nh, Tp, hd, torch.float32, "cpu")
    prefix.append(kp, vp)
    shared = SharedPrefixCache(prefix, G, capacity=4)
    copy = KVCache.empty(B * G, nh, Tp + 4, hd, torch.float32, "cpu")
    copy.append(kp.repeat_interleave(G, 0), vp.repeat_interleave(G, 0))
    for _ in range(3):
        k, v = torch.randn(B * G, nh, 1, hd), torch.randn(B * G, nh, 1, hd)
        shared.append(k, v)
        copy.append(k, v)
        q = torch.randn(B * G, nh, 2, hd)
        torch.testing.assert_close(shared.attend(q), copy.attend(q))
    assert shared.length == copy.length == Tp + 3
    mask = torch.rand(B * G, 1, 2, Tp + 3) > 0.3
    mask[..., -1] = True
    torch.testing.assert_close(shared.attend(q, mask), copy.attend(q, mask))
    for start in (2, 6):  # a rolling window drops the oldest entries, the prefix first
        shared.start = copy.start = start
        torch.testing.assert_close(shared.attend(q), copy.attend(q))
    with pytest.raises(ValueError, match="mask"):
        shared.attend(q, causal=True)
    with pytest.raises(RuntimeError, match="overflow"):
        shared.append(torch.randn(B * G, nh, 2, hd), torch.randn(B * G, nh, 2, hd))


def test_shared_prefix_cache_attends_in_blocks_of_queries(monkeypatch):
    import kronos_sk.nn.layers as layers
    torch.manual_seed(5)
    B, G, nh, Tp, hd, Tq = 2, 3, 2, 7, 4, 9
    prefix = KVCache.empty(B, nh, Tp, hd, torch.float32, "cpu")
    prefix.append(torch.randn(B, nh, Tp, hd), torch.randn(B, nh, Tp, hd))
    shared = SharedPrefixCache(prefix, G, capacity=Tq)
    shared.append(torch.randn(B * G, nh, Tq, hd), torch.randn(B * G, nh, Tq, hd))
    q = torch.randn(B * G, nh, Tq, hd)
    mask = attention_mask(torch.rand(B * G, Tp + Tq) > 0.2, Tq, causal=True)
    whole = shared.attend(q, mask)
    monkeypatch.setattr(layers, "SCORE_BLOCK", 2 * B * G * nh * (Tp + Tq))  # 2 queries a block
    torch.testing.assert_close(shared.attend(q, mask), whole)
