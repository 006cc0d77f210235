import subprocess
import sys

import pytest

from kronos_sk.training import TrainConfig, load_train_config

TOML = """
task = "predictor"
tokenizer_checkpoint = "checkpoints/tokenizer"
lr = 1
betas = [0.8, 0.9]
max_steps = 500
early_stopping_patience = 3

[model]
d_model = 64
n_heads = 4

[data]
window = 128
path = "candles.parquet"
"""


@pytest.fixture
def toml_file(tmp_path):
    path = tmp_path / "train.toml"
    path.write_text(TOML)
    return path


def test_defaults_then_file_then_overrides(toml_file):
    config = load_train_config(toml_file, {"max_steps": 200, "data.window": 64,
                                           "model": {"n_layers": 2}})
    assert config.task == "predictor"
    assert config.lr == 1.0 and isinstance(config.lr, float)  # TOML int accepted as float
    assert config.betas == (0.8, 0.9)
    assert config.max_steps == 200  # override beats file
    assert config.early_stopping_patience == 3  # file beats default
    assert config.weight_decay == TrainConfig().weight_decay  # default kept
    assert config.data == {"window": 64, "path": "candles.parquet"}  # tables are merged
    assert config.model == {"d_model": 64, "n_heads": 4, "n_layers": 2}


def test_no_file_gives_the_defaults():
    assert load_train_config() == TrainConfig()


def test_resume_changes_takes_any_number_of_names(toml_file):
    assert load_train_config(toml_file, {"resume_changes": ["lr", "data.window"]}
                             ).resume_changes == ("lr", "data.window")
    assert load_train_config(toml_file).resume_changes == ()


@pytest.mark.parametrize("overrides, message", [
    ({"learning_rate": 1e-3}, "overrides: unknown setting 'learning_rate'"),
    ({"optim.lr": 1e-3}, "unknown key 'optim.lr'"),
    ({"model.d_modle": 8}, "d_modle"),
    ({"grad_accum_steps": 0}, "grad_accum_steps must be at least 1"),
    ({"precision": "fp16"}, "precision must be one of"),
    ({"max_steps": "10"}, "max_steps must be int"),
    ({"teacher_forcing": 1}, "teacher_forcing must be bool"),
    ({"warmup_steps": 1000, "max_steps": 10}, "lower warmup_steps"),
    ({"tokenizer_checkpoint": None}, "needs tokenizer_checkpoint"),
    ({"init_checkpoint": "ckpt/predictor"}, "either \\[model\\]"),
    ({"resume_changes": "lr"}, "resume_changes must be tuple"),
    ({"resume_changes": ["lr", 3]}, "resume_changes must be str, got 3"),
])
def test_invalid_settings_name_the_key(toml_file, overrides, message):
    with pytest.raises(ValueError, match=message):
        load_train_config(toml_file, overrides)


def test_unknown_key_in_the_file_is_named(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('task = "tokenizer"\nbatchsize = 4\n')
    with pytest.raises(ValueError, match=r"bad.toml: unknown setting 'batchsize'"):
        load_train_config(path)


def test_the_engine_imports_neither_pandas_nor_sklearn():
    code = ("import sys, kronos_sk.training; "
            "print(sorted(m for m in ('pandas', 'sklearn', 'sktime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]"
