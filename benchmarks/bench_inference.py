"""Inference speed and memory: cached generation against the released algorithm, and the bound.

Random-weight models of the released Kronos-mini and Kronos-small sizes with Tokenizer-base,
real daily candles from ../shared/data. Sections (`--sections`, comma-separated), each
measured in one run:

table
    Lookback 400, horizon 120, {1, 10} samples and {1, 64} series, for each size:
    (a) `forecast_paths`: the cached generation, in its default `sliding="exact"` mode
        (released semantics) and in the faster `sliding="rolling"` mode;
    (b) the released algorithm step by step: the context repeated per sample before
        tokenizing, the whole window re-run at every step, the last `max_context` tokens
        decoded per path.
    (b) runs in full where it is cheap enough (`--full-reference-paths`); otherwise its cost
    is extrapolated from timed single steps at three window lengths (interpolated over the
    120 steps) on at most 32 paths, scaled linearly by the number of paths (the steps are
    compute bound), and marked "~".
bound
    Kronos-small, 1 series, 1 sample, lookback 400, horizon 120, exact: (a) against the
    float32 work that exact sliding cannot skip, timed as bare passes in the same run: one
    prefill of the context, a cached decode step per token while the window has room
    (112), one pass over the whole 512-token window per step once it slides (7: the 119
    tokens fed back outgrow it by 7), each with the heads of the next token (coarse logits,
    dependency layer, fine logits), and the tokenizer encoding the context and decoding the
    last window. Sampling itself (top-p filter, draw) is left out. Targets: (a) within 1.3x
    of that bound, and >= 9x faster than (b).
no-slide
    Kronos-small, 1 series, 1 sample, lookback 380, horizon 120 (context + generated tokens
    stay within 512): (a) exact against (b). Target: >= 30x.
gpu
    Only where CUDA is available (else one line says it is skipped): the parity fixture
    forecast on the GPU in float32 against the reference outputs, and tokens/s of (a) at
    Kronos-small size for 1 and 1,000 paths in float32 and bfloat16.
decode-step
    One cached decode step against its memory-bandwidth bound.

bound and no-slide take the best of `--repeats` runs of every timed piece.

    python benchmarks/bench_inference.py              # everything (about 20 minutes, 2 cores)
    python benchmarks/bench_inference.py --sections bound,no-slide          # about 2 minutes
    python benchmarks/bench_inference.py --quick      # the table for Kronos-small, 1 series
    python benchmarks/bench_inference.py --tiny --sections bound,no-slide,gpu   # seconds
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from _common import copy_bandwidth, machine, measure, random_models, real_contexts
from kronos_sk.checkpoints import load_predictor, load_tokenizer
from kronos_sk.data import time_features
from kronos_sk.data.normalize import Normalizer
from kronos_sk.generation import (forecast_paths, generate_tokens, generate_tokens_recompute,
                                  make_candles_valid, path_uniforms)
from kronos_sk.nn.layers import KVCache

LOOKBACK, HORIZON = 400, 120
SUB_PATHS = 32  # paths used to time extrapolated reference steps
SECTIONS = ("table", "bound", "no-slide", "gpu", "decode-step")
# (lookback, horizon, max_context) of the single-series sections; --tiny keeps their shape
# (bound: the window slides for the last steps; no-slide: it never does) at a tenth.
BOUND, NO_SLIDE = (400, 120, 512), (380, 120, 512)
TINY_BOUND, TINY_NO_SLIDE = (40, 12, 48), (36, 12, 48)
FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "kronos-compat"


def reference_forecast(tokenizer, predictor, contexts, stamps, future, n_samples, max_context):
    """The released procedure, step by step (equal-length contexts)."""
    horizon = future.shape[1]
    normalizer = Normalizer.fit(contexts)
    x = torch.from_numpy(normalizer.transform(np.stack(contexts)))
    x = x.repeat_interleave(n_samples, 0)  # the released code repeats before tokenizing
    s1, s2 = tokenizer.encode(x)
    all_stamps = torch.from_numpy(np.concatenate((np.stack(stamps), future), 1))
    all_stamps = all_stamps.repeat_interleave(n_samples, 0)
    uniforms = path_uniforms(range(len(contexts)), n_samples, horizon)
    coarse, fine = generate_tokens_recompute(predictor, s1, s2, all_stamps, horizon, uniforms,
                                             max_context=max_context)
    window = slice(-max_context, None)
    decoded = tokenizer.decode(torch.cat((s1, coarse), 1)[:, window],
                               torch.cat((s2, fine), 1)[:, window])[:, -horizon:]
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


def best_seconds(repeats: int, fn, *args, **kwargs) -> float:
    """The fastest of `repeats` calls, in seconds."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args, **kwargs)
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def exact_schedule(lookback: int, horizon: int, max_context: int) -> tuple[int, int]:
    """(cached decode steps, full-window re-runs) of exact sliding for one path.

    The prefill draws the first token; each later token is fed back once, and the window
    slides when the fed-back tokens would take it past `max_context`.
    """
    cached = min(horizon, max_context - lookback + 1)
    return cached - 1, horizon - cached


