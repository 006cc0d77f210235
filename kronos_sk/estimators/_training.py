"""Training a network from an estimator: a thin, in-memory call into the training engine."""

from __future__ import annotations

import copy
from typing import Any

import torch

from kronos_sk.nn.predictor import KronosPredictor
from kronos_sk.nn.tokenizer import KronosTokenizer
from kronos_sk.runtime import resolve_device
from kronos_sk.training import TrainConfig, train_modules
from kronos_sk.training.distributed import rng_state, set_rng_state


def train_network(task: str, source, *, start: KronosTokenizer | KronosPredictor | None = None,
                  model_config: dict[str, Any] | None = None,
                  tokenizer: KronosTokenizer | None = None, max_steps: int, batch_size: int,
                  learning_rate: float, seed: int, device: str | torch.device,
                  ) -> tuple[KronosTokenizer | KronosPredictor, list[float]]:
    """Train a tokenizer or predictor with the engine, in memory (nothing is written).

    Parameters
    ----------
    task : {"tokenizer", "predictor"}
    source : batch source with ``batch(step)`` (e.g. `kronos_sk.data.SeriesWindows`).
    start : weights to fine-tune (left untouched: the engine trains a float32 copy), or None
        to train fresh weights of `model_config` (initialised from `seed`).
    tokenizer : the frozen tokenizer of the predictor task (left untouched: a copy is used).
    device : "auto", "cpu", "cuda", "cuda:N" or "mps"; training runs on exactly the device
        it names ("auto": CUDA, then MPS, then the CPU).

    Global random states (torch, numpy, random) are left as they were.

    Returns
    -------
    module : the trained network in eval mode, float32, on `device`.
    losses : training loss of each step.
    """
    device = resolve_device(device)  # "auto" -> the device it picks; a missing one is named
    saved_rng = rng_state(device)  # the engine seeds torch, numpy and random
    try:
        config = TrainConfig(
            task=task, model={} if start is not None else dict(model_config or {}),
            lr=learning_rate, warmup_steps=min(10, max_steps), max_steps=max_steps,
            batch_size=batch_size,
            eval_every=max_steps, save_every=max_steps, log_every=1, progress=False,
            seed=seed, device=str(device), out_dir=None)
        # Cached modules are shared read-only: train, move and freeze copies only.
        module = None if start is None else copy.deepcopy(start).float()
        frozen = None if tokenizer is None else copy.deepcopy(tokenizer).float()
        module, records = train_modules(config, source, module=module, tokenizer=frozen)
        return module, [r["loss"] for r in records if "loss" in r and "val_loss" not in r]
    finally:
        set_rng_state(saved_rng, device)
