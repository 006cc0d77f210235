"""The same candles and random_state give bit-identical paths through every face."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kronos_sk import KronosForecaster, KronosPipeline
from kronos_sk.cli import main

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "kronos-compat"
MODEL, TOKENIZER = str(FIXTURES / "model"), str(FIXTURES / "tokenizer")
SETTINGS = dict(n_samples=4, top_p=0.9, random_state=7)


def candles() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "candles.csv", index_col=0, parse_dates=True)


@pytest.mark.parametrize("prefill, valid, stratified", [
    ("float32", True, True), ("bfloat16", True, True), ("float32", False, True),
    ("float32", True, False)])
@pytest.mark.filterwarnings("ignore:.*bfloat16")
def test_pipeline_forecaster_and_cli_give_the_same_paths(tmp_path, monkeypatch, prefill,
                                                         valid, stratified):
    from kronos_sk import pipeline
    real, seen = pipeline.forecast_paths, []

    def recorded(*args, **kwargs):  # the real generation, its precision noted
        seen.append((kwargs["prefill_precision"], kwargs["valid_candles"],
                     kwargs["stratified"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "forecast_paths", recorded)
    settings = {**SETTINGS, "prefill_precision": prefill, "valid_candles": valid,
                "stratified": stratified}
    frame = candles()
    panel = {"A": frame.iloc[:90], "B": frame.iloc[30:120]}
    future = [frame.index[90:96], frame.index[120:126]]
    pipe = KronosPipeline.from_pretrained(MODEL, TOKENIZER, max_context=128)
    piped = pipe.sample(panel, future=future, **settings).paths  # (2, 4, 6, 6)

    for position, (asset, context) in enumerate(panel.items()):
        alone = pipe.sample({asset: context}, future=future[position], **settings).paths
        np.testing.assert_array_equal(alone[0], piped[position])  # batch-independent
        forecaster = KronosForecaster(model=MODEL, tokenizer=TOKENIZER, max_context=128,
                                      **settings)
        y = pd.concat({asset: context}, names=["asset", "timestamp"])
        sampled = forecaster.fit(y).sample(fh=future[position])
        values = sampled.to_numpy().reshape(4, 6, 6)  # (sample, time, column)
        np.testing.assert_array_equal(values, piped[position])

    single = frame.iloc[:90]
    path = tmp_path / "candles.csv"
    single.rename_axis("timestamp").to_csv(path)
    out = tmp_path / "paths.parquet"
    assert main(["sample", "--input", str(path), "--horizon", "6", "--out", str(out),
                 "--model", MODEL, "--tokenizer", TOKENIZER, "--max-context", "128",
                 "--samples", "4", "--top-p", "0.9", "--seed", "7", "--freq", "5min",
                 "--prefill-precision", prefill] + ([] if valid else ["--raw-candles"])
                + ([] if stratified else ["--independent-paths"])) in (0, None)
    cli = pd.read_parquet(out)
    fh = pd.date_range(single.index[-1], periods=7, freq="5min")[1:]
    forecaster = KronosForecaster(model=MODEL, tokenizer=TOKENIZER, max_context=128,
                                  **settings).fit(single)
    expected = forecaster.sample(fh=fh).to_numpy().reshape(4, 6, 6)
    columns = ["open", "high", "low", "close", "volume", "amount"]
    np.testing.assert_array_equal(cli[columns].to_numpy().reshape(4, 6, 6), expected)
    assert seen and set(seen) == {(prefill, valid, stratified)}  # every face passed them on
    seen.clear()
    pipe.calibrate(panel, horizon=6, n_samples=4, random_state=7, prefill_precision=prefill,
                   stratified=stratified)  # its backtests draw as the forecasts do
    assert seen and set(seen) == {(prefill, True, stratified)}
    assert (piped[..., 4:] < 0).any() == (not valid)  # raw decoding: negative volumes


def test_the_pipeline_reads_the_quantiles_the_forecaster_returns_of_the_same_paths():
    frame = candles()
    context, future = frame.iloc[:90], frame.index[90:96]
    settings = dict(n_samples=20, random_state=3)  # 20: linear interpolation reads otherwise
    levels = [0.05, 0.5, 0.95]
    pipe = KronosPipeline.from_pretrained(MODEL, TOKENIZER, max_context=128)
    forecast = pipe.sample({"A": context}, future=[future], **settings)
    table = forecast.quantiles(levels)
    forecaster = KronosForecaster(model=MODEL, tokenizer=TOKENIZER, max_context=128,
                                  **settings)
    y = pd.concat({"A": context}, names=["asset", "timestamp"])  # the same seed as "A"
    returned = forecaster.fit(y).predict_quantiles(fh=future, alpha=levels)
    for column in ("open", "close", "volume"):
        for level in levels:
            np.testing.assert_array_equal(table[f"{column}_q{level:g}"].to_numpy(),
                                          returned[(column, level)].to_numpy())
    linear = np.quantile(forecast.paths[0, :, :, 3], 0.05, axis=0)
    assert not np.allclose(linear, table["close_q0.05"].to_numpy())
