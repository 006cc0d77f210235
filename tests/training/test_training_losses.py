import json
import math
from pathlib import Path

import pytest
import torch

from kronos_sk.checkpoints import load_predictor, load_tokenizer
from kronos_sk.nn.config import PredictorConfig, TokenizerConfig
from kronos_sk.nn.predictor import KronosPredictor
from kronos_sk.nn.tokenizer import KronosTokenizer
from kronos_sk.training import predictor_loss, run_training, tokenizer_loss
from training_helpers import TINY_PREDICTOR, TINY_TOKENIZER, SineCandles


def train_losses(out_dir: str) -> list[float]:
    records = [json.loads(line) for line in (Path(out_dir) / "metrics.jsonl").open()]
    return [r["loss"] for r in records if "loss" in r]


def tensors(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(batch["values"]), torch.from_numpy(batch["stamps"])


def test_tokenizer_loss_is_the_sum_of_its_terms():
    torch.manual_seed(0)
    tokenizer = KronosTokenizer(TokenizerConfig(**TINY_TOKENIZER))
    values, _ = tensors(SineCandles(batch_size=2).batch(0))
    loss, metrics = tokenizer_loss(tokenizer, values, quant_weight=0.5)
    assert loss.requires_grad and loss.dtype == torch.float32
    assert all(isinstance(v, float) for v in metrics.values())
    expected = metrics["mse_coarse"] + metrics["mse_full"] + 0.5 * metrics["quant"]
    assert math.isclose(metrics["loss"], expected, rel_tol=1e-5)


def test_predictor_loss_samples_coarse_ids_unless_teacher_forcing(tokenizer_dir):
    torch.manual_seed(0)
    predictor = KronosPredictor(PredictorConfig(**TINY_PREDICTOR))
    tokenizer = load_tokenizer(tokenizer_dir)
    values, stamps = tensors(SineCandles(batch_size=2).batch(0))
    loss, metrics = predictor_loss(predictor, tokenizer, values, stamps)
    assert loss.requires_grad
    assert math.isclose(metrics["loss"], (metrics["ce_coarse"] + metrics["ce_fine"]) / 2,
                        rel_tol=1e-5)
    # Sampled conditioning draws from the global RNG; teacher forcing draws nothing.
    before = torch.get_rng_state()
    predictor_loss(predictor, tokenizer, values, stamps, teacher_forcing=True)
    assert torch.equal(before, torch.get_rng_state())
    predictor_loss(predictor, tokenizer, values, stamps)
    assert not torch.equal(before, torch.get_rng_state())


@pytest.mark.parametrize("task", ["tokenizer", "predictor"])
def test_losses_fall_and_best_checkpoint_loads(make_config, task):
    source = SineCandles(batch_size=8)
    config = make_config(task, max_steps=30, eval_every=10, warmup_steps=3, batch_size=8)
    best = run_training(config, source, source.validation)
    losses = train_losses(config.out_dir)
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    module = (load_tokenizer if task == "tokenizer" else load_predictor)(best)
    assert isinstance(module, KronosTokenizer if task == "tokenizer" else KronosPredictor)
