import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from kronos_sk.checkpoints import load_predictor, load_tokenizer
from kronos_sk.nn.config import PredictorConfig, TokenizerConfig
from kronos_sk.nn.predictor import KronosPredictor
from kronos_sk.nn.tokenizer import KronosTokenizer
from kronos_sk.data import SeriesWindows, time_features
from kronos_sk.training import predictor_loss, run_training, tokenizer_loss
from kronos_sk.training.losses import predictor_token_losses
from training_helpers import TINY_PREDICTOR, TINY_TOKENIZER, SineCandles


def train_losses(out_dir: str) -> list[float]:
    records = [json.loads(line) for line in (Path(out_dir) / "metrics.jsonl").open()]
    return [r["loss"] for r in records if "loss" in r]


def tensors(batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return tuple(torch.from_numpy(np.asarray(batch[key])) for key in ("values", "stamps",
                                                                      "context"))


def test_tokenizer_loss_is_the_sum_of_its_terms():
    torch.manual_seed(0)
    tokenizer = KronosTokenizer(TokenizerConfig(**TINY_TOKENIZER))
    values, _, _ = tensors(SineCandles(batch_size=2).batch(0))
    loss, metrics = tokenizer_loss(tokenizer, values, quant_weight=0.5)
    assert loss.requires_grad and loss.dtype == torch.float32
    assert all(isinstance(v, float) for v in metrics.values())
    expected = metrics["mse_coarse"] + metrics["mse_full"] + 0.5 * metrics["quant"]
    assert math.isclose(metrics["loss"], expected, rel_tol=1e-5)


def test_predictor_loss_samples_coarse_ids_unless_teacher_forcing(tokenizer_dir):
    torch.manual_seed(0)
    predictor = KronosPredictor(PredictorConfig(**TINY_PREDICTOR))
    tokenizer = load_tokenizer(tokenizer_dir)
    values, stamps, context = tensors(SineCandles(batch_size=2).batch(0))
    loss, metrics = predictor_loss(predictor, tokenizer, values, stamps, context)
    assert loss.requires_grad
    assert math.isclose(metrics["loss"], (metrics["ce_coarse"] + metrics["ce_fine"]) / 2,
                        rel_tol=1e-5)
    # Sampled conditioning draws from the global RNG; teacher forcing draws nothing.
    before = torch.get_rng_state()
    predictor_loss(predictor, tokenizer, values, stamps, context, teacher_forcing=True)
    assert torch.equal(before, torch.get_rng_state())
    predictor_loss(predictor, tokenizer, values, stamps, context)
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


def test_padding_reaches_no_reconstruction_term():
    torch.manual_seed(0)
    tokenizer = KronosTokenizer(TokenizerConfig(**TINY_TOKENIZER))
    values, _, _ = tensors(SineCandles(batch_size=2).batch(0))
    length = torch.tensor([15, 24])
    padded = values.clone()
    padded[0, 15:] = 4.0
    _, metrics = tokenizer_loss(tokenizer, values, length=length)
    _, metrics_padded = tokenizer_loss(tokenizer, padded, length=length)
    _, unmasked = tokenizer_loss(tokenizer, padded)
    for key in ("mse_coarse", "mse_full"):
        assert metrics[key] == pytest.approx(metrics_padded[key], rel=1e-6)
        assert unmasked[key] != pytest.approx(metrics[key], rel=1e-3)


def test_no_scored_target_depends_on_itself_or_later_rows(tokenizer_dir):
    """The leak test: change a series from row j on; the scored loss terms of the targets
    before j stay exactly the same, because each window is normalised by its context only."""
    rng = np.random.default_rng(0)
    rows, j = 120, 70
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, rows)))
    open_ = close * np.exp(rng.normal(0, 0.003, rows))
    high, low = np.maximum(open_, close) * 1.004, np.minimum(open_, close) * 0.996
    volume = rng.uniform(1e3, 2e3, rows)
    values = np.stack([open_, high, low, close, volume, volume * close], axis=1)
    changed = values.copy()
    changed[j:] *= np.exp(rng.normal(0.3, 0.2, (rows - j, 1)))  # a jump and noise from row j
    stamps = time_features(pd.date_range("2024-01-01", periods=rows, freq="D"))
    torch.manual_seed(0)
    predictor = KronosPredictor(PredictorConfig(**TINY_PREDICTOR)).eval()
    tokenizer = load_tokenizer(tokenizer_dir)

    def terms(series, score_all=False):
        batch = SeriesWindows([(series, stamps)], 40, 8, 64, min_context=4, seed=3).batch(0)
        values, stamps_, context = tensors(batch)
        length = torch.from_numpy(batch["length"])
        if score_all:  # the leaky objective: every target, whatever normalised it
            context = torch.ones_like(context)
        ce_coarse, ce_fine, scored = predictor_token_losses(
            predictor, tokenizer, values, stamps_, context, length, teacher_forcing=True)
        return ce_coarse.detach(), ce_fine.detach(), scored, batch

    coarse, fine, scored, batch = terms(values)
    coarse_changed, fine_changed, scored_changed, _ = terms(changed)
    assert torch.equal(scored, scored_changed)
    # Window b covers series rows start_b + t; target position t is series row start_b + t.
    starts = np.array([np.flatnonzero((stamps == batch["stamps"][b, 0]).all(axis=1))[0]
                       for b in range(64)])
    row_of_target = torch.from_numpy(starts[:, None] + np.arange(1, 48))
    before = scored & (row_of_target < j)
    assert before.sum() > 200  # plenty of scored targets before the change
    assert torch.equal(coarse[before], coarse_changed[before])
    assert torch.equal(fine[before], fine_changed[before])
    assert (coarse[~scored] == 0).all() and (coarse[scored] > 0).all()
    # The test has teeth: the change does reach the scored targets from row j on, and, were
    # they scored, the targets before j inside a context whose statistics it altered.
    assert not torch.equal(coarse[scored & ~before], coarse_changed[scored & ~before])
    leaky = ~scored & (row_of_target < j) & (row_of_target + 40 > j)
    all_coarse, *_ = terms(values, score_all=True)
    all_coarse_changed, *_ = terms(changed, score_all=True)
    torch.testing.assert_close(all_coarse[before], coarse[before])
    assert not torch.equal(all_coarse[leaky], all_coarse_changed[leaky])
