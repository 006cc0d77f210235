"""The `kronos-sk` command.

    kronos-sk demo                                   # bundled model, bundled real candles
    kronos-sk forecast --input candles.csv --horizon 24 --out out/
    kronos-sk sample --input candles.csv --horizon 24 --samples 200 --out paths.parquet
    kronos-sk evaluate --input candles.csv --horizon 12 --folds 5
    kronos-sk info
    kronos-sk pretrain --config configs/default-model.toml
    kronos-sk finetune --config my-finetune.toml

Without --model/--tokenizer the bundled default model is used. Exit status 0 on success, 2
with a one-line message on bad usage or bad input.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from kronos_sk._defaults import DEFAULT_DEVICE, DEFAULT_N_SAMPLES, DEFAULT_TOP_P
from kronos_sk._files import write_atomically
from kronos_sk._version import __version__

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
SAMPLE_SUFFIXES = (".parquet", ".pq", ".csv")
DEMO_FILE = ("backtesting", "test/GOOG.csv")  # real daily GOOG candles shipped in `backtesting`


class UsageError(Exception):
    """Bad usage or bad input: reported in one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    """Reports bad usage in one line (argparse prints the whole usage first)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def check_outputs(paths: list[Path], overwrite: bool, source: str | None = None) -> None:
    """Refuse, before any computation, outputs that exist (unless `overwrite`), that are the
    input file `source` (even with `overwrite`) or that cannot be written (a file where a
    directory must be, a directory where the file goes, no write permission)."""
    for path in paths:
        if source is not None and path.resolve() == Path(source).resolve():
            raise UsageError(f"output {str(path)!r} is the input file; choose another --out")
        if path.is_dir():
            raise UsageError(f"output {str(path)!r} is a directory; name a file")
        if path.exists() and not overwrite:
            raise UsageError(f"output {str(path)!r} already exists; pass --overwrite to replace "
                             "it, or choose another --out")
        parent = path.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise UsageError(f"cannot write {str(path)!r}: {str(parent)!r} is a file, not a "
                             "directory")
        try:  # a real write: permission bits do not stop root, a read-only mount does
            tempfile.TemporaryFile(dir=parent).close()
        except OSError as error:
            raise UsageError(f"cannot write {str(path)!r}: {str(parent)!r} is not writable "
                             f"({error.strerror})") from None


def _forecast_outputs(out: str, chart: bool) -> list[Path]:
    names = ("forecast.csv", "forecast.png") if chart else ("forecast.csv",)
    return [Path(out) / name for name in names]


def read_candles(path: str) -> pd.DataFrame:
    """Read a CSV or Parquet file of candles; timestamps in a named column or the first one.

    A file with an ``asset`` column is returned as an (asset, timestamp) panel.
    """
    file = Path(path)
    if file.is_dir():
        raise UsageError(f"input {path!r} is a directory; give a .csv or .parquet file")
    if not file.is_file():
        raise UsageError(f"input file {path!r} does not exist")
    if file.suffix.lower() in (".parquet", ".pq"):
        read, kind = pd.read_parquet, "Parquet"
    elif file.suffix.lower() in (".csv", ".txt"):
        read, kind = pd.read_csv, "CSV"
    else:
        raise UsageError(f"input file {path!r}: expected a .csv or .parquet file")
    try:
        frame = read(file)
    except (ValueError, OSError) as error:  # pandas and pyarrow parse errors are ValueErrors
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UsageError(f"input file {path!r}: not a readable {kind} file ({reason})") from None
    names = {str(c).strip().lower(): c for c in frame.columns}
    stamp = next((names[n] for n in ("timestamp", "timestamps", "date", "datetime", "time")
                  if n in names), frame.columns[0])
    frame[stamp] = _timestamps(frame[stamp], f"input file {path!r}: column {stamp!r}")
    if "asset" in names:
        return frame.set_index([names["asset"], stamp]).sort_index()
    return frame.set_index(stamp)


def _timestamps(column: pd.Series, where: str) -> pd.Series:
    """Parse a timestamp column; a cell that is no timestamp is named by row and value.

    Timestamps that parse one by one but mix time zones are returned as objects, for the
    candle validator to name the first row in another zone.
    """
    try:
        return pd.to_datetime(column)
    except (ValueError, TypeError, OverflowError):
        pass
    parsed = []
    for pos, value in enumerate(column):
        try:
            parsed.append(pd.Timestamp(value))
        except (ValueError, TypeError, OverflowError):
            raise UsageError(f"{where}: row {pos} holds {value!r}, which is not a timestamp; "
                             "name the timestamp column 'timestamp'") from None
    return pd.Series(parsed, index=column.index, dtype=object)


def demo_candles() -> tuple[str, pd.DataFrame]:
    """Real daily GOOG candles from the `backtesting` package (no download at run time)."""
    spec = importlib.util.find_spec(DEMO_FILE[0])
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("the demo reads real candles shipped with the 'backtesting' package: "
                         "pip install 'kronos-sk[demo]'")
    path = Path(spec.submodule_search_locations[0]) / DEMO_FILE[1]
    return "GOOG daily (backtesting package)", pd.read_csv(path, index_col=0, parse_dates=True)


def _pipeline(args: argparse.Namespace):
    from kronos_sk.checkpoints import default_checkpoint
    from kronos_sk.pipeline import KronosPipeline
    model = args.model or default_checkpoint("predictor")
    tokenizer = args.tokenizer or default_checkpoint("tokenizer")
    return KronosPipeline.from_pretrained(model, tokenizer, max_context=args.max_context,
                                          device=args.device, precision=args.precision)


def _sample(args: argparse.Namespace, candles: pd.DataFrame):
    return _pipeline(args).sample(
        candles, args.horizon, freq=args.freq, n_samples=args.samples,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        random_state=args.seed, sliding=args.sliding, prefill_precision=args.prefill_precision,
        valid_candles=not args.raw_candles, stratified=not args.independent_paths)


def _given_columns(candles: pd.DataFrame, forecast) -> list[str]:
    """The forecast's columns that the input has: a volume or amount the input lacks is
    the model's filler (zero, or volume times the mean price), not a forecast."""
    from kronos_sk.data import canonical_columns
    given = set(canonical_columns(candles.columns).values())
    return [column for column in forecast.columns if column in given]


