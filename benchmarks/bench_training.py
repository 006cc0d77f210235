"""Training throughput: predictor tokens/s and peak memory, fp32 versus bf16 autocast.

At the Kronos-small size and at the bundled default model's size (its configs), one run
times `steps` optimizer steps of each (after warm-up steps) on real windows from
../shared/data, then prints bf16/fp32 ratios. It also times the window sampler alone, to
show that the input pipeline is not the bottleneck.

    python benchmarks/bench_training.py
    python benchmarks/bench_training.py --steps 5 --batch-size 16
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from _common import SHARED_DATA, PeakMemory
from kronos_sk.checkpoints import DEFAULT_MODEL_DIR
from kronos_sk.data import CandleCorpus, TimeSplit, WindowSampler
from kronos_sk.nn.config import PredictorConfig, TokenizerConfig
from kronos_sk.nn.predictor import KronosPredictor
from kronos_sk.nn.tokenizer import KronosTokenizer
from kronos_sk.training import predictor_loss

LOOKBACK, HORIZON = 128, 24


def sampler(batch_size: int) -> WindowSampler:
    files = [SHARED_DATA / "us_stocks_daily_2008_2017.parquet",
             SHARED_DATA / "crypto_binance_1h_2024-01_2024-07.parquet"]
    corpus = CandleCorpus(files, max_gap_factor=15.0)
    return WindowSampler(corpus, LOOKBACK, HORIZON, batch_size,
                         time_split=TimeSplit(cutoff="2016-01-01"), assets_per_block=64,
                         steps_per_block=1000)


def sizes() -> dict[str, tuple[TokenizerConfig, PredictorConfig]]:
    out = {"Kronos-small": (TokenizerConfig(), PredictorConfig())}
    card = DEFAULT_MODEL_DIR / "predictor" / "config.json"
    if card.is_file():
        tok = json.loads((DEFAULT_MODEL_DIR / "tokenizer" / "config.json").read_text())
        out["default model"] = (TokenizerConfig.from_dict(tok),
                                PredictorConfig.from_dict(json.loads(card.read_text())))
    return out


def time_training(tokenizer, config, batches, precision: str, steps: int, warmup: int):
    torch.manual_seed(0)
    model = KronosPredictor(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def step(batch):
        with autocast:
            loss, _ = predictor_loss(model, tokenizer, batch["values"], batch["stamps"],
                                     batch["context"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for batch in batches[:warmup]:
        step(batch)
    with PeakMemory() as memory:
        start = time.perf_counter()
        for batch in batches[warmup:warmup + steps]:
            step(batch)
        seconds = time.perf_counter() - start
    tokens = steps * batches[0]["values"].shape[0] * (batches[0]["values"].shape[1] - 1)
    return tokens / seconds, memory.added_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    source = sampler(args.batch_size)
    source.batch(0)  # loads the first block
    n = 200
    start = time.perf_counter()
    for k in range(1, n + 1):
        source.batch(k)
    loader_rate = n * args.batch_size / (time.perf_counter() - start)
    raw = [source.batch(k) for k in range(args.warmup + args.steps)]
    batches = [{key: torch.from_numpy(b[key]) for key in ("values", "stamps", "context")}
               for b in raw]
    length = LOOKBACK + HORIZON
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; windows of {length} "
          f"rows, batch {args.batch_size}, {args.steps} timed steps after {args.warmup}")
    print(f"window sampler: {loader_rate:,.0f} windows/s = "
          f"{loader_rate * (length - 1):,.0f} tokens/s\n")
    print(f"{'model':14} {'params':>8} | {'fp32 tok/s':>10} {'MiB':>6} | {'bf16 tok/s':>10} "
          f"{'MiB':>6} | {'bf16/fp32':>9} | {'loader/train':>12}")
    for name, (tok_config, pred_config) in sizes().items():
        torch.manual_seed(0)
        tokenizer = KronosTokenizer(tok_config).eval()
        n_params = sum(p.numel() for p in KronosPredictor(pred_config).parameters())
        fp32, fp32_mb = time_training(tokenizer, pred_config, batches, "fp32", args.steps,
                                      args.warmup)
        bf16, bf16_mb = time_training(tokenizer, pred_config, batches, "bf16", args.steps,
                                      args.warmup)
        loader_tokens = loader_rate * (length - 1)
        print(f"{name:14} {n_params / 1e6:7.1f}M | {fp32:10,.0f} {fp32_mb:6.0f} | "
              f"{bf16:10,.0f} {bf16_mb:6.0f} | {bf16 / fp32:8.2f}x | "
              f"{loader_tokens / max(fp32, bf16):11.0f}x", flush=True)
    print("\nloader/train: how many times faster the sampler feeds tokens than the faster "
          "precision consumes them (> 1: not the bottleneck).")


if __name__ == "__main__":
    main()
