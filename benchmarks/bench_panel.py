"""Panel forecasting: one batched `KronosForecaster` call versus one asset at a time.

100 US stocks (daily candles from ../shared/data), lookback 256, horizon 20, 10 paths each,
with the bundled default model (or the checkpoints given, or random weights of the
Kronos-small size with --random-small).
Both runs give the same paths (seeds depend on the asset name, not on the batch), which the
script checks before printing the two wall times and their ratio.

    python benchmarks/bench_panel.py
    python benchmarks/bench_panel.py --random-small
    python benchmarks/bench_panel.py --model DIR --tokenizer DIR --max-context 512
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import numpy as np
import pandas as pd
import torch

from _common import SHARED_DATA, random_models
from kronos_sk.checkpoints import default_checkpoint, save_checkpoint
from kronos_sk.estimators import KronosForecaster

N_ASSETS, LOOKBACK, HORIZON, N_SAMPLES = 100, 256, 20, 10


def panel() -> pd.DataFrame:
    frame = pd.read_parquet(SHARED_DATA / "us_stocks_daily_2008_2017.parquet")
    frame = frame[frame["timestamp"] < "2016-01-01"]
    frames = {}
    for asset, rows in frame.groupby("asset", sort=True):
        rows = rows.set_index("timestamp")[["open", "high", "low", "close", "volume"]]
        rows = rows.iloc[-LOOKBACK:]
        ok = (rows["high"] >= rows[["open", "close"]].max(axis=1)) & (
            rows["low"] <= rows[["open", "close"]].min(axis=1))
        if len(rows) == LOOKBACK and ok.all() and rows.index[-1] == frame["timestamp"].max():
            frames[asset] = rows
        if len(frames) == N_ASSETS:
            break
    return pd.concat(frames, names=["asset", "timestamp"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model")
    parser.add_argument("--tokenizer")
    parser.add_argument("--max-context", type=int, default=None)
    parser.add_argument("--random-small", action="store_true",
                        help="random weights of the Kronos-small size and Tokenizer-base")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    y = panel()
    last = y.index.get_level_values("timestamp").max()
    fh = pd.bdate_range(last, periods=HORIZON + 1)[1:]
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(default_checkpoint("predictor"))
        tokenizer = args.tokenizer or str(default_checkpoint("tokenizer"))
        if args.random_small:
            random_tokenizer, random_predictor, _ = random_models("Kronos-small")
            tokenizer = str(save_checkpoint(random_tokenizer, f"{tmp}/tokenizer"))
            model = str(save_checkpoint(random_predictor, f"{tmp}/model"))
        params = dict(model=model, tokenizer=tokenizer, max_context=args.max_context,
                      n_samples=N_SAMPLES, top_p=0.9, random_state=0)
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
    print(f"model {model}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {assets} assets x "
          f"{LOOKBACK} daily candles, horizon {HORIZON}, {N_SAMPLES} paths each")
    print(f"batched (one call):     {batched_s:8.2f} s")
    print(f"one asset at a time:    {single_s:8.2f} s")
    print(f"speed-up:               {single_s / batched_s:8.1f}x  (same paths: checked)")


if __name__ == "__main__":
    main()
