"""Accuracy cost of bfloat16 inference against float32.

1. The parity fixture (greedy, the three reference cases): relative error of each precision
   against the reference forecasts, and how many forecast rows bf16 still matches to 1e-4.
2. A real series (the last 400 daily candles of AAPL, horizon 20) with the bundled
   default model (or the checkpoints given): the greedy forecast's close in bf16 versus fp32,
   in units of the context's close std, and for 200 sampled paths the shift of the close's
   5/50/95% quantiles relative to the fp32 90% band width. Wall times are printed too.

    python benchmarks/bench_precision.py [--model DIR --tokenizer DIR --max-context 512]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from _common import SHARED_DATA
from kronos_sk.checkpoints import default_checkpoint
from kronos_sk.pipeline import KronosPipeline

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "kronos-compat"
PRECISIONS = ("float32", "bfloat16")


def fixture_section() -> None:
    cases = json.loads((FIXTURES / "cases.json").read_text())
    candles = pd.read_csv(FIXTURES / "candles.csv", index_col=0, parse_dates=True)
    print("Parity fixture, greedy (max relative error vs the reference; rows within 1e-4):")
    for precision in PRECISIONS:
        pipe = KronosPipeline.from_pretrained(FIXTURES / "model", FIXTURES / "tokenizer",
                                              max_context=cases["max_context"],
                                              precision=precision)
        errors, close_rows, rows = [], 0, 0
        for case in cases["cases"]:
            truth = pd.read_csv(FIXTURES / case["expected"], index_col=0, parse_dates=True)
            forecast = pipe.sample(candles.iloc[:case["context_rows"]], future=truth.index,
                                   n_samples=1, top_k=1).mean()
            relative = np.abs(forecast.to_numpy() / truth.to_numpy() - 1)
            errors.append(relative.max())
            close_rows += int((relative < 1e-4).all(axis=1).sum())
            rows += len(truth)
        print(f"  {precision:9} max rel. error {max(errors):.2e}; rows within 1e-4: "
              f"{close_rows}/{rows}")


def real_section(model, tokenizer, max_context: int) -> None:
    rows = pd.read_parquet(SHARED_DATA / "us_stocks_daily_2008_2017.parquet",
                           filters=[("asset", "==", "AAPL")])
    frame = rows.set_index("timestamp")[["open", "high", "low", "close", "volume"]].iloc[-400:]
    close = frame["close"].to_numpy()
    future_index = pd.bdate_range(frame.index[-1], periods=21)[1:]
    out = {}
    for precision in PRECISIONS:
        pipe = KronosPipeline.from_pretrained(model, tokenizer, max_context=max_context,
                                              precision=precision)
        start = time.perf_counter()
        greedy = pipe.sample(frame, future=future_index, n_samples=1, top_k=1).paths[0, 0, :, 3]
        greedy_s = time.perf_counter() - start
        start = time.perf_counter()
        sampled = pipe.sample(frame, future=future_index, n_samples=200, top_p=0.9,
                              random_state=0).paths[0, :, :, 3]
        sampled_s = time.perf_counter() - start
        out[precision] = (greedy, np.quantile(sampled, [0.05, 0.5, 0.95], axis=0), greedy_s,
                          sampled_s)
    std = close.std()
    g32, q32, _, _ = out["float32"]
    g16, q16, _, _ = out["bfloat16"]
    band = (q32[2] - q32[0]).mean()
    print("\nReal series (AAPL, last 400 daily candles, horizon 20):")
    gap = np.abs(g16 - g32) / std
    print(f"  greedy close, |bf16 - fp32| / context std: mean {gap.mean():.3f}, "
          f"max {gap.max():.3f}")
    for k, q in enumerate((5, 50, 95)):
        shift = np.abs(q16[k] - q32[k]).mean() / band
        print(f"  sampled close q{q:02d}: mean |bf16 - fp32| = {shift:.3f} x the fp32 90% band")
    for precision in PRECISIONS:
        _, _, greedy_s, sampled_s = out[precision]
        print(f"  {precision:9} wall time: greedy {greedy_s:.2f} s, 200 paths {sampled_s:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model")
    parser.add_argument("--tokenizer")
    parser.add_argument("--max-context", type=int, default=512)
    args = parser.parse_args()
    fixture_section()
    real_section(args.model or default_checkpoint("predictor"),
                 args.tokenizer or default_checkpoint("tokenizer"), args.max_context)


if __name__ == "__main__":
    main()