def next_token_heads(predictor, h: torch.Tensor, dep_cache: KVCache) -> torch.Tensor:
    """The heads of the last hidden state of h (B, T, d): coarse logits, then the dependency
    layer and the fine logits for the most likely coarse id -> (B, 1, 2^s2)."""
    coarse = predictor.coarse_logits(h[:, -1]).argmax(-1)
    query = predictor.embedding.emb_s1(coarse).unsqueeze(1)  # (B, 1, d)
    return predictor.head.proj_s2(predictor.dep_layer.step(h[:, -1:], query, dep_cache))


def unavoidable_seconds(tokenizer, predictor, lookback: int, horizon: int, max_context: int,
                        repeats: int) -> dict[str, float]:
    """Seconds of each piece of work exact sliding cannot skip for one path, as bare passes
    (random ids: the cost does not depend on them; sampling is left out)."""
    n_steps, n_reruns = exact_schedule(lookback, horizon, max_context)
    g = torch.Generator().manual_seed(0)
    length = lookback + horizon
    s1 = torch.randint(0, 2 ** predictor.config.s1_bits, (1, length), generator=g)
    s2 = torch.randint(0, 2 ** predictor.config.s2_bits, (1, length), generator=g)
    stamps = torch.zeros(1, length, 5, dtype=torch.long)
    x = torch.randn(1, lookback, tokenizer.config.d_in, generator=g)
    like = predictor.norm.weight
    dep_attn = predictor.dep_layer.cross_attn

    def empty_cache(attention) -> KVCache:
        return KVCache.empty(1, attention.n_heads, max_context, attention.head_dim,
                             like.dtype, like.device)

    def prefill() -> tuple[list[KVCache], KVCache]:
        caches = [empty_cache(block.self_attn) for block in predictor.transformer]
        dep_cache = empty_cache(dep_attn)
        h = predictor.hidden(s1[:, :lookback], s2[:, :lookback], stamps[:, :lookback],
                             caches=caches)
        dep_attn.extend_cache(h, dep_cache)
        next_token_heads(predictor, h, dep_cache)
        return caches, dep_cache

    def decode_steps() -> None:
        caches, dep_cache = prefill()
        for end in range(lookback + 1, lookback + 1 + n_steps):  # token end - 1 is fed back
            h = predictor.hidden(s1[:, end - 1:end], s2[:, end - 1:end],
                                 stamps[:, end - 1:end], caches=caches,
                                 positions=torch.tensor([end - 1]))
            dep_attn.extend_cache(h, dep_cache)
            next_token_heads(predictor, h, dep_cache)

    def reruns() -> None:
        for end in range(length - n_reruns, length):
            window = slice(end - max_context, end)
            h = predictor.hidden(s1[:, window], s2[:, window], stamps[:, window])
            dep_cache = empty_cache(dep_attn)
            dep_attn.extend_cache(h, dep_cache)
            next_token_heads(predictor, h, dep_cache)

    decode_window = min(max(max_context, horizon), length)
    prefill_s = best_seconds(repeats, prefill)
    return {
        "prefill": prefill_s,
        "decode steps": best_seconds(repeats, decode_steps) - prefill_s,
        "window re-runs": best_seconds(repeats, reruns),
        "tokenizer": (best_seconds(repeats, tokenizer.encode, x)
                      + best_seconds(repeats, tokenizer.decode, s1[:, -decode_window:],
                                     s2[:, -decode_window:])),
    }


def bound_section(repeats: int, shape: tuple[int, int, int]) -> tuple[float, float]:
    """Print (a) against the unavoidable work and (b); return (a / bound, (b) / (a))."""
    lookback, horizon, max_context = shape
    tokenizer, predictor, ours, reference = ours_and_reference(repeats, shape)
    pieces = unavoidable_seconds(tokenizer, predictor, lookback, horizon, max_context, repeats)
    n_steps, n_reruns = exact_schedule(lookback, horizon, max_context)
    bound = sum(pieces.values())
    network = bound - pieces["tokenizer"]
    print(f"\nbound: Kronos-small, 1 series, 1 sample, lookback {lookback}, horizon {horizon}, "
          f"window {max_context}, exact, float32 (best of {repeats})")
    labels = {"prefill": f"prefill of {lookback} tokens + heads",
              "decode steps": f"{n_steps} cached decode steps + heads",
              "window re-runs": f"{n_reruns} passes over the {max_context}-token window + heads",
              "tokenizer": f"tokenizer: encode {lookback} rows, decode "
                           f"{min(max(max_context, horizon), lookback + horizon)} tokens"}
    for key, label in labels.items():
        print(f"  {label:52s} {pieces[key] * 1e3:9.1f} ms")
    print(f"  {'unavoidable work (the bound)':52s} {bound * 1e3:9.1f} ms")
    print(f"  {'(a) forecast_paths, exact':52s} {ours * 1e3:9.1f} ms -> {ours / bound:.2f}x "
          f"the bound (target <= 1.3x; {ours / network:.2f}x its predictor part)")
    print(f"  {'(b) released algorithm, step by step':52s} {reference * 1e3:9.1f} ms -> "
          f"(b)/(a) {reference / ours:.1f}x (target >= 9x)")
    return ours / bound, reference / ours


