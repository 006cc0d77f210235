import copy
import math

import pytest
import torch

import torch.nn.functional as F

from kronos_sk.nn.layers import (Attention, Block, Dropout, FeedForward, FusedLinears, KVCache,
                                 Linear, RMSNorm, RotaryEmbedding, SharedPrefixCache, apply_rotary,
                                 attention_mask, causal_attention_with_dropout,
                                 positions_from_valid)


def test_rmsnorm_matches_formula():
    torch.manual_seed(0)
    norm = RMSNorm(8)
    norm.weight.data = torch.randn(8)
    x = torch.randn(3, 5, 8)
    expected = x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + 1e-5) * norm.weight
    torch.testing.assert_close(norm(x), expected)


def test_rmsnorm_bfloat16_input_normalises_in_float32():
    torch.manual_seed(13)
    norm = RMSNorm(8)
    x = torch.randn(3, 8)
    torch.testing.assert_close(norm(x.bfloat16()).float(), norm(x), atol=2e-2, rtol=2e-2)


def test_dropout_keeps_at_rate_scales_and_passes_gradients_through_kept_only():
    torch.manual_seed(14)
    dropout = Dropout(0.25)
    x = (torch.rand(200, 500) + 1.0).requires_grad_()
    y = dropout(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.75) < 4 * math.sqrt(0.75 * 0.25 / x.numel())
    torch.testing.assert_close(y[kept], x[kept] / 0.75)
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / 0.75)
    assert dropout.eval()(x) is x and Dropout(0.0).train()(x) is x


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


def _kept_and_fresh_stack(module, *inputs, **kwargs):
    """The module's output without gradients (the kept stack) and with them (stacked anew)."""
    with torch.no_grad():
        kept = module(*inputs, **kwargs)
    return kept, module(*inputs, **kwargs).detach()


def _separate_attention(attn, x, context=None, rope=None, causal=False):
    """Attention computed with one product per projection."""
    context = x if context is None else context
    q, k, v = (attn._heads(proj(inp)) for proj, inp in
               ((attn.q_proj, x), (attn.k_proj, context), (attn.v_proj, context)))
    if rope is not None:
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
    return attn._merge(F.scaled_dot_product_attention(q, k, v, is_causal=causal))


def _separate_feed_forward(ffn, x):
    return ffn.w2(F.silu(ffn.w1(x)) * ffn.w3(x))


def test_fused_projections_equal_separate_ones():
    torch.manual_seed(6)
    block = Block(16, 4, 32).eval()
    x = torch.randn(2, 5, 16)
    rope = block.self_attn.rotary(torch.arange(5))
    h = x + _separate_attention(block.self_attn, block.norm1(x), rope=rope, causal=True)
    separate = (h + _separate_feed_forward(block.ffn, block.norm2(h))).detach()
    for fused in _kept_and_fresh_stack(block, x, rope):
        torch.testing.assert_close(fused, separate)
    cross = Attention(16, 4, cross=True).eval()
    context = torch.randn(2, 7, 16)
    separate = _separate_attention(cross, x, context).detach()
    for fused in _kept_and_fresh_stack(cross, x, context=context):
        torch.testing.assert_close(fused, separate)
    cache = KVCache.empty(2, 4, 7, 4, torch.float32, "cpu")
    with torch.no_grad():
        cross.extend_cache(context, cache)  # keys and values from the fused k/v product
    torch.testing.assert_close(cache.live(), (cross._heads(cross.k_proj(context)).detach(),
                                              cross._heads(cross.v_proj(context)).detach()))
    with pytest.raises(ValueError, match="cross=True"):
        block.self_attn(x, context=context)


def test_fused_product_with_gradients_trains_each_linear_as_separate_ones():
    torch.manual_seed(10)
    ffn = FeedForward(8, 16)
    x = torch.randn(3, 8)
    ffn(x).square().sum().backward()
    fused = [p.grad.clone() for p in ffn.parameters()]
    ffn.zero_grad()
    _separate_feed_forward(ffn, x).square().sum().backward()
    for grad, p in zip(fused, ffn.parameters()):
        torch.testing.assert_close(grad, p.grad)


