"""Evaluate a finished pre-training run on validation windows of every market.

Reads the recipe (for the data, the split and the window sizes) and the run's best
checkpoints, and writes one JSON file with

- ``tokenizer``: reconstruction MAE and MSE in normalised units, from all bits and from the
  coarse bits only, per market;
- ``codebook``: the share of coarse and fine ids used and the perplexity of their empirical
  distribution, per market and over all markets;
- ``forecast``: zero-shot IC and RankIC per market of the predicted horizon return (mean
  path's last close / last context close - 1) against the realised return, next to momentum
  (return over the lookback) and short-term reversal (minus the last 5-bar return). Daily
  markets are scored cross-sectionally per date (mean IC over dates with at least
  ``MIN_CROSS_SECTION`` windows); the others pool all their windows.

Windows lie entirely in the validation part of one segment: the lookback ends at the
forecast origin and the horizon follows it. Daily markets use the same few origin dates for
many assets; the others spread their windows evenly over assets and time. Run it only when
the training has finished and nothing else heavy runs::

    OMP_NUM_THREADS=1 python scripts/evaluate_default_model.py
    python scripts/evaluate_default_model.py --config configs/default-model.toml \\
        --windows-per-market 300 --out runs/default-model/evaluation.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kronos_sk.checkpoints import load_predictor, load_tokenizer
from kronos_sk.data import CandleCorpus, FEATURE_COLUMNS, time_features
from kronos_sk.data.normalize import Normalizer
from kronos_sk.generation import forecast_paths
from kronos_sk.metrics import return_ic, return_rank_ic
from kronos_sk.nn.tokenizer import KronosTokenizer
from kronos_sk.training.recipe import DataSettings, load_recipe

CLOSE = FEATURE_COLUMNS.index("close")
MIN_CROSS_SECTION = 3  # fewest windows on one date for a cross-sectional IC
MIN_DATES = 10  # daily markets: at least this many origin dates where assets suffice
REVERSAL_BARS = 5
CHUNK = 64  # assets read at once


@dataclass
class Windows:
    """Validation windows of one market.

    Attributes
    ----------
    raw : ndarray of shape (N, lookback + horizon, 6), float64
    stamps : ndarray of shape (N, lookback + horizon, 5), int64
    origin : ndarray of shape (N,), int64
        Nanosecond stamp of the last lookback row (the forecast origin).
    daily : bool
        Every asset of the market has a median step of a day or more: scored per date.
    """

    raw: np.ndarray
    stamps: np.ndarray
    origin: np.ndarray
    daily: bool


def window_ends(frame: pd.DataFrame, lookback: int, horizon: int,
                validation_start: int) -> np.ndarray:
    """Rows that may end a lookback whose window lies in validation and in one segment."""
    segment = frame["segment"].to_numpy()
    ticks = pd.DatetimeIndex(frame["timestamp"]).as_unit("ns").asi8
    first = np.searchsorted(ticks, validation_start)
    end = np.arange(len(frame))
    start, stop = end - lookback + 1, end + horizon
    ok = (start >= first) & (stop < len(frame))
    ok[ok] &= segment[start[ok]] == segment[stop[ok]]
    return end[ok]


def choose_windows(candidates: pd.DataFrame, n_windows: int, daily: bool,
                   rng: np.random.Generator) -> pd.DataFrame:
    """Pick at most `n_windows` of the (position, end, origin) candidates.

    Daily markets: evenly spaced origin dates, each with many assets. Others: evenly spread
    over the candidates in asset and time order.
    """
    if len(candidates) <= n_windows and not daily:
        return candidates
    if not daily:
        spread = ((np.arange(n_windows) + 0.5) * len(candidates) / n_windows).astype(np.int64)
        return candidates.iloc[spread]
    per_date = candidates.groupby("origin").size()
    dates = per_date.index[per_date >= MIN_CROSS_SECTION]
    n_assets = candidates["position"].nunique()
    quota = max(MIN_CROSS_SECTION, min(n_assets, math.ceil(n_windows / MIN_DATES)))
    n_dates = min(len(dates), math.ceil(n_windows / quota))
    if n_dates == 0:
        return candidates.iloc[:0]
    picked = dates[((np.arange(n_dates) + 0.5) * len(dates) / n_dates).astype(np.int64)]
    parts = []
    for origin in picked:
        rows = candidates[candidates["origin"] == origin]
        parts.append(rows.iloc[np.sort(rng.permutation(len(rows))[:quota])])
    return pd.concat(parts).iloc[:n_windows]


def market_windows(corpus: CandleCorpus, data: DataSettings, market: str, n_windows: int,
                   rng: np.random.Generator) -> Windows:
    """Read the validation windows of one market (each asset at most twice)."""
    lookback, horizon = data.lookback, data.horizon
    starts = corpus.validation_starts(data.time_split())
    assets = corpus.assets
    last = np.array([stamp.value for stamp in assets["last"]], dtype=np.int64)
    positions = np.flatnonzero((assets["market"].to_numpy() == market) & (last >= starts))
    daily = bool((assets["median_step"].iloc[positions] >= pd.Timedelta(days=1)).all())

    found = []
    for i in range(0, len(positions), CHUNK):
        chunk = positions[i: i + CHUNK].tolist()
        for position, frame in zip(chunk, corpus.load_many(chunk)):
            ends = window_ends(frame, lookback, horizon, starts[position])
            ticks = pd.DatetimeIndex(frame["timestamp"]).as_unit("ns").asi8
            found.append(pd.DataFrame({"position": position, "end": ends,
                                       "origin": ticks[ends]}))
    candidates = pd.concat(found, ignore_index=True) if found else pd.DataFrame(
        {"position": [], "end": [], "origin": []}, dtype=np.int64)
    chosen = choose_windows(candidates, n_windows, daily, rng)

    raw, stamps, origin = [], [], []
    wanted = sorted(set(chosen["position"].tolist()))
    for i in range(0, len(wanted), CHUNK):
        chunk = wanted[i: i + CHUNK]
        for position, frame in zip(chunk, corpus.load_many(chunk)):
            values = frame[list(FEATURE_COLUMNS)].to_numpy(dtype=np.float64)
            calendar = time_features(pd.DatetimeIndex(frame["timestamp"]))
            for row in chosen[chosen["position"] == position].itertuples():
                rows = slice(row.end - lookback + 1, row.end + horizon + 1)
                raw.append(values[rows])
                stamps.append(calendar[rows])
                origin.append(row.origin)
    length = lookback + horizon
    if not raw:
        return Windows(np.empty((0, length, 6)), np.empty((0, length, 5), np.int64),
                       np.empty(0, np.int64), daily)
    return Windows(np.stack(raw), np.stack(stamps).astype(np.int64), np.array(origin), daily)


@torch.no_grad()
def tokenizer_metrics(tokenizer: KronosTokenizer, normalised: np.ndarray,
                      batch_size: int = 64) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Reconstruction errors of (N, L, 6) normalised windows, and their (N, L) coarse/fine ids."""
    sums = dict.fromkeys(("mae", "mse", "coarse_mae", "coarse_mse"), 0.0)
    s1, s2 = [], []
    for i in range(0, len(normalised), batch_size):
        x = torch.from_numpy(normalised[i: i + batch_size]).float()
        out = tokenizer(x)
        for name, recon in (("", out.recon_full), ("coarse_", out.recon_coarse)):
            error = recon.float() - x
            sums[name + "mae"] += error.abs().sum().item()
            sums[name + "mse"] += error.pow(2).sum().item()
        s1.append(out.s1_ids.numpy())
        s2.append(out.s2_ids.numpy())
    count = normalised.size
    return {k: v / count for k, v in sums.items()}, np.concatenate(s1), np.concatenate(s2)


