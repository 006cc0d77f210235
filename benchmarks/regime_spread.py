"""Would a spread that follows the context's volatility regime do better than the model's own?

The bundled model on `scripts/fit_spread.py`'s windows (validation rows of the markets the
benchmarks do not score), sampled once. Each window's log prices are scaled about their
mean path by ``(context vol / path vol) ** beta`` (context vol: the rms one-step log return
of the last `rows` context closes; path vol: the paths' own), then widened by a spread
fitted as `fit_spread.py` fits the shipped one's width (no drift share), two-fold
cross-fitted (fitted on one half of the windows, scored on the other). Prints the
regression of the realised step volatility on both volatilities, then per setting the
CRPS of the close (in context close stds) over all windows and by market::

    python benchmarks/regime_spread.py
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

from _common import machine
from kronos_sk import KronosPipeline
from kronos_sk.calibration import PathCalibration, widen_paths
from kronos_sk.checkpoints import Spread, default_checkpoint
from kronos_sk.metrics import crps_from_samples, normalising_scale

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from fit_spread import MARKETS, windows  # noqa: E402  (a script, not a package)

SETTINGS = ((0.0, 20), (0.5, 20), (0.5, 40), (1.0, 20))  # (beta, context rows)


def rms_step(log_prices: np.ndarray, axes: tuple) -> np.ndarray:
    """Root mean square one-step change of log prices along the last axis."""
    return np.sqrt((np.diff(log_prices, axis=-1) ** 2).mean(axis=axes))


def main() -> None:
    warnings.simplefilter("ignore")
    pipe = KronosPipeline.from_pretrained(default_checkpoint("predictor"),
                                          default_checkpoint("tokenizer"))
    pipe.spread = Spread()  # sample as the network does, widen below
    data = [windows(name, context, cutoff, count, position)
            for position, (name, (context, cutoff, count)) in enumerate(MARKETS.items())]
    paths = np.concatenate([pipe.sample(batch, future=future, random_state=0).paths
                            for batch, future, _ in data]).astype(np.float64)
    truth = np.stack([t for _, _, truths in data for t in truths])
    closes = [c["close"].to_numpy(np.float64) for batch, _, _ in data for c in batch.values()]
    market = np.repeat(np.arange(len(data)), [len(batch) for batch, _, _ in data])
    last = np.array([c[-1] for c in closes])
    center = np.array([c.mean() for c in closes])
    scale = normalising_scale(center, np.array([c.std() for c in closes]))
    log_paths = np.log(paths[..., :4] / last[:, None, None, None])
    path_vol = rms_step(np.concatenate([np.zeros(paths.shape[:2] + (1,)),
                                        log_paths[..., 3]], axis=2), (1, 2))
    realised = rms_step(np.concatenate([np.zeros((len(truth), 1)),
                                        np.log(truth[..., 3] / last[:, None])], axis=1), (1,))
    print(machine())
    print(f"{len(truth)} windows x {truth.shape[1]} steps, 20 paths each")
    for rows in sorted({rows for _, rows in SETTINGS}):
        context_vol = np.array([rms_step(np.log(c[-rows - 1:]), (0,)) for c in closes])
        design = np.column_stack([np.ones(len(truth)), np.log(path_vol), np.log(context_vol)])
        coef = np.linalg.lstsq(design, np.log(realised), rcond=None)[0]
        print(f"log realised step vol = {coef[1]:.2f} log path vol + {coef[2]:.2f} log context "
              f"vol ({rows} rows) + const")
    halves = np.array_split(np.random.default_rng(0).permutation(len(truth)), 2)
    base = None
    print(f"  {'beta, rows':<12} {'CRPS':>7}  " + "  ".join(f"{n[:14]:>14}" for n in MARKETS))
    for beta, rows in SETTINGS:
        context_vol = np.array([rms_step(np.log(c[-rows - 1:]), (0,)) for c in closes])
        factor = (context_vol / path_vol) ** beta
        middle = log_paths[..., 3].mean(axis=1, keepdims=True)[..., None]
        scaled = paths.copy()
        scaled[..., :4] = last[:, None, None, None] * np.exp(
            middle + factor[:, None, None, None] * (log_paths - middle))
        widened = np.empty_like(scaled)
        for fit, score in (halves, halves[::-1]):
            spread = PathCalibration.fit(scaled[fit], truth[fit]).as_spread()
            widened[score] = widen_paths(scaled[score].copy(), spread, np.ones(len(score), bool))
        z = (widened[..., 3] - center[:, None, None]) / scale[:, None, None]
        z_truth = (truth[..., 3] - center[:, None]) / scale[:, None]
        crps = crps_from_samples(np.moveaxis(z, 1, 0), z_truth).mean(axis=1)
        by_market = np.array([crps[market == k].mean() for k in range(len(data))])
        base = by_market if base is None else base
        print(f"  {f'{beta:g}, {rows}':<12} {crps.mean():7.4f}  " + "  ".join(
            f"{m:.4f} ({100 * (m / b - 1):+.1f}%)" for m, b in zip(by_market, base)))


if __name__ == "__main__":
    main()
