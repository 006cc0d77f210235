"""The Kronos predictor: a decoder-only Transformer over (coarse, fine) token pairs.

Each step predicts the next coarse id from the hidden state, then the next fine id from a
dependency-aware layer: cross-attention whose query is the embedding of the chosen coarse id
and whose keys and values are the hidden states of the window.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from kronos_sk.nn.config import PredictorConfig
from kronos_sk.nn.layers import (Attention, Block, Dropout, KVCache, Linear, RMSNorm,
                                 SharedPrefixCache, attention_mask, positions_from_valid)

# (name, table size) of the calendar embeddings, in the column order of the stamps.
TIME_FIELDS = (("minute", 60), ("hour", 24), ("weekday", 7), ("day", 32), ("month", 13))
DEPENDENCY_HEADS = 4  # the released dependency layer has 4 heads whatever n_heads is


class HierarchicalEmbedding(nn.Module):
    def __init__(self, s1_bits: int, s2_bits: int, d_model: int):
        super().__init__()
        self.scale = math.sqrt(d_model)
        self.emb_s1 = nn.Embedding(2 ** s1_bits, d_model)
        self.emb_s2 = nn.Embedding(2 ** s2_bits, d_model)
        self.fusion_proj = Linear(2 * d_model, d_model)

    def forward(self, s1_ids: torch.Tensor, s2_ids: torch.Tensor) -> torch.Tensor:
        pair = torch.cat((self.emb_s1(s1_ids), self.emb_s2(s2_ids)), dim=-1) * self.scale
        return self.fusion_proj(pair)  # (B, T, d)


def sinusoid_table(n_positions: int, d_model: int) -> torch.Tensor:
    """Fixed table: sin at even, cos at odd columns (released `learn_te = false`)."""
    position = torch.arange(n_positions).float().unsqueeze(1)
    div = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
    table = torch.zeros(n_positions, d_model)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div)
    return table


class FixedEmbedding(nn.Module):
    """A frozen sinusoid lookup table, stored as `emb.weight`."""

    def __init__(self, n_positions: int, d_model: int):
        super().__init__()
        self.emb = nn.Embedding(n_positions, d_model)
        self.emb.weight = nn.Parameter(sinusoid_table(n_positions, d_model), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.emb(x).detach()


class TemporalEmbedding(nn.Module):
    """Sum of minute, hour, weekday, day-of-month and month embeddings."""

    def __init__(self, d_model: int, learnable: bool):
        super().__init__()
        make = nn.Embedding if learnable else FixedEmbedding
        for name, size in TIME_FIELDS:
            self.add_module(f"{name}_embed", make(size, d_model))

    def forward(self, stamps: torch.Tensor) -> torch.Tensor:
        stamps = stamps.long()  # (B, T, 5): minute, hour, weekday, day, month
        return sum(getattr(self, f"{name}_embed")(stamps[..., i])
                   for i, (name, _) in enumerate(TIME_FIELDS))


class DependencyAwareLayer(nn.Module):
    """norm(h + cross_attn(query = coarse embedding, key = value = h))."""

    def __init__(self, d_model: int, attn_dropout_p: float = 0.0, resid_dropout_p: float = 0.0):
        super().__init__()
        self.cross_attn = Attention(d_model, DEPENDENCY_HEADS, attn_dropout_p, resid_dropout_p,
                                    cross=True)
        self.norm = RMSNorm(d_model)

    def forward(self, h: torch.Tensor, query: torch.Tensor, valid: torch.Tensor | None = None,
                causal: bool | None = None) -> torch.Tensor:
        """Full-sequence call: queries and keys aligned at positions 0..T-1.

        `causal=None` follows the released behaviour: causal in training mode, unmasked in
        inference mode.
        """
        causal = self.training if causal is None else causal
        positions = positions_from_valid(valid, h.shape[1], h.device)
        rope = self.cross_attn.rotary(positions)
        mask = attention_mask(valid, h.shape[1], causal) if valid is not None else None
        attn = self.cross_attn(query, context=h, rope=rope, mask=mask, causal=causal)
        return self.norm(h + attn)

    def step(self, h_last: torch.Tensor, query: torch.Tensor,
             cache: KVCache | SharedPrefixCache,
             mask: torch.Tensor | None = None) -> torch.Tensor:
        """Inference: one query (B, 1, d) against the whole window, without rotary or mask.

        `cache` holds the keys and values of every hidden state of the window, `h_last`
        (B, 1, d) being the last; `mask` (B, 1, 1, Tk) hides padded keys.
        """
        return self.norm(h_last + self.cross_attn.attend_cache(query, cache, mask))


class DualHead(nn.Module):
    def __init__(self, s1_bits: int, s2_bits: int, d_model: int):
        super().__init__()
        self.proj_s1 = Linear(d_model, 2 ** s1_bits)
        self.proj_s2 = Linear(d_model, 2 ** s2_bits)


class KronosPredictor(nn.Module):
    def __init__(self, config: PredictorConfig):
        super().__init__()
        self.config = c = config
        self.embedding = HierarchicalEmbedding(c.s1_bits, c.s2_bits, c.d_model)
        self.time_emb = TemporalEmbedding(c.d_model, c.learn_te)
        self.token_drop = Dropout(c.token_dropout_p)
        self.transformer = nn.ModuleList(
            Block(c.d_model, c.n_heads, c.ff_dim, c.ffn_dropout_p, c.attn_dropout_p,
                  c.resid_dropout_p) for _ in range(c.n_layers))
        self.norm = RMSNorm(c.d_model)
        self.dep_layer = DependencyAwareLayer(c.d_model, c.attn_dropout_p, c.resid_dropout_p)
        self.head = DualHead(c.s1_bits, c.s2_bits, c.d_model)

    def hidden(self, s1_ids: torch.Tensor, s2_ids: torch.Tensor, stamps: torch.Tensor,
               valid: torch.Tensor | None = None, caches: list[KVCache] | None = None,
               positions: torch.Tensor | None = None, mask: torch.Tensor | None = None,
               ) -> torch.Tensor:
        """Token ids (B, T) and stamps (B, T, 5) -> final hidden states h (B, T, d).

        By default this is a causal pass over a window whose positions start at 0 (`valid`
        marks real tokens of a left-padded batch), filling `caches` (one per block) if given.
        To extend non-empty caches, pass the new tokens' `positions` ((T,) or (B, T)) and a
        boolean `mask` (B, 1, T, Tk) over all keys, or None for a single unpadded token.
        """
        x = self.embedding(s1_ids, s2_ids) + self.time_emb(stamps)
        x = self.token_drop(x)
        if positions is None:
            positions = positions_from_valid(valid, x.shape[1], x.device)
            mask = attention_mask(valid, x.shape[1], causal=True)
        rope = self.transformer[0].self_attn.rotary(positions)
        for i, block in enumerate(self.transformer):
            x = block(x, rope, mask, None if caches is None else caches[i])
        return self.norm(x)

    def coarse_logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.head.proj_s1(h)

    def fine_logits(self, h: torch.Tensor, s1_ids: torch.Tensor,
                    valid: torch.Tensor | None = None, causal: bool | None = None,
                    targets: torch.Tensor | None = None) -> torch.Tensor:
        """Fine logits (B, T, 2^s2) given the coarse ids at every position (full sequence).

        `causal=None`: causal in training mode only, as released (see `DependencyAwareLayer`).
        `targets` (B, T) bool keeps the positions it marks: (N, 2^s2) rows, in its order.
        """
        query = self.embedding.emb_s1(s1_ids)
        h = self.dep_layer(h, query, valid, causal)
        return self.head.proj_s2(h if targets is None else h[targets])

    def forward(self, s1_ids: torch.Tensor, s2_ids: torch.Tensor, stamps: torch.Tensor,
                s1_condition: torch.Tensor | None = None, valid: torch.Tensor | None = None,
                targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: coarse logits, and fine logits conditioned on `s1_condition`.

        `s1_condition` (B, T) is the coarse id the fine head conditions on at each position:
        the next coarse targets for teacher forcing, or ids sampled from the model's own coarse
        distribution (paper section 4.2) when None. The dependency layer is causal here in
        both modes, so a validation loss does not see later tokens.

        `targets` (B, T) bool, when given, marks the positions whose logits are wanted; they
        come back as (N, vocab) rows in the mask's order, and the heads and the sampling run
        on those positions only (the causal dependency layer makes a position's fine logits
        depend on its own condition alone). Without it: (B, T, vocab) at every position.
        """
        h = self.hidden(s1_ids, s2_ids, stamps, valid)
        s1_logits = self.coarse_logits(h if targets is None else h[targets])
        if s1_condition is None:
            probs = s1_logits.detach().float().softmax(-1)
            sampled = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1)
            s1_condition = (sampled.view(probs.shape[:-1]) if targets is None else
                            torch.zeros_like(s1_ids).masked_scatter(targets, sampled))
        return s1_logits, self.fine_logits(h, s1_condition, valid, causal=True, targets=targets)