def codebook_usage(ids: np.ndarray, n_bits: int) -> dict[str, float]:
    """Share of the 2^n_bits ids used and the perplexity of their empirical distribution."""
    counts = np.bincount(ids.ravel(), minlength=2 ** n_bits)
    p = counts[counts > 0] / counts.sum()
    return {"used_fraction": float((counts > 0).mean()),
            "perplexity": float(np.exp(-(p * np.log(p)).sum()))}


def correlations(signal: np.ndarray, realised: np.ndarray) -> tuple[float, float]:
    """Pearson (IC) and Spearman (RankIC) correlation; NaN when either side is constant."""
    return return_ic(signal, realised), return_rank_ic(signal, realised)


def score(signal: np.ndarray, realised: np.ndarray, origin: np.ndarray,
          daily: bool) -> dict[str, float]:
    """IC and RankIC: per origin date then averaged (daily), or over all windows pooled."""
    if not daily:
        ic, rank_ic = correlations(signal, realised)
        return {"ic": ic, "rank_ic": rank_ic, "n": int(len(signal))}
    per_date = []
    for date in np.unique(origin):
        members = origin == date
        if members.sum() >= MIN_CROSS_SECTION:
            per_date.append(correlations(signal[members], realised[members]))
    values = np.array(per_date, dtype=float).reshape(-1, 2)
    values = values[~np.isnan(values).any(axis=1)]  # (n_dates, 2): IC, RankIC
    result = {"n_dates": len(values), "n": int(len(signal))}
    for column, name in enumerate(("ic", "rank_ic")):
        series = values[:, column]
        result[name] = float(series.mean()) if len(series) else math.nan
        # t-statistic of the mean over dates; overlapping horizons make it optimistic.
        result[name + "_t"] = float(series.mean() / series.std(ddof=1) * math.sqrt(len(series))
                                    ) if len(series) > 1 else math.nan
    return result


