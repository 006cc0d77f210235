import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from kronos_sk.checkpoints import load_predictor, load_tokenizer
from kronos_sk.pipeline import KronosPipeline
from kronos_sk.training.__main__ import main
from kronos_sk.training.recipe import RECIPE_FILE, STAGES, finetune, load_recipe, pretrain
from kronos_sk.training.recipe import stage_value_transform

LOOKBACK, HORIZON = 16, 4

# Paths are relative to the parent of configs/, the root the fixture builds.
RECIPE = f"""
out_dir = "runs/tiny"

[data]
sources = ["data"]
lookback = {LOOKBACK}
horizon = {HORIZON}
min_context = 8
assets_per_block = 4
steps_per_block = 3
max_gap_factor = 15.0
max_abs_log_return = {{ daily = 0.2 }}
weights = {{ daily = 1.0, hourly = 2.0 }}

[data.split]
daily = {{ cutoff = "2024-03-20" }}
hourly = {{ last = "2D" }}

[tokenizer]
lr = 1e-2
warmup_steps = 1
max_steps = 3
batch_size = 4
eval_every = 2
eval_batches = 2
early_stopping_patience = 5
save_every = 2
log_every = 1
device = "cpu"
num_threads = 1

[tokenizer.model]
d_model = 16
n_heads = 2
ff_dim = 32
n_enc_layers = 2
n_dec_layers = 2
s1_bits = 2
s2_bits = 2
group_size = 2

[predictor]
lr = 1e-2
warmup_steps = 1
max_steps = 3
batch_size = 4
eval_every = 2
eval_batches = 2
save_every = 2
log_every = 1
device = "cpu"
num_threads = 1

[predictor.model]
s1_bits = 2
s2_bits = 2
n_layers = 1
d_model = 16
n_heads = 2
ff_dim = 32
"""


def candles(asset: str, n: int, freq: str, tz: str | None, seed: int,
            amount: bool = True) -> pd.DataFrame:
    """A random walk of valid candles from 2024-01-01."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = close * np.exp(rng.normal(0.0, 0.003, n))
    frame = pd.DataFrame({
        "asset": asset,
        "timestamp": pd.date_range("2024-01-01", periods=n, freq=freq, tz=tz),
        "open": open_,
        "high": np.maximum(open_, close) * 1.002,
        "low": np.minimum(open_, close) * 0.998,
        "close": close,
        "volume": rng.uniform(1e3, 2e3, n),
    })
    if amount:
        frame["amount"] = frame["volume"] * close
    return frame


def make_root(root: Path, recipe: str = RECIPE) -> Path:
    """Two markets of Parquet candles under root/data and the recipe in root/configs."""
    (root / "data").mkdir(parents=True)
    daily = pd.concat([candles(name, 120, "D", None, seed) for seed, name in
                       enumerate(["AAA", "BBB", "CCC"])], ignore_index=True)
    hourly = pd.concat([candles(name, 200, "h", "UTC", seed, amount=False) for seed, name in
                        ((3, "BTC"), (4, "ETH"))], ignore_index=True)
    daily.to_parquet(root / "data" / "daily.parquet", index=False)
    hourly.to_parquet(root / "data" / "hourly.parquet", index=False)
    (root / "configs").mkdir()
    config = root / "configs" / "tiny.toml"
    config.write_text(recipe)
    return config


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """A recipe and its finished two-stage run."""
    config = make_root(tmp_path_factory.mktemp("recipe"))
    return config, pretrain(config)


def test_pretrain_writes_loadable_checkpoints_that_forecast(finished):
    config, best = finished
    run = config.parent.parent / "runs" / "tiny"
    assert best == {stage: run / stage / "best" for stage in STAGES}
    for stage in STAGES:
        assert (run / stage / "last" / "model.safetensors").is_file()
        saved = json.loads((run / stage / "train_config.json").read_text())
        assert saved["task"] == stage and saved["data"]["lookback"] == LOOKBACK
    resolved = json.loads((run / RECIPE_FILE).read_text())
    assert resolved["data"]["sources"] == [str(config.parent.parent / "data")]
    assert resolved["predictor"]["max_steps"] == 3

    tokenizer, predictor = load_tokenizer(best["tokenizer"]), load_predictor(best["predictor"])
    assert tokenizer.config.d_model == 16 and predictor.config.n_layers == 1
    from kronos_sk.lookahead import data_periods  # what the checkpoint has seen
    periods = data_periods(best["predictor"])
    assert periods and {p.split for p in periods} == {"train", "validation"}
    assert all(p.start <= p.end for p in periods)
    context = candles("AAA", 40, "D", None, 0).drop(columns="asset").set_index("timestamp")
    forecast = KronosPipeline(tokenizer, predictor, max_context=LOOKBACK + HORIZON).sample(
        context, horizon=HORIZON, n_samples=2, random_state=0)
    assert forecast.paths.shape == (1, 2, HORIZON, 6)
    assert np.isfinite(forecast.paths).all()


def copy_run(config: Path, target: Path) -> tuple[Path, Path]:
    """A copy of the recipe root with its run, still reading the original data; returns the
    copy's recipe file and run directory."""
    shutil.copytree(config.parent.parent, target, ignore=shutil.ignore_patterns("data"))
    copied = target / "configs" / config.name
    copied.write_text(copied.read_text().replace(
        'sources = ["data"]', f'sources = ["{config.parent.parent / "data"}"]'))
    return copied, target / "runs" / "tiny"


