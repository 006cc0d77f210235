"""The `kronos-sk` command, run as a user would (in-process through `main`)."""

from pathlib import Path

import pandas as pd
import pytest

from kronos_sk.cli import main

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "kronos-compat"
MODEL = ["--model", str(FIXTURES / "model"), "--tokenizer", str(FIXTURES / "tokenizer"),
         "--max-context", "128"]


def test_forecast_writes_csv_and_chart(tmp_path, capsys):
    code = main(["forecast", "--input", str(FIXTURES / "candles.csv"), "--horizon", "6",
                 "--samples", "8", "--out", str(tmp_path), *MODEL])
    assert code == 0
    table = pd.read_csv(tmp_path / "forecast.csv", index_col=0, parse_dates=True)
    assert len(table) == 6
    assert {"close", "close_q0.05", "close_q0.95"} <= set(table.columns)
    assert (table["close_q0.05"] <= table["close_q0.95"]).all()
    assert (tmp_path / "forecast.png").stat().st_size > 10_000
    assert "wrote" in capsys.readouterr().out


def test_outputs_hold_the_columns_the_input_has(tmp_path):
    no_amount = tmp_path / "no_amount.csv"
    pd.read_csv(FIXTURES / "candles.csv").drop(columns="amount").to_csv(no_amount, index=False)
    assert main(["forecast", "--input", str(no_amount), "--horizon", "3", "--samples", "4",
                 "--no-chart", "--out", str(tmp_path / "f"), *MODEL]) == 0
    header = (tmp_path / "f" / "forecast.csv").read_text().splitlines()[0].split(",")
    assert header[:6] == ["timestamp", "open", "high", "low", "close", "volume"]
    assert "amount" not in header
    assert main(["sample", "--input", str(no_amount), "--horizon", "3", "--samples", "4",
                 "--out", str(tmp_path / "paths.csv"), *MODEL]) == 0
    assert list(pd.read_csv(tmp_path / "paths.csv").columns) == [
        "sample", "timestamp", "open", "high", "low", "close", "volume"]


def test_the_input_is_never_an_output(tmp_path, capsys):
    candles = tmp_path / "candles.csv"
    candles.write_bytes((FIXTURES / "candles.csv").read_bytes())
    for argv in (["sample", "--out", str(candles)], ["evaluate", "--out", str(candles)],
                 ["forecast", "--no-chart", "--out", str(tmp_path)]):
        if argv[0] == "forecast":  # an input named like forecast's own output
            candles = tmp_path / "forecast.csv"
            candles.write_bytes((FIXTURES / "candles.csv").read_bytes())
        code, err = run_cli([argv[0], "--input", str(candles), *argv[1:], "--overwrite",
                             "--horizon", "2", "--samples", "2", *MODEL], capsys)
        assert code == 2 and "is the input file; choose another --out" in err, err
        assert candles.read_bytes() == (FIXTURES / "candles.csv").read_bytes()


def test_evaluate_runs_the_folds_asked_or_says_why_not(tmp_path, capsys):
    args = ["evaluate", "--input", str(FIXTURES / "candles.csv"), "--samples", "2", *MODEL]
    rows = len(pd.read_csv(FIXTURES / "candles.csv"))
    code, err = run_cli([*args, "--initial", str(rows - 12), "--horizon", "10", "--folds", "4"],
                        capsys)
    assert code == 2 and f"--folds 4 do not fit in the {rows} rows" in err
    assert "there is room for 3" in err
    out = tmp_path / "scores.csv"
    assert run_cli([*args, "--initial", str(rows - 12), "--horizon", "10", "--folds", "3",
                    "--out", str(out)], capsys)[0] == 0
    scores = pd.read_csv(out, parse_dates=["cutoff"])
    stamps = pd.read_csv(FIXTURES / "candles.csv", parse_dates=["timestamps"])["timestamps"]
    assert list(scores["cutoff"]) == list(stamps.iloc[[rows - 13, rows - 12, rows - 11]])


def test_forecast_of_a_panel_file(tmp_path):
    candles = pd.read_csv(FIXTURES / "candles.csv")
    panel = pd.concat([candles.iloc[:100].assign(asset="A"), candles.iloc[50:200].assign(
        asset="B")])
    panel.to_csv(tmp_path / "panel.csv", index=False)
    code = main(["forecast", "--input", str(tmp_path / "panel.csv"), "--horizon", "3",
                 "--samples", "4", "--freq", "5min", "--out", str(tmp_path / "out"), *MODEL])
    assert code == 0
    table = pd.read_csv(tmp_path / "out" / "forecast.csv")
    assert sorted(table["asset"].unique()) == ["A", "B"] and len(table) == 6


def test_sample_writes_every_path(tmp_path):
    out = tmp_path / "paths.parquet"
    code = main(["sample", "--input", str(FIXTURES / "candles.csv"), "--horizon", "5",
                 "--samples", "7", "--out", str(out), *MODEL])
    assert code == 0
    paths = pd.read_parquet(out)
    assert len(paths) == 7 * 5 and paths["sample"].nunique() == 7
    assert {"timestamp", "open", "high", "low", "close", "volume", "amount"} <= set(paths)


