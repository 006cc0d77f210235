"""Cost of conformal calibration: fit with ``calibration="conformal"`` against one predict.

The bundled model on a panel of real US daily stocks (the last `rows` candles before 2016):
times a plain zero-shot fit + predict, then a calibrated fit (its backtests) + predict, in
one run, and prints the calibration's cost as a multiple of one predict. The backtests are
`calibration_origins` batched generations of every series, so the multiple should be about
that number.

    python benchmarks/bench_calibration.py
    python benchmarks/bench_calibration.py --assets 20 --origins 4
"""

from __future__ import annotations

import argparse
import time
import warnings

import pandas as pd

from _common import SHARED_DATA, machine
from kronos_sk import KronosForecaster


def panel(n_assets: int, rows: int) -> pd.DataFrame:
    frame = pd.read_parquet(SHARED_DATA / "us_stocks_daily_2008_2017.parquet")
    frame = frame[frame["timestamp"] < "2016-01-01"]
    frames = {}
    for asset, candles in frame.groupby("asset", sort=True):
        candles = candles.set_index("timestamp")[["open", "high", "low", "close", "volume"]]
        if len(candles) >= rows and candles.index[-1] == frame["timestamp"].max():
            frames[asset] = candles.iloc[-rows:]
        if len(frames) == n_assets:
            break
    return pd.concat(frames, names=["asset", "timestamp"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--assets", type=int, default=100)
    parser.add_argument("--rows", type=int, default=90)
    parser.add_argument("--horizon", type=int, default=10)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--origins", type=int, default=8, help="calibration_origins")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    y = panel(args.assets, args.rows)
    fh = list(range(1, args.horizon + 1))
    print(f"{machine()}; {args.assets} assets x {args.rows} rows, horizon {args.horizon}, "
          f"{args.samples} paths")
    KronosForecaster(n_samples=1).fit(y)  # loads the weights into the cache, untimed
    seconds = {}
    for name, params in (("plain", {}), ("conformal", {"calibration": "conformal",
                                                       "calibration_origins": args.origins})):
        forecaster = KronosForecaster(n_samples=args.samples, random_state=0, freq="B",
                                      horizon=args.horizon, **params)
        start = time.perf_counter()
        forecaster.fit(y)
        seconds[name, "fit"] = time.perf_counter() - start
        start = time.perf_counter()
        forecaster.predict_interval(fh=fh, coverage=0.9)
        seconds[name, "predict"] = time.perf_counter() - start
    predict = seconds["plain", "predict"]
    print(f"plain fit {seconds['plain', 'fit']:.2f} s, predict {predict:.2f} s")
    print(f"calibrated fit {seconds['conformal', 'fit']:.2f} s "
          f"({args.origins} origins), predict {seconds['conformal', 'predict']:.2f} s")
    extra = seconds["conformal", "fit"] - seconds["plain", "fit"]
    print(f"calibration cost = {extra / predict:.1f} x one predict "
          f"(fit with calibration = {seconds['conformal', 'fit'] / predict:.1f} x one predict)")


if __name__ == "__main__":
    main()
