"""How many paths a stable point forecast needs, and which statistic of the paths to use.

The bundled model on a benchmark config's windows (by default US daily: 50 assets x 20
origins, 90-row contexts, horizon 10): 64 independent paths per window in one generation,
as the network samples them (without the model's own spread), then, for n of 1 to 64 (the
first n of them), the close at every step forecast by the mean, the median and the
geometric mean of the n paths; and the mean of n paths drawn stratified (one generation
per n), as sampled and as every face returns them (the library's default: with the
model's own spread, whose drift share draws the mean towards the last close). Prints each
one's mean absolute error in units of the context's close std, as a ratio to the random
walk's (the last close; 1 = as good), in one run:

    python benchmarks/point_forecast.py
    python benchmarks/point_forecast.py --config benchmarks/configs/cn_daily.toml

For a model whose paths have no drift of their own, the mean of n independent paths has a
squared error of about ``1 + 1/n`` times the random walk's: sqrt(1 + 1/n) for the error
(1.41 at 1 path, 1.12 at 4, 1.03 at 16, 1.008 at 64). Stratified paths cover the model's
distribution evenly, so their mean carries less of that sampling noise.
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
from kronos_sk.checkpoints import Spread, default_checkpoint
from kronos_sk.metrics import sample_quantiles

COUNTS = (1, 2, 4, 8, 16, 32, 64)
STATISTICS = {
    "mean": lambda closes: closes.mean(axis=1),
    "median": lambda closes: sample_quantiles(closes, 0.5, axis=1),  # as predict_quantiles
    "geometric mean": lambda closes: np.exp(np.log(closes).mean(axis=1)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=Path("benchmarks/configs/us_daily.toml"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    config = load_config(args.config)
    panel = load_panel(config)
    pipe, network = (KronosPipeline.from_pretrained(default_checkpoint("predictor"),
                                                    default_checkpoint("tokenizer"))
                     for _ in range(2))
    network.spread = Spread()  # the paths as sampled
    closes, stratified, truths, lasts, scales = [], [], [], [], []

    def work(windows: Windows) -> None:
        contexts = dict(zip(windows.assets, windows.contexts, strict=True))
        future = {a: t.index for a, t in zip(windows.assets, windows.targets)}
        forecast = network.sample(contexts, future=future, n_samples=max(COUNTS),
                                  random_state=args.seed, stratified=False)
        closes.append(forecast.paths[..., 3])  # (assets, paths, horizon)
        stratified.append(np.stack([[  # (2, counts, assets, horizon)
            faced.sample(contexts, future=future, n_samples=n,
                         random_state=args.seed).paths[..., 3].mean(axis=1) for n in COUNTS]
            for faced in (network, pipe)]))
        truths.append(windows.target_array(["close"])[..., 0])
        lasts.append(windows.last_close())
        scales.append([c["close"].std() for c in windows.contexts])

    over_origins(config, panel, Budget(None), work)
    closes, truth = np.concatenate(closes), np.concatenate(truths)
    stratified = np.concatenate(stratified, axis=2)
    last, scale = np.concatenate(lasts)[:, None], np.concatenate(scales)[:, None]
    walk = (np.abs(last - truth) / scale).mean()
    print(f"{machine()}\n{args.config.stem}: {len(truth)} windows x {truth.shape[1]} steps; "
          f"error / random walk's (mean absolute, in context close stds)")
    names = [*STATISTICS, "stratified mean", "default"]
    print(f"{'paths':>6} " + " ".join(f"{name:>15}" for name in names))
    for i, n in enumerate(COUNTS):
        ratios = [(np.abs(statistic(closes[:, :n]) - truth) / scale).mean() / walk
                  for statistic in STATISTICS.values()]
        ratios += [(np.abs(means[i] - truth) / scale).mean() / walk for means in stratified]
        print(f"{n:>6} " + " ".join(f"{ratio:>15.4f}" for ratio in ratios))


if __name__ == "__main__":
    main()