def test_resume_skips_finished_stages(finished, tmp_path, capsys):
    config, run = copy_run(finished[0], tmp_path / "copy")

    def snapshot(stage: str) -> tuple[str, dict[str, torch.Tensor]]:
        return ((run / stage / "metrics.jsonl").read_text(),
                load_file(run / stage / "last" / "model.safetensors"))

    with pytest.raises(ValueError, match="already holds a run"):
        pretrain(config)
    before = {stage: snapshot(stage) for stage in STAGES}
    assert main(["pretrain", "--config", str(config), "--set", "resume=true"]) == 0
    assert f"predictor: {run / 'predictor' / 'best'}" in capsys.readouterr().out
    for stage in STAGES:
        assert snapshot(stage)[0] == before[stage][0], f"{stage} ran again"

    # A longer predictor schedule continues that stage only.
    main(["pretrain", "--config", str(config), "--set", "resume=true",
          "--set", "predictor.max_steps=5"])
    assert snapshot("tokenizer")[0] == before["tokenizer"][0]
    state = torch.load(run / "predictor" / "last" / "training_state.pt", weights_only=True)
    assert state["step"] == 5


def without_table(text: str, name: str) -> str:
    """The recipe text without table [name]."""
    head, _, rest = text.partition(f"[{name}]\n")
    tail = rest.partition("\n[")[2]
    return head + ("[" + tail if tail else "")


def finetune_recipe(config: Path, root: Path, name: str, tokenizer_model: str = "") -> Path:
    """A copy of the finished run's tree at `root` with a recipe ``configs/NAME.toml``
    that fine-tunes both of its best checkpoints into ``runs/NAME`` (the tokenizer's
    ``[model]`` line `tokenizer_model` added)."""
    shutil.copytree(config.parent.parent, root)
    recipe = without_table(without_table(RECIPE, "tokenizer.model"), "predictor.model")
    recipe = recipe.replace('out_dir = "runs/tiny"', f'out_dir = "runs/{name}"')
    for stage in STAGES:
        recipe = recipe.replace(f"[{stage}]\n", f'[{stage}]\ninit_checkpoint = '
                                f'"runs/tiny/{stage}/best"\n')
    recipe = recipe.replace("[tokenizer]\n", f"[tokenizer]\n{tokenizer_model}")
    path = root / "configs" / f"{name}.toml"
    path.write_text(recipe)
    return path


def test_finetune_starts_from_the_checkpoints(finished, tmp_path):
    config, best = finished
    tuned_config = finetune_recipe(config, tmp_path / "copy", "tuned")
    with pytest.raises(ValueError, match="use finetune"):
        pretrain(tuned_config)

    tuned = finetune(tuned_config)
    from kronos_sk.lookahead import data_periods  # its own data and its start's
    assert set(data_periods(best["predictor"])) <= set(data_periods(tuned["predictor"]))
    for stage in STAGES:
        start = load_file(best[stage] / "model.safetensors")
        after = load_file(tuned[stage] / "model.safetensors")
        assert start.keys() == after.keys()
        assert any(not torch.equal(start[k], after[k]) for k in start), f"{stage} unchanged"


def test_finetune_moves_a_checkpoint_into_log_prices(finished, tmp_path):
    config, best = finished
    log_config = finetune_recipe(config, tmp_path / "copy", "log",
                                 'model = { value_transform = "log" }\n')
    tuned = finetune(log_config)
    tokenizer_config = json.loads((tuned["tokenizer"] / "config.json").read_text())
    assert tokenizer_config["value_transform"] == "log"
    assert "value_transform" not in json.loads((best["tokenizer"] / "config.json").read_text())
    loaded = load_recipe(log_config)
    assert stage_value_transform(loaded, "tokenizer") == "log"
    assert stage_value_transform(loaded, "predictor") == "log"  # the trained tokenizer's
    periods = json.loads((tuned["predictor"] / "data_periods.json").read_text())
    assert len(periods) == len({json.dumps(p, sort_keys=True) for p in periods})


