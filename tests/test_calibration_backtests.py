"""The calibration backtests next to PathCalibration: windows, arrived truth, the pipeline."""

import numpy as np
import pandas as pd
import pytest

from kronos_sk.calibration import arrived_truth, backtest_windows
from kronos_sk.data import assemble_features
from kronos_sk.estimators import KronosForecaster
from kronos_sk.pipeline import KronosPipeline


def test_backtest_windows_end_before_their_truth(compat_candles):
    frames = [compat_candles.iloc[:60], compat_candles.iloc[100:130]]
    contexts, futures, truths, keys, origins = backtest_windows(
        frames, [("a", None), ("b", None)], 5, origins=3)
    assert [len(c) for c in contexts] == [55, 50, 45, 25, 20]  # 30 rows: 2 origins fit
    assert list(origins) == [0, 1, 2, 0, 1]
    assert keys[0] == repr(("calibration", "a", None, 0)) and truths.shape == (5, 5, 6)
    for context, future, truth, frame in zip(contexts, futures, truths,
                                             [frames[0]] * 3 + [frames[1]] * 2):
        n = len(context)
        assert future.equals(frame.index[n:n + 5])
        np.testing.assert_array_equal(truth, assemble_features(frame.iloc[n:n + 5]))
    with pytest.raises(ValueError, match="needs series of at least 21 rows"):
        backtest_windows([compat_candles.iloc[:20]], [(None, None)], 5)


def test_arrived_truth_finds_the_grid_wherever_the_rows_sit(compat_candles):
    grids = [compat_candles.index[80:84], compat_candles.index[200:204]]
    rows, truth = arrived_truth(grids, [compat_candles.iloc[:83], compat_candles.iloc[:150]])
    assert list(rows) == [0] and truth.shape == (1, 3, 6)  # 3 of the 4 stamps arrived
    np.testing.assert_array_equal(truth[0], assemble_features(compat_candles.iloc[80:83]))
    rows, truth = arrived_truth(grids, [compat_candles.iloc[:10]] * 2)
    assert len(rows) == 0


def test_the_pipeline_calibrates_as_the_forecaster_does(compat_dir, compat_candles):
    y = compat_candles.iloc[:120]
    settings = dict(n_samples=9, top_p=0.95, random_state=0)
    forecaster = KronosForecaster(model=str(compat_dir / "model"),
                                  tokenizer=str(compat_dir / "tokenizer"), max_context=128,
                                  calibration="conformal", calibration_origins=4,
                                  calibration_stride=2, horizon=4, **settings).fit(y)
    pipe = KronosPipeline.from_pretrained(compat_dir / "model", compat_dir / "tokenizer",
                                          max_context=128)
    calibration = pipe.calibrate(y, 4, origins=4, stride=2, **settings)
    np.testing.assert_array_equal(calibration.price_scale, forecaster.calibration_.price_scale)
    assert calibration.n_windows == forecaster.calibration_.n_windows == 4
    paths = calibration.apply(pipe.sample(y, 4, **settings).paths)
    assert paths.shape == (1, 9, 4, 6) and np.isfinite(paths).all()


def test_a_column_that_is_not_a_positive_price_is_calibrated_in_its_own_space(compat_dir):
    # Daily returns and an all-negative spread, forecast as flat series with calibration:
    # finite, sensible numbers (before: inf and 2e32 from logs of values clipped to 1e-12).
    # A price-space checkpoint (the bundled one reads log prices and refuses them).
    r = np.random.default_rng(0).normal(0, .01, 100)
    index = pd.date_range("2024-01-01", periods=100)
    settings = dict(n_samples=16, random_state=0, calibration="conformal",
                    calibration_origins=4, horizon=3, model=compat_dir / "model",
                    tokenizer=compat_dir / "tokenizer")
    returns = KronosForecaster(**settings).fit(pd.DataFrame({"x": r}, index=index))
    q = returns.predict_quantiles(fh=[1, 2, 3], alpha=[0.05, 0.95]).to_numpy()
    assert np.isfinite(q).all() and np.abs(q).max() < 0.5
    assert returns.calibration_.price_space == "linear"
    spread = pd.DataFrame({"x": -50 + np.cumsum(r)}, index=index)
    calibrated = KronosForecaster(**settings).fit(spread)
    plain = KronosForecaster(**{**settings, "calibration": None}).fit(spread)
    factor = calibrated.calibration_.price_scale[-1]
    assert calibrated.calibration_.price_space == "linear" and factor != 1.0
    ratio = calibrated.predict_var(fh=[3]).iloc[0, 0] / plain.predict_var(fh=[3]).iloc[0, 0]
    assert ratio != pytest.approx(1.0, rel=1e-3)  # its spread did change
    if calibrated.calibration_.price_tail == 0:  # one width: the variance scales with it
        assert ratio == pytest.approx(factor ** 2, rel=1e-3)


@pytest.mark.filterwarnings("ignore::kronos_sk.lookahead.LookAheadWarning")  # 2017: validation
def test_paths_that_carry_the_models_own_spread_are_checked_origin_against_origin(
        us_stocks_daily_file, compat_dir):
    # The bundled model brings a spread fitted on 1,280 windows of many dates: its
    # calibration from two backtest origins is kept only where it carries over from one
    # to the other. A released checkpoint (no spread of its own), or the raw decoding,
    # is calibrated from the backtests as they are.
    frame = pd.read_parquet(us_stocks_daily_file)
    frame = frame[frame["asset"].isin(["AAPL", "MSFT", "XOM", "JNJ"])
                  & frame["timestamp"].between("2017-01-01", "2017-06-30")]
    y = frame.set_index(["asset", "timestamp"])[["open", "high", "low", "close", "volume"]]
    settings = dict(n_samples=8, random_state=0, calibration="conformal", horizon=5)
    bundled = KronosForecaster(**settings).fit(y).calibration_
    assert isinstance(bundled.price_carried_over, bool)
    assert isinstance(bundled.volume_carried_over, bool)
    if not bundled.price_carried_over:
        np.testing.assert_array_equal(bundled.price_scale, 1.0)
    raw = KronosForecaster(**settings, valid_candles=False).fit(y).calibration_
    released = KronosForecaster(**settings, model=compat_dir / "model",
                                tokenizer=compat_dir / "tokenizer", max_context=128).fit(y)
    assert raw.price_carried_over is None
    assert released.calibration_.price_carried_over is None
