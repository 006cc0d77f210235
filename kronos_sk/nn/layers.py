"""Building blocks shared by the tokenizer and the predictor.

RMSNorm, dropout, rotary position embedding, multi-head attention with an optional key/value
cache (plain, or a prefix shared by groups of rows) and a blockwise causal attention with
dropout for CPU training, the SwiGLU feed-forward and the pre-norm Transformer block.
Parameter names follow the released Kronos checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# Attention scores of a shared-prefix cache are materialised; at most this many at a time.
SCORE_BLOCK = 2 ** 23
# Queries per block of the causal attention with dropout that CPU training uses.
CAUSAL_BLOCK = 128


class Linear(nn.Linear):
    """`nn.Linear` whose (out, in) weight is stored input-major, i.e. as the transpose of a
    contiguous (in, out) matrix.

    `x @ weight.T` then reads the weight in memory order: the one-token matrix-vector products
    of cached generation run about twice as fast on CPU, batched products are unaffected. The
    parameter keeps its name and shape, so checkpoints are unchanged.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        self.weight = nn.Parameter(self.weight.detach().t().contiguous().t())


class FusedLinears(nn.Module):
    """Linears that read the same input, computed as one product when no gradient is needed.

    `forward(x)` returns their outputs side by side, from one product with their weights
    stacked along the outputs, (sum of out_features, in), input-major like `Linear`. With
    gradients the stack is built in the graph at each call, so the gradients reach each
    linear's own parameters; without gradients it is a copy kept between calls. The
    parameters themselves, their names and checkpoints are unchanged. The copy is made
    at the first call without gradients, made again after any weight or bias changed (an
    in-place update such as an optimizer step or `load_state_dict`, or a replaced tensor),
    and dropped by `train()`, `.to()` and copying.
    """

    def __init__(self, *linears: nn.Linear):
        super().__init__()
        if len({linear.bias is None for linear in linears}) > 1:
            raise ValueError("fused linears must all have a bias or all have none")
        self.parts = linears  # a plain tuple: the linears stay registered where they are
        self._unstack()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The outputs of the linears for input `x`, concatenated."""
        if torch.is_grad_enabled():
            return F.linear(x, *self._stacked())
        if self._versions() != self.stacked_versions:
            self._stack()
        return F.linear(x, self.stacked_weight, self.stacked_bias)

    def _versions(self) -> list[tuple[int, int]]:
        """Where each weight and bias is and how often it was changed in place."""
        # Read from the parameter dicts: a few times faster than attribute access, per call.
        return [(tensor.data_ptr(), tensor._version) for linear in self.parts
                for tensor in linear._parameters.values() if tensor is not None]

    def _stacked(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The weights stacked input-major, and the biases, as new tensors."""
        weight = torch.cat([linear.weight.t() for linear in self.parts], 1).t()
        if self.parts[0].bias is None:
            return weight, None
        return weight, torch.cat([linear.bias for linear in self.parts])

    @torch.no_grad()
    def _stack(self) -> None:
        with torch.inference_mode(False):  # a plain tensor, whatever mode the call runs in
            self.stacked_weight, self.stacked_bias = self._stacked()
        self.stacked_versions = self._versions()

    def _unstack(self) -> None:
        self.stacked_weight = self.stacked_bias = self.stacked_versions = None

    def train(self, mode: bool = True) -> FusedLinears:
        if mode:
            self._unstack()  # training changes the weights: no stale copy held meanwhile
        return super().train(mode)

    def _apply(self, fn, recurse: bool = True):
        self._unstack()  # .to() and the like replace the parameters: free the old copy now
        return super()._apply(fn, recurse)

    def __getstate__(self) -> dict:
        state = super().__getstate__()  # deep copies and pickles make their own stack
        state.update(stacked_weight=None, stacked_bias=None, stacked_versions=None)
        return state


class Dropout(nn.Dropout):
    """`nn.Dropout` that draws its mask as booleans on CPU, a third faster; same distribution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type != "cpu" or self.p == 1.0:
            return super().forward(x)
        kept = torch.rand(x.shape, device=x.device) >= self.p
        return (x * kept).mul_(1.0 / (1.0 - self.p))


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == self.weight.dtype == torch.float32:  # torch's fused kernel, same values
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        # Normalise in float32 even when the model runs in bfloat16.
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


class RotaryEmbedding(nn.Module):
    """Rotary position embedding; `forward(positions)` gives the (cos, sin) tables."""

    def __init__(self, head_dim: int):
        super().__init__()
        inv_freq = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
        self.register_buffer("inv_freq", inv_freq)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # positions: (T,) or (B, T) integers -> cos, sin: (T, hd) or (B, 1, T, hd)
        angles = positions.to(self.inv_freq.dtype).unsqueeze(-1) * self.inv_freq
        angles = torch.cat((angles, angles), dim=-1)
        if positions.dim() == 2:
            angles = angles.unsqueeze(1)  # broadcast over heads
        return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, nh, T, hd) by the given angles, computed in float32."""
    x1, x2 = x.float().chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return (x.float() * cos + rotated * sin).type_as(x)


