"""Training the estimators' networks: thin, in-memory calls into the training engine."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from kronos_sk._defaults import learning_rate_for
from kronos_sk.data import SeriesWindows, assemble_features, time_features
from kronos_sk.data.normalize import check_model_space
from kronos_sk.data.windows import DEFAULT_MIN_CONTEXT
from kronos_sk.nn.config import small_predictor_config, small_tokenizer_config
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


def training_seed(random_state: int | None) -> int:
    """The seed of training windows and initial weights, from an estimator's random_state."""
    return int(np.random.RandomState(random_state).randint(0, 2**31 - 1))


def series_windows(contexts: Sequence[pd.DataFrame], *, lookback: int, horizon: int,
                   batch_size: int, seed: int, value_transform: str = "none") -> SeriesWindows:
    """Training windows of `lookback` + `horizon` rows from validated candle frames (shorter
    series: windows as long as the longest series allows), in the tokenizer's value space."""
    series = [(assemble_features(c), time_features(c.index)) for c in contexts]
    for context, (values, _) in zip(contexts, series):
        check_model_space(values, value_transform, f"the series ending {context.index[-1]}",
                          context.index)
    length = min(lookback + horizon, max(len(v) for v, _ in series))
    if length < 2:
        raise ValueError("training needs series of at least 2 rows")
    horizon = min(horizon, length - 1)
    lookback = length - horizon
    return SeriesWindows(series, lookback, horizon, batch_size,
                         min_context=min(DEFAULT_MIN_CONTEXT, lookback), seed=seed,
                         mask_fraction=0.05, value_transform=value_transform)


# The forecaster's parameters that training reads (besides the networks to start from).
TRAINING_PARAMETERS = ("fit_strategy", "finetune_tokenizer", "tokenizer_config", "model_config",
                       "lookback", "horizon", "max_steps", "batch_size", "learning_rate",
                       "random_state", "device")


def train_forecaster_networks(contexts: Sequence[pd.DataFrame],
                              tokenizer: KronosTokenizer | None,
                              predictor: KronosPredictor | None, *, fit_strategy: str,
                              finetune_tokenizer: bool, tokenizer_config: dict | None,
                              model_config: dict | None, lookback: int, horizon: int,
                              max_steps: int, batch_size: int, learning_rate: float | None,
                              random_state: int | None, device: str | torch.device,
                              ) -> tuple[KronosTokenizer, KronosPredictor, list[float]]:
    """Train a forecaster's networks on its series: (tokenizer, predictor, losses).

    Without networks (None, None), trains a new tokenizer of `tokenizer_config` (over
    `SMALL_TOKENIZER`) and then a predictor of `model_config`; else trains copies of
    `predictor` (and of `tokenizer` first when `finetune_tokenizer`). The given networks
    are never changed. `learning_rate` None: the default of `fit_strategy`.
    """
    seed = training_seed(random_state)
    network = small_tokenizer_config(tokenizer_config) if tokenizer is None else \
        tokenizer.config
    source = series_windows(contexts, lookback=lookback, horizon=horizon,
                            batch_size=batch_size, seed=seed,
                            value_transform=network.value_transform)
    settings = dict(max_steps=max_steps, batch_size=batch_size, seed=seed, device=device,
                    learning_rate=learning_rate_for(fit_strategy, learning_rate))
    losses: list[float] = []
    if tokenizer is None:
        tokenizer, losses = train_network("tokenizer", source, model_config=network.to_dict(),
                                          **settings)
        predictor_config = small_predictor_config(network, model_config).to_dict()
        predictor, curve = train_network("predictor", source, model_config=predictor_config,
                                         tokenizer=tokenizer, **settings)
        return tokenizer, predictor, losses + curve
    if finetune_tokenizer:
        tokenizer, losses = train_network("tokenizer", source, start=tokenizer, **settings)
    predictor, curve = train_network("predictor", source, start=predictor, tokenizer=tokenizer,
                                     **settings)
    return tokenizer, predictor, losses + curve
