"""Training objectives of the Kronos tokenizer and predictor (paper sections 4.1.3 and 4.2)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from kronos_sk.nn.tokenizer import KronosTokenizer


def tokenizer_loss(tokenizer: nn.Module, values: torch.Tensor, quant_weight: float = 1.0,
                   length: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Reconstruction plus quantizer loss: ``mse_coarse + mse_full + quant_weight * bsq``.

    Parameters
    ----------
    tokenizer : KronosTokenizer, or a DistributedDataParallel wrapping one
    values : torch.Tensor
        (B, L, d_in) normalised candles, float32.
    quant_weight : float, default=1.0
        The paper's lambda on the BSQ loss (commitment and entropy terms).
    length : torch.Tensor, default=None
        (B,) int64 real rows per window; the reconstruction errors of later rows (padding)
        are left out (None: all rows count).

    Returns
    -------
    loss : torch.Tensor
        Scalar float32 tensor that carries the graph.
    metrics : dict of str to float
        Detached values: loss, mse_coarse, mse_full, quant, commitment, codebook_entropy.
    """
    out = tokenizer(values)
    target = values.float()
    weight = torch.ones(values.shape[:2], device=values.device)
    if length is not None:
        weight = (torch.arange(values.shape[1], device=values.device) < length[:, None]).float()
    weight = (weight / (weight.sum() * values.shape[-1]))[..., None]
    mse_coarse = (weight * (out.recon_coarse.float() - target) ** 2).sum()
    mse_full = (weight * (out.recon_full.float() - target) ** 2).sum()
    quant = out.quantizer.total.float()
    loss = mse_coarse + mse_full + quant_weight * quant
    return loss, _detached(loss=loss, mse_coarse=mse_coarse, mse_full=mse_full, quant=quant,
                           commitment=out.quantizer.commitment,
                           codebook_entropy=out.quantizer.codebook_entropy)


def predictor_token_losses(predictor: nn.Module, tokenizer: KronosTokenizer,
                           values: torch.Tensor, stamps: torch.Tensor, context: torch.Tensor,
                           length: torch.Tensor | None = None, teacher_forcing: bool = False,
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-target coarse and fine cross-entropy, and which targets the objective scores.

    The window is tokenized by the frozen `tokenizer`; tokens 0..L-2 (with their stamps) are
    the inputs and tokens 1..L-1 the targets. The fine head is conditioned on coarse ids
    sampled from the predictor's own coarse distribution (paper section 4.2; this draws from
    torch's global RNG on CPU, the device's RNG on CUDA), or on the true next coarse ids with
    `teacher_forcing`.

    A window normalised with the statistics of its first ``context`` rows scores only the
    targets at positions ``context .. length - 1``: every scored target is normalised with
    statistics of earlier rows only, as at inference. The tokenizer and predictor are causal,
    so the rows after ``length`` (padding) reach no scored target either.

    Parameters
    ----------
    predictor : KronosPredictor, or a DistributedDataParallel wrapping one
    tokenizer : KronosTokenizer
        Frozen; its ids are computed without gradients.
    values : torch.Tensor
        (B, L, d_in) normalised candles, float32, L >= 2.
    stamps : torch.Tensor
        (B, L, 5) int64 calendar stamps (minute, hour, weekday, day, month).
    context : torch.Tensor
        (B,) int64: the rows whose statistics normalised each window, in ``[1, L - 1]``.
    length : torch.Tensor, default=None
        (B,) int64 real rows per window (None: all L).
    teacher_forcing : bool, default=False

    Returns
    -------
    ce_coarse, ce_fine : torch.Tensor
        (B, L - 1) float32 cross-entropy of target positions 1..L-1, carrying the graph; 0 at
        the targets not scored (they are not computed).
    scored : torch.Tensor
        (B, L - 1) bool: the targets the objective averages.
    """
    # Tokenize in float32 even under bf16 autocast: the targets must be the ids the
    # tokenizer gives at inference time, and a sign near zero may flip in bfloat16.
    with torch.no_grad(), torch.autocast(values.device.type, enabled=False):
        s1_ids, s2_ids = tokenizer.encode(values.float())  # (B, L) each
    s1_targets, s2_targets = s1_ids[:, 1:], s2_ids[:, 1:]
    position = torch.arange(1, values.shape[1], device=values.device)
    scored = position >= context[:, None]
    if length is not None:
        scored &= position < length[:, None]
    # Logits at the scored targets only: (N, vocab) rows, which also keep the CPU kernels
    # contiguous (a class axis in the middle makes them strided).
    s1_logits, s2_logits = predictor(
        s1_ids[:, :-1], s2_ids[:, :-1], stamps[:, :-1],
        s1_condition=s1_targets if teacher_forcing else None, targets=scored)
    ce_coarse = F.cross_entropy(s1_logits.float(), s1_targets[scored], reduction="none")
    ce_fine = F.cross_entropy(s2_logits.float(), s2_targets[scored], reduction="none")
    zeros = torch.zeros(scored.shape, device=values.device)
    return zeros.masked_scatter(scored, ce_coarse), zeros.masked_scatter(scored, ce_fine), scored


def predictor_loss(predictor: nn.Module, tokenizer: KronosTokenizer, values: torch.Tensor,
                   stamps: torch.Tensor, context: torch.Tensor,
                   length: torch.Tensor | None = None, teacher_forcing: bool = False,
                   ) -> tuple[torch.Tensor, dict[str, float]]:
    """Next-token cross-entropy of the scored targets, coarse and fine averaged.

    ``(ce_coarse + ce_fine) / 2`` over the targets that
    [`predictor_token_losses`][kronos_sk.training.losses.predictor_token_losses] scores
    (same parameters).

    Returns
    -------
    loss : torch.Tensor
        Scalar float32 tensor that carries the graph.
    metrics : dict of str to float
        Detached values: loss, ce_coarse, ce_fine.
    """
    ce_coarse, ce_fine, scored = predictor_token_losses(
        predictor, tokenizer, values, stamps, context, length, teacher_forcing)
    weight = scored.float() / scored.sum().clamp(min=1)
    ce_coarse, ce_fine = (ce_coarse * weight).sum(), (ce_fine * weight).sum()
    loss = (ce_coarse + ce_fine) / 2
    return loss, _detached(loss=loss, ce_coarse=ce_coarse, ce_fine=ce_fine)


def _detached(**scalars: torch.Tensor) -> dict[str, float]:
    # One device-to-host copy for all metrics instead of one synchronisation per value.
    values = torch.stack([s.detach().float() for s in scalars.values()]).tolist()
    return dict(zip(scalars, values))
