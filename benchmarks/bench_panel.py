"""Panel forecasting with `KronosForecaster`: the full probabilistic call, and batching.

Two sections, each printing ratios measured in the same run:

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

    python benchmarks/bench_panel.py                      # both sections, full size
    python benchmarks/bench_panel.py --sections full-call
    python benchmarks/bench_panel.py --tiny               # a seconds-long check of the script
    python benchmarks/bench_panel.py --assets 30          # override a size of both sections
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
TINY = dict(assets=6, rows=40, horizon=3, samples=2)
BASELINE = "767eae1"
CALLS = ("predict", "predict_quantiles", "predict_interval", "predict_volatility")


def panel(n_assets: int, rows: int) -> pd.DataFrame:
    """The last `rows` valid daily candles of the first `n_assets` US stocks before 2016."""
    from _common import SHARED_DATA
    path = SHARED_DATA / US_DAILY
    if not path.is_file():
        raise SystemExit(f"real data {path} not found; see ../shared/data/README.md")
    frame = pd.read_parquet(path)
    frame = frame[frame["timestamp"] < "2016-01-01"]
    frames = {}
    for asset, candles in frame.groupby("asset", sort=True):
        candles = candles.set_index("timestamp")[["open", "high", "low", "close", "volume"]]
        candles = candles.iloc[-rows:]
        ok = (candles["high"] >= candles[["open", "close"]].max(axis=1)) & (
            candles["low"] <= candles[["open", "close"]].min(axis=1))
        if len(candles) == rows and ok.all() and candles.index[-1] == frame["timestamp"].max():
            frames[asset] = candles
        if len(frames) == n_assets:
            break
    return pd.concat(frames, names=["asset", "timestamp"])


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
    from _common import random_models
    from kronos_sk.checkpoints import default_checkpoint, save_checkpoint
    from kronos_sk.estimators import KronosForecaster
    y = panel(size["assets"], size["rows"])
    fh = future(y, size["horizon"])
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(default_checkpoint("predictor"))
        tokenizer = args.tokenizer or str(default_checkpoint("tokenizer"))
        if args.random_small:
            random_tokenizer, random_predictor, _ = random_models("Kronos-small")
            tokenizer = str(save_checkpoint(random_tokenizer, f"{tmp}/tokenizer"))
            model = str(save_checkpoint(random_predictor, f"{tmp}/model"))
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


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        data, horizon, samples, out = sys.argv[2:6]
        return full_call_worker(data, int(horizon), int(samples), out)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sections", default="full-call,batching",
                        help="comma-separated: full-call, batching")
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


if __name__ == "__main__":
    main()