def test_evaluate_prints_per_fold_scores(tmp_path, capsys):
    out = tmp_path / "scores.csv"
    code = main(["evaluate", "--input", str(FIXTURES / "candles.csv"), "--horizon", "3",
                 "--initial", "400", "--folds", "2", "--samples", "5", "--freq", "5min",
                 "--out", str(out), *MODEL])
    assert code == 0
    scores = pd.read_csv(out)
    assert len(scores) == 2 and (scores["test_MeanAbsolutePercentageError"] < 0.1).all()
    assert "mean:" in capsys.readouterr().out


def test_demo_forecasts_real_candles_from_an_installed_package(tmp_path, capsys):
    pytest.importorskip("backtesting")
    code = main(["demo", "--out", str(tmp_path), "--horizon", "5", "--samples", "4",
                 "--lookback", "100", *MODEL])
    assert code == 0
    assert "GOOG" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "forecast.csv", index_col=0, parse_dates=True)
    assert len(table) == 5 and table.index[0].dayofweek < 5
    assert (tmp_path / "forecast.png").is_file()


def test_info_prints_a_checkpoint_config(capsys):
    assert main(["info", *MODEL[:4]]) == 0
    out = capsys.readouterr().out
    assert "d_model = 32" in out and "s1_bits = 4" in out


@pytest.mark.parametrize("argv, message", [
    (["forecast", "--input", "missing.csv", "--horizon", "3"], "does not exist"),
    (["forecast", "--input", str(FIXTURES / "cases.json"), "--horizon", "3"],
     "expected a .csv or .parquet"),
    (["forecast", "--input", str(FIXTURES / "candles.csv"), "--horizon", "0"], "horizon"),
    (["forecast", "--input", str(FIXTURES / "candles.csv"), "--horizon", "3", "--model",
      "nowhere/at/all", "--tokenizer", "nowhere"], "does not exist"),
])
def test_bad_input_exits_2_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --out, forecast.csv, is not there yet
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse's own checks
        code = exit_info.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bad_values_in_the_file_are_named(tmp_path, capsys):
    candles = pd.read_csv(FIXTURES / "candles.csv")
    candles.loc[5, "high"] = 1.0  # below open and close
    candles.to_csv(tmp_path / "bad.csv", index=False)
    assert main(["forecast", "--input", str(tmp_path / "bad.csv"), "--horizon", "2",
                 "--out", str(tmp_path), *MODEL]) == 2
    assert "'high' at row 5" in capsys.readouterr().err


def test_help_is_available_for_every_command(capsys):
    for command in ("demo", "forecast", "sample", "evaluate", "info", "pretrain", "finetune"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
    assert "usage: kronos-sk finetune" in capsys.readouterr().out


def test_info_validates_the_checkpoint(tmp_path, capsys):
    import json
    import shutil
    model = tmp_path / "model"
    shutil.copytree(FIXTURES / "model", model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "s1_bits": 30}))
    assert main(["info", "--model", str(model), "--tokenizer", MODEL[3]]) == 2
    captured = capsys.readouterr()
    assert "'s1_bits' = 30 exceeds" in captured.err and "s1_bits" not in captured.out
    (model / "config.json").write_text(json.dumps({**config, "s1_bits": 5}))
    assert main(["info", "--model", str(model), "--tokenizer", MODEL[3]]) == 2
    assert "has shape" in capsys.readouterr().err


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """Exit status and stderr of one command; stderr must be at most one line."""
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) <= 1, err
    return code, err


def test_existing_outputs_are_refused_unless_overwrite(tmp_path, capsys):
    forecast = ["forecast", "--input", str(FIXTURES / "candles.csv"), "--horizon", "2",
                "--samples", "2", "--out", str(tmp_path), *MODEL]
    (tmp_path / "forecast.png").write_text("my chart")
    code, err = run_cli(forecast, capsys)
    assert code == 2 and "forecast.png' already exists; pass --overwrite" in err
    assert (tmp_path / "forecast.png").read_text() == "my chart"
    assert not (tmp_path / "forecast.csv").exists()
    assert run_cli([*forecast, "--overwrite"], capsys)[0] == 0
    assert (tmp_path / "forecast.png").stat().st_size > 10_000
    # Atomic writes leave no temporary file behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["forecast.csv", "forecast.png"]


