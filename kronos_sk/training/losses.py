"""Training objectives of the Kronos tokenizer and predictor (paper sections 4.1.3 and 4.2)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from kronos_sk.nn.tokenizer import KronosTokenizer


def tokenizer_loss(tokenizer: nn.Module, values: torch.Tensor,
                   quant_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Reconstruction plus quantizer loss: ``mse_coarse + mse_full + quant_weight * bsq``.

    Parameters
    ----------
    tokenizer : KronosTokenizer, or a DistributedDataParallel wrapping one
    values : torch.Tensor
        (B, L, d_in) normalised candles, float32.
    quant_weight : float, default=1.0
        The paper's lambda on the BSQ loss (commitment and entropy terms).

    Returns
    -------
    loss : torch.Tensor
        Scalar float32 tensor that carries the graph.
    metrics : dict of str to float
        Detached values: loss, mse_coarse, mse_full, quant, commitment, codebook_entropy.
    """
    out = tokenizer(values)
    target = values.float()
    mse_coarse = F.mse_loss(out.recon_coarse.float(), target)
    mse_full = F.mse_loss(out.recon_full.float(), target)
    quant = out.quantizer.total.float()
    loss = mse_coarse + mse_full + quant_weight * quant
    return loss, _detached(loss=loss, mse_coarse=mse_coarse, mse_full=mse_full, quant=quant,
                           commitment=out.quantizer.commitment,
                           codebook_entropy=out.quantizer.codebook_entropy)


def predictor_loss(predictor: nn.Module, tokenizer: KronosTokenizer, values: torch.Tensor,
                   stamps: torch.Tensor, teacher_forcing: bool = False,
                   ) -> tuple[torch.Tensor, dict[str, float]]:
    """Next-token cross-entropy of coarse and fine ids, averaged: ``(ce_coarse + ce_fine) / 2``.

    The window is tokenized by the frozen `tokenizer`; tokens 0..L-2 (with their stamps) are
    the inputs and tokens 1..L-1 the targets. The fine head is conditioned on coarse ids
    sampled from the predictor's own coarse distribution (paper section 4.2; this draws from
    torch's global RNG on CPU, the device's RNG on CUDA), or on the true next coarse ids with
    `teacher_forcing`.

    Parameters
    ----------
    predictor : KronosPredictor, or a DistributedDataParallel wrapping one
    tokenizer : KronosTokenizer
        Frozen; its ids are computed without gradients.
    values : torch.Tensor
        (B, L, d_in) normalised candles, float32, L >= 2.
    stamps : torch.Tensor
        (B, L, 5) int64 calendar stamps (minute, hour, weekday, day, month).
    teacher_forcing : bool, default=False

    Returns
    -------
    loss : torch.Tensor
        Scalar float32 tensor that carries the graph.
    metrics : dict of str to float
        Detached values: loss, ce_coarse, ce_fine.
    """
    # Tokenize in float32 even under bf16 autocast: the targets must be the ids the
    # tokenizer gives at inference time, and a sign near zero may flip in bfloat16.
    with torch.no_grad(), torch.autocast(values.device.type, enabled=False):
        s1_ids, s2_ids = tokenizer.encode(values.float())  # (B, L) each
    s1_targets, s2_targets = s1_ids[:, 1:], s2_ids[:, 1:]
    s1_logits, s2_logits = predictor(
        s1_ids[:, :-1], s2_ids[:, :-1], stamps[:, :-1],
        s1_condition=s1_targets if teacher_forcing else None)  # (B, L-1, 2^s1), (B, L-1, 2^s2)
    ce_coarse = F.cross_entropy(s1_logits.flatten(0, 1).float(), s1_targets.flatten())
    ce_fine = F.cross_entropy(s2_logits.flatten(0, 1).float(), s2_targets.flatten())
    loss = (ce_coarse + ce_fine) / 2
    return loss, _detached(loss=loss, ce_coarse=ce_coarse, ce_fine=ce_fine)


def _detached(**scalars: torch.Tensor) -> dict[str, float]:
    # One device-to-host copy for all metrics instead of one synchronisation per value.
    values = torch.stack([s.detach().float() for s in scalars.values()]).tolist()
    return dict(zip(scalars, values))
