"""Would a global temperature or top-p do better than the model's own spread?

The bundled model on `scripts/fit_spread.py`'s windows (validation rows of the markets the
benchmarks do not score): for each sampling setting, the paths as sampled and the paths
widened by a spread fitted to them as `fit_spread.py` fits the shipped one's width (no
drift share; `kronos_sk.calibration.PathCalibration`), in one run. Prints, per setting,
the columns of `spread_ramp.py`: CRPS and 50/80/90 % coverage of the close at every step (in context
close stds), the 80 % coverage at the first and last step, the one-step log-return std of
the first and the later steps beside the realised, and the realized-volatility MAE::

    python benchmarks/sampling_settings.py
    python benchmarks/sampling_settings.py --setting 1.0,1.0 --setting 0.85,1.0
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
from spread_ramp import report

from _common import machine
from kronos_sk import KronosPipeline
from kronos_sk.calibration import PathCalibration, widen_paths
from kronos_sk.checkpoints import Spread, default_checkpoint
from kronos_sk.metrics import log_returns, normalising_scale

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from fit_spread import MARKETS, windows  # noqa: E402  (a script, not a package)

SETTINGS = ((1.0, 1.0), (0.85, 1.0), (1.15, 1.0), (1.3, 1.0), (1.0, 0.9))  # (temperature, top_p)


def setting(text: str) -> tuple[float, float]:
    """'T,P' -> (temperature, top_p)."""
    temperature, top_p = (float(value) for value in text.split(","))
    return temperature, top_p


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setting", type=setting, action="append",
                        help="temperature,top_p (repeatable; default: %s)" % (SETTINGS,))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    pipe = KronosPipeline.from_pretrained(default_checkpoint("predictor"),
                                          default_checkpoint("tokenizer"))
    pipe.spread = Spread()  # sample as the network does, widen below
    data = [windows(name, context, cutoff, count, args.seed + position)
            for position, (name, (context, cutoff, count)) in enumerate(MARKETS.items())]
    truth = np.stack([t for _, _, truths in data for t in truths])
    contexts = [context["close"].to_numpy(np.float64)
                for batch, _, _ in data for context in batch.values()]
    last = np.array([closes[-1] for closes in contexts])
    center = np.array([closes.mean() for closes in contexts])
    scale = normalising_scale(center, np.array([closes.std() for closes in contexts]))
    realised = log_returns(truth[..., 3], last)
    print(machine())
    print(f"{len(truth)} windows x {truth.shape[1]} steps; realised step std first "
          f"{realised[:, 0].std():.5f}, later {realised[:, 1:].std():.5f}")
    print(f"  {'temperature / top_p, spread':<28} {'CRPS':>7}  coverage 50/80/90    "
          f"80 %: first last (range)  step std first later  RV MAE")
    for temperature, top_p in args.setting or SETTINGS:
        paths = np.concatenate([
            pipe.sample(batch, future=future, random_state=args.seed,
                        temperature=temperature, top_p=top_p).paths
            for batch, future, _ in data]).astype(np.float64)
        fitted = PathCalibration.fit(paths, truth)
        spread = fitted.as_spread()
        widened = widen_paths(paths.copy(), spread, np.ones(len(paths), bool))
        label = f"{temperature:g} / {top_p:g}"
        report(f"{label}, as sampled", paths[..., 3], truth[..., 3], last, center, scale)
        report(f"{label}, {spread.factor}/{spread.tail}/{spread.ramp}", widened[..., 3],
               truth[..., 3], last, center, scale)


if __name__ == "__main__":
    main()
