"""The `kronos-sk` command.

    kronos-sk forecast --input candles.csv --horizon 24 --model DIR --tokenizer DIR --out out/

Exit status 0 on success, 2 with a one-line message on bad usage or bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from kronos_sk._version import __version__

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


class UsageError(Exception):
    """Bad usage or bad input: reported in one line with exit status 2."""


def read_candles(path: str) -> pd.DataFrame:
    """Read a CSV or Parquet file of candles; timestamps in the first or a named column."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"input file {path!r} does not exist")
    if file.suffix.lower() in (".parquet", ".pq"):
        frame = pd.read_parquet(file)
    elif file.suffix.lower() in (".csv", ".txt"):
        frame = pd.read_csv(file)
    else:
        raise UsageError(f"input file {path!r}: expected a .csv or .parquet file")
    names = {str(c).strip().lower(): c for c in frame.columns}
    for name in ("timestamp", "timestamps", "date", "datetime", "time"):
        if name in names:
            column = names[name]
            try:
                frame[column] = pd.to_datetime(frame[column])
            except (ValueError, TypeError) as error:
                raise UsageError(f"input file {path!r}: column {column!r} is not a timestamp "
                                 f"({error})") from None
            return frame.set_index(column)
    raise UsageError(f"input file {path!r}: no timestamp column (one of timestamp, date, "
                     f"datetime, time); found {list(frame.columns)}")


def _forecast(args: argparse.Namespace) -> None:
    from kronos_sk.pipeline import KronosPipeline
    candles = read_candles(args.input)
    pipe = KronosPipeline.from_pretrained(args.model, args.tokenizer,
                                          max_context=args.max_context, device=args.device,
                                          precision=args.precision)
    forecast = pipe.sample(candles, args.horizon, freq=args.freq, n_samples=args.samples,
                           temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                           random_state=args.seed, sliding=args.sliding)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = pd.concat([forecast.mean(), forecast.quantiles(QUANTILES, columns=["close"])],
                      axis=1)
    table.index.name = "timestamp"
    table.to_csv(out / "forecast.csv")
    written = [out / "forecast.csv"]
    if not args.no_chart:
        from kronos_sk.data import validate_candles
        from kronos_sk.plotting import plot_forecast
        plot_forecast(validate_candles(candles), forecast, path=out / "forecast.png",
                      title=f"{Path(args.input).name}: {args.horizon} steps, "
                            f"{args.samples} paths")
        written.append(out / "forecast.png")
    print("wrote " + ", ".join(str(p) for p in written))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kronos-sk", description="Kronos K-line forecasting.")
    parser.add_argument("--version", action="version", version=f"kronos-sk {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    forecast = commands.add_parser(
        "forecast", help="forecast a CSV/Parquet file of candles; write a CSV and a PNG chart",
        description="Sample future candles; write forecast.csv (mean of every column and "
                    "quantiles of the close) and forecast.png into --out.")
    forecast.add_argument("--input", required=True, help="CSV or Parquet file with a "
                          "timestamp column and open, high, low, close (+ volume, amount)")
    forecast.add_argument("--horizon", required=True, type=int, help="number of future rows")
    forecast.add_argument("--model", required=True, help="predictor checkpoint directory "
                          "(config.json + model.safetensors) or hub id")
    forecast.add_argument("--tokenizer", required=True, help="tokenizer checkpoint directory "
                          "or hub id")
    forecast.add_argument("--samples", type=int, default=20, help="sample paths (default 20)")
    forecast.add_argument("--temperature", type=float, default=1.0)
    forecast.add_argument("--top-k", type=int, default=0, help="0 disables top-k")
    forecast.add_argument("--top-p", type=float, default=0.9)
    forecast.add_argument("--max-context", type=int, default=512)
    forecast.add_argument("--sliding", choices=("exact", "rolling"), default="exact")
    forecast.add_argument("--freq", default=None, help="frequency of the future rows, e.g. "
                          "5min or B (default: inferred from the input)")
    forecast.add_argument("--seed", type=int, default=0)
    forecast.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    forecast.add_argument("--precision", default="float32", choices=("float32", "bfloat16"))
    forecast.add_argument("--out", default=".", help="output directory (default: .)")
    forecast.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    forecast.set_defaults(run=_forecast)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from kronos_sk.checkpoints import CheckpointError
    try:
        args.run(args)
    except (UsageError, CheckpointError, ValueError, TypeError, ImportError) as error:
        print(f"kronos-sk {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
