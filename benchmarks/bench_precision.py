"""Accuracy cost of bfloat16 inference against float32.

1. The parity fixture (greedy, the three reference cases): relative error of each precision
   against the reference forecasts, and how many forecast rows bf16 still matches to 1e-4;
   "bf16 prefill" is the float32 model with `prefill_precision="bfloat16"` (its passes over
   many tokens in bfloat16, the one-token steps in float32).
2. A real series (the last 400 daily candles of AAPL, horizon 20) with the bundled
   default model (or the checkpoints given): the greedy forecast's close in bf16 versus fp32,
   in units of the context's close std, and for 200 sampled paths the shift of the close's
   5/50/95% quantiles relative to the fp32 90% band width. Wall times are printed too.
3. bfloat16 prefill on real candles (4 US stocks, lookback 400, horizon 120, so that the
   window slides for the last steps; same seeds): how many greedy and sampled (10 paths)
   tokens agree with the float32 run, the shift of the mean path's close beside the shift
   that other seeds give in float32, and the time of the prefill and of the whole forecast.

    python benchmarks/bench_precision.py [--model DIR --tokenizer DIR --max-context 512]

It first prints what ``precision="auto"`` resolves to on this machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from _common import SHARED_DATA, real_contexts
from kronos_sk.checkpoints import default_checkpoint, load_predictor, load_tokenizer
from kronos_sk.data import time_features
from kronos_sk.data.normalize import Normalizer
from kronos_sk.data.validation import make_candles_valid
from kronos_sk.generation import forecast_paths, generate_tokens, path_uniforms
from kronos_sk.metrics import sample_quantiles
from kronos_sk.pipeline import KronosPipeline

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "kronos-compat"
PRECISIONS = ("float32", "bfloat16")


def fixture_section() -> None:
    cases = json.loads((FIXTURES / "cases.json").read_text())
    candles = pd.read_csv(FIXTURES / "candles.csv", index_col=0, parse_dates=True)
    print("Parity fixture, greedy (max relative error vs the reference; rows within 1e-4):")
    for label, precision, prefill in (("float32", "float32", "float32"),
                                      ("bfloat16", "bfloat16", "float32"),
                                      ("bf16 prefill", "float32", "bfloat16")):
        pipe = KronosPipeline.from_pretrained(FIXTURES / "model", FIXTURES / "tokenizer",
                                              max_context=cases["max_context"],
                                              precision=precision)
        errors, close_rows, rows = [], 0, 0
        for case in cases["cases"]:
            truth = pd.read_csv(FIXTURES / case["expected"], index_col=0, parse_dates=True)
            # Valid candles, as every path is (the reference's raw volume can be negative).
            truth[:] = make_candles_valid(truth.to_numpy(copy=True))
            context = candles.iloc[:case["context_rows"]]
            paths = forecast_paths(pipe.tokenizer, pipe.predictor,
                                   [context[truth.columns].to_numpy()],
                                   [time_features(context.index)],
                                   time_features(truth.index)[None], n_samples=1, top_k=1,
                                   max_context=cases["max_context"], prefill_precision=prefill)
            reference = truth.to_numpy()  # clipped volumes are 0: absolute error there
            relative = np.abs(paths[0, 0] - reference) / np.where(reference, np.abs(reference), 1)
            errors.append(relative.max())
            close_rows += int((relative < 1e-4).all(axis=1).sum())
            rows += len(truth)
        print(f"  {label:12} max rel. error {max(errors):.2e}; rows within 1e-4: "
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
        out[precision] = (greedy, sample_quantiles(sampled, [0.05, 0.5, 0.95]), greedy_s,
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


def _agreement(a: torch.Tensor, b: torch.Tensor) -> str:
    """How far (coarse, fine) token paths (2, paths, horizon) agree."""
    same = (a == b).all(0)  # (paths, horizon): both ids equal
    horizon = same.shape[1]
    first_difference = torch.where(same.all(1), horizon, (~same).int().argmax(1))
    return (f"tokens equal {same.float().mean():.1%}, whole paths {same.all(1).float().mean():.1%}"
            f", first difference at step {first_difference.float().median():.0f} (median of "
            f"{len(same)} paths; {horizon}: none)")


def prefill_section(model, tokenizer, max_context: int, n_series: int = 4,
                    n_samples: int = 10) -> None:
    lookback, horizon = 400, 120
    tokenizer, predictor = load_tokenizer(tokenizer, "cpu"), load_predictor(model, "cpu")
    contexts, stamps, future = real_contexts(n_series, lookback, horizon)
    x = torch.from_numpy(Normalizer.fit(contexts).transform(np.stack(contexts)))
    s1, s2 = tokenizer.encode(x)
    all_stamps = torch.from_numpy(np.concatenate((np.stack(stamps), future), 1))
    window = min(lookback, max_context)
    greedy, sampled, means, seconds, prefill_s = {}, {}, {}, {}, {}
    for precision in PRECISIONS:
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16,
                                             enabled=precision == "bfloat16"):
            start = time.perf_counter()
            predictor.hidden(s1[:, -window:], s2[:, -window:],
                             all_stamps[:, lookback - window:lookback])
            prefill_s[precision] = time.perf_counter() - start
        for out, n, top_k in ((greedy, 1, 1), (sampled, n_samples, 0)):
            out[precision] = torch.stack(generate_tokens(
                predictor, s1, s2, all_stamps, horizon,
                path_uniforms(range(n_series), n, horizon), n_samples=n, top_k=top_k,
                max_context=max_context, prefill_precision=precision))
        for seed in (0, 1) if precision == "float32" else (0,):
            start = time.perf_counter()
            paths = forecast_paths(tokenizer, predictor, contexts, stamps, future,
                                   n_samples=n_samples, max_context=max_context,
                                   random_state=seed, prefill_precision=precision,
                                   stratified=False)  # seed noise of independent paths
            seconds[precision] = time.perf_counter() - start
            means[precision, seed] = paths[..., 3].mean(1)  # (series, horizon) mean close
    std = np.stack([c[:, 3].std() for c in contexts])[:, None]
    print(f"\nbfloat16 prefill vs float32 ({n_series} US stocks, lookback {lookback}, horizon "
          f"{horizon}, window {max_context}: it slides at the end; same seeds):")
    print(f"  greedy: {_agreement(greedy['bfloat16'], greedy['float32'])}")
    print(f"  {n_samples} sampled paths each: "
          f"{_agreement(sampled['bfloat16'], sampled['float32'])}")
    for label, other in (("bf16 prefill", ("bfloat16", 0)),
                         ("float32, other seeds", ("float32", 1))):
        shift = np.abs(means[other] - means["float32", 0]) / std
        relative = np.abs(means[other] / means["float32", 0] - 1)
        print(f"  mean path close, {label:20} vs float32: |difference| / context std mean "
              f"{shift.mean():.3f} (max {shift.max():.3f}), relative mean {relative.mean():.2e}")
    print(f"  prefill of {n_series} contexts: float32 {prefill_s['float32']:.3f} s, bfloat16 "
          f"{prefill_s['bfloat16']:.3f} s; whole forecast: float32 {seconds['float32']:.2f} s, "
          f"bf16 prefill {seconds['bfloat16']:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model")
    parser.add_argument("--tokenizer")
    parser.add_argument("--max-context", type=int, default=512)
    args = parser.parse_args()
    from _common import machine

    from kronos_sk.runtime import resolve_precision
    print(f"{machine()}\nprecision='auto' resolves to {resolve_precision('auto', 'cpu')} here "
          "(bfloat16 only where native). The guard for it: greedy parity of the fixtures "
          "below, and the sampled mean-path shift beside the shift another seed gives in "
          "float32 (section 3); where bfloat16 moves a forecast beyond that seed noise, "
          "'auto' must fall back to float32 (kronos_sk.runtime.auto_precision).")
    fixture_section()
    model = args.model or default_checkpoint("predictor")
    tokenizer = args.tokenizer or default_checkpoint("tokenizer")
    real_section(model, tokenizer, args.max_context)
    prefill_section(model, tokenizer, args.max_context)


if __name__ == "__main__":
    main()