def _strict(value: object) -> object:
    """NaN -> None throughout, so that the file is strict JSON."""
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/default-model.toml", help="recipe TOML")
    parser.add_argument("--run", default=None, help="run directory (default: the recipe's)")
    parser.add_argument("--out", default=None, help="JSON file (default: RUN/evaluation.json)")
    parser.add_argument("--windows-per-market", type=int, default=300)
    parser.add_argument("--n-samples", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    recipe = load_recipe(args.config)
    data = recipe.data
    run = Path(args.run) if args.run else recipe.out_dir
    out = Path(args.out) if args.out else run / "evaluation.json"
    tokenizer = load_tokenizer(run / "tokenizer" / "best")
    predictor = load_predictor(run / "predictor" / "best")
    corpus = data.corpus()
    rng = np.random.default_rng(args.random_state)
    lookback, horizon = data.lookback, data.horizon
    report = {
        "run": str(run), "config": str(args.config),
        "settings": {"lookback": lookback, "horizon": horizon,
                     "windows_per_market": args.windows_per_market, "n_samples": args.n_samples,
                     "temperature": args.temperature, "top_p": args.top_p,
                     "random_state": args.random_state,
                     "max_context": lookback + horizon},
        "tokenizer": {}, "codebook": {}, "forecast": {},
    }
    all_s1, all_s2 = [], []
    started = time.perf_counter()
    for market in corpus.markets:
        windows = market_windows(corpus, data, market, args.windows_per_market, rng)
        n = len(windows.raw)
        print(f"{market}: {n} validation windows", flush=True)
        if n == 0:
            report["tokenizer"][market] = {"n": 0}
            continue
        contexts = windows.raw[:, :lookback]
        normaliser = Normalizer.fit(list(contexts), data.clip)
        metrics, s1, s2 = tokenizer_metrics(tokenizer, normaliser.transform(windows.raw))
        report["tokenizer"][market] = {**metrics, "n": n}
        report["codebook"][market] = {"coarse": codebook_usage(s1, tokenizer.config.s1_bits),
                                      "fine": codebook_usage(s2, tokenizer.config.s2_bits)}
        all_s1.append(s1.ravel())
        all_s2.append(s2.ravel())

        paths = forecast_paths(
            tokenizer, predictor, list(contexts.astype(np.float32)),
            list(windows.stamps[:, :lookback]), windows.stamps[:, lookback:],
            n_samples=args.n_samples, temperature=args.temperature, top_p=args.top_p,
            max_context=lookback + horizon, random_state=args.random_state, clip=data.clip)
        close = windows.raw[..., CLOSE]
        origin_close = close[:, lookback - 1]
        signals = {
            "kronos": paths.mean(axis=1)[:, -1, CLOSE] / origin_close - 1,
            "momentum": origin_close / close[:, 0] - 1,
            "reversal": -(origin_close / close[:, lookback - 1 - REVERSAL_BARS] - 1),
        }
        realised = close[:, -1] / origin_close - 1
        report["forecast"][market] = {
            "cross_sectional": windows.daily,
            **{name: score(signal.astype(np.float64), realised, windows.origin, windows.daily)
               for name, signal in signals.items()}}
        print(json.dumps({market: report["forecast"][market]}), flush=True)
    report["codebook"]["all"] = {
        "coarse": codebook_usage(np.concatenate(all_s1), tokenizer.config.s1_bits),
        "fine": codebook_usage(np.concatenate(all_s2), tokenizer.config.s2_bits)}
    report["seconds"] = time.perf_counter() - started
    out.write_text(json.dumps(_strict(report), indent=2, allow_nan=False) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
