"""Inference speed and memory: cached generation versus the released full-recompute algorithm.

Random-weight models of the released Kronos-mini and Kronos-small sizes with Tokenizer-base,
real daily candles from ../shared/data (lookback 400, horizon 120), {1, 10} samples and
{1, 64} series. For each setting, in one run:

  (a) `forecast_paths`: the cached generation, in its default `sliding="exact"` mode (released
      semantics) and in the faster `sliding="rolling"` mode;
  (b) the released algorithm step by step: the context repeated per sample before tokenizing,
      the whole window re-run at every step, the last `max_context` tokens decoded per path.

(b) runs in full where it is cheap enough (`--full-reference-paths`); otherwise its cost is
extrapolated from timed single steps at three window lengths (interpolated over the 120 steps)
on at most 32 paths, scaled linearly by the number of paths (the steps are compute bound), and
marked "~". The script also times one cached decode step against its memory-bandwidth bound.

    python benchmarks/bench_inference.py            # everything (about 15 minutes on 2 cores)
    python benchmarks/bench_inference.py --quick    # Kronos-small, 1 series only
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _common import copy_bandwidth, measure, random_models, real_contexts
from kronos_sk.data.normalize import Normalizer
from kronos_sk.generation import (forecast_paths, generate_tokens, generate_tokens_recompute,
                                  path_uniforms)

LOOKBACK, HORIZON = 400, 120
SUB_PATHS = 32  # paths used to time extrapolated reference steps


def reference_forecast(tokenizer, predictor, contexts, stamps, future, n_samples, max_context):
    """The released procedure, step by step (equal-length contexts)."""
    normalizer = Normalizer.fit(contexts)
    x = torch.from_numpy(normalizer.transform(np.stack(contexts)))
    x = x.repeat_interleave(n_samples, 0)  # the released code repeats before tokenizing
    s1, s2 = tokenizer.encode(x)
    all_stamps = torch.from_numpy(np.concatenate((np.stack(stamps), future), 1))
    all_stamps = all_stamps.repeat_interleave(n_samples, 0)
    uniforms = path_uniforms(range(len(contexts)), n_samples, HORIZON)
    coarse, fine = generate_tokens_recompute(predictor, s1, s2, all_stamps, HORIZON, uniforms,
                                             max_context=max_context)
    window = slice(-max_context, None)
    decoded = tokenizer.decode(torch.cat((s1, coarse), 1)[:, window],
                               torch.cat((s2, fine), 1)[:, window])[:, -HORIZON:]
    return decoded


def extrapolated_reference(tokenizer, predictor, n_paths, max_context) -> float:
    """Seconds of the released procedure for `n_paths` paths, from timed pieces."""
    sub = min(n_paths, SUB_PATHS)
    scale = n_paths / sub
    g = torch.Generator().manual_seed(0)
    length = LOOKBACK + HORIZON
    ids = torch.randint(0, 2 ** predictor.config.s1_bits, (sub, length), generator=g)
    stamps = torch.zeros(sub, length + 1, 5, dtype=torch.long)
    uniforms = path_uniforms(range(sub), 1, 1)
    x = torch.randn(sub, LOOKBACK, tokenizer.config.d_in, generator=g)
    start = time.perf_counter()
    tokenizer.encode(x)
    decode_window = min(max_context, length)
    tokenizer.decode(ids[:, :decode_window], ids[:, :decode_window])
    fixed = time.perf_counter() - start
    windows = [min(LOOKBACK + i, max_context) for i in range(HORIZON)]
    probes = sorted({windows[0], windows[len(windows) // 2], windows[-1]})
    seconds = []
    for w in probes:
        start = time.perf_counter()
        generate_tokens_recompute(predictor, ids[:, :w], ids[:, :w], stamps[:, :w + 1], 1,
                                  uniforms.expand(sub, 1, 2), max_context=max_context)
        seconds.append(time.perf_counter() - start)
    steps = np.interp(windows, probes, seconds).sum() if len(probes) > 1 else seconds[0] * HORIZON
    return (fixed + steps) * scale


def decode_step_seconds(predictor, max_context: int) -> float:
    """Seconds of one cached generation step (1 path), from horizons 101 and 1."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 2 ** predictor.config.s1_bits, (1, LOOKBACK), generator=g)
    stamps = torch.zeros(1, LOOKBACK + 101, 5, dtype=torch.long)
    times = {}
    for horizon in (1, 101, 1, 101):
        uniforms = path_uniforms([0], 1, horizon)
        start = time.perf_counter()
        generate_tokens(predictor, ids, ids, stamps[:, :LOOKBACK + horizon], horizon, uniforms,
                        max_context=max_context)
        times[horizon] = time.perf_counter() - start  # the second round, warm, is kept
    return (times[101] - times[1]) / 100


