"""Sections of `gpu_check.sh` that need a Python body: fixture parity and one DDP step.

    python benchmarks/gpu_check.py parity
    torchrun --standalone --nproc_per_node 1 benchmarks/gpu_check.py train
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "kronos-compat"


def parity() -> None:
    """Greedy forecasts of the fixture checkpoints on CUDA against the reference outputs."""
    from kronos_sk.pipeline import KronosPipeline

    cases = json.loads((FIXTURES / "cases.json").read_text())
    candles = pd.read_csv(FIXTURES / "candles.csv", index_col=0, parse_dates=True)
    pipe = KronosPipeline.from_pretrained(FIXTURES / "model", FIXTURES / "tokenizer",
                                          max_context=cases["max_context"], device="cuda",
                                          precision="float32")
    worst = 0.0
    for case in cases["cases"]:
        raw = pd.read_csv(FIXTURES / case["expected"], index_col=0, parse_dates=True)
        paths = pipe.sample(candles.iloc[:case["context_rows"]], future=raw.index, top_k=1,
                            n_samples=1, prefill_precision="float32", valid_candles=False).paths
        expected = raw[cases["columns"]].to_numpy()
        error = float(np.max(np.abs(paths[0, 0] - expected) / np.maximum(np.abs(expected),
                                                                         1e-6)))
        worst = max(worst, error)
        print(f"   {case['expected']}: max relative error {error:.2e}")
    print(f"   parity within 1e-4: {worst <= 1e-4} (worst {worst:.2e})")


def train() -> None:
    """One predictor step with bf16 autocast under DDP (run by torchrun, one process)."""
    sys.path.insert(0, str(ROOT / "tests" / "training"))
    from training_helpers import TINY_PREDICTOR, TINY_TOKENIZER, SineCandles

    from kronos_sk.checkpoints import save_checkpoint
    from kronos_sk.nn.config import TokenizerConfig
    from kronos_sk.nn.tokenizer import KronosTokenizer
    from kronos_sk.training import TrainConfig, Trainer

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer_dir = Path(tmp) / "tokenizer"
        save_checkpoint(KronosTokenizer(TokenizerConfig(**TINY_TOKENIZER)), tokenizer_dir)
        config = TrainConfig(task="predictor", model=TINY_PREDICTOR,
                             tokenizer_checkpoint=str(tokenizer_dir), lr=1e-3, warmup_steps=1,
                             max_steps=1, batch_size=4, eval_every=1, save_every=1,
                             log_every=1, device="cuda", precision="bf16",
                             out_dir=str(Path(tmp) / "run"))
        source = SineCandles(batch_size=4)
        trainer = Trainer(config, source, source.validation)
        try:
            trainer.setup()
            trainer.train()
            print(f"   world size {trainer.env.world_size}, step {trainer.step}, bf16 "
                  f"autocast on {torch.cuda.get_device_name(0)}: ok")
        finally:
            trainer.cleanup()


if __name__ == "__main__":
    {"parity": parity, "train": train}[sys.argv[1]]()
