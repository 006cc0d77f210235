"""The Kronos tokenizer: candles <-> (coarse id, fine id) pairs.

A causal Transformer encoder maps each normalised candle to `s1_bits + s2_bits` numbers, the
Binary Spherical Quantizer (BSQ) turns them into a sign vector on the unit sphere, and the sign
bits are read as two integers: the coarse subtoken (first `s1_bits`) and the fine subtoken
(last `s2_bits`). A causal Transformer decoder maps the sign vector back to candles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from kronos_sk.nn.config import TokenizerConfig
from kronos_sk.nn.layers import Block, KVCache, attention_mask, positions_from_valid


def bits_to_ids(bits: torch.Tensor) -> torch.Tensor:
    """(..., n) tensor of +-1 (or +-scale) -> (...,) int64 ids, least significant bit first."""
    weights = 2 ** torch.arange(bits.shape[-1], device=bits.device)
    return ((bits > 0).long() * weights).sum(-1)


def ids_to_bits(ids: torch.Tensor, n_bits: int) -> torch.Tensor:
    """(...,) int64 ids -> (..., n_bits) float tensor of +-1, least significant bit first."""
    weights = 2 ** torch.arange(n_bits, device=ids.device)
    return ((ids.unsqueeze(-1) & weights) != 0).float() * 2 - 1


@dataclass
class QuantizerLosses:
    """BSQ loss terms.

    `total` = beta * commitment + zeta * (gamma0 * H_sample - gamma * H_codebook).
    """

    total: torch.Tensor
    commitment: torch.Tensor
    sample_entropy: torch.Tensor
    codebook_entropy: torch.Tensor


class BSQuantizer(nn.Module):
    """Binary Spherical Quantization (Zhao et al., 2024, arXiv 2406.07548).

    `forward(z)` L2-normalises z, takes the sign of each component (0 counts as negative, as in
    the released code) scaled by 1/sqrt(n_bits) and passes gradients straight through.
    The entropy terms treat each group of `group_size` bits as one soft code assignment.
    """

    def __init__(self, n_bits: int, group_size: int, beta: float, gamma0: float, gamma: float,
                 zeta: float, inv_temperature: float = 100.0):
        super().__init__()
        self.n_bits, self.group_size = n_bits, group_size
        self.beta, self.gamma0, self.gamma, self.zeta = beta, gamma0, gamma, zeta
        self.inv_temperature = inv_temperature
        self.scale = 1.0 / math.sqrt(n_bits)
        # Buffers present in released checkpoints (most significant bit first); ids are NOT
        # built from them, see `bits_to_ids`.
        self.register_buffer("basis", 2 ** torch.arange(n_bits - 1, -1, -1))
        self.register_buffer("group_basis", 2 ** torch.arange(group_size - 1, -1, -1))
        # Every sign pattern of one group, scaled like the quantized vector: (2^g, g).
        codes = ids_to_bits(torch.arange(2 ** group_size), group_size) * self.scale
        self.register_buffer("group_codebook", codes, persistent=False)

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (unit-normalised z, straight-through quantized z)."""
        z = F.normalize(z, dim=-1)
        hard = torch.where(z > 0, 1.0, -1.0).to(z.dtype) * self.scale
        return z, z + (hard - z).detach()

    def losses(self, z: torch.Tensor, zq: torch.Tensor) -> QuantizerLosses:
        """Quantizer losses for unit-normalised `z` and its quantization `zq`, both (..., n)."""
        commitment = (zq.detach() - z).pow(2).sum(-1).mean()
        groups = z.reshape(-1, self.n_bits // self.group_size, self.group_size)  # (N, G, g)
        # Distances to the group codes differ only by -2 z.c, so that is the logit.
        logits = 2 * self.inv_temperature * groups @ self.group_codebook.T  # (N, G, 2^g)
        probs = logits.softmax(-1)
        log_probs = logits.log_softmax(-1)
        sample_entropy = -(probs * log_probs).sum(-1).sum(-1).mean()
        mean_probs = probs.mean(0)  # (G, 2^g)
        codebook_entropy = -(mean_probs * mean_probs.clamp_min(1e-12).log()).sum()
        total = self.beta * commitment + self.zeta * (
            self.gamma0 * sample_entropy - self.gamma * codebook_entropy)
        return QuantizerLosses(total, commitment, sample_entropy, codebook_entropy)


class _BSQHolder(nn.Module):
    """Keeps the released parameter path `tokenizer.bsq.*`."""

    def __init__(self, bsq: BSQuantizer):
        super().__init__()
        self.bsq = bsq


@dataclass
class TokenizerOutput:
    """Training-time forward pass of the tokenizer."""

    recon_coarse: torch.Tensor  # (B, T, d_in) from the coarse bits only
    recon_full: torch.Tensor    # (B, T, d_in) from all bits
    s1_ids: torch.Tensor        # (B, T) int64
    s2_ids: torch.Tensor        # (B, T) int64
    quantizer: QuantizerLosses


class KronosTokenizer(nn.Module):
    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.config = c = config
        n_bits = c.s1_bits + c.s2_bits

        def blocks(n_layers: int) -> nn.ModuleList:
            # The released code builds n_layers - 1 blocks; checkpoints depend on it.
            return nn.ModuleList(
                Block(c.d_model, c.n_heads, c.ff_dim, c.ffn_dropout_p, c.attn_dropout_p,
                      c.resid_dropout_p) for _ in range(n_layers - 1))

        self.embed = nn.Linear(c.d_in, c.d_model)
        self.encoder = blocks(c.n_enc_layers)
        self.quant_embed = nn.Linear(c.d_model, n_bits)
        self.tokenizer = _BSQHolder(BSQuantizer(n_bits, c.group_size, c.beta, c.gamma0, c.gamma,
                                                c.zeta))
        self.post_quant_embed_pre = nn.Linear(c.s1_bits, c.d_model)
        self.post_quant_embed = nn.Linear(n_bits, c.d_model)
        self.decoder = blocks(c.n_dec_layers)
        self.head = nn.Linear(c.d_model, c.d_in)

    @property
    def bsq(self) -> BSQuantizer:
        return self.tokenizer.bsq

    def _run(self, blocks: nn.ModuleList, x: torch.Tensor, valid: torch.Tensor | None,
             caches: list[KVCache] | None = None, positions: torch.Tensor | None = None,
             mask: torch.Tensor | None = None) -> torch.Tensor:
        if not len(blocks):
            return x
        if positions is None:
            positions = positions_from_valid(valid, x.shape[1], x.device)
            mask = attention_mask(valid, x.shape[1], causal=True)
        rope = blocks[0].self_attn.rotary(positions)
        for i, block in enumerate(blocks):
            x = block(x, rope, mask, None if caches is None else caches[i])
        return x

    def _encode_latent(self, x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
        z = self._run(self.encoder, self.embed(x), valid)
        return self.quant_embed(z)  # (B, T, n_bits)

    def _decode_latent(self, bits: torch.Tensor, valid: torch.Tensor | None,
                       coarse_only: bool = False) -> torch.Tensor:
        project = self.post_quant_embed_pre if coarse_only else self.post_quant_embed
        return self.head(self._run(self.decoder, project(bits), valid))

    def _split_ids(self, zq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s1 = self.config.s1_bits
        return bits_to_ids(zq[..., :s1]), bits_to_ids(zq[..., s1:])

    @torch.no_grad()
    def encode(self, x: torch.Tensor,
               valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised candles (B, T, d_in) -> coarse and fine ids, each (B, T) int64.

        `valid` (B, T) bool marks real rows of a left-padded batch (None: all real).
        """
        _, zq = self.bsq.quantize(self._encode_latent(x, valid))
        return self._split_ids(zq)

    @torch.no_grad()
    def decode(self, s1_ids: torch.Tensor, s2_ids: torch.Tensor,
               valid: torch.Tensor | None = None, caches: list[KVCache] | None = None,
               positions: torch.Tensor | None = None,
               mask: torch.Tensor | None = None) -> torch.Tensor:
        """Coarse and fine ids (B, T) -> normalised candles (B, T, d_in).

        With `caches` (one per decoder block) the tokens extend an already decoded prefix;
        then pass their `positions` and, when any key is padded or the prefix is not empty,
        the boolean `mask` over all keys (see `Predictor.hidden`).
        """
        bits = torch.cat((ids_to_bits(s1_ids, self.config.s1_bits),
                          ids_to_bits(s2_ids, self.config.s2_bits)), dim=-1)
        bits = (bits * self.bsq.scale).to(self.head.weight.dtype)
        latent = self._run(self.decoder, self.post_quant_embed(bits), valid, caches, positions,
                           mask)
        return self.head(latent)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> TokenizerOutput:
        """Training pass: reconstructions from the coarse bits and from all bits."""
        z, zq = self.bsq.quantize(self._encode_latent(x, valid))
        recon_coarse = self._decode_latent(zq[..., :self.config.s1_bits], valid, coarse_only=True)
        recon_full = self._decode_latent(zq, valid)
        s1_ids, s2_ids = self._split_ids(zq)
        return TokenizerOutput(recon_coarse, recon_full, s1_ids, s2_ids, self.bsq.losses(z, zq))
