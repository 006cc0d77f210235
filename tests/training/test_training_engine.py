import dataclasses
import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kronos_sk.checkpoints import load_tokenizer
from kronos_sk.training import Trainer, run_training
from kronos_sk.training.engine import lr_multiplier
from training_helpers import SineCandles

TIMING_FIELDS = ("tokens_per_s", "peak_memory_mb")


class Interrupted(Exception):
    """Stands in for a killed job."""


@dataclasses.dataclass(frozen=True)
class InterruptAt:
    """A source that dies when asked for micro-batch `stop`, like a job killed mid-run."""

    source: SineCandles
    stop: int

    def batch(self, index: int, rank: int = 0, world_size: int = 1) -> dict:
        if index >= self.stop:
            raise Interrupted(index)
        return self.source.batch(index, rank, world_size)


def weights(run_dir: str, which: str = "last") -> dict[str, torch.Tensor]:
    return load_file(Path(run_dir) / which / "model.safetensors")


def training_state(run_dir: str) -> dict:
    return torch.load(Path(run_dir) / "last" / "training_state.pt", weights_only=True)


def records(run_dir: str) -> list[dict]:
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING_FIELDS}
            for line in lines]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [key for key in a if not torch.equal(a[key], b[key])]
    assert not different, f"weights differ: {different}"


def straight_and_interrupted(config, source, tmp_path):
    """Run `config` through in out_dir "straight", and a copy in "resumed" that is interrupted
    at micro-batch 6; return the two configs."""
    straight = dataclasses.replace(config, out_dir=str(tmp_path / "straight"))
    run_training(straight, source, source.validation)
    resumed = dataclasses.replace(straight, out_dir=str(tmp_path / "resumed"))
    with pytest.raises(Interrupted):
        run_training(resumed, InterruptAt(source, 6), source.validation)
    return straight, resumed


def interrupt_and_resume(config, source, stop_step: int) -> None:
    with pytest.raises(Interrupted):
        run_training(config, InterruptAt(source, stop_step * config.grad_accum_steps),
                     source.validation)
    assert training_state(config.out_dir)["step"] == stop_step
    run_training(dataclasses.replace(config, resume=True), source, source.validation)


@pytest.mark.parametrize("accum", [1, 2])
@pytest.mark.parametrize("task", ["tokenizer", "predictor"])
def test_interrupted_run_resumes_bit_exactly(make_config, tmp_path, task, accum):
    source = SineCandles(batch_size=4)
    # Dropout in the tokenizer draws from the RNG; the predictor's only draws are the
    # sampled coarse ids of its fine head.
    model = {"ffn_dropout_p": 0.1} if task == "tokenizer" else {}
    straight = make_config(task, grad_accum_steps=accum, save_every=3, eval_every=4,
                           out_dir=str(tmp_path / "straight"))
    straight = dataclasses.replace(straight, model={**straight.model, **model})
    run_training(straight, source, source.validation)

    resumed = dataclasses.replace(straight, out_dir=str(tmp_path / "resumed"))
    interrupt_and_resume(resumed, source, stop_step=6)

    assert_same_weights(weights(straight.out_dir), weights(resumed.out_dir))
    assert_same_weights(weights(straight.out_dir, "best"), weights(resumed.out_dir, "best"))
    assert records(straight.out_dir) == records(resumed.out_dir)
    assert training_state(resumed.out_dir)["step"] == 12


def test_resume_without_the_rng_state_diverges(make_config, tmp_path):
    # Control for the test above: the sampled coarse ids really depend on the restored RNG.
    source = SineCandles(batch_size=4)
    straight, resumed = straight_and_interrupted(make_config("predictor", save_every=3),
                                                 source, tmp_path)
    path = Path(resumed.out_dir) / "last" / "training_state.pt"
    state = torch.load(path, weights_only=True)
    state["rng"][0]["torch"] = torch.Generator().manual_seed(12345).get_state()
    torch.save(state, path)
    run_training(dataclasses.replace(resumed, resume=True), source, source.validation)
    final_a, final_b = weights(straight.out_dir), weights(resumed.out_dir)
    assert any(not torch.equal(final_a[key], final_b[key]) for key in final_a)


