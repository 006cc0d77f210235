"""Panel forecasting with `KronosForecaster`: the full call, batching, sktime, memory.

Four sections, each printing ratios measured in the same run:

full-call
    The bundled default model on 120 US stocks x 90 daily candles, horizon 10, 16 paths:
    `predict` + `predict_quantiles` + `predict_interval` + `predict_volatility` on one fh,
    against `predict` alone (target <= 1.3x: the four calls share one generation), and
    against this project as of commit 767eae1 (`--baseline`), checked out beside this tree
    with `git worktree add` and imported in a subprocess through PYTHONPATH. Each side runs
    in its own fresh process on the same candles; their forecasts are compared too.
batching
    100 US stocks x 256 daily candles, horizon 20, 10 paths: one batched call against one
    asset at a time (the same paths, which the script checks).
sktime
    Random weights of the Kronos-mini size with Tokenizer-base, saved once and loaded by
    both sides: 100 US stocks x 90 daily candles, horizon 10, at 1, 10 and 100 samples,
    `fit` + `predict` of this project's `KronosForecaster` in float32 and with
    `precision="auto"` (bfloat16 where the CPU computes it natively) against sktime 1.2's
    (`sktime.forecasting.kronos`, which forecasts one asset at a time). Target: >= 20x at
    1 sample. Where sktime would take longer than `--sktime-budget` seconds, it runs on the
    first assets only and is scaled linearly by the number of assets, marked "~".
memory
    The bundled model on panels of 300 and 3,000 series x 90 daily candles, horizon 10, 16
    samples, each forecast (`fit` + `predict`) in a fresh subprocess: peak RSS and seconds.
    The US file holds 1,000 stocks, so series are disjoint 90-row windows of them (the
    latest first), every window on the calendar of the latest one.

    python benchmarks/bench_panel.py                      # every section, full size
    python benchmarks/bench_panel.py --sections sktime    # one section (comma-separated)
    python benchmarks/bench_panel.py --tiny               # a seconds-long check of the script
    python benchmarks/bench_panel.py --assets 30          # override a size of every section
    python benchmarks/bench_panel.py --random-small       # batching with Kronos-small weights

Run it with this tree first on PYTHONPATH (e.g. `PYTHONPATH=. python benchmarks/...`) when
another checkout is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
US_DAILY = "us_stocks_daily_2008_2017.parquet"
FULL_CALL = dict(assets=120, rows=90, horizon=10, samples=16)
BATCHING = dict(assets=100, rows=256, horizon=20, samples=10)
SKTIME = dict(assets=100, rows=90, horizon=10)  # at SKTIME_SAMPLES samples
MEMORY = dict(rows=90, horizon=10, samples=16)  # panels of MEMORY_SERIES series
TINY = dict(assets=6, rows=40, horizon=3, samples=2)
SKTIME_SAMPLES = (1, 10, 100)
MEMORY_SERIES = (300, 3000)
SECTIONS = ("full-call", "batching", "sktime", "memory")
BASELINE = "767eae1"
CALLS = ("predict", "predict_quantiles", "predict_interval", "predict_volatility")


def us_daily() -> pd.DataFrame:
    """The US stocks file before 2016."""
    from _common import SHARED_DATA
    path = SHARED_DATA / US_DAILY
    if not path.is_file():
        raise SystemExit(f"real data {path} not found; see ../shared/data/README.md")
    frame = pd.read_parquet(path)
    return frame[frame["timestamp"] < "2016-01-01"]


def valid_candles(candles: pd.DataFrame) -> bool:
    """Whether every high and low bounds its open and close (a few rows of the file do not)."""
    body = candles[["open", "close"]]
    return bool(((candles["high"] >= body.max(axis=1)) &
                 (candles["low"] <= body.min(axis=1))).all())


def panel(n_assets: int, rows: int) -> pd.DataFrame:
    """The last `rows` valid daily candles of the first `n_assets` US stocks before 2016."""
    frame = us_daily()
    frames = {}
    for asset, candles in frame.groupby("asset", sort=True):
        candles = candles.set_index("timestamp")[["open", "high", "low", "close", "volume"]]
        candles = candles.iloc[-rows:]
        if (len(candles) == rows and valid_candles(candles)
                and candles.index[-1] == frame["timestamp"].max()):
            frames[asset] = candles
        if len(frames) == n_assets:
            break
    return pd.concat(frames, names=["asset", "timestamp"])


def window_panel(n_series: int, rows: int) -> tuple[pd.DataFrame, int]:
    """`n_series` series of `rows` real daily candles, and how many stocks they come from.

    Series are disjoint windows of the US stocks ending before 2016: window 0 of every
    stock (its last `rows` candles), then window 1 (the `rows` before), and so on. Each
    window is put on the calendar of the latest one, so that every series shares one fh.
    """
    frame = us_daily()
    calendar = pd.DatetimeIndex(sorted(frame["timestamp"].unique())[-rows:], name="timestamp")
    windows: dict[int, dict] = {}
    for asset, candles in frame.groupby("asset", sort=True):
        values = candles[["open", "high", "low", "close", "volume"]]
        if candles["timestamp"].iloc[-1] != calendar[-1]:
            continue
        for k in range(len(values) // rows):
            window = values.iloc[len(values) - (k + 1) * rows:len(values) - k * rows]
            if valid_candles(window):
                windows.setdefault(k, {})[f"{asset}/{k}"] = window.set_axis(calendar)
    chosen = [(key, w) for k in sorted(windows) for key, w in windows[k].items()][:n_series]
    if len(chosen) < n_series:
        raise SystemExit(f"only {len(chosen)} windows of {rows} valid rows in {US_DAILY}")
    stocks = len({key.split("/")[0] for key, _ in chosen})
    return pd.concat(dict(chosen), names=["asset", "timestamp"]), stocks


def future(y: pd.DataFrame, horizon: int) -> pd.DatetimeIndex:
    last = y.index.get_level_values("timestamp").max()
    return pd.bdate_range(last, periods=horizon + 1)[1:]


# ---------------------------------------------------------------------------- full call
def full_call_worker(data: str, horizon: int, samples: int, out: str) -> None:
    """Time `predict` alone and the full call with whichever kronos_sk is importable.

    Runs in a subprocess (this file with --worker) and imports nothing of this tree but
    kronos_sk, so that PYTHONPATH alone decides which version is measured.
    """
    import kronos_sk
    from kronos_sk.estimators import KronosForecaster
    warnings.simplefilter("ignore")
    y = pd.read_parquet(data)
    fh = future(y, horizon)
    params = dict(n_samples=samples, top_p=0.9, random_state=0)
    first = y.index.get_level_values(0)[0]
    KronosForecaster(**params).fit(y.loc[[first]]).predict(fh[:2])  # load the weights

    forecaster = KronosForecaster(**params).fit(y)
    start = time.perf_counter()
    mean = forecaster.predict(fh)
    predict_s = time.perf_counter() - start

    forecaster = KronosForecaster(**params).fit(y)  # nothing kept from the run above
    seconds = {}
    for name in CALLS:
        start = time.perf_counter()
        getattr(forecaster, name)(fh)
        seconds[name] = time.perf_counter() - start
    np.save(out + ".npy", mean.to_numpy(np.float64))
    Path(out).write_text(json.dumps({"kronos_sk": kronos_sk.__file__, "predict_s": predict_s,
                                     "calls": seconds}))


def run_worker(pythonpath: Path, data: str, size: dict, out: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    command = [sys.executable, __file__, "--worker", data, str(size["horizon"]),
               str(size["samples"]), out]
    subprocess.run(command, env=env, check=True, cwd=pythonpath)
    result = json.loads(Path(out).read_text())
    result["mean"] = np.load(out + ".npy")
    return result


def full_call(size: dict, baseline: str) -> None:
    y = panel(size["assets"], size["rows"])
    with tempfile.TemporaryDirectory() as tmp:
        data = f"{tmp}/panel.parquet"
        y.to_parquet(data)
        old_tree = Path(tmp) / f"kronos-sk-{baseline}"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet",
                        str(old_tree), baseline], check=True)
        try:
            new = run_worker(ROOT, data, size, f"{tmp}/new.json")
            old = run_worker(old_tree, data, size, f"{tmp}/old.json")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(old_tree)], check=False)
    n_assets = y.index.get_level_values(0).nunique()
    print(f"\nfull probabilistic call: bundled model, {n_assets} assets x {size['rows']} daily "
          f"candles, horizon {size['horizon']}, {size['samples']} paths")
    print(f"  this tree: {new['kronos_sk']}\n  baseline:  {old['kronos_sk']} ({baseline})")
    print(f"  {'seconds':24s} {'this tree':>10s} {baseline:>10s}")
    print(f"  {'predict alone':24s} {new['predict_s']:10.2f} {old['predict_s']:10.2f}")
    for name in CALLS:
        print(f"  {'  ' + name:24s} {new['calls'][name]:10.2f} {old['calls'][name]:10.2f}")
    full_new, full_old = sum(new["calls"].values()), sum(old["calls"].values())
    print(f"  {'full call (4 methods)':24s} {full_new:10.2f} {full_old:10.2f}")
    print(f"  full call / predict alone:   {full_new / new['predict_s']:6.2f}x this tree "
          f"(target <= 1.3x), {full_old / old['predict_s']:.2f}x at {baseline}")
    print(f"  {baseline} / this tree, full call: {full_old / full_new:6.2f}x faster "
          f"(predict alone: {old['predict_s'] / new['predict_s']:.2f}x)")
    # Open and close are the sampled values themselves; high, low and volume have been made
    # valid candles since 767eae1 (make_candles_valid), which moves their means a little.
    relative = np.abs(new["mean"] / old["mean"] - 1)
    print(f"  same paths: predict means of open and close agree to "
          f"{relative[:, [0, 3]].max():.1e} (relative), all columns to {relative.max():.1e}")


# ---------------------------------------------------------------------------- batching
def batching(size: dict, args) -> None:
    from kronos_sk.checkpoints import default_checkpoint
    from kronos_sk.estimators import KronosForecaster
    y = panel(size["assets"], size["rows"])
    fh = future(y, size["horizon"])
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(default_checkpoint("predictor"))
        tokenizer = args.tokenizer or str(default_checkpoint("tokenizer"))
        if args.random_small:
            tokenizer, model = random_checkpoints("Kronos-small", tmp)
        params = dict(model=model, tokenizer=tokenizer, max_context=args.max_context,
                      n_samples=size["samples"], top_p=0.9, random_state=0)
        KronosForecaster(**params).fit(y.loc[y.index.get_level_values(0)[:1]]).predict(fh[:2])
        start = time.perf_counter()
        batched = KronosForecaster(**params).fit(y).predict(fh)
        batched_s = time.perf_counter() - start
        start = time.perf_counter()
        singles = [KronosForecaster(**params).fit(y.loc[[asset]]).predict(fh)
                   for asset in y.index.unique(level="asset")]
        single_s = time.perf_counter() - start
    np.testing.assert_allclose(pd.concat(singles).to_numpy(), batched.to_numpy(), rtol=1e-4)
    assets = y.index.get_level_values(0).nunique()
    print(f"\nbatching: model {model}\n  {assets} assets x {size['rows']} daily candles, "
          f"horizon {size['horizon']}, {size['samples']} paths each")
    print(f"  batched (one call):     {batched_s:8.2f} s")
    print(f"  one asset at a time:    {single_s:8.2f} s")
    print(f"  speed-up:               {single_s / batched_s:8.1f}x  (same paths: checked)")


# ---------------------------------------------------------------------------- sktime
def random_checkpoints(name: str, directory: str) -> tuple[str, str]:
    """Random weights of a released size saved in the released layout: (tokenizer, model)."""
    from _common import random_models
    from kronos_sk.checkpoints import save_checkpoint
    tokenizer, predictor, _ = random_models(name)
    return (str(save_checkpoint(tokenizer, f"{directory}/tokenizer")),
            str(save_checkpoint(predictor, f"{directory}/model")))


def seconds_of(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def sktime_comparison(size: dict, sample_counts: list[int], budget: float) -> None:
    from sktime.forecasting.kronos import KronosForecaster as SktimeKronos

    from kronos_sk.checkpoints import model_context
    from kronos_sk.estimators import KronosForecaster
    from kronos_sk.runtime import native_bf16, resolve_precision
    y = panel(size["assets"], size["rows"])
    fh = future(y, size["horizon"])
    assets = y.index.unique(level="asset")
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer, model = random_checkpoints("Kronos-mini", tmp)
        model_window = model_context(model)

        def ours(n_samples: int, max_context: int | None = None,
                 precision: str = "float32") -> None:
            KronosForecaster(model=model, tokenizer=tokenizer, max_context=max_context,
                             n_samples=n_samples, top_p=0.9, random_state=0,
                             precision=precision, prefill_precision=precision
                             ).fit(y).predict(fh)

        def theirs(n_samples: int, n_assets: int) -> None:
            kwargs = dict(sample_count=n_samples, top_p=0.9, verbose=False)
            SktimeKronos(model_path=model, tokenizer_path=tokenizer,
                         predict_kwargs=kwargs).fit(y.loc[assets[:n_assets]]).predict(fh)

        ours(1)  # loads the weights on each side
        ours(1, precision="auto")
        theirs(1, 1)
        auto = resolve_precision("auto", "cpu")
        print(f"\nsktime: Kronos-mini size (random weights, Tokenizer-base), {len(assets)} US "
              f"stocks x {size['rows']} daily candles, horizon {size['horizon']}, top_p 0.9; "
              f"fit + predict")
        window = f"w{size['rows']}"
        print(f"  sktime's forecaster sets max_context to the context length ({size['rows']}), "
              "so its window slides from the first step;\n  ours keeps the model's window "
              f"({model_window}) by default, and 'ours {window}' runs with sktime's window.\n"
              f"  'ours' runs in float32; 'auto' with precision='auto', here {auto} "
              f"(native bf16: {native_bf16('cpu')}).")
        header = (f"  {'samples':>7} | {'ours s':>7} {'auto s':>7} {'ours ' + window + ' s':>10} "
                  f"| {'sktime s':>9} | {'sktime/ours':>11} {'/auto':>6} {'/ours ' + window:>10}")
        print(header + "\n  " + "-" * (len(header) - 2))
        ratios, last = {}, None
        for n_samples in sample_counts:
            ours_s = float(np.median([seconds_of(ours, n_samples) for _ in range(3)]))
            auto_s = float(np.median([seconds_of(ours, n_samples, precision="auto")
                                      for _ in range(3)]))
            window_s = seconds_of(ours, n_samples, size["rows"])
            # sktime forecasts one asset at a time, so its cost scales with the assets.
            estimate = last[1] * n_samples / last[0] if last else 0.0
            n_assets = len(assets)
            if estimate > budget:
                n_assets = max(2, min(len(assets), int(len(assets) * budget / estimate)))
            sktime_s = seconds_of(theirs, n_samples, n_assets) * len(assets) / n_assets
            if n_assets == len(assets):
                last = (n_samples, sktime_s)
                text = f"{sktime_s:9.2f}"
            else:
                text = f"~{sktime_s:8.1f}"
            ratios[n_samples] = sktime_s / ours_s
            note = "" if n_assets == len(assets) else f"  (~: {n_assets} assets, scaled)"
            print(f"  {n_samples:7d} | {ours_s:7.2f} {auto_s:7.2f} {window_s:10.2f} | {text} | "
                  f"{sktime_s / ours_s:10.1f}x {sktime_s / auto_s:5.1f}x "
                  f"{sktime_s / window_s:9.1f}x{note}", flush=True)
        if last and last[0] != sample_counts[-1]:
            n_check = max(2, len(assets) // 10)
            check = seconds_of(theirs, last[0], n_check) * len(assets) / n_check
            print(f"  extrapolation check, {last[0]} sample(s) from {n_check} assets: "
                  f"~{check:.1f} s ({last[1]:.1f} s measured above)")
    if 1 in ratios:
        print(f"  target >= 20x faster than sktime at 1 sample: {ratios[1]:.1f}x "
              f"({ratios[1] / 20:.2f} of target)")


# ---------------------------------------------------------------------------- memory
def memory_worker(data: str, horizon: int, samples: int, out: str) -> None:
    """Fit and predict the panel in `data` with the bundled model; write times and memory."""
    from _common import peak_rss_bytes, rss_bytes
    from kronos_sk.estimators import KronosForecaster
    warnings.simplefilter("ignore")
    y = pd.read_parquet(data)
    fh = future(y, horizon)
    start = time.perf_counter()
    forecaster = KronosForecaster(n_samples=samples, top_p=0.9, random_state=0).fit(y)
    fit_s = time.perf_counter() - start
    before = rss_bytes()
    start = time.perf_counter()
    forecaster.predict(fh)
    predict_s = time.perf_counter() - start
    n_series = y.index.get_level_values(0).nunique()
    Path(out).write_text(json.dumps({
        "fit_s": fit_s, "predict_s": predict_s, "rss_before_predict": before,
        "peak_rss": peak_rss_bytes(),
        "y_bytes": int(y.memory_usage(deep=True).sum() + y.index.memory_usage(deep=True)),
        "paths_bytes": n_series * samples * horizon * 6 * 4,
        "max_paths": forecaster.max_paths}))


def memory(size: dict, panel_sizes: list[int]) -> None:
    y, stocks = window_panel(max(panel_sizes), size["rows"])
    keys = y.index.unique(level="asset")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n_series in panel_sizes:
            data, out = f"{tmp}/panel{n_series}.parquet", f"{tmp}/memory{n_series}.json"
            y.loc[keys[:n_series]].to_parquet(data)
            command = [sys.executable, __file__, "--memory-worker", data,
                       str(size["horizon"]), str(size["samples"]), out]
            subprocess.run(command, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True,
                           cwd=ROOT)
            results[n_series] = json.loads(Path(out).read_text())
    mib = 2 ** 20
    print(f"\nmemory: bundled model, {size['rows']} daily candles per series, horizon "
          f"{size['horizon']}, {size['samples']} samples, max_paths "
          f"{results[panel_sizes[0]]['max_paths']}; each panel in a fresh process")
    print(f"  series: disjoint {size['rows']}-row windows of {stocks} US stocks (window 0 of "
          f"every stock, then window 1, ...), each on the calendar of the latest window")
    header = (f"  {'series':>6} | {'fit s':>6} {'predict s':>9} | {'RSS before predict':>18} "
              f"{'peak RSS':>8} | {'y':>5} {'paths':>5}  (MiB)")
    print(header + "\n  " + "-" * (len(header) - 2))
    for n_series, r in results.items():
        print(f"  {n_series:6d} | {r['fit_s']:6.1f} {r['predict_s']:9.1f} | "
              f"{r['rss_before_predict'] / mib:18.0f} {r['peak_rss'] / mib:8.0f} | "
              f"{r['y_bytes'] / mib:5.1f} {r['paths_bytes'] / mib:5.1f}")
    small, large = results[min(panel_sizes)], results[max(panel_sizes)]
    grown = (large["peak_rss"] - small["peak_rss"]) / mib
    data_grown = (large["y_bytes"] + large["paths_bytes"] - small["y_bytes"]
                  - small["paths_bytes"]) / mib
    added = max(panel_sizes) - min(panel_sizes)
    print(f"  peak RSS from {min(panel_sizes)} to {max(panel_sizes)} series: {grown:+.0f} MiB, "
          f"{grown * 1024 / added:.0f} KiB per added series (y and the paths: "
          f"{data_grown:+.1f} MiB)")


def main() -> None:
    workers = {"--worker": full_call_worker, "--memory-worker": memory_worker}
    if len(sys.argv) > 1 and sys.argv[1] in workers:
        data, horizon, samples, out = sys.argv[2:6]
        return workers[sys.argv[1]](data, int(horizon), int(samples), out)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated: {', '.join(SECTIONS)}")
    parser.add_argument("--baseline", default=BASELINE,
                        help="the commit the full call is compared with")
    parser.add_argument("--tiny", action="store_true",
                        help=f"{TINY['assets']} assets x {TINY['rows']} rows, horizon "
                             f"{TINY['horizon']}, {TINY['samples']} paths: checks the script")
    for name in ("assets", "rows", "horizon", "samples"):
        parser.add_argument(f"--{name}", type=int, help=f"override the sections' {name}")
    parser.add_argument("--model", help="batching: predictor checkpoint")
    parser.add_argument("--tokenizer", help="batching: tokenizer checkpoint")
    parser.add_argument("--max-context", type=int, default=None)
    parser.add_argument("--random-small", action="store_true",
                        help="batching: random weights of the Kronos-small size")
    parser.add_argument("--sktime-samples", type=int, nargs="+",
                        help=f"sktime: sample counts (default {SKTIME_SAMPLES}; --tiny: 1 2)")
    parser.add_argument("--sktime-budget", type=float, default=180.0,
                        help="sktime: seconds beyond which its run is scaled from fewer assets")
    parser.add_argument("--memory-series", type=int, nargs="+",
                        help=f"memory: panel sizes (default {MEMORY_SERIES}; --tiny: 20 60)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from _common import machine
    print(machine())
    sections = args.sections.split(",")

    def size(default: dict) -> dict:
        chosen = TINY if args.tiny else default
        return {k: getattr(args, k) or v for k, v in chosen.items()}

    if "full-call" in sections:
        full_call(size(FULL_CALL), args.baseline)
    if "batching" in sections:
        batching(size(BATCHING), args)
    if "sktime" in sections:
        counts = args.sktime_samples or ([1, TINY["samples"]] if args.tiny else SKTIME_SAMPLES)
        sktime_comparison(size(SKTIME), list(counts), args.sktime_budget)
    if "memory" in sections:
        panel_sizes = args.memory_series or ([20, 60] if args.tiny else MEMORY_SERIES)
        memory(size(MEMORY), list(panel_sizes))


if __name__ == "__main__":
    main()
