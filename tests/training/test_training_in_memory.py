"""In-memory training: modules in, trained module and loss history out, nothing written."""

import copy
import dataclasses
import json
import os

import pytest
import torch

from kronos_sk.checkpoints import load_predictor, load_tokenizer
from kronos_sk.nn.config import TokenizerConfig
from kronos_sk.nn.predictor import KronosPredictor
from kronos_sk.nn.tokenizer import KronosTokenizer
from kronos_sk.training import TrainConfig, run_training, train_modules
from kronos_sk.training.config import load_train_config
from kronos_sk.training.distributed import DistributedEnv, resolve_device
from training_helpers import TINY_TOKENIZER, SineCandles


def files_under(path):
    return sorted(os.path.relpath(os.path.join(d, f), path)
                  for d, _, names in os.walk(path) for f in names)


@pytest.mark.parametrize("task", ["tokenizer", "predictor"])
def test_in_memory_run_equals_the_file_run_and_writes_nothing(make_config, tmp_path,
                                                              tokenizer_dir, task):
    source = SineCandles(batch_size=4)
    config = make_config(task, max_steps=6)
    best = run_training(config, source)
    records = [json.loads(line) for line in
               (tmp_path / task / "metrics.jsonl").read_text().splitlines()]
    before = files_under(tmp_path)
    tokenizer = load_tokenizer(tokenizer_dir, device="cpu") if task == "predictor" else None
    module, history = train_modules(dataclasses.replace(config, out_dir=None), source,
                                    tokenizer=tokenizer)
    assert files_under(tmp_path) == before  # nothing new on disk

    # The same records (throughput and memory aside) and bit-identical weights.
    def keep(rows):
        return [{k: v for k, v in r.items() if k not in ("tokens_per_s", "peak_memory_mb")}
                for r in rows]

    assert keep(history) == keep(records)
    assert [r["loss"] for r in history if "loss" in r] and not module.training
    reloaded = (load_tokenizer if task == "tokenizer" else load_predictor)(best, device="cpu")
    for (key, a), b in zip(module.state_dict().items(), reloaded.state_dict().values()):
        assert torch.equal(a, b), key


def test_given_modules_are_trained_in_place_and_the_tokenizer_frozen(make_config, tokenizer_dir):
    start = load_tokenizer(tokenizer_dir, device="cpu")
    untouched = copy.deepcopy(start.state_dict())
    config = make_config("tokenizer", max_steps=3, model={}, out_dir=None)
    trained, history = train_modules(config, SineCandles(batch_size=4), module=start)
    assert trained is start and len([r for r in history if "loss" in r]) == 3
    assert any(not torch.equal(untouched[k], v) for k, v in trained.state_dict().items())

    tokenizer = load_tokenizer(tokenizer_dir, device="cpu")
    weights = copy.deepcopy(tokenizer.state_dict())
    config = make_config("predictor", max_steps=2, tokenizer_checkpoint=None, out_dir=None)
    predictor, _ = train_modules(config, SineCandles(batch_size=4),
                                 tokenizer=tokenizer)
    assert isinstance(predictor, KronosPredictor)
    assert not any(p.requires_grad for p in tokenizer.parameters())
    assert all(torch.equal(weights[k], v) for k, v in tokenizer.state_dict().items())


def test_in_memory_runs_refuse_what_needs_a_directory_or_a_tokenizer(make_config, tokenizer_dir):
    source = SineCandles(batch_size=4)
    with pytest.raises(ValueError, match="resume = true needs the out_dir"):
        train_modules(make_config("tokenizer", out_dir=None, resume=True), source)
    with pytest.raises(ValueError, match="needs tokenizer_checkpoint .* or a tokenizer module"):
        train_modules(make_config("predictor", out_dir=None, tokenizer_checkpoint=None),
                      SineCandles(batch_size=4))
    with pytest.raises(TypeError, match="trains a KronosPredictor, got module=KronosTokenizer"):
        train_modules(make_config("predictor", out_dir=None, model={}), source,
                      module=KronosTokenizer(TokenizerConfig(**TINY_TOKENIZER)))
    # A file run without a tokenizer module must name its checkpoint.
    with pytest.raises(ValueError, match="needs tokenizer_checkpoint"):
        load_train_config(overrides={"task": "predictor"})


@pytest.mark.parametrize("name", ["cpu", "auto", "cuda", "cuda:0", "cuda:1", "mps"])
def test_device_strings_are_accepted_as_written(name):
    assert TrainConfig(device=name).device == name


@pytest.mark.parametrize("name", ["gpu", "cuda:", "cuda:x", "cuda:-1", "mps:0", "CPU"])
def test_unknown_device_strings_are_named(name):
    with pytest.raises(ValueError, match=f"device must be one of .* got '{name}'"):
        TrainConfig(device=name)


def test_explicit_devices_are_honoured_not_collapsed():
    single, job = DistributedEnv(), DistributedEnv(rank=1, local_rank=1, world_size=2)
    assert resolve_device("cpu", single) == torch.device("cpu")
    if torch.cuda.device_count() >= 2:
        assert resolve_device("cuda:1", single) == torch.device("cuda", 1)
    elif torch.cuda.is_available():
        with pytest.raises(ValueError, match="device = 'cuda:1' but only 1 GPU"):
            resolve_device("cuda:1", single)
    else:
        with pytest.raises(ValueError, match="device = 'cuda:1' but CUDA is not available"):
            resolve_device("cuda:1", single)
    if torch.backends.mps.is_available():
        assert resolve_device("mps", single) == torch.device("mps")
    else:
        with pytest.raises(ValueError, match="device = 'mps' but MPS is not available"):
            resolve_device("mps", single)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="names one GPU, but 2 processes train"):
            resolve_device("cuda:0", job)