def test_early_stopping_keeps_the_best_checkpoint(make_config):
    source = SineCandles(batch_size=4)
    evaluations = itertools.count()

    def drifting_validation():
        # Every evaluation sees wider candles, so the loss can only rise after the first.
        scale = 1.0 + next(evaluations)
        for batch in source.validation():
            yield {**batch, "values": batch["values"] * scale}

    config = make_config("tokenizer", max_steps=40, eval_every=2, early_stopping_patience=2)
    best = run_training(config, source, drifting_validation)

    state = training_state(config.out_dir)
    assert state["stopped"] and state["step"] == 6
    assert state["best_step"] == 2 and state["bad_evals"] == 2
    assert [r["step"] for r in records(config.out_dir) if "val_loss" in r] == [2, 4, 6]
    tokenizer = load_tokenizer(best)
    best_weights = tokenizer.state_dict()
    assert any(not torch.equal(best_weights[k], v) for k, v in weights(config.out_dir).items())
    # A stopped run stays stopped when resumed.
    run_training(dataclasses.replace(config, resume=True), source, drifting_validation)
    assert training_state(config.out_dir)["step"] == 6


def test_without_validation_best_holds_the_final_weights(make_config):
    config = make_config("predictor", max_steps=3)
    best = run_training(config, SineCandles(batch_size=4))
    assert_same_weights(weights(config.out_dir), load_file(best / "model.safetensors"))


@pytest.mark.parametrize("task", ["tokenizer", "predictor"])
def test_bf16_autocast_trains_on_cpu(make_config, task):
    source = SineCandles(batch_size=4)
    config = make_config(task, precision="bf16", max_steps=3, eval_every=3)
    run_training(config, source, source.validation)
    logged = records(config.out_dir)
    assert all(math.isfinite(r["loss"]) for r in logged if "loss" in r)
    assert math.isfinite(logged[-1]["val_loss"])


def test_schedule_warms_up_then_decays_to_the_floor():
    factors = [lr_multiplier(s, warmup_steps=4, max_steps=20, min_lr_ratio=0.1)
               for s in range(21)]
    assert factors[:4] == [0.2, 0.4, 0.6, 0.8] and factors[4] == 1.0
    assert all(a >= b for a, b in zip(factors[4:], factors[5:]))
    assert factors[20] == pytest.approx(0.1)


def test_options_are_rejected_before_training(make_config, tmp_path):
    source = SineCandles(batch_size=4)
    with pytest.raises(ValueError, match="resume = true but"):
        Trainer(make_config("tokenizer", resume=True), source).setup()
    with pytest.raises(ValueError, match="early_stopping_patience"):
        Trainer(make_config("tokenizer", early_stopping_patience=1), source).setup()
    with pytest.raises(ValueError, match="batch_size = 2"):
        run_training(make_config("tokenizer", batch_size=2), source)
    with pytest.raises(ValueError, match="set model.s1_bits"):
        config = make_config("predictor")
        Trainer(dataclasses.replace(config, model={**config.model, "s1_bits": 3}), source).setup()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device = 'cuda'"):
            Trainer(make_config("tokenizer", device="cuda"), source).setup()


def test_a_finished_run_is_not_overwritten(make_config):
    config = make_config("tokenizer", max_steps=2)
    run_training(config, SineCandles(batch_size=4))
    with pytest.raises(ValueError, match="already holds a run"):
        Trainer(config, SineCandles(batch_size=4)).setup()


def test_resume_restores_last_from_an_interrupted_save(make_config, tmp_path):
    # A crash between the two renames of a save leaves only last.old/; resume continues it.
    source = SineCandles(batch_size=4)
    straight, resumed = straight_and_interrupted(make_config("tokenizer", save_every=3),
                                                 source, tmp_path)
    run_dir = Path(resumed.out_dir)
    (run_dir / "last").rename(run_dir / "last.old")
    run_training(dataclasses.replace(resumed, resume=True), source, source.validation)
    assert_same_weights(weights(straight.out_dir), weights(resumed.out_dir))
    assert not (run_dir / "last.old").exists()


def test_resume_refuses_changed_settings_by_name(make_config, tmp_path):
    source = SineCandles(batch_size=4)
    config = make_config("tokenizer", save_every=3, data={"lookback": 16, "market": "x"})
    with pytest.raises(Interrupted):
        run_training(config, InterruptAt(source, 6), source.validation)
    resume = dataclasses.replace(config, resume=True)
    changed = dataclasses.replace(resume, lr=1e-3, data={"lookback": 32, "market": "x"})
    with pytest.raises(ValueError, match=r"changed settings \(data.lookback: 16 -> 32; lr: "
                                         r"0.01 -> 0.001\).*resume_changes = \[\"data.lookback\","
                                         r" \"lr\"\]"):
        run_training(changed, source, source.validation)
    with pytest.raises(ValueError, match="max_steps = 5 is below step 6"):
        run_training(dataclasses.replace(resume, max_steps=5), source, source.validation)
    assert training_state(config.out_dir)["step"] == 6  # nothing was trained or saved
    # Told explicitly, the resume goes ahead with the new settings.
    run_training(dataclasses.replace(changed, resume_changes=("lr", "data")), source,
                 source.validation)
    assert training_state(config.out_dir)["step"] == 12
