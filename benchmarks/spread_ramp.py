"""How the shape of a model's own spread spreads coverage over the steps of a path.

The bundled model on the benchmark configs' windows (US and A-shares daily at 90 rows,
crypto hourly at 80): the paths as sampled (stratified, no spread) in one generation per
origin, then adjusted in one run by each spread compared
(`kronos_sk.calibration.apply_spread`): the linear ramp shipped before (factor 1.1033,
tail 0.5, with the model's own drift share) and the model's own from its inference.json.
Prints, per market and spread, the CRPS and the 50/80/90 % coverage of the
price benchmark (the close at every step, in context close stds), the 80 % coverage at the
first and the last step and its range over the steps, the one-step log-return std of the
first step and of the later ones beside the realised, and the realized-volatility MAE:

    python benchmarks/spread_ramp.py
    python benchmarks/spread_ramp.py --config benchmarks/configs/us_daily.toml
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
from suite.config import load_config
from suite.data import Windows, load_panel
from suite.models import Budget
from suite.runner import over_origins

from _common import machine
from kronos_sk import KronosPipeline
from kronos_sk.calibration import apply_spread
from kronos_sk.checkpoints import Spread, default_checkpoint, model_spread
from kronos_sk.metrics import (central_bands, crps_from_samples, log_returns,
                               realized_volatility)

CONFIGS = [Path(f"benchmarks/configs/{name}.toml")
           for name in ("us_daily", "cn_daily", "crypto_hourly")]
LINEAR = Spread(1.1033, 0.5)  # the bundled spread before the square-root ramp


def report(name: str, closes: np.ndarray, truth: np.ndarray, last: np.ndarray,
           center: np.ndarray, scale: np.ndarray) -> None:
    """One row: closes (W, S, H) against truth (W, H)."""
    z, z_truth = (closes - center[:, None, None]) / scale[:, None, None], \
        (truth - center[:, None]) / scale[:, None]
    crps = crps_from_samples(np.moveaxis(z, 1, 0), z_truth).mean()
    levels = (0.5, 0.8, 0.9)
    covered = {level: (low <= truth) & (truth <= high)
               for level, low, high in zip(levels, *central_bands(closes, levels, axis=1))}
    by_step = covered[0.8].mean(axis=0)
    returns = log_returns(closes, last[:, None])
    rv = np.abs(realized_volatility(closes, last[:, None]).mean(axis=1)
                - realized_volatility(truth, last)).mean()
    print(f"  {name:<28} {crps:7.4f}  " + " / ".join(f"{c.mean():.3f}" for c in covered.values())
          + f"  {by_step[0]:.3f} {by_step[-1]:.3f} ({by_step.min():.3f}-{by_step.max():.3f})"
          f"  {returns[..., 0].std():.5f} {returns[..., 1:].std():.5f}  {rv:.6f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, action="append",
                        help="benchmark config (repeatable; default: the three markets)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    predictor = default_checkpoint("predictor")
    pipe = KronosPipeline.from_pretrained(predictor, default_checkpoint("tokenizer"))
    shipped = model_spread(predictor)
    spreads = {"as sampled": Spread(), **{
        f"{label} {spread.factor}/{spread.tail}/{spread.ramp}/{spread.drift}": spread
        for label, spread in (("linear", replace(LINEAR, drift=shipped.drift)),
                              ("shipped", shipped))}}
    pipe.spread = Spread()  # sample once, widen below
    print(machine())
    for path in args.config or CONFIGS:
        config = load_config(path)
        panel = load_panel(config)
        paths, truths, lasts, centers, scales = [], [], [], [], []

        def work(windows: Windows) -> None:
            contexts = dict(zip(windows.assets, windows.contexts, strict=True))
            paths.append(pipe.sample(contexts, horizon=config.horizon, freq=config.freq,
                                     n_samples=config.n_samples, random_state=args.seed).paths)
            truths.append(windows.target_array(["close"])[..., 0])
            lasts.append(windows.last_close())
            center, scale = windows.close_scale()
            centers.append(center)
            scales.append(scale)

        over_origins(config, panel, Budget(None), work)
        paths, truth = np.concatenate(paths), np.concatenate(truths)
        last, center, scale = (np.concatenate(x) for x in (lasts, centers, scales))
        realised = log_returns(truth, last)
        print(f"\n{path.stem}: {len(truth)} windows x {truth.shape[1]} steps, "
              f"{config.n_samples} paths; realised step std first {realised[:, 0].std():.5f}, "
              f"later {realised[:, 1:].std():.5f}")
        print(f"  {'spread':<28} {'CRPS':>7}  coverage 50/80/90    80 %: first last (range)"
              f"  step std first later  RV MAE")
        for name, spread in spreads.items():
            widened = apply_spread(paths.astype(np.float64), spread, np.ones(len(paths), bool),
                                   last)
            report(name, widened[..., 3], truth, last, center, scale)


if __name__ == "__main__":
    main()
