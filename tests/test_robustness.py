"""Bad input, as a careless or hostile user gives it, answered in one line that names it.

Two tables: command lines of `kronos-sk` (exit status 2, one line on stderr, no traceback,
nothing written) and calls of the library faces (one ValueError/TypeError line). Every case
runs the real code on the tiny released-format fixture model.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from kronos_sk.checkpoints import default_checkpoint
from kronos_sk.cli import main
from kronos_sk.estimators import KLineTokenizer, KronosForecaster
from kronos_sk.pipeline import KronosPipeline

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "kronos-compat"
CANDLES = FIXTURES / "candles.csv"
MODEL = ["--model", str(FIXTURES / "model"), "--tokenizer", str(FIXTURES / "tokenizer"),
         "--max-context", "128", "--samples", "2"]


def raw() -> pd.DataFrame:
    """The fixture candles as they are in the file (timestamps in a column)."""
    return pd.read_csv(CANDLES)


def with_cell(column: str, row: int, value) -> pd.DataFrame:
    frame = raw()
    frame[column] = frame[column].astype(object)
    frame.loc[row, column] = value
    return frame


def panel(*parts: tuple[object, slice]) -> pd.DataFrame:
    frame = raw()
    return pd.concat([frame.iloc[rows].assign(asset=name) for name, rows in parts],
                     ignore_index=True)


def model_copy(root: Path, name: str, change_weights=None, change_config=None) -> Path:
    target = root / name
    shutil.copytree(FIXTURES / "model", target)
    if change_weights is not None:
        weights = load_file(target / "model.safetensors")
        save_file({k: change_weights(v) for k, v in weights.items()},
                  target / "model.safetensors")
    if change_config is not None:
        config = json.loads((target / "config.json").read_text())
        (target / "config.json").write_text(json.dumps(change_config(config)))
    return target


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every bad input file of the CLI table, in one directory."""
    root = tmp_path_factory.mktemp("bad")
    inputs = {
        "text_cell.csv": with_cell("volume", 50, "abc"),
        "bad_date.csv": with_cell("timestamps", 40, "not a date"),
        "mixed_zones.csv": with_cell("timestamps", 50, raw()["timestamps"][50] + "+00:00"),
        "high_below.csv": with_cell("high", 5, 1.0),
        "negative_volume.csv": with_cell("volume", 7, -3.0),
        "inf_close.csv": with_cell("close", 9, np.inf),
        "duplicate.csv": with_cell("timestamps", 3, raw()["timestamps"][2]),
        "no_close.csv": raw().drop(columns="close"),
        "empty.csv": raw().iloc[:0],
        "nan_asset.csv": panel(("A", slice(0, 100)), (np.nan, slice(100, 200))),
        "short_asset.csv": panel(("A", slice(0, 100)), ("B", slice(100, 101))),
    }
    for name, frame in inputs.items():
        frame.to_csv(root / name, index=False)
    (root / "candles.json").write_text("{}")
    (root / "garbage.parquet").write_bytes(b"not parquet at all")
    (root / "binary.csv").write_bytes(b"\xff\xfe\x00binary")
    (root / "a_directory").mkdir()
    (root / "taken").mkdir()
    (root / "taken" / "forecast.csv").write_text("keep me")
    (root / "a_file").write_text("x")
    model_copy(root, "nan_model",
               lambda t: torch.full_like(t, torch.nan) if t.is_floating_point() else t)
    model_copy(root, "int_model", lambda t: t.long() if t.is_floating_point() else t)
    model_copy(root, "huge_config", change_config=lambda c: {**c, "s1_bits": 30})
    model_copy(root, "wrong_shapes", change_config=lambda c: {**c, "d_model": 64})
    (root / "truncated_model").mkdir()
    shutil.copy(FIXTURES / "model" / "config.json", root / "truncated_model")
    data = (FIXTURES / "model" / "model.safetensors").read_bytes()
    (root / "truncated_model" / "model.safetensors").write_bytes(data[:len(data) // 2])
    return root


# (id, argv with {root} for the bad-files directory, text the one-line error must contain)
CLI_CASES = [
    ("missing input", ["forecast", "--input", "{root}/nowhere.csv"], "does not exist"),
    ("directory input", ["forecast", "--input", "{root}/a_directory"], "is a directory"),
    ("unknown suffix", ["forecast", "--input", "{root}/candles.json"],
     "expected a .csv or .parquet"),
    ("not Parquet", ["forecast", "--input", "{root}/garbage.parquet"],
     "garbage.parquet': not a readable Parquet file"),
    ("not text", ["forecast", "--input", "{root}/binary.csv"],
     "binary.csv': not a readable CSV file ('utf-8' codec can't decode"),
    ("text cell", ["forecast", "--input", "{root}/text_cell.csv"],
     "column 'volume' has non-numeric dtype str; row 50 (2025-03-04 09:45:00) holds 'abc'"),
    ("bad timestamp", ["forecast", "--input", "{root}/bad_date.csv"],
     "row 40 holds 'not a date', which is not a timestamp"),
    ("mixed time zones", ["forecast", "--input", "{root}/mixed_zones.csv"],
     "mixes time zones: row 50 (2025-03-04 09:45:00+00:00) is in time zone UTC"),
    ("high below body", ["forecast", "--input", "{root}/high_below.csv"], "'high' at row 5"),
    ("negative volume", ["forecast", "--input", "{root}/negative_volume.csv"],
     "'volume' at row 7 (2025-03-03 10:10:00) is -3.0"),
    ("infinite close", ["forecast", "--input", "{root}/inf_close.csv"], "'close' at row 9"),
    ("duplicate timestamp", ["forecast", "--input", "{root}/duplicate.csv"],
     "duplicate timestamp: row 3"),
    ("no close column", ["forecast", "--input", "{root}/no_close.csv"],
     "missing required column(s) ['close']"),
    ("empty file", ["forecast", "--input", "{root}/empty.csv"], "is empty"),
    ("missing asset name", ["forecast", "--input", "{root}/nan_asset.csv"],
     "the asset name at row 100"),
    ("too-short asset", ["forecast", "--input", "{root}/short_asset.csv"],
     "asset 'B' has 1 rows"),
    ("zero horizon", ["forecast", "--input", str(CANDLES), "--horizon", "0"],
     "expected a positive integer, got 0"),
    ("no such model", ["forecast", "--input", str(CANDLES), "--model", "{root}/nowhere"],
     "does not exist"),
    ("NaN weights", ["forecast", "--input", str(CANDLES), "--model", "{root}/nan_model"],
     "NaN or infinite value(s)"),
    ("integer weights", ["forecast", "--input", str(CANDLES), "--model", "{root}/int_model"],
     "is torch.int64 but the model needs torch.float32"),
    ("huge config", ["forecast", "--input", str(CANDLES), "--model", "{root}/huge_config"],
     "'s1_bits' = 30 exceeds 16"),
    ("config against header", ["info", "--model", "{root}/wrong_shapes"], "has shape"),
    ("truncated weights", ["forecast", "--input", str(CANDLES), "--model",
                           "{root}/truncated_model"], "not a readable safetensors file"),
    ("existing output", ["forecast", "--input", str(CANDLES), "--out", "{root}/taken",
                         "--no-chart"], "forecast.csv' already exists; pass --overwrite"),
    ("output under a file", ["forecast", "--input", str(CANDLES), "--out", "{root}/a_file"],
     "is a file, not a directory"),
    ("unwritable output", ["forecast", "--input", str(CANDLES), "--out", "/proc/kronos"],
     "is not writable"),
    ("sample suffix", ["sample", "--input", str(CANDLES), "--out", "{root}/paths.txt"],
     "expected a file ending in .parquet, .pq, .csv"),
    ("evaluate a panel", ["evaluate", "--input", "{root}/short_asset.csv"],
     "evaluate backtests one series"),
    ("evaluate suffix", ["evaluate", "--input", str(CANDLES), "--out", "{root}/s.parquet"],
     "name a .csv file"),
    ("missing recipe", ["finetune", "--config", "{root}/missing.toml"], "does not exist"),
    ("unknown command", ["forecats"], "invalid choice: 'forecats'"),
]


@pytest.mark.parametrize("case, argv, message", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_answers_bad_input_in_one_line(files, capsys, case, argv, message):
    argv = [arg.replace("{root}", str(files)) for arg in argv]
    if argv[0] in ("forecast", "sample", "evaluate"):  # the options a case leaves out
        defaults = dict(zip(MODEL[::2], MODEL[1::2]), **{"--horizon": "2"})
        if argv[0] == "forecast":
            defaults["--out"] = str(files / "never_written")
        for option, value in defaults.items():
            if option not in argv:
                argv += [option, value]
    before = sorted(p.name for p in files.rglob("*"))
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse's own checks
        code = exit_info.code
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, (case, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err
    assert sorted(p.name for p in files.rglob("*")) == before, "a failed command wrote a file"
    assert (files / "taken" / "forecast.csv").read_text() == "keep me"


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return pd.read_csv(CANDLES, index_col=0, parse_dates=True)


def forecaster(**params) -> KronosForecaster:
    defaults = dict(model=str(FIXTURES / "model"), tokenizer=str(FIXTURES / "tokenizer"),
                    max_context=128, n_samples=2, random_state=0)
    return KronosForecaster(**{**defaults, **params})


def pipeline() -> KronosPipeline:
    return KronosPipeline.from_pretrained(FIXTURES / "model", FIXTURES / "tokenizer",
                                          max_context=128)


def as_panel(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(timestamps=pd.to_datetime(frame["timestamps"])).set_index(
        ["asset", "timestamps"])


def indexed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(timestamps=pd.to_datetime(frame["timestamps"])).set_index("timestamps")


# (id, call on the fixture candles, exception type, text of its one-line message)
LIBRARY_CASES = [
    ("random_state text", lambda c: forecaster(random_state="abc").fit(c.iloc[:100]),
     ValueError, "The 'random_state' parameter of KronosForecaster must be an int in the "
                 "range [0, 4294967296) or None. Got 'abc' instead."),
    ("random_state float", lambda c: forecaster(random_state=1.5).fit(c.iloc[:100]),
     ValueError, "Got 1.5 instead"),
    ("random_state negative", lambda c: forecaster(random_state=-1).fit(c.iloc[:100]),
     ValueError, "Got -1 instead"),
    ("update moves the cutoff back",
     lambda c: forecaster().fit(c.iloc[:100]).update(c.iloc[50:60], update_params=False),
     ValueError, "update: y ends at 2025-03-04 10:30:00, before the cutoff"),
    ("panel with a missing asset name",
     lambda c: forecaster().fit(as_panel(panel(("A", slice(0, 50)), (np.nan, slice(50, 99))))),
     ValueError, "y: the series name at row 50 (nan, "),
    ("pipeline: missing asset name",
     lambda c: pipeline().sample(as_panel(panel(("A", slice(0, 50)), (None, slice(50, 99)))),
                                 2),
     ValueError, "the asset name at row 50"),
    ("pipeline: too-short asset",
     lambda c: pipeline().sample(as_panel(panel(("A", slice(0, 50)), ("B", slice(50, 51)))),
                                 2, freq="5min"),
     ValueError, "asset 'B' has 1 rows"),
    ("pipeline: too-short series in a dict",
     lambda c: pipeline().sample({"x": c.iloc[:50], "y": c.iloc[:1]}, 2, freq="5min"),
     ValueError, "candles['y']: has 1 rows"),
    ("text cell",
     lambda c: pipeline().sample(indexed(with_cell("volume", 50, "abc")), 2),
     TypeError, "row 50 (2025-03-04 09:45:00) holds 'abc'"),
    ("text that reads as numbers, one bad cell",
     lambda c: pipeline().sample(indexed(with_cell("open", 30, "1,5").astype({"open": str})),
                                 2),
     TypeError, "row 30 (2025-03-03 13:35:00) holds '1,5'"),
    ("high below low", lambda c: forecaster().fit(c.assign(high=c["low"] * 0.5)),
     ValueError, "'high' at row 0"),
    ("unknown device", lambda c: forecaster(device="tpu").fit(c.iloc[:50]),
     ValueError, "device must be 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto', got 'tpu'"),
    ("no such model", lambda c: forecaster(model="/nowhere").fit(c.iloc[:50]),
     ValueError, "checkpoint directory '/nowhere' does not exist"),
    ("pipeline: text horizon", lambda c: pipeline().sample(c.iloc[:50], "3"),
     ValueError, "horizon must be a positive integer, got '3'"),
    ("pipeline: unknown freq", lambda c: pipeline().sample(c.iloc[:50], 3, freq="7xyz"),
     ValueError, "freq '7xyz' is not a pandas frequency"),
    ("pipeline: future inside the context",
     lambda c: pipeline().sample(c.iloc[:50], future=c.index[10:13]),
     ValueError, "future[0]: first timestamp 2025-03-03 10:25:00 is not after the last"),
    ("pipeline: a list of numbers", lambda c: pipeline().sample([1, 2], 3),
     TypeError, "candles[0]: expected a pandas DataFrame, got int"),
    ("tokenizer: NaN close",
     lambda c: KLineTokenizer(tokenizer=str(FIXTURES / "tokenizer")).fit(c).transform(
         c.assign(close=np.nan)),
     ValueError, "X: column 'close' at row 0 (2025-03-03 09:35:00) is NaN"),
    # sktime's own checks would answer "categorical features" and "missing data (nans)"
    ("forecaster: text cell",
     lambda c: forecaster().fit(indexed(with_cell("open", 40, "abc"))),
     TypeError, "y: column 'open' has non-numeric dtype object; row 40 (2025-03-03 14:25:00) "
                "holds 'abc'"),
    ("forecaster: NaN", lambda c: forecaster().fit(c.assign(close=c["close"].where(
        np.arange(len(c)) != 12))),
     ValueError, "y: column 'close' at row 12 (2025-03-03 10:35:00) is NaN"),
    ("forecaster: inf in a panel",
     lambda c: forecaster().fit(as_panel(panel(("A", slice(0, 50)), ("B", slice(50, 99)))).assign(
         volume=lambda f: f["volume"].where(np.arange(len(f)) != 60, np.inf))),
     ValueError, "y: column 'volume' at row 60 (asset 'B', 2025-03-04 10:35:00) is inf"),
    ("forecaster: NaN in a flat series",
     lambda c: forecaster().fit(c[["close"]].rename(columns={"close": "x"}).where(
         np.arange(len(c))[:, None] != 3)),
     ValueError, "y: column 'x' at row 3 (2025-03-03 09:50:00) is NaN"),
    ("forecaster update: NaN",
     lambda c: forecaster().fit(c.iloc[:100]).update(
         c.iloc[100:110].assign(open=np.nan), update_params=False),
     ValueError, "y: column 'open' at row 0 (2025-03-05 09:55:00) is NaN"),
    # update rows laid out otherwise than fit's: sktime answered with every mtype it tried,
    # pandas with "Invalid comparison"; an unseen series was taken in silently
    ("forecaster update: a lone series on a panel fit",
     lambda c: forecaster().fit(as_panel(panel(("A", slice(0, 50)), ("B", slice(50, 99))))
                                ).update(c.iloc[120:125]),
     ValueError, "update: y has 1 index level(s) but the forecaster was fitted on 2 "
                 "(['asset', 'timestamps'])"),
    ("forecaster update: a series fit did not see",
     lambda c: forecaster().fit(as_panel(panel(("A", slice(0, 50)), ("B", slice(50, 99))))
                                ).update(as_panel(panel(("C", slice(99, 104))))),
     ValueError, "update: y holds series ['C'] that fit did not see"),
    ("forecaster update: other time zone",
     lambda c: forecaster().fit(c.iloc[:100]).update(c.iloc[100:105].tz_localize("UTC")),
     ValueError, "update: y's time index holds timestamps in UTC but fit's held timestamps "
                 "without a time zone"),
    ("forecaster update: integer rows",
     lambda c: forecaster().fit(c.iloc[:100]).update(c.iloc[100:105].reset_index(drop=True)),
     ValueError, "update: y's time index holds int64 values but fit's held timestamps"),
    ("forecaster update: other columns",
     lambda c: forecaster().fit(c.iloc[:100]).update(c.iloc[100:105].drop(columns="volume")),
     ValueError, "update: y has columns ['open', 'high', 'low', 'close', 'amount'] but the "
                 "forecaster was fitted on"),
    ("forecaster: fh in another time zone",
     lambda c: forecaster().fit(c.iloc[:100]).predict(
         fh=pd.DatetimeIndex([c.index[101]]).tz_localize("UTC")),
     ValueError, "fh: holds timestamps in UTC but y's index holds timestamps without a time "
                 "zone"),
    ("forecaster: a column twice",
     lambda c: forecaster().fit(c.iloc[:100].set_axis(
         ["open", "high", "low", "close", "close", "amount"], axis=1)),
     ValueError, "y: column 'close' appears more than once"),
    ("forecaster: unknown freq", lambda c: forecaster(freq="xyz").fit(c.iloc[:100]),
     ValueError, "freq 'xyz' is not a pandas frequency of a positive step"),
    ("forecaster: zero freq", lambda c: forecaster(freq="0min").fit(c.iloc[:100]),
     ValueError, "freq '0min' is not a pandas frequency of a positive step"),
    ("forecaster: calibration_rate above 1",
     lambda c: forecaster(calibration="conformal", calibration_rate=50).fit(c.iloc[:100]),
     ValueError, "The 'calibration_rate' parameter of KronosForecaster must be a float in the "
                 "range (0.0, 1.0]. Got 50 instead."),
    ("forecaster: volatility quantile above 1",
     lambda c: forecaster().fit(c.iloc[:100]).predict_volatility(fh=[1, 2], quantiles=[1.5]),
     ValueError, "quantiles must be numbers in [0, 1], got 1.5"),
    ("forecaster: volatility quantiles repeated",
     lambda c: forecaster().fit(c.iloc[:100]).predict_volatility(fh=[1, 2],
                                                                 quantiles=[0.5, 0.5]),
     ValueError, "quantiles must be distinct numbers in [0, 1], got [0.5, 0.5]"),
    ("pipeline: calibrate with a text horizon",
     lambda c: pipeline().calibrate(c.iloc[:80], "4", n_samples=2),
     ValueError, "horizon must be a positive integer, got '4'"),
    ("pipeline: calibrate with no origin",
     lambda c: pipeline().calibrate(c.iloc[:80], 4, origins=0, n_samples=2),
     ValueError, "origins must be a positive integer, got 0"),
    ("pipeline: calibrate with a stride of 0",
     lambda c: pipeline().calibrate(c.iloc[:80], 4, stride=0, n_samples=2),
     ValueError, "stride must be a positive integer, got 0"),
    ("forecaster: a network config for a loaded checkpoint",
     lambda c: forecaster(model_config={"n_layers": 3}).fit(c.iloc[:100]),
     ValueError, "model_config is only used with fit_strategy='from-scratch', got "
                 "fit_strategy='zero-shot'; set model_config=None"),
    ("forecaster: the config file for the model",
     lambda c: forecaster(model=str(FIXTURES / "model" / "config.json")).fit(c.iloc[:100]),
     ValueError, "config.json' is a file; pass the checkpoint directory that holds it"),
    ("pipeline: no paths at once",
     lambda c: pipeline().sample(c.iloc[:50], 2, n_samples=2, max_paths=0),
     ValueError, "max_paths must be a positive integer, got 0"),
    ("pipeline: a negative seed",
     lambda c: pipeline().sample(c.iloc[:50], 2, n_samples=2, random_state=-1),
     ValueError, "random_state must be None or an int in [0, 2**32), got -1"),
    ("default checkpoint of an unknown kind",
     lambda c: default_checkpoint("model"),
     ValueError, "kind must be 'tokenizer' or 'predictor', got 'model'"),
    ("pipeline: quantiles as text",
     lambda c: pipeline().sample(c.iloc[:50], 2, n_samples=2).quantiles("0.5"),
     ValueError, "levels must be a sequence of numbers in [0, 1], got '0.5'"),
    ("pipeline: quantiles of an unknown column",
     lambda c: pipeline().sample(c.iloc[:50], 2, n_samples=2).quantiles(columns=["price"]),
     ValueError, "columns: ['price'] are not among the paths'"),
]


@pytest.mark.parametrize("case, call, error, message", LIBRARY_CASES,
                         ids=[c[0] for c in LIBRARY_CASES])
def test_library_answers_bad_input_in_one_line(candles, case, call, error, message):
    given = candles.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sktime's notices are not what is tested here
        with pytest.raises(error) as raised:
            call(candles)
    text = str(raised.value)
    assert message in text and len(text.splitlines()) == 1, text
    pd.testing.assert_frame_equal(candles, given)  # the user's frame is untouched


def test_the_user_frames_are_never_changed(candles):
    frames = {"series": candles.iloc[:120].copy(),
              "panel": pd.concat({"A": candles.iloc[:100], "B": candles.iloc[50:130]},
                                 names=["asset", "timestamps"])}
    for frame in frames.values():
        given = frame.copy()
        pipeline().sample(frame, 3, freq="5min", n_samples=2, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitted = forecaster().fit(frame)
            fitted.predict_quantiles(fh=candles.index[130:133])
        pd.testing.assert_frame_equal(frame, given)
