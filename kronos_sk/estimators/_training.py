"""Training a network from an estimator: a thin call into the training engine."""

from __future__ import annotations

import json
import tempfile
from typing import Any

import torch

from kronos_sk.checkpoints import load_predictor, load_tokenizer, save_checkpoint
from kronos_sk.nn.predictor import KronosPredictor
from kronos_sk.nn.tokenizer import KronosTokenizer
from kronos_sk.training import TrainConfig, run_training
from kronos_sk.training.distributed import rng_state, set_rng_state


def train_network(task: str, source, *, start: KronosTokenizer | KronosPredictor | None = None,
                  model_config: dict[str, Any] | None = None,
                  tokenizer: KronosTokenizer | None = None, max_steps: int, batch_size: int,
                  learning_rate: float, seed: int, device: str,
                  ) -> tuple[KronosTokenizer | KronosPredictor, list[float]]:
    """Train a tokenizer or predictor with the engine in a temporary run directory.

    Parameters
    ----------
    task : {"tokenizer", "predictor"}
    source : batch source with ``batch(step)`` (e.g. `kronos_sk.data.SeriesWindows`).
    start : weights to fine-tune (left untouched: the engine trains a copy), or None to
        train fresh weights of `model_config`.
    tokenizer : the frozen tokenizer of the predictor task.

    Global random states (torch, numpy, random) are left as they were.

    Returns
    -------
    module : the trained network in eval mode, on `device`.
    losses : training loss of each logged step.
    """
    saved_rng = rng_state(torch.device(device))  # the engine seeds torch, numpy and random
    try:
        with tempfile.TemporaryDirectory(prefix="kronos-sk-") as tmp:
            init = tokenizer_dir = None
            if start is not None:
                init = str(save_checkpoint(start, f"{tmp}/start"))
            if tokenizer is not None:
                tokenizer_dir = str(save_checkpoint(tokenizer, f"{tmp}/tokenizer"))
            config = TrainConfig(
                task=task, model={} if start is not None else dict(model_config or {}),
                init_checkpoint=init, tokenizer_checkpoint=tokenizer_dir, lr=learning_rate,
                warmup_steps=min(10, max_steps), max_steps=max_steps, batch_size=batch_size,
                eval_every=max_steps, save_every=max_steps, log_every=1, progress=False,
                seed=seed, device="cpu" if device == "cpu" else "auto", out_dir=f"{tmp}/run")
            best = run_training(config, source)
            losses = _read_losses(f"{tmp}/run/metrics.jsonl")
            load = load_tokenizer if task == "tokenizer" else load_predictor
            return load(best, device=device), losses
    finally:
        set_rng_state(saved_rng, torch.device(device))


def _read_losses(path: str) -> list[float]:
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r["loss"] for r in records if "loss" in r and "val_loss" not in r]