def _write_forecast(candles: pd.DataFrame, forecast, outputs: list[Path],
                    title: str) -> None:
    outputs[0].parent.mkdir(parents=True, exist_ok=True)
    table = pd.concat([forecast.mean()[_given_columns(candles, forecast)],
                       forecast.quantiles(QUANTILES, columns=["close"])], axis=1)
    if table.index.nlevels == 1:
        table.index.name = "timestamp"
    write_atomically(outputs[0], table.to_csv)
    if len(outputs) > 1:
        from kronos_sk.data import validate_candles, validate_panel
        from kronos_sk.plotting import plot_forecast
        if isinstance(candles.index, pd.MultiIndex):
            first = forecast.assets[0]
            context = validate_panel(candles).xs(first, level=0)
            title = f"{title} ({first}; {len(forecast.assets)} assets in the CSV)"
        else:
            context = validate_candles(candles)
        plot_forecast(context, forecast, title=title, path=outputs[1])


def _forecast(args: argparse.Namespace) -> None:
    candles = read_candles(args.input)
    outputs = _forecast_outputs(args.out, not args.no_chart)
    check_outputs(outputs, args.overwrite, args.input)
    forecast = _sample(args, candles)
    title = f"{Path(args.input).name}: {args.horizon} steps, {args.samples} paths"
    _write_forecast(candles, forecast, outputs, title)
    print("wrote " + ", ".join(str(p) for p in outputs))


def _demo(args: argparse.Namespace) -> None:
    outputs = _forecast_outputs(args.out, True)
    check_outputs(outputs, args.overwrite)
    name, candles = demo_candles()
    candles = candles.iloc[-args.lookback:]
    args.freq = args.freq or "B"
    forecast = _sample(args, candles)
    title = f"{name}: {args.horizon} business days, {args.samples} paths, bundled model"
    _write_forecast(candles, forecast, outputs, title)
    last, mean = candles["Close"].iloc[-1], forecast.mean()["close"]
    print(f"{name}: last close {last:.2f} on {candles.index[-1]:%Y-%m-%d}; mean forecast "
          f"{mean.iloc[-1]:.2f} on {mean.index[-1]:%Y-%m-%d}")
    print("wrote " + ", ".join(str(p) for p in outputs))


