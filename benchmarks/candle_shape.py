"""Candles shaped like the context's: the bundled model's opens, highs and lows against the truth.

On the benchmark configs' windows (US and A-shares daily, crypto hourly: 50 assets x 20
origins each), the bundled model's paths as every face returns them with its
inference.json (`candles` on: `kronos_sk.calibration.shape_candles`) and as they were
before (the same with `candles` off), with the same seed, against what followed. Per
market and variant, pooled over windows, paths and steps:

- median |open gap| from the close before, median upper and lower wick beyond the body
  and median |close move|, in log prices (%); the gap and wicks over the move; the share
  of bars without an upper wick; the wicks' 90th percentile over their median;
- correlation of the gap with the intraday move (close over open), Pearson and Spearman;
- the fair CRPS of the log open, high and low, in units of the context's log-close std
  (the close is never moved, so its rows are left out), and of the candle about its own
  close: log high over close, close over low, open over the close before; and of the
  log open, high and low with each window's paths moved (all prices alike, per step) so
  that their mean log close is the true one ("oracle": the close's error taken out);
- the mean path's MAE on open, high and low in context close stds, over the random
  walk's (every price at the last close; 1 = as good), and its price IC per column (the
  correlation over the horizon with the true path, averaged over windows).

    python benchmarks/candle_shape.py
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from suite.config import load_config
from suite.data import PRICE_COLUMNS, Windows, load_panel
from suite.models import Budget
from suite.runner import over_origins

from _common import machine
from kronos_sk import KronosPipeline
from kronos_sk.checkpoints import default_checkpoint
from kronos_sk.metrics import crps_from_samples, price_ic_by_window

CONFIGS = tuple(Path("benchmarks/configs") / f"{name}.toml"
                for name in ("us_daily", "cn_daily", "crypto_hourly"))
OPEN, HIGH, LOW, CLOSE = range(4)


def sizes(candles: np.ndarray, previous_close: np.ndarray) -> dict[str, float]:
    """Gap, wick and move sizes and the gap/intraday correlations of log candles (..., 4)."""
    gap = candles[..., OPEN] - previous_close
    move = candles[..., CLOSE] - previous_close
    intraday = candles[..., CLOSE] - candles[..., OPEN]
    upper = candles[..., HIGH] - np.maximum(candles[..., OPEN], candles[..., CLOSE])
    lower = np.minimum(candles[..., OPEN], candles[..., CLOSE]) - candles[..., LOW]
    wicks = np.concatenate([upper.ravel(), lower.ravel()])
    gap_size, move_size = np.median(np.abs(gap)), np.median(np.abs(move))
    return {"gap %": 100 * gap_size, "wick %": 100 * np.median(wicks),
            "move %": 100 * move_size, "gap/move": gap_size / move_size,
            "upper/move": np.median(upper) / move_size,
            "lower/move": np.median(lower) / move_size,
            "no upper wick": np.mean(upper < 1e-9),
            "wick q90/median": np.quantile(wicks, 0.9) / np.median(wicks),
            "corr(gap, intraday)": np.corrcoef(gap.ravel(), intraday.ravel())[0, 1],
            "rank corr": spearmanr(gap.ravel(), intraday.ravel())[0]}


def scores(paths: np.ndarray, truth: np.ndarray, before: np.ndarray, truth_before: np.ndarray,
           last: np.ndarray, scale: np.ndarray, log_scale: np.ndarray) -> dict[str, float]:
    """Fair CRPS of the log open/high/low, of the candle about its close and of the log
    open/high/low of paths moved to the true mean close ("oracle"; all in log-close stds),
    the mean path's MAE (in close stds) over the random walk's and its price IC, for paths
    (W, S, H, 4), truth (W, H, 4) and their log closes before each step (W, S, H), (W, H)."""
    def crps(sampled: np.ndarray, realised: np.ndarray) -> float:  # (W, S, H), (W, H)
        return (crps_from_samples(np.moveaxis(sampled, 1, 0), realised, fair=True)
                / log_scale).mean()

    log_paths, log_truth = np.log(paths), np.log(truth)
    out = {}
    for name, column in (("open", OPEN), ("high", HIGH), ("low", LOW)):
        out[f"CRPS {name}"] = crps(log_paths[..., column], log_truth[..., column])
        error = np.abs(paths[..., column].mean(axis=1) - truth[..., column]) / scale
        walk = np.abs(last - truth[..., column]) / scale
        out[f"MAE {name} / RW"] = error.mean() / walk.mean()
        out[f"IC {name}"] = np.nanmean(price_ic_by_window(paths[..., column].mean(axis=1),
                                                          truth[..., column]))
    for name, (a, b) in (("high/close", (HIGH, CLOSE)), ("close/low", (CLOSE, LOW))):
        out[f"CRPS {name}"] = crps(log_paths[..., a] - log_paths[..., b],
                                   log_truth[..., a] - log_truth[..., b])
    out["CRPS open/prev"] = crps(log_paths[..., OPEN] - before,
                                 log_truth[..., OPEN] - truth_before)
    centred = log_truth[:, None, :, CLOSE] - log_paths[..., CLOSE].mean(axis=1, keepdims=True)
    for name, column in (("open", OPEN), ("high", HIGH), ("low", LOW)):
        out[f"oracle CRPS {name}"] = crps(log_paths[..., column] + centred,
                                          log_truth[..., column])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", type=Path, nargs="+", default=list(CONFIGS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    pipe, unshaped = (KronosPipeline.from_pretrained(default_checkpoint("predictor"),
                                                     default_checkpoint("tokenizer"))
                      for _ in range(2))
    unshaped.spread = replace(pipe.spread, candles=False)
    print(machine())
    print(f"bundled model's own settings: {pipe.spread}")
    for path in args.configs:
        config = load_config(path)
        panel = load_panel(config)
        drawn, shaped, truths, contexts_last, lasts, scales, log_scales = ([] for _ in range(7))

        def work(windows: Windows) -> None:
            contexts = dict(zip(windows.assets, windows.contexts, strict=True))
            future = {a: t.index for a, t in zip(windows.assets, windows.targets)}
            for paths, face in ((drawn, unshaped), (shaped, pipe)):
                paths.append(face.sample(contexts, future=future, n_samples=config.n_samples,
                                         random_state=args.seed).paths[..., :4])
            last = windows.last_close()
            truths.append(windows.target_array(PRICE_COLUMNS))
            contexts_last.append(np.stack([np.log(c[PRICE_COLUMNS].to_numpy(np.float64)[-21:])
                                           for c in windows.contexts]))
            lasts.append(last)
            scales.append([c["close"].std() for c in windows.contexts])
            log_scales.append([np.log(c["close"]).std() for c in windows.contexts])

        over_origins(config, panel, Budget(None), work)
        truth, last = np.concatenate(truths), np.concatenate(lasts)
        scale = np.concatenate(scales)[:, None]
        log_scale = np.concatenate(log_scales)[:, None]
        context = np.concatenate(contexts_last)
        rows = {"context (last 20 rows)": sizes(context[:, 1:], context[:, :-1, CLOSE])}
        log_truth = np.log(truth)
        start = np.log(last)[:, None]
        truth_before = np.concatenate([start, log_truth[:, :-1, CLOSE]], 1)
        rows["truth"] = sizes(log_truth, truth_before)
        for name, paths in (("candles off", np.concatenate(drawn).astype(np.float64)),
                            ("candles on", np.concatenate(shaped).astype(np.float64))):
            log_paths = np.log(paths)
            before = np.concatenate([np.broadcast_to(start[:, None], log_paths.shape[:2] + (1,)),
                                     log_paths[..., :-1, CLOSE]], axis=2)
            rows[name] = {**sizes(log_paths, before),
                          **scores(paths, truth, before, truth_before, last[:, None], scale,
                                   log_scale)}
        print(f"\n{path.stem}: {len(truth)} windows x {config.n_samples} paths x "
              f"{truth.shape[1]} steps, seed {args.seed}")
        columns = list(rows["candles on"])
        print(f"{'':24}" + "".join(f"{c:>20}" for c in columns))
        for name, values in rows.items():
            print(f"{name:24}" + "".join(f"{values[c]:>20.4f}" if c in values else f"{'':>20}"
                                         for c in columns))


if __name__ == "__main__":
    main()