def no_slide_section(repeats: int, shape: tuple[int, int, int]) -> float:
    """Print (a) against (b) where the window never slides; return (b) / (a)."""
    lookback, horizon, max_context = shape
    tokenizer, predictor, ours, reference = ours_and_reference(repeats, shape)
    bound = sum(unavoidable_seconds(tokenizer, predictor, lookback, horizon, max_context,
                                    repeats).values())
    print(f"\nno-slide: Kronos-small, 1 series, 1 sample, lookback {lookback}, horizon "
          f"{horizon}, window {max_context} (never slides), float32 (best of {repeats})")
    print(f"  unavoidable work (the bound) {bound:8.3f} s\n"
          f"  (a) forecast_paths, exact    {ours:8.3f} s -> {ours / bound:.2f}x the bound\n"
          f"  (b) released algorithm       {reference:8.3f} s -> (b)/(a) {reference / ours:.1f}x "
          f"(target >= 30x; (b)/bound {reference / bound:.1f}x)")
    return reference / ours


def ours_and_reference(repeats: int, shape: tuple[int, int, int]) -> tuple:
    """(tokenizer, predictor, best seconds of (a), of (b)) at Kronos-small size, 1 sample."""
    lookback, horizon, max_context = shape
    tokenizer, predictor, _ = random_models("Kronos-small")
    inputs = real_contexts(1, lookback, horizon)
    kwargs = dict(n_samples=1, max_context=max_context, random_state=0)
    forecast_paths(tokenizer, predictor, *inputs, **kwargs)  # warm-up
    ours = best_seconds(repeats, forecast_paths, tokenizer, predictor, *inputs, **kwargs)
    reference = best_seconds(repeats, reference_forecast, tokenizer, predictor, *inputs, 1,
                             max_context)
    return tokenizer, predictor, ours, reference


def fixture_parity(device: torch.device) -> float:
    """Largest relative error of the fixture's greedy forecasts on `device` (float32)
    against the reference outputs (tests/test_parity.py asks for 1e-4 on the CPU)."""
    cases = json.loads((FIXTURE / "cases.json").read_text())
    columns = cases["columns"]
    tokenizer = load_tokenizer(FIXTURE / "tokenizer", device)
    predictor = load_predictor(FIXTURE / "model", device)
    candles = pd.read_csv(FIXTURE / "candles.csv", index_col="timestamps", parse_dates=True)
    worst = 0.0
    for case in cases["cases"]:
        context = candles.iloc[:case["context_rows"]]
        truth = pd.read_csv(FIXTURE / case["expected"], index_col="timestamps",
                            parse_dates=True)
        expected = make_candles_valid(truth[columns].to_numpy(copy=True))
        paths = forecast_paths(tokenizer, predictor, [context[columns].to_numpy()],
                               [time_features(context.index)], time_features(truth.index)[None],
                               n_samples=1, top_k=1, top_p=1.0, max_context=cases["max_context"])
        error = np.abs(paths[0, 0] - expected) / np.maximum(np.abs(expected), 1e-12)
        worst = max(worst, float(error.max()))
    return worst