class KVCache:
    """Preallocated keys and values of one attention layer.

    `k` and `v` are (B, nh, capacity, hd); the live entries are `[start:length]`. Appending
    writes in place, so each generated step costs one token; `start` moves forward when a
    rolling window drops its oldest entries.
    """

    def __init__(self, k: torch.Tensor, v: torch.Tensor, length: int = 0, start: int = 0):
        self.k, self.v, self.length, self.start = k, v, length, start

    @classmethod
    def empty(cls, batch: int, n_heads: int, capacity: int, head_dim: int,
              dtype: torch.dtype, device: torch.device | str) -> KVCache:
        shape = (batch, n_heads, capacity, head_dim)
        return cls(torch.empty(shape, dtype=dtype, device=device),
                   torch.empty(shape, dtype=dtype, device=device))

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store (B, nh, T, hd) new entries."""
        end = self.length + k.shape[2]
        if end > self.capacity:
            raise RuntimeError(f"KV cache overflow: {end} entries, capacity {self.capacity}")
        self.k[:, :, self.length:end] = k
        self.v[:, :, self.length:end] = v
        self.length = end

    def live(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.k[:, :, self.start:self.length], self.v[:, :, self.start:self.length]

    def attend(self, q: torch.Tensor, mask: torch.Tensor | None = None,
               causal: bool = False) -> torch.Tensor:
        """Attend from queries (B, nh, Tq, hd) to every live entry -> (B, nh, Tq, hd)."""
        k, v = self.live()
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                              is_causal=causal and mask is None)


class SharedPrefixCache:
    """Keys and values of batch rows that share a prefix in groups of `group` consecutive
    rows, e.g. the samples of a series over its context.

    The prefix (B, nh, Tp, hd) is stored once per group and each row's own entries
    (B * group, nh, capacity, hd) follow it. Positions run through both, so `start` and
    `length` mean what they mean for `KVCache` (live entries `[start:length]`). Attention
    reads each prefix once for all queries of its group, in one batched product, rather
    than from a copy per row.
    """

    def __init__(self, prefix: KVCache, group: int, capacity: int):
        self.prefix_k, self.prefix_v = prefix.live()
        B, n_heads, _, head_dim = self.prefix_k.shape
        self.group, self.start = group, 0
        self.own = KVCache.empty(B * group, n_heads, capacity, head_dim, self.prefix_k.dtype,
                                 self.prefix_k.device)

    @property
    def length(self) -> int:
        return self.prefix_k.shape[2] + self.own.length

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store (B * group, nh, T, hd) new entries of every row."""
        self.own.append(k, v)

    def attend(self, q: torch.Tensor, mask: torch.Tensor | None = None,
               causal: bool = False) -> torch.Tensor:
        """Attend from queries (B * group, nh, Tq, hd) to every live entry of their row.

        `mask` is boolean, broadcastable to (B * group, nh, Tq, live entries); a causal call
        needs it (the queries' own positions are not known here).
        """
        if causal and mask is None:
            raise ValueError("causal attention over a shared prefix needs an explicit mask")
        n_prefix = self.prefix_k.shape[2]
        first = min(self.start, n_prefix)
        own = slice(max(0, self.start - n_prefix), self.own.length)
        keys = (self.prefix_k[:, :, first:], self.prefix_v[:, :, first:],  # (B, nh, Tp, hd)
                self.own.k[:, :, own], self.own.v[:, :, own])  # (B * group, nh, To, hd)
        P, n_heads, Tq, _ = q.shape
        n_keys = keys[0].shape[2] + keys[2].shape[2]
        # The scores are materialised: a long window of queries goes in blocks.
        block = max(1, SCORE_BLOCK // (P * n_heads * n_keys))
        if Tq <= block:
            return self._attend(q, mask, *keys)
        per_query = mask is not None and mask.shape[-2] > 1
        return torch.cat([self._attend(q[:, :, i:i + block],
                                       mask[..., i:i + block, :] if per_query else mask, *keys)
                          for i in range(0, Tq, block)], 2)

    def _attend(self, q, mask, kp, vp, ko, vo) -> torch.Tensor:
        """One softmax over the group's prefix kp/vp (B, nh, Tp, hd) and the row's own
        entries ko/vo (P, nh, To, hd), for queries q (P, nh, Tq, hd) -> (P, nh, Tq, hd)."""
        P, n_heads, Tq, head_dim = q.shape
        G = self.group
        B = P // G
        dtype = torch.promote_types(q.dtype, torch.float32)  # softmax in float32 for bf16
        q = q.to(dtype) * head_dim ** -0.5
        grouped = q.reshape(B, G, n_heads, Tq, head_dim).transpose(1, 2).reshape(
            B, n_heads, G * Tq, head_dim)  # the group's queries side by side
        scores_p = (grouped @ kp.to(dtype).transpose(-1, -2)).reshape(
            B, n_heads, G, Tq, -1).transpose(1, 2).reshape(P, n_heads, Tq, -1)
        scores = torch.cat((scores_p, q @ ko.to(dtype).transpose(-1, -2)), -1)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-1)  # (P, nh, Tq, Tp + To)
        wp, wo = weights.split((kp.shape[2], ko.shape[2]), -1)
        wp = wp.reshape(B, G, n_heads, Tq, -1).transpose(1, 2).reshape(B, n_heads, G * Tq, -1)
        y = (wp @ vp.to(dtype)).reshape(B, n_heads, G, Tq, head_dim).transpose(1, 2).reshape(
            P, n_heads, Tq, head_dim)
        return (y + wo @ vo.to(dtype)).to(vp.dtype)