@pytest.mark.parametrize("length", [5, 11])  # one block, and blocks of 4 with a short last one
def test_causal_attention_with_dropout_keeps_weights_at_rate_and_scales(length):
    torch.manual_seed(11)
    q, k = torch.randn(2, 3, length, 4), torch.randn(2, 3, length, 4)
    # One-hot values: each output row is that query's weights after dropout.
    v = torch.eye(length).expand(2, 3, length, length)
    weights = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(causal_attention_with_dropout(q, k, v, 0.0, block=4), weights)
    dropped = causal_attention_with_dropout(q, k, v, 0.3, block=4)
    later = torch.ones(length, length, dtype=torch.bool).triu(1)
    assert (dropped[..., later] == 0).all()  # causal
    kept = dropped != 0
    torch.testing.assert_close(dropped[kept], weights[kept] / 0.7)
    rate = kept[..., ~later].float().mean().item()
    draws = kept[..., ~later].numel()
    assert abs(rate - 0.7) < 4 * math.sqrt(0.21 / draws)


def test_causal_attention_with_dropout_has_the_gradients_of_attention():
    torch.manual_seed(12)
    qkv = [torch.randn(2, 2, 9, 4, requires_grad=True) for _ in range(3)]
    causal_attention_with_dropout(*qkv, 0.0, block=4).square().sum().backward()
    ours = [t.grad.clone() for t in qkv]
    for t in qkv:
        t.grad = None
    F.scaled_dot_product_attention(*qkv, is_causal=True).square().sum().backward()
    for grad, t in zip(ours, qkv):
        torch.testing.assert_close(grad, t.grad)


def test_fusion_keeps_parameters_and_state_dict():
    torch.manual_seed(7)
    block = Block(16, 4, 32).eval()
    before = {key: value.clone() for key, value in block.state_dict().items()}
    layout = {name: (p.data_ptr(), p.stride()) for name, p in block.named_parameters()}
    with torch.no_grad():
        block(torch.randn(1, 3, 16), block.self_attn.rotary(torch.arange(3)))
    assert block.self_attn.qkv.stacked_weight.shape == (48, 16)
    assert {name: (p.data_ptr(), p.stride()) for name, p in block.named_parameters()} == layout
    assert block.state_dict().keys() == before.keys()
    assert all(torch.equal(block.state_dict()[key], value) for key, value in before.items())
    block.train()  # training frees the stacked copies
    assert block.self_attn.qkv.stacked_weight is None and block.ffn.gate_up.stacked_weight is None


def test_fused_outputs_follow_in_place_updates_and_replaced_parameters():
    torch.manual_seed(8)
    ffn = FeedForward(8, 16).eval()
    x = torch.randn(3, 8)
    with torch.no_grad():
        first = ffn(x)
        ffn.w3.weight.mul_(2)  # in place, as an optimizer step
    assert not torch.allclose(first, _kept_and_fresh_stack(ffn, x)[0])
    torch.testing.assert_close(*_kept_and_fresh_stack(ffn, x))
    twin = copy.deepcopy(ffn)
    with torch.no_grad():
        twin.w1.weight.add_(1)
    torch.testing.assert_close(*_kept_and_fresh_stack(twin, x))
    assert not torch.allclose(twin(x), ffn(x))
    state = {key: torch.randn_like(value) for key, value in ffn.state_dict().items()}
    ffn.load_state_dict(state, assign=True)
    torch.testing.assert_close(*_kept_and_fresh_stack(ffn, x))
    ffn.w1.weight.data = torch.randn(16, 8)
    torch.testing.assert_close(*_kept_and_fresh_stack(ffn, x))
    ffn.to(torch.float64)
    kept, fresh = _kept_and_fresh_stack(ffn, x.double())
    assert kept.dtype == torch.float64
    torch.testing.assert_close(kept, fresh)


def test_stack_built_in_inference_mode_leaves_parameters_trainable():
    torch.manual_seed(9)
    attn = Attention(8, 2)
    with torch.inference_mode():
        attn(torch.randn(1, 2, 8))
    attn(torch.randn(1, 2, 8)).sum().backward()
    assert attn.q_proj.weight.grad.abs().sum() > 0


def test_fused_linears_need_biases_on_all_or_none():
    with pytest.raises(ValueError, match="bias"):
        FusedLinears(Linear(4, 4), Linear(4, 4, bias=False))
