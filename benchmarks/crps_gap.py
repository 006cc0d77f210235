"""Where the bundled model's CRPS gap to the previous one sits: seeds, networks, spread.

The bundled model and the previous one (0.2, `--previous`, see configs/default-model.toml
for how to extract it) on the benchmark configs' windows (US and A-shares daily at 90 rows,
crypto hourly at 80), their paths as sampled (stratified, no spread) in one generation per
origin and seed; the bundled model's shipped spread is then applied to its own paths
(`kronos_sk.calibration.apply_spread`), as every face applies it. Per market it prints:

- the CRPS of the price benchmark (the close at every step, in context close stds) of the
  shipped model and of the previous one per seed, their relative gap and a 90 % bootstrap
  interval of that gap over the origins (the dates every asset shares);
- both networks' paths scaled about their mean by a common factor c at every step (the
  simplest widening, which multiplies the paths' steps by c as well), beside the shipped
  spread (which keeps each path's mean squared step): CRPS, 50/80/90 % coverage and the
  standard deviation of the paths' moves from one step of the horizon to the next, in
  context stds, beside the realised one; and, per network, the factor (on a 0.02 grid)
  whose 80 % and then 90 % coverage is nearest the shipped spread's, with its CRPS: the
  two networks and the two forms of widening compared at the same coverage.

    python benchmarks/crps_gap.py
    python benchmarks/crps_gap.py --config benchmarks/configs/cn_daily.toml --seeds 0 1
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
from suite.config import load_config
from suite.data import Windows, load_panel
from suite.models import Budget
from suite.runner import over_origins

from _common import machine
from kronos_sk import KronosPipeline
from kronos_sk.calibration import apply_spread
from kronos_sk.checkpoints import Spread, default_checkpoint, model_spread
from kronos_sk.metrics import coverage_table, crps_from_samples

CONFIGS = [Path(f"benchmarks/configs/{name}.toml")
           for name in ("us_daily", "cn_daily", "crypto_hourly")]
FACTORS = (0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4)  # printed
GRID = tuple(np.round(np.arange(0.8, 1.601, 0.02), 2))  # for the equal-coverage match
LEVELS = (0.5, 0.8, 0.9)


class Scores(NamedTuple):
    """Scores of one set of paths, averaged over the seeds."""

    crps: float
    coverage: np.ndarray  # at LEVELS
    step_std: float  # of the moves from one step of the horizon to the next


def window_crps(z: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """CRPS per window (W,) of paths z (W, S, H) against truth (W, H), over the steps."""
    return crps_from_samples(np.moveaxis(z, 1, 0), truth).mean(axis=-1)


def scores(sets: list[np.ndarray], truth: np.ndarray) -> Scores:
    """`Scores` of paths (W, S, H), one array per seed, against truth (W, H)."""
    return Scores(
        float(np.mean([window_crps(z, truth).mean() for z in sets])),
        np.mean([coverage_table(np.moveaxis(z, 1, 0), truth, LEVELS)["coverage"].to_numpy()
                 for z in sets], axis=0),
        float(np.mean([np.diff(z, axis=-1).std() for z in sets])))


def line(label: str, measured: Scores) -> str:
    """One printed row: CRPS, coverage at each level, step std."""
    return (f"  {label:<24} {measured.crps:7.4f}  "
            + " / ".join(f"{c:.3f}" for c in measured.coverage) + f"  {measured.step_std:.3f}")


def gap_interval(ours: np.ndarray, theirs: np.ndarray, dates: np.ndarray, resamples: int,
                 ) -> tuple[float, float]:
    """90 % bootstrap interval of ``sum(ours) / sum(theirs) - 1`` (per-window CRPS summed
    over seeds, (W,) each) resampling the origins, the dates every asset shares."""
    origins = np.unique(dates)
    sums = np.array([[ours[dates == d].sum(), theirs[dates == d].sum()] for d in origins])
    picks = np.random.default_rng(0).integers(0, len(origins), (resamples, len(origins)))
    resampled = sums[picks].sum(axis=1)
    low, high = np.percentile(resampled[:, 0] / resampled[:, 1] - 1, [5, 95])
    return 100 * low, 100 * high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, action="append",
                        help="benchmark config (repeatable; default: the three markets)")
    parser.add_argument("--previous", type=Path, default=Path("runs/previous-default"),
                        help="folder of the previous model's predictor/ and tokenizer/")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--resamples", type=int, default=4000)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    predictor = default_checkpoint("predictor")
    shipped = model_spread(predictor)
    pipes = {"bundled": KronosPipeline.from_pretrained(predictor, default_checkpoint("tokenizer")),
             "previous": KronosPipeline.from_pretrained(args.previous / "predictor",
                                                        args.previous / "tokenizer")}
    for pipe in pipes.values():
        pipe.spread = Spread()  # sample once; the bundled spread is applied below
    print(machine())
    print(f"shipped spread {shipped.factor} / tail {shipped.tail} / ramp {shipped.ramp} / "
          f"drift {shipped.drift}; seeds {args.seeds}")
    for path in args.config or CONFIGS:
        config = load_config(path)
        panel = load_panel(config)
        paths = {(name, seed): [] for name in pipes for seed in args.seeds}
        truths, centers, scales, lasts, dates = [], [], [], [], []

        def work(windows: Windows) -> None:
            contexts = dict(zip(windows.assets, windows.contexts, strict=True))
            for (name, seed), collected in paths.items():
                collected.append(pipes[name].sample(
                    contexts, horizon=config.horizon, freq=config.freq,
                    n_samples=config.n_samples, random_state=seed).paths)
            truths.append(windows.target_array(["close"])[..., 0])
            center, scale = windows.close_scale()
            centers.append(center)
            scales.append(scale)
            lasts.append(windows.last_close())
            dates.extend([windows.origin] * len(windows.assets))

        over_origins(config, panel, Budget(None), work)
        center, scale = np.concatenate(centers), np.concatenate(scales)
        truth = (np.concatenate(truths) - center[:, None]) / scale[:, None]
        dates = np.array(dates)

        def z_scored(closes: np.ndarray) -> np.ndarray:
            return (closes - center[:, None, None]) / scale[:, None, None]

        raw = {key: np.concatenate(value).astype(np.float64) for key, value in paths.items()}
        z = {key: z_scored(value[..., 3]) for key, value in raw.items()}
        last = np.concatenate(lasts)
        z.update({("shipped", seed): z_scored(apply_spread(
            raw["bundled", seed].copy(), shipped, np.ones(len(truth), bool), last)[..., 3])
            for seed in args.seeds})
        per_window = {key: window_crps(value, truth) for key, value in z.items()}
        print(f"\n{path.stem}: {len(truth)} windows x {truth.shape[1]} steps, "
              f"{config.n_samples} paths, {len(np.unique(dates))} origins")
        for seed in args.seeds:
            ours, theirs = per_window["shipped", seed].mean(), per_window["previous", seed].mean()
            print(f"  seed {seed}: CRPS shipped {ours:.4f}, previous {theirs:.4f} "
                  f"({100 * (ours / theirs - 1):+.2f} %)")
        ours, theirs = (np.sum([per_window[name, s] for s in args.seeds], axis=0)
                        for name in ("shipped", "previous"))
        low, high = gap_interval(ours, theirs, dates, args.resamples)
        print(f"  over the seeds: {100 * (ours.sum() / theirs.sum() - 1):+.2f} % "
              f"(90 % interval over origins {low:+.2f} % .. {high:+.2f} %)")
        print(f"  {'paths':<24} {'CRPS':>7}  coverage 50/80/90    step std "
              f"(realised {np.diff(truth, axis=-1).std():.3f})")
        reference = scores([z["shipped", s] for s in args.seeds], truth)
        print(line("shipped spread", reference))
        for name in pipes:
            means = [z[name, seed].mean(axis=1, keepdims=True) for seed in args.seeds]
            spreads = [z[name, seed] - mean for seed, mean in zip(args.seeds, means, strict=True)]
            scaled = {factor: scores([mean + factor * spread
                                      for mean, spread in zip(means, spreads, strict=True)], truth)
                      for factor in GRID}
            for factor in FACTORS:
                print(line(f"{name} x {factor}", scaled[factor]))
            for index, level in enumerate(LEVELS[1:], 1):
                error = {f: abs(scaled[f].coverage[index] - reference.coverage[index])
                         for f in GRID}
                factor = min(error, key=error.get)
                print(f"  {name} at the shipped {round(100 * level)} % coverage: "
                      f"x {factor}, CRPS {scaled[factor].crps:.4f}")


if __name__ == "__main__":
    main()