def streamed_weight_bytes(predictor) -> int:
    """Bytes of the weights one step reads: everything but the embedding lookup tables."""
    return sum(p.numel() * p.element_size() for name, p in predictor.named_parameters()
               if not name.startswith(("embedding.emb_", "time_emb.")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="Kronos-small, 1 series only")
    parser.add_argument("--full-reference-paths", type=int, default=1,
                        help="run (b) in full up to this many paths, else extrapolate")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    models = ["Kronos-small"] if args.quick else ["Kronos-mini", "Kronos-small"]
    series_counts = [1] if args.quick else [1, 64]
    contexts, stamps, future = real_contexts(max(series_counts), LOOKBACK, HORIZON)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; real candles: "
          f"{len(contexts)} US stocks, lookback {LOOKBACK}, horizon {HORIZON}\n")
    header = (f"{'model':13} {'series':>6} {'samples':>7} | {'(a) exact s':>11} {'MiB':>6} | "
              f"{'rolling s':>9} {'MiB':>6} | {'(b) ref s':>10} {'MiB':>6} | "
              f"{'b/a exact':>9} {'b/a rolling':>11}")
    print(header)
    print("-" * len(header))
    results = {}
    for name in models:
        tokenizer, predictor, max_context = random_models(name)
        forecast_paths(tokenizer, predictor, contexts[:1], stamps[:1], future[:1, :4],
                       max_context=max_context)  # warm-up
        for n_series in series_counts:
            for n_samples in (1, 10):
                inputs = (contexts[:n_series], stamps[:n_series], future[:n_series])
                kwargs = dict(n_samples=n_samples, max_context=max_context, random_state=0)
                exact_s, exact_mb, _ = measure(forecast_paths, tokenizer, predictor, *inputs,
                                               **kwargs)
                roll_s, roll_mb, _ = measure(forecast_paths, tokenizer, predictor, *inputs,
                                             sliding="rolling", **kwargs)
                n_paths = n_series * n_samples
                if n_paths <= args.full_reference_paths:
                    ref_s, ref_mb, _ = measure(reference_forecast, tokenizer, predictor, *inputs,
                                               n_samples, max_context)
                    ref_text, mb_text = f"{ref_s:10.2f}", f"{ref_mb:6.0f}"
                else:
                    ref_s = extrapolated_reference(tokenizer, predictor, n_paths, max_context)
                    ref_text, mb_text = f"~{ref_s:9.1f}", f"{'n/a':>6}"
                results[name, n_series, n_samples] = (ref_s / exact_s, ref_s / roll_s)
                print(f"{name:13} {n_series:6d} {n_samples:7d} | {exact_s:11.2f} {exact_mb:6.0f} | "
                      f"{roll_s:9.2f} {roll_mb:6.0f} | {ref_text} {mb_text} | "
                      f"{ref_s / exact_s:8.1f}x {ref_s / roll_s:10.1f}x", flush=True)
        if name == "Kronos-small" and (name, 1, 1) in results:
            check = extrapolated_reference(tokenizer, predictor, 1, max_context)
            print(f"{'':13} extrapolation check, 1 path: ~{check:.2f} s (measured above)")

    print("\nTargets (Kronos-small, 1 series):")
    for n_samples, target in ((1, 30), (10, 100)):
        exact, rolling = results["Kronos-small", 1, n_samples]
        print(f"  {n_samples:2d} sample(s): >= {target}x faster than (b): exact {exact:.1f}x "
              f"({exact / target:.2f} of target), rolling {rolling:.1f}x "
              f"({rolling / target:.2f} of target)")

    bandwidth = copy_bandwidth()
    print(f"\nDecode step vs memory bandwidth (copy bandwidth {bandwidth / 1e9:.1f} GB/s, "
          "read + write counted):")
    for name in models:
        for precision in (torch.float32, torch.bfloat16):
            _, predictor, max_context = random_models(name)
            predictor = predictor.to(precision)
            step = decode_step_seconds(predictor, max_context)
            weight_bytes = streamed_weight_bytes(predictor)
            bound = weight_bytes / bandwidth
            print(f"  {name:13} {str(precision).split('.')[1]:9} step {step * 1e3:6.2f} ms, "
                  f"weights {weight_bytes / 1e6:5.1f} MB, bound {bound * 1e3:5.2f} ms -> "
                  f"{step / bound:4.1f}x the bound (target <= 2x)")


if __name__ == "__main__":
    main()
