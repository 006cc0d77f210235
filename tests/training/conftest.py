"""Tiny models and settings shared by the training tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from kronos_sk.checkpoints import save_checkpoint
from kronos_sk.nn.config import TokenizerConfig
from kronos_sk.nn.tokenizer import KronosTokenizer
from kronos_sk.training import TrainConfig
from training_helpers import TINY_PREDICTOR, TINY_TOKENIZER


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny tokenizer in the released layout (frozen for predictors)."""
    torch.manual_seed(0)
    module = KronosTokenizer(TokenizerConfig(**TINY_TOKENIZER))
    return save_checkpoint(module, tmp_path_factory.mktemp("frozen") / "tokenizer")


@pytest.fixture
def make_config(tmp_path: Path, tokenizer_dir: Path) -> Callable[..., TrainConfig]:
    """Factory of tiny, fast CPU settings for `task`, with keyword overrides."""

    def make(task: str, **overrides) -> TrainConfig:
        settings = dict(task=task, model=TINY_TOKENIZER if task == "tokenizer" else TINY_PREDICTOR,
                        lr=1e-2, warmup_steps=2, max_steps=12, batch_size=4, eval_every=4,
                        save_every=4, log_every=1, device="cpu", out_dir=str(tmp_path / task),
                        num_threads=1)
        if task == "predictor":
            settings["tokenizer_checkpoint"] = str(tokenizer_dir)
        settings.update(overrides)
        return TrainConfig(**settings)

    return make