def causal_attention_with_dropout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                  dropout_p: float, block: int = CAUSAL_BLOCK) -> torch.Tensor:
    """Causal attention (B, nh, T, hd) with dropout on the attention weights, for CPU training.

    On CPU torch's fused kernels take no dropout, and its fallback scores every query against
    every key, the masked half included, and draws a float mask. Here each `block` of queries
    is scored against the keys up to its last query only, and the mask is drawn as booleans;
    the distribution is the same (each weight kept with probability 1 - p, the output scaled
    by 1 / (1 - p)). At 512 tokens forward and backward take less than half the time.
    """
    T, keep = q.shape[2], 1.0 - dropout_p
    # Contiguous once: the products of strided blocks would each copy them.
    q, k, v = (q * q.shape[-1] ** -0.5).contiguous(), k.contiguous(), v.contiguous()
    out = []
    for start in range(0, T, block):
        end = min(T, start + block)
        scores = q[:, :, start:end] @ k[:, :, :end].transpose(-1, -2)  # (B, nh, Tb, end)
        later = torch.ones(end - start, end, dtype=torch.bool, device=q.device).triu(start + 1)
        weights = scores.masked_fill(later, float("-inf")).softmax(-1, dtype=torch.float32)
        kept = torch.rand(weights.shape, device=q.device) < keep
        out.append((weights * kept).to(v.dtype) @ v[:, :, :end])
    return torch.cat(out, 2) / keep


