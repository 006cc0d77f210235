"""Cost of conformal calibration: a calibrated fit against one predict, and a backtest.

The bundled model on a panel of real US daily stocks (the last `rows` candles before 2016,
trading days without a pandas frequency), in one run:

1. a plain zero-shot fit + predict, then a calibrated fit (its backtests) + predict; prints
   the calibrated fit as a multiple of one predict (target: <= 3x);
2. sktime's `evaluate` with `strategy="update"` over `--folds` folds of the same panel
   (`--folds 0` skips it), plain and calibrated; prints calibrated / plain (target:
   <= 1.3x: the calibration is refreshed from the arriving truth, not refit).

    python benchmarks/bench_calibration.py
    python benchmarks/bench_calibration.py --assets 20 --origins 4 --folds 10
"""

from __future__ import annotations

import argparse
import time
import warnings

import pandas as pd
from sktime.forecasting.model_evaluation import evaluate
from sktime.split import ExpandingWindowSplitter

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
    parser.add_argument("--origins", type=int, default=None,
                        help="calibration_origins (default: the forecaster's)")
    parser.add_argument("--folds", type=int, default=50, help="folds of the backtest")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    y = panel(args.assets, args.rows + args.folds + args.horizon - 1)
    calibrated = {"calibration": "conformal"}
    if args.origins is not None:
        calibrated["calibration_origins"] = args.origins
    settings = dict(n_samples=args.samples, random_state=0, horizon=args.horizon)
    history = y.groupby(level=0, group_keys=False).apply(lambda c: c.iloc[:args.rows])
    fh = list(range(1, args.horizon + 1))
    print(f"{machine()}; {args.assets} assets x {args.rows} rows, horizon {args.horizon}, "
          f"{args.samples} paths")
    KronosForecaster(n_samples=1).fit(y)  # loads the weights into the cache, untimed
    seconds = {}
    for name, params in (("plain", {}), ("conformal", calibrated)):
        forecaster = KronosForecaster(**settings, **params)
        start = time.perf_counter()
        forecaster.fit(history)
        seconds[name, "fit"] = time.perf_counter() - start
        start = time.perf_counter()
        forecaster.predict_interval(fh=fh, coverage=0.9)
        seconds[name, "predict"] = time.perf_counter() - start
    predict = seconds["plain", "predict"]
    print(f"plain fit {seconds['plain', 'fit']:.2f} s, predict {predict:.2f} s")
    origins = forecaster.calibration_origins
    print(f"calibrated fit {seconds['conformal', 'fit']:.2f} s "
          f"({origins} origins), predict {seconds['conformal', 'predict']:.2f} s")
    print(f"calibrated fit = {seconds['conformal', 'fit'] / predict:.2f} x one predict "
          "(target <= 3)")
    if args.folds:
        splitter = ExpandingWindowSplitter(fh=list(range(1, args.horizon + 1)),
                                           initial_window=args.rows, step_length=1)
        for name, params in (("plain", {}), ("conformal", calibrated)):
            start = time.perf_counter()
            scores = evaluate(KronosForecaster(**settings, **params), splitter, y,
                              strategy="update")
            seconds[name, "evaluate"] = time.perf_counter() - start
            print(f"evaluate {name}: {len(scores)} folds, "
                  f"{seconds[name, 'evaluate']:.1f} s")
        ratio = seconds["conformal", "evaluate"] / seconds["plain", "evaluate"]
        print(f"calibrated / plain evaluate(strategy='update') = {ratio:.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()