@pytest.mark.parametrize("old, new, named", [
    ('out_dir = "runs/tiny"', 'out_dir = "runs/tiny"\noutdir = "x"', "'outdir'"),
    ("lookback = 16", "lookbak = 16", "'data.lookbak'"),
    ("[predictor]\n", "[predictor]\nlearning_rate = 1.0\n", "'predictor.learning_rate'"),
    ("d_model = 16\nn_heads = 2\nff_dim = 32\nn_enc", "d_modle = 16\nn_heads = 2\nff_dim = 32\n"
     "n_enc", "d_modle"),
    ('cutoff = "2024-03-20"', 'cutof = "2024-03-20"', "data.split.daily.*cutof"),
])
def test_unknown_key_is_named(tmp_path, old, new, named):
    assert old in RECIPE
    config = make_root(tmp_path, RECIPE.replace(old, new, 1))
    with pytest.raises(ValueError, match=named):
        load_recipe(config)


def test_reserved_and_override_errors(tmp_path, capsys):
    config = make_root(tmp_path)
    with pytest.raises(ValueError, match="predictor.tokenizer_checkpoint is set by the recipe"):
        load_recipe(config, {"predictor.tokenizer_checkpoint": "elsewhere"})
    with pytest.raises(ValueError, match="data.targets must be 'all' or 'horizon', got 'next'"):
        load_recipe(config, {"data.targets": "next"})
    assert main(["finetune", "--config", str(config)]) == 2
    assert "fine-tuning needs tokenizer.init_checkpoint" in capsys.readouterr().err


def test_resume_after_a_save_died_between_its_renames_keeps_the_run(finished, tmp_path):
    # The engine's atomic save renames last/ to last.old/ before moving the new one in; a
    # crash in between leaves last.old/ alone. Resuming must restore it, not start afresh.
    config, run = copy_run(finished[0], tmp_path / "copy")
    stage = run / "predictor"
    metrics = (stage / "metrics.jsonl").read_text()
    best = (stage / "best" / "model.safetensors").stat().st_mtime_ns
    (stage / "last").rename(stage / "last.old")

    pretrain(config, {"resume": True})
    assert (stage / "metrics.jsonl").read_text() == metrics, "the stage ran again"
    assert (stage / "best" / "model.safetensors").stat().st_mtime_ns == best
    assert (stage / "last" / "training_state.pt").is_file() and not (stage / "last.old").exists()


def test_training_failures_are_one_line_with_exit_status_2(finished, tmp_path, capsys):
    config, run = copy_run(finished[0], tmp_path / "copy")
    state = run / "predictor" / "last" / "training_state.pt"
    state.write_bytes(state.read_bytes()[:100])  # truncated by a full disk, say
    cases = [
        (["pretrain", "--config", str(tmp_path / "missing.toml")], "does not exist"),
        (["pretrain", "--config", str(config), "--set", "out_dir=/proc/x"], "/proc"),
        (["pretrain", "--config", str(config), "--set", "resume=true"],
         "training_state.pt: not a readable training state"),
        (["pretrain", "--config", str(config), "--set", "resume"], "not of the form key=value"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (argv, err)
    # last/ without its state (half-deleted by hand, say): refused, the metrics kept.
    (run / "tokenizer" / "last" / "training_state.pt").unlink()
    metrics = (run / "tokenizer" / "metrics.jsonl").read_text()
    assert main(["pretrain", "--config", str(config), "--set", "resume=true"]) == 2
    assert "holds no training_state.pt, so it cannot be resumed" in capsys.readouterr().err
    assert (run / "tokenizer" / "metrics.jsonl").read_text() == metrics


def test_resume_with_changed_settings_is_refused_by_name(finished, tmp_path, capsys):
    config, run = copy_run(finished[0], tmp_path / "copy")
    recipe = (run / RECIPE_FILE).read_text()
    cases = [
        (["--set", "predictor.lr=0.5"], "[predictor]: resuming", "lr: 0.01 -> 0.5"),
        (["--set", "data.lookback=20"], "[tokenizer]: resuming", "data.lookback: 16 -> 20)"),
        (["--set", "predictor.max_steps=2"], "[predictor]: max_steps = 2 is below step 3", ""),
    ]
    for overrides, where, change in cases:
        assert main(["pretrain", "--config", str(config), "--set", "resume=true",
                     *overrides]) == 2
        err = capsys.readouterr().err.strip()
        assert where in err and change in err and len(err.splitlines()) == 1, err
    assert (run / RECIPE_FILE).read_text() == recipe  # a refused resume writes nothing
    assert main(["pretrain", "--config", str(config), "--set", "resume=true",
                 "--set", "predictor.lr=0.5", "--set", 'predictor.resume_changes=["lr"]',
                 "--set", "predictor.max_steps=4"]) == 0
    state = torch.load(run / "predictor" / "last" / "training_state.pt", weights_only=True)
    assert state["step"] == 4 and json.loads(state["config"])["lr"] == 0.5
