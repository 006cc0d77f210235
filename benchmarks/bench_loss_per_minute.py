"""Validation loss per minute of training, by predictor size: the measurement a size is chosen by.

Each size is trained from fresh weights for the same wall-clock budget, on the corpus, windows
and validation split of `configs/default-model.toml`, against the bundled (frozen) tokenizer,
with the recipe's optimiser settings. Its steps are set from its own measured step time so
that every run warms up and anneals within the budget, as a real run of that length would.
Prints the validation loss at each quarter of the budget and the float32 size of the
predictor (the bundled pair must stay within 25 MB with the tokenizer's 2.7 MB).

    python benchmarks/bench_loss_per_minute.py --minutes 8
    python benchmarks/bench_loss_per_minute.py --minutes 8 --sizes 128x4 256x4 288x4
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _common import machine
from kronos_sk.checkpoints import DEFAULT_MODEL_DIR
from kronos_sk.nn.config import PredictorConfig
from kronos_sk.nn.predictor import KronosPredictor
from kronos_sk.training import TrainConfig, run_training
from kronos_sk.training.recipe import CorpusBatches, load_recipe, read_validation

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "default-model.toml"


def predictor_config(size: str) -> PredictorConfig:
    """"256x4" -> d_model 256, 4 layers, the bundled model's other settings."""
    d_model, n_layers = (int(part) for part in size.split("x"))
    bundled = json.loads((DEFAULT_MODEL_DIR / "predictor" / "config.json").read_text())
    return PredictorConfig.from_dict({**bundled, "d_model": d_model, "n_layers": n_layers,
                                      "ff_dim": 2 * d_model, "n_heads": max(1, d_model // 64)})


def seconds_per_step(settings: dict, model: dict, source, steps: int = 3) -> float:
    """Wall seconds of one step after a first one, from a short throwaway run."""
    with tempfile.TemporaryDirectory() as out_dir:
        config = TrainConfig(**{**settings, "model": model, "max_steps": steps + 1,
                                "warmup_steps": 1, "eval_every": 10 ** 6, "save_every": 10 ** 6,
                                "log_every": 1, "out_dir": out_dir})
        run_training(config, source)
        records = [json.loads(line) for line in (Path(out_dir) / "metrics.jsonl").open()]
    rates = [r["tokens_per_s"] for r in records if "tokens_per_s" in r][1:]
    tokens = settings["batch_size"] * (source.data.lookback + source.data.horizon)  # as logged
    return tokens / (sum(rates) / len(rates))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=8.0, help="training budget per size")
    parser.add_argument("--sizes", nargs="+", default=["128x4", "256x4", "288x4"],
                        help="d_model x n_layers")
    parser.add_argument("--out", default=str(REPO / "runs" / "loss-per-minute"))
    args = parser.parse_args()
    recipe = load_recipe(RECIPE)
    stage = recipe.stages["predictor"]
    settings = {key: stage[key] for key in ("lr", "batch_size", "precision", "num_threads",
                                            "seed", "eval_batches")}
    settings.update(task="predictor", device="cpu", progress=False,
                    data=recipe.data.to_dict(), lr=1e-3,  # the rate from scratch
                    tokenizer_checkpoint=str(DEFAULT_MODEL_DIR / "tokenizer"))
    corpus = recipe.data.corpus()
    source = CorpusBatches(corpus, recipe.data, settings["batch_size"], settings["seed"])
    validation = read_validation(corpus, recipe.data, settings["batch_size"],
                                 settings["eval_batches"])
    print(f"{machine()}; {settings['precision']}, batch {settings['batch_size']} x "
          f"{recipe.data.lookback + recipe.data.horizon} rows, {args.minutes:g} minutes per "
          f"size, from fresh weights, lr {settings['lr']:g}\n")
    print(f"{'size':>7} {'params':>7} {'MB':>5} {'s/step':>6} {'steps':>5} | "
          "validation loss at 1/4, 1/2, 3/4, all of the budget")
    for size in args.sizes:
        model = predictor_config(size).to_dict()
        step_seconds = seconds_per_step(settings, model, source)
        max_steps = max(8, int(args.minutes * 60 / step_seconds))
        out_dir = Path(args.out) / size
        if out_dir.exists():
            raise SystemExit(f"{out_dir} exists: give another --out or remove it")
        config = TrainConfig(**{**settings, "model": model, "max_steps": max_steps,
                                "warmup_steps": max(1, max_steps // 20),
                                "eval_every": max(1, max_steps // 4), "save_every": max_steps,
                                "log_every": 10, "out_dir": str(out_dir), "resume": False})
        start = time.perf_counter()
        run_training(config, source, lambda: validation)
        minutes = (time.perf_counter() - start) / 60
        records = [json.loads(line) for line in (out_dir / "metrics.jsonl").open()]
        losses = [r["val_loss"] for r in records if "val_loss" in r]
        n_params = sum(p.numel() for p in KronosPredictor(predictor_config(size)).parameters())
        print(f"{size:>7} {n_params / 1e6:6.2f}M {4 * n_params / 1e6:5.1f} {step_seconds:6.2f} "
              f"{max_steps:5d} | " + "  ".join(f"{loss:.4f}" for loss in losses)
              + f"   ({minutes:.1f} min)", flush=True)


if __name__ == "__main__":
    main()