def gpu_section(shape: tuple[int, int, int]) -> None:
    """Parity and tokens/s on the GPU; one line when CUDA is absent."""
    if not torch.cuda.is_available():
        print("\ngpu: skipped (torch.cuda.is_available() is False)")
        return
    device = torch.device("cuda")
    print(f"\ngpu: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}")
    error = fixture_parity(device)
    print(f"  parity fixture, float32, greedy: largest relative error {error:.1e} against the "
          f"reference ({'within' if error <= 1e-4 else 'OUTSIDE'} 1e-4)")
    lookback, horizon, max_context = shape
    inputs = real_contexts(1, lookback, horizon)
    print(f"  Kronos-small size, 1 series, lookback {lookback}, horizon {horizon}, exact; "
          "tokens/s = paths x horizon / seconds")
    for precision in (torch.float32, torch.bfloat16):
        tokenizer, predictor, _ = random_models("Kronos-small")
        tokenizer, predictor = tokenizer.to(device, precision), predictor.to(device, precision)
        for n_paths in (1, 1000):
            kwargs = dict(n_samples=n_paths, max_context=max_context, random_state=0,
                          max_paths=n_paths)
            forecast_paths(tokenizer, predictor, *inputs, **kwargs)  # warm-up
            seconds = best_seconds(2, forecast_paths, tokenizer, predictor, *inputs, **kwargs)
            print(f"  {str(precision).split('.')[1]:9} {n_paths:5d} paths {seconds:8.3f} s "
                  f"{n_paths * horizon / seconds:12,.0f} tokens/s", flush=True)


def reference_table(models: list[str], series_counts: list[int],
                    full_reference_paths: int) -> None:
    """(a) exact and rolling against (b), per size, series count and sample count."""
    contexts, stamps, future = real_contexts(max(series_counts), LOOKBACK, HORIZON)
    print(f"\ntable: real candles: {len(contexts)} US stocks, lookback {LOOKBACK}, "
          f"horizon {HORIZON}\n")
    header = (f"{'model':13} {'series':>6} {'samples':>7} | {'(a) exact s':>11} {'MiB':>6} | "
              f"{'rolling s':>9} {'MiB':>6} | {'(b) ref s':>10} {'MiB':>6} | "
              f"{'b/a exact':>9} {'b/a rolling':>11}")
    print(header)
    print("-" * len(header))
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
                if n_paths <= full_reference_paths:
                    ref_s, ref_mb, _ = measure(reference_forecast, tokenizer, predictor, *inputs,
                                               n_samples, max_context)
                    ref_text, mb_text = f"{ref_s:10.2f}", f"{ref_mb:6.0f}"
                else:
                    ref_s = extrapolated_reference(tokenizer, predictor, n_paths, max_context)
                    ref_text, mb_text = f"~{ref_s:9.1f}", f"{'n/a':>6}"
                print(f"{name:13} {n_series:6d} {n_samples:7d} | {exact_s:11.2f} {exact_mb:6.0f} | "
                      f"{roll_s:9.2f} {roll_mb:6.0f} | {ref_text} {mb_text} | "
                      f"{ref_s / exact_s:8.1f}x {ref_s / roll_s:10.1f}x", flush=True)
        if name == "Kronos-small" and 1 in series_counts and full_reference_paths >= 1:
            check = extrapolated_reference(tokenizer, predictor, 1, max_context)
            print(f"{'':13} extrapolation check, 1 path: ~{check:.2f} s (measured above)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated: {', '.join(SECTIONS)}")
    parser.add_argument("--quick", action="store_true", help="table: Kronos-small, 1 series only")
    parser.add_argument("--full-reference-paths", type=int, default=1,
                        help="table: run (b) in full up to this many paths, else extrapolate")
    parser.add_argument("--repeats", type=int, default=3,
                        help="bound, no-slide: the best of this many runs is kept")
    parser.add_argument("--tiny", action="store_true",
                        help=f"bound, no-slide, gpu at (lookback, horizon, window) {TINY_BOUND} "
                             f"and {TINY_NO_SLIDE}, one run each: checks the script")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    sections = args.sections.split(",")
    repeats = 1 if args.tiny else args.repeats
    print(machine())
    models = ["Kronos-small"] if args.quick else ["Kronos-mini", "Kronos-small"]
    if "table" in sections:
        reference_table(models, [1] if args.quick else [1, 64], args.full_reference_paths)
    bound_shape = TINY_BOUND if args.tiny else BOUND
    no_slide_shape = TINY_NO_SLIDE if args.tiny else NO_SLIDE
    targets = []
    if "bound" in sections:
        over_bound, speedup = bound_section(repeats, bound_shape)
        targets.append(f"lookback {bound_shape[0]}, horizon {bound_shape[1]}, exact: "
                       f"{over_bound:.2f}x the unavoidable work (target <= 1.3x), "
                       f"{speedup:.1f}x faster than (b) (target >= 9x)")
    if "no-slide" in sections:
        speedup = no_slide_section(repeats, no_slide_shape)
        targets.append(f"lookback {no_slide_shape[0]}, horizon {no_slide_shape[1]} (no slide): "
                       f"{speedup:.1f}x faster than (b) (target >= 30x)")
    if targets:
        print("\nTargets (Kronos-small, 1 series, 1 sample; the panel's are in bench_panel.py):")
        print("\n".join(f"  {line}" for line in targets))
    if "gpu" in sections:
        gpu_section(bound_shape)
    if "decode-step" not in sections:
        return

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