class Attention(nn.Module):
    """Multi-head attention with rotary positions, for self-attention or, with `cross=True`,
    cross-attention (queries from one input, keys and values from a `context`).

    `rope` holds the (cos, sin) of the query tokens; it is applied to the queries and to the
    new keys (equal lengths), or skipped when None. `mask` is boolean, True where a query may
    attend, broadcastable to (B, nh, Tq, Tk). Without gradients, the projections that share an
    input run as one product: q, k and v in self-attention, k and v in cross-attention.
    """

    def __init__(self, d_model: int, n_heads: int, attn_dropout_p: float = 0.0,
                 resid_dropout_p: float = 0.0, cross: bool = False):
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.cross = cross
        self.q_proj = Linear(d_model, d_model)
        self.k_proj = Linear(d_model, d_model)
        self.v_proj = Linear(d_model, d_model)
        if cross:
            self.kv = FusedLinears(self.k_proj, self.v_proj)
        else:
            self.qkv = FusedLinears(self.q_proj, self.k_proj, self.v_proj)
        self.out_proj = Linear(d_model, d_model)
        self.rotary = RotaryEmbedding(self.head_dim)
        self.attn_dropout_p = attn_dropout_p
        self.resid_dropout = Dropout(resid_dropout_p)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape  # x: (B, T, n * d), n projections side by side
        return x.view(B, T, -1, self.head_dim).transpose(1, 2)  # (B, n * nh, T, hd)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None,
                mask: torch.Tensor | None = None, causal: bool = False,
                cache: KVCache | SharedPrefixCache | None = None) -> torch.Tensor:
        """Attend from `x` (B, Tq, d) to `context` (B, Tk, d) -> (B, Tq, d).

        `context` is for cross-attention (default x); self-attention attends to `x`. With a
        cache, the keys and values of `context` are appended to it first and the queries
        attend to everything it holds. A multi-token causal call needs an empty cache.
        """
        nh = self.n_heads
        if self.cross:
            q = self._heads(self.q_proj(x))  # (B, nh, Tq, hd)
            k, v = self._heads(self.kv(x if context is None else context)).split(nh, 1)
            if rope is not None:
                q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        elif context is not None:
            raise ValueError("a self-attention layer takes no context; build it with cross=True")
        else:  # one product, and one rotation of the queries and keys together
            qk, v = self._heads(self.qkv(x)).split((2 * nh, nh), 1)  # (B, 2nh | nh, T, hd)
            if rope is not None:
                qk = apply_rotary(qk, *rope)
            q, k = qk.split(nh, 1)
        if cache is not None:  # inference: no attention dropout
            cache.append(k, v)
            return self._merge(cache.attend(q, mask, causal))
        dropout_p = self.attn_dropout_p if self.training else 0.0
        if causal and mask is None and dropout_p > 0 and q.device.type == "cpu":
            return self._merge(causal_attention_with_dropout(q, k, v, dropout_p))
        return self._merge(F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal and mask is None, dropout_p=dropout_p))

    def extend_cache(self, context: torch.Tensor, cache: KVCache | SharedPrefixCache) -> None:
        """Append the unrotated keys and values of `context` (B, T, d) to `cache` (cross only)."""
        k, v = self._heads(self.kv(context)).split(self.n_heads, 1)  # (B, nh, T, hd)
        cache.append(k, v)

    def attend_cache(self, x: torch.Tensor, cache: KVCache | SharedPrefixCache,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend from `x` (B, Tq, d), without rotary, to every entry of `cache`."""
        return self._merge(cache.attend(self._heads(self.q_proj(x)), mask))

    def _merge(self, y: torch.Tensor) -> torch.Tensor:
        """(B, nh, Tq, hd) attention output -> (B, Tq, d) after the output projection."""
        B, _, T, _ = y.shape
        y = y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)
        return self.resid_dropout(self.out_proj(y))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, d_model: int, ff_dim: int, dropout_p: float = 0.0):
        super().__init__()
        self.w1 = Linear(d_model, ff_dim, bias=False)
        self.w3 = Linear(d_model, ff_dim, bias=False)
        self.w2 = Linear(ff_dim, d_model, bias=False)
        self.gate_up = FusedLinears(self.w1, self.w3)
        self.dropout = Dropout(dropout_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, -1)
        return self.dropout(self.w2(F.silu(gate) * up))


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(norm1(x)), then x + ffn(norm2(x))."""

    def __init__(self, d_model: int, n_heads: int, ff_dim: int, ffn_dropout_p: float = 0.0,
                 attn_dropout_p: float = 0.0, resid_dropout_p: float = 0.0):
        super().__init__()
        self.norm1 = RMSNorm(d_model)
        self.self_attn = Attention(d_model, n_heads, attn_dropout_p, resid_dropout_p)
        self.norm2 = RMSNorm(d_model)
        self.ffn = FeedForward(d_model, ff_dim, ffn_dropout_p)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                mask: torch.Tensor | None = None,
                cache: KVCache | SharedPrefixCache | None = None) -> torch.Tensor:
        causal = mask is None and x.shape[1] > 1
        x = x + self.self_attn(self.norm1(x), rope=rope, mask=mask, causal=causal, cache=cache)
        return x + self.ffn(self.norm2(x))


def attention_mask(valid: torch.Tensor | None, n_queries: int, causal: bool) -> torch.Tensor | None:
    """Boolean mask (B, 1, Tq, Tk), True where a query may attend; None when `valid` is None.

    `valid` is (B, Tk), True on real (not left-padding) keys; the queries are the last
    `n_queries` keys. A padded query may attend to itself so that no softmax row is empty
    (its output is never used).
    """
    if valid is None:
        return None
    B, Tk = valid.shape
    key_pos = torch.arange(Tk, device=valid.device)
    query_pos = key_pos[Tk - n_queries:]
    allowed = valid[:, None, :].expand(B, n_queries, Tk)
    if causal:
        allowed = allowed & (key_pos[None, :] <= query_pos[:, None])
    allowed = allowed | (key_pos[None, :] == query_pos[:, None])
    return allowed.unsqueeze(1)


def positions_from_valid(valid: torch.Tensor | None, length: int,
                         device: torch.device | str) -> torch.Tensor:
    """Rotary positions that count from 0 at each row's first real token.

    Returns (T,) when nothing is padded, else (B, T) (padded slots get position 0).
    """
    if valid is None:
        return torch.arange(length, device=device)
    return (valid.long().cumsum(-1) - 1).clamp(min=0)