def _sample_command(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if out.suffix.lower() not in SAMPLE_SUFFIXES:
        raise UsageError(f"--out {args.out!r}: expected a file ending in "
                         f"{', '.join(SAMPLE_SUFFIXES)} (Parquet, or CSV for .csv)")
    candles = read_candles(args.input)
    check_outputs([out], args.overwrite, args.input)
    forecast = _sample(args, candles)
    B, S, H, F = forecast.paths.shape
    rows = {"asset": np.repeat(np.array(forecast.assets, dtype=object), S * H),
            "sample": np.tile(np.repeat(np.arange(S), H), B),
            "timestamp": np.concatenate([np.tile(idx, S) for idx in forecast.index])}
    frame = pd.DataFrame(rows)
    for column in _given_columns(candles, forecast):
        frame[column] = forecast.paths[..., forecast.columns.index(column)].reshape(-1)
    if forecast.assets == [None]:
        frame = frame.drop(columns="asset")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        write_atomically(out, lambda tmp: frame.to_csv(tmp, index=False))
    else:
        write_atomically(out, frame.to_parquet)
    print(f"wrote {out}: {B} series x {S} paths x {H} steps")


def _evaluate(args: argparse.Namespace) -> None:
    import warnings

    from sktime.performance_metrics.forecasting import MeanAbsolutePercentageError
    from sktime.performance_metrics.forecasting.probabilistic import (EmpiricalCoverage,
                                                                      PinballLoss)
    from sktime.split import ExpandingWindowSplitter

    from kronos_sk.checkpoints import default_checkpoint
    from kronos_sk.data import canonical_columns
    from kronos_sk.estimators import KronosForecaster
    candles = read_candles(args.input)
    if args.out:
        if Path(args.out).suffix.lower() != ".csv":
            raise UsageError(f"--out {args.out!r}: the per-fold scores are written as CSV; "
                             "name a .csv file")
        check_outputs([Path(args.out)], args.overwrite, args.input)
    if isinstance(candles.index, pd.MultiIndex):
        raise UsageError("evaluate backtests one series; give a file without an asset column")
    # Forecast from the candles, as `forecast` does; only the close is scored.
    fields = {canonical: user for user, canonical in canonical_columns(candles.columns).items()}
    if "close" not in fields:
        raise UsageError(f"input file {args.input!r}: no close column; found "
                         f"{list(candles.columns)}")
    has_candles = {"open", "high", "low"} <= set(fields)
    y = candles[list(fields.values()) if has_candles else [fields["close"]]]
    close = fields["close"]
    forecaster = KronosForecaster(
        model=str(args.model or default_checkpoint("predictor")),
        tokenizer=str(args.tokenizer or default_checkpoint("tokenizer")),
        n_samples=args.samples, top_p=args.top_p, top_k=args.top_k,
        temperature=args.temperature, max_context=args.max_context, random_state=args.seed,
        freq=args.freq, sliding=args.sliding, device=args.device, precision=args.precision,
        prefill_precision=args.prefill_precision, valid_candles=not args.raw_candles,
        stratified=not args.independent_paths)
    spare = len(y) - args.initial - args.horizon  # rows the later folds' origins move over
    if spare < 0:
        raise UsageError(f"--initial {args.initial} + --horizon {args.horizon} exceeds the "
                         f"{len(y)} rows of {args.input!r}")
    if spare < args.folds - 1:
        raise UsageError(f"--folds {args.folds} do not fit in the {len(y)} rows of "
                         f"{args.input!r}: after --initial {args.initial} with --horizon "
                         f"{args.horizon} there is room for {spare + 1}")
    # exactly --folds folds: the first at --initial, the others spaced evenly after it
    step = spare // (args.folds - 1) if args.folds > 1 else 1
    cv = ExpandingWindowSplitter(initial_window=args.initial, step_length=step,
                                 fh=list(range(1, args.horizon + 1)))
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for train, test in itertools.islice(cv.split(y.index), args.folds):
            forecaster.fit(y.iloc[train])
            future, truth = y.index[test], y[close].iloc[test]  # the rows that followed
            rows.append({
                "test_MeanAbsolutePercentageError": MeanAbsolutePercentageError()(
                    truth, forecaster.predict(fh=future)[close]),
                "test_PinballLoss": PinballLoss()(
                    truth, forecaster.predict_quantiles(fh=future)[[close]]),
                "test_EmpiricalCoverage": EmpiricalCoverage(coverage=0.9)(
                    truth, forecaster.predict_interval(fh=future, coverage=0.9)[[close]]),
                "cutoff": y.index[train[-1]]})
    results = pd.DataFrame(rows)
    print(f"{'candles' if has_candles else 'close only'} ({', '.join(map(str, y.columns))}); "
          "scores of the close")
    print(results.to_string(index=False))
    print("mean: " + ", ".join(f"{c[5:]} {results[c].mean():.4g}" for c in results.columns
                               if c.startswith("test_")))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        write_atomically(args.out, lambda tmp: results.to_csv(tmp, index=False))
        print(f"wrote {args.out}")


def _info(args: argparse.Namespace) -> None:
    from kronos_sk.checkpoints import (DEFAULT_MODEL_DIR, check_checkpoint, default_checkpoint,
                                       model_context, model_spread)
    card = DEFAULT_MODEL_DIR / "MODEL_CARD.md"
    if args.model is None and args.tokenizer is None and card.is_file():
        print(card.read_text())
        return
    for kind, path in (("predictor", args.model), ("tokenizer", args.tokenizer)):
        # Validated as loading would (config and safetensors header), before anything prints.
        directory, config = check_checkpoint(kind, path or default_checkpoint(kind))
        print(f"{kind}: {directory}")
        for key, value in sorted(config.to_dict().items()):
            print(f"  {key} = {value}")
        if kind == "predictor":  # what inference.json (or the released shape) says
            spread = model_spread(directory)
            print(f"  (inference) max_context = {model_context(directory)}, spread = "
                  f"{spread.factor}, tail = {spread.tail}, ramp = {spread.ramp}, drift = "
                  f"{spread.drift}, candles = {spread.candles}")


def _train(args: argparse.Namespace) -> None:
    from kronos_sk.training.recipe import finetune, parse_overrides, pretrain
    if not Path(args.config).is_file():
        raise UsageError(f"recipe file {args.config!r} does not exist")
    run = pretrain if args.command == "pretrain" else finetune
    for stage, path in run(args.config, parse_overrides(args.overrides)).items():
        print(f"{stage}: {path}")


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="predictor checkpoint directory (config.json + "
                        "model.safetensors) or hub id (default: the bundled model)")
    parser.add_argument("--tokenizer", help="tokenizer checkpoint directory or hub id "
                        "(default: the bundled model)")
    parser.add_argument("--samples", type=positive_int, default=DEFAULT_N_SAMPLES,
                        help=f"sampled paths per series (default {DEFAULT_N_SAMPLES})")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0, help="0 disables top-k")
    parser.add_argument("--top-p", type=float, default=DEFAULT_TOP_P,
                        help=f"nucleus mass kept (default {DEFAULT_TOP_P}: no cut)")
    parser.add_argument("--max-context", type=positive_int, default=None,
                        help="predictor window in tokens (default: the window the checkpoint "
                        "was trained on: its inference.json, 2048 for Kronos-mini, else 512)")
    parser.add_argument("--sliding", choices=("exact", "rolling"), default="exact")
    parser.add_argument("--freq", default=None, help="frequency of the future rows, e.g. "
                        "5min or B (default: inferred from the input)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=DEFAULT_DEVICE,
                        help=f"cpu, cuda, cuda:N, mps or auto (default {DEFAULT_DEVICE}: CUDA, "
                        "then MPS, then the CPU)")
    parser.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16"),
                        help="weights and one-token steps (default auto: float32)")
    parser.add_argument("--prefill-precision", default="auto",
                        choices=("auto", "float32", "bfloat16"),
                        help="precision of the batched context passes (default auto: "
                        "bfloat16 where the device computes it natively, else float32)")
    parser.add_argument("--raw-candles", action="store_true",
                        help="the reference's raw decoding (highs below closes, negative "
                        "volumes and prices <= 0 kept); default: valid candles, positive prices")
    parser.add_argument("--independent-paths", action="store_true",
                        help="draw each path independently, as the reference does (default: "
                        "the paths of a series drawn stratified, covering the model's "
                        "distribution evenly)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace output files that already exist (default: refuse)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kronos-sk", description="Kronos K-line forecasting.")
    parser.add_argument("--version", action="version", version=f"kronos-sk {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_Parser)

    demo = commands.add_parser(
        "demo", help="zero-shot forecast of real candles with the bundled model",
        description="Forecast the last daily GOOG candles shipped with the 'backtesting' "
                    "package using the bundled model; write forecast.csv and forecast.png.")
    demo.add_argument("--horizon", type=positive_int, default=20)
    demo.add_argument("--lookback", type=positive_int, default=256)
    demo.add_argument("--out", default=".", help="output directory (default: .)")
    _model_options(demo)
    demo.set_defaults(run=_demo)

    forecast = commands.add_parser(
        "forecast", help="forecast a CSV/Parquet file; write a CSV and a PNG chart",
        description="Sample future candles; write forecast.csv (mean of every column and "
                    "quantiles of the close) and forecast.png into --out. A file with an "
                    "'asset' column is a panel: all assets are forecast in one batch.")
    forecast.add_argument("--input", required=True, help="CSV or Parquet file with a "
                          "timestamp column and open, high, low, close (+ volume, amount)")
    forecast.add_argument("--horizon", required=True, type=positive_int,
                          help="number of future rows")
    forecast.add_argument("--out", default=".", help="output directory (default: .)")
    forecast.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    _model_options(forecast)
    forecast.set_defaults(run=_forecast)

    sample = commands.add_parser(
        "sample", help="write every sampled path to Parquet (or CSV)",
        description="Synthetic K-lines conditioned on the input: one row per (asset, sample, "
                    "timestamp).")
    sample.add_argument("--input", required=True)
    sample.add_argument("--horizon", required=True, type=positive_int)
    sample.add_argument("--out", required=True, help="output .parquet (or .csv) file")
    _model_options(sample)
    sample.set_defaults(run=_sample_command)

    evaluate = commands.add_parser(
        "evaluate", help="backtest the forecasts of one file's close (expanding window)",
        description="Expanding-window backtest: each fold forecasts from the candles, as "
                    "forecast does, and scores the close of the rows that followed: MAPE of "
                    "the mean, pinball loss and 90%% interval coverage per fold.")
    evaluate.add_argument("--input", required=True)
    evaluate.add_argument("--horizon", type=positive_int, default=10)
    evaluate.add_argument("--initial", type=positive_int, default=256,
                          help="rows of the first fold")
    evaluate.add_argument("--folds", type=positive_int, default=5)
    evaluate.add_argument("--out", help="CSV file for the per-fold scores")
    _model_options(evaluate)
    evaluate.set_defaults(run=_evaluate)

    info = commands.add_parser("info", help="show the model card or a checkpoint's config")
    info.add_argument("--model")
    info.add_argument("--tokenizer")
    info.set_defaults(run=_info)

    for name, what in (("pretrain", "pre-train a tokenizer and predictor from a recipe"),
                       ("finetune", "fine-tune checkpoints from a recipe")):
        train = commands.add_parser(name, help=what, description=f"{what[0].upper()}{what[1:]}"
                                    " (a TOML file holding every setting; see "
                                    "configs/default-model.toml).")
        train.add_argument("--config", required=True, help="recipe TOML file")
        train.add_argument("--set", dest="overrides", action="append", default=[],
                           metavar="KEY=VALUE", help="override one setting, e.g. "
                           "predictor.max_steps=100 (repeatable)")
        train.set_defaults(run=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from kronos_sk.checkpoints import CheckpointError
    try:
        args.run(args)
    except OSError as error:  # a file that vanished, a full disk, a read-only place
        where = f": {error.filename}" if error.filename else ""
        print(f"kronos-sk {args.command}: error: {error.strerror or error}{where}",
              file=sys.stderr)
        return 2
    except (UsageError, CheckpointError, ValueError, TypeError, ImportError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"kronos-sk {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