def test_outputs_are_checked_before_anything_is_computed(tmp_path, capsys):
    # The model does not exist either: the output is named first, so nothing was loaded.
    bad_model = ["--model", str(tmp_path / "nowhere"), "--tokenizer", str(tmp_path / "nowhere")]
    (tmp_path / "taken.csv").write_text("x")
    cases = [
        (["forecast", "--out", str(tmp_path / "taken.csv")], "is a file, not a directory"),
        (["sample", "--out", str(tmp_path / "paths.txt")], "expected a file ending in .parquet"),
        (["sample", "--out", str(tmp_path)], "expected a file ending in .parquet"),
        (["sample", "--out", str(tmp_path / "taken.csv" / "paths.csv")], "is a file, not a"),
        (["sample", "--out", str(tmp_path / "taken.csv")], "already exists"),
        (["evaluate", "--out", str(tmp_path / "taken.csv")], "already exists"),
        (["evaluate", "--out", str(tmp_path / "scores.parquet")], "name a .csv file"),
    ]
    for command, message in cases:
        code, err = run_cli([command[0], "--input", str(FIXTURES / "candles.csv"), "--horizon",
                             "2", *command[1:], *bad_model], capsys)
        assert code == 2 and message in err, (command, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.csv"]


def test_a_missing_input_is_named_before_an_existing_output(tmp_path, capsys):
    (tmp_path / "forecast.csv").write_text("x")
    (tmp_path / "taken.csv").write_text("x")
    missing = str(tmp_path / "missing.csv")
    for command in (["forecast", "--out", str(tmp_path), "--no-chart"],
                    ["sample", "--out", str(tmp_path / "taken.csv")],
                    ["evaluate", "--out", str(tmp_path / "taken.csv")]):
        code, err = run_cli([command[0], "--input", missing, "--horizon", "2", *command[1:]],
                            capsys)
        assert code == 2 and f"input file {missing!r} does not exist" in err, (command, err)


def test_panel_problems_name_the_asset(tmp_path, capsys):
    candles = pd.read_csv(FIXTURES / "candles.csv")
    short = pd.concat([candles.iloc[:100].assign(asset="A"), candles.iloc[100:101].assign(
        asset="B")])
    short.to_csv(tmp_path / "short.csv", index=False)
    unnamed = pd.concat([candles.iloc[:100].assign(asset="A"), candles.iloc[100:200].assign(
        asset=None)])
    unnamed.to_csv(tmp_path / "unnamed.csv", index=False)
    for name, message in (("short.csv", "asset 'B' has 1 rows"),
                          ("unnamed.csv", "the asset name at row 100")):
        code, err = run_cli(["forecast", "--input", str(tmp_path / name), "--horizon", "2",
                             "--freq", "5min", "--out", str(tmp_path / "out"), *MODEL], capsys)
        assert code == 2 and message in err, err


def test_input_problems_are_named_precisely(tmp_path, capsys):
    candles = pd.read_csv(FIXTURES / "candles.csv").iloc[:100]
    mixed = candles.copy()
    mixed.loc[50, "timestamps"] += "+00:00"
    mixed.to_csv(tmp_path / "mixed.csv", index=False)
    for given, message in ((str(tmp_path), "is a directory; give a .csv or .parquet file"),
                           (str(tmp_path / "mixed.csv"),
                            "mixes time zones: row 50 (2025-03-04 09:45:00+00:00) is in time "
                            "zone UTC but row 0 (2025-03-03 09:35:00) is tz-naive")):
        code, err = run_cli(["forecast", "--input", given, "--horizon", "2", "--out",
                             str(tmp_path / "out"), *MODEL], capsys)
        assert code == 2 and message in err, err


def test_forecast_of_real_trading_days_has_no_weekend_rows(tmp_path, us_stocks_daily_file):
    frame = pd.read_parquet(us_stocks_daily_file)
    frame = frame[frame["asset"] == frame["asset"].iloc[0]].drop(columns="asset").iloc[-120:]
    frame.to_csv(tmp_path / "one_stock.csv", index=False)
    assert main(["forecast", "--input", str(tmp_path / "one_stock.csv"), "--horizon", "10",
                 "--samples", "2", "--no-chart", "--out", str(tmp_path), *MODEL]) == 0
    table = pd.read_csv(tmp_path / "forecast.csv", index_col=0, parse_dates=True)
    assert len(table) == 10 and (table.index.dayofweek < 5).all()


def test_evaluate_forecasts_from_the_candles_as_forecast_does(tmp_path, capsys):
    import warnings

    from sktime.performance_metrics.forecasting import MeanAbsolutePercentageError

    from kronos_sk.estimators import KronosForecaster
    out = tmp_path / "scores.csv"
    assert main(["evaluate", "--input", str(FIXTURES / "candles.csv"), "--horizon", "3",
                 "--initial", "400", "--folds", "2", "--samples", "5", "--seed", "7",
                 "--out", str(out), *MODEL]) == 0
    assert "candles (open, high, low, close, volume, amount); scores of the close" in \
        capsys.readouterr().out
    scores = pd.read_csv(out)
    # The first fold by hand: the six-column candles up to row 400, then the next 3 closes.
    candles = pd.read_csv(FIXTURES / "candles.csv", index_col=0, parse_dates=True)
    forecaster = KronosForecaster(model=MODEL[1], tokenizer=MODEL[3], max_context=128,
                                  n_samples=5, random_state=7)  # the CLI's top-p default
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        predicted = forecaster.fit(candles.iloc[:400]).predict(fh=candles.index[400:403])
    expected = MeanAbsolutePercentageError()(candles["close"].iloc[400:403], predicted["close"])
    assert scores["test_MeanAbsolutePercentageError"][0] == pytest.approx(expected, rel=1e-6)
