"""Where the bundled model's CRPS gap to the previous one sits: seeds, networks, spread.

The bundled model and the previous one (0.2, `--previous`, see configs/default-model.toml
for how to extract it) on the benchmark configs' windows (US and A-shares daily at 90 rows,
crypto hourly at 80), their paths as sampled (stratified, no spread) in one generation per
origin and seed; the bundled model's shipped spread is then applied to its own paths
(`kronos_sk.calibration.widen_paths`), as every face applies it. Per market it prints:

- the CRPS of the price benchmark (the close at every step, in context close stds) of the
  shipped model and of the previous one per seed, their relative gap and a 90 % bootstrap
  interval of that gap over the origins (the dates every asset shares);
- both networks' paths scaled about their mean by a common factor c at every step (the
  simplest widening, which multiplies the paths' steps by c as well), beside the shipped
  spread (which keeps each path's mean squared step): CRPS, 50/80/90 % coverage and the
  standard deviation of the paths' moves from one step of the horizon to the next, in
  context stds, beside the realised one.

    python benchmarks/crps_gap.py
    python benchmarks/crps_gap.py --config benchmarks/configs/cn_daily.toml --seeds 0 1
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
from suite.config import load_config
from suite.data import Windows, load_panel
from suite.models import Budget
from suite.runner import over_origins

from _common import machine
from kronos_sk import KronosPipeline
from kronos_sk.calibration import widen_paths
from kronos_sk.checkpoints import Spread, default_checkpoint, model_spread
from kronos_sk.metrics import coverage_table, crps_from_samples, normalising_scale

CONFIGS = [Path(f"benchmarks/configs/{name}.toml")
           for name in ("us_daily", "cn_daily", "crypto_hourly")]
FACTORS = (0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4)
LEVELS = (0.5, 0.8, 0.9)


def scores(z: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-window CRPS (W,), 50/80/90 % coverage and the std of the step-to-step moves of
    paths z (W, S, H) against truth (W, H)."""
    samples = np.moveaxis(z, 1, 0)
    crps = crps_from_samples(samples, truth).mean(axis=-1)
    covered = coverage_table(samples, truth, LEVELS)["coverage"].to_numpy()
    return crps, covered, float(np.diff(z, axis=-1).std())


def line(label: str, crps: float, covered: np.ndarray, step: float) -> str:
    """One printed row: CRPS, coverage at each level, step std."""
    return (f"  {label:<24} {crps:7.4f}  " + " / ".join(f"{c:.3f}" for c in covered)
            + f"  {step:.3f}")


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
    print(f"shipped spread {shipped.factor} / tail {shipped.tail} / ramp {shipped.ramp}; "
          f"seeds {args.seeds}")
    rng = np.random.default_rng(0)
    for path in args.config or CONFIGS:
        config = load_config(path)
        panel = load_panel(config)
        paths = {(name, seed): [] for name in pipes for seed in args.seeds}
        truths, centers, scales, dates = [], [], [], []

        def work(windows: Windows) -> None:
            contexts = dict(zip(windows.assets, windows.contexts, strict=True))
            for (name, seed), collected in paths.items():
                collected.append(pipes[name].sample(
                    contexts, horizon=config.horizon, freq=config.freq,
                    n_samples=config.n_samples, random_state=seed).paths)
            truths.append(windows.target_array(["close"])[..., 0])
            closes = np.stack([c["close"].to_numpy(np.float64) for c in windows.contexts])
            centers.append(closes.mean(axis=1))
            scales.append(normalising_scale(centers[-1], closes.std(axis=1)))
            dates.extend([windows.origin] * len(windows.assets))

        over_origins(config, panel, Budget(None), work)
        center, scale = np.concatenate(centers), np.concatenate(scales)
        truth = (np.concatenate(truths) - center[:, None]) / scale[:, None]
        dates = np.array(dates)

        def z_scored(closes: np.ndarray) -> np.ndarray:
            return (closes - center[:, None, None]) / scale[:, None, None]

        raw = {key: np.concatenate(value).astype(np.float64) for key, value in paths.items()}
        z = {key: z_scored(value[..., 3]) for key, value in raw.items()}
        z.update({("shipped", seed): z_scored(widen_paths(
            raw["bundled", seed].copy(), shipped, np.ones(len(truth), bool))[..., 3])
            for seed in args.seeds})
        per_window = {key: scores(value, truth)[0] for key, value in z.items()}
        print(f"\n{path.stem}: {len(truth)} windows x {truth.shape[1]} steps, "
              f"{config.n_samples} paths, {len(np.unique(dates))} origins")
        for seed in args.seeds:
            ours, theirs = per_window["shipped", seed].mean(), per_window["previous", seed].mean()
            print(f"  seed {seed}: CRPS shipped {ours:.4f}, previous {theirs:.4f} "
                  f"({100 * (ours / theirs - 1):+.2f} %)")
        gap = np.mean([per_window["shipped", s] - per_window["previous", s]
                       for s in args.seeds], axis=0)
        base = np.mean([per_window["previous", s].mean() for s in args.seeds])
        by_origin = np.array([gap[dates == d].mean() for d in np.unique(dates)])
        boot = by_origin[rng.integers(0, len(by_origin), (args.resamples, len(by_origin)))]
        low, high = np.percentile(boot.mean(axis=1), [5, 95]) / base * 100
        print(f"  over the seeds: {100 * gap.mean() / base:+.2f} % "
              f"(90 % interval over origins {low:+.2f} % .. {high:+.2f} %)")
        print(f"  {'paths':<24} {'CRPS':>7}  coverage 50/80/90    step std "
              f"(realised {np.diff(truth, axis=-1).std():.3f})")
        rows = [("shipped spread", [z["shipped", s] for s in args.seeds])]
        for name in pipes:
            for factor in FACTORS:
                scaled = []
                for seed in args.seeds:
                    mean = z[name, seed].mean(axis=1, keepdims=True)
                    scaled.append(mean + factor * (z[name, seed] - mean))
                rows.append((f"{name} x {factor}", scaled))
        for label, sets in rows:
            measured = [scores(value, truth) for value in sets]
            print(line(label, np.mean([m[0].mean() for m in measured]),
                       np.mean([m[1] for m in measured], axis=0),
                       float(np.mean([m[2] for m in measured]))))


if __name__ == "__main__":
    main()
