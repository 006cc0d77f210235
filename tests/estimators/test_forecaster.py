"""KronosForecaster: parity through the public API, probabilistic output, panels, training."""

import json
import warnings
import re
import pickle
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sktime.forecasting.base import ForecastingHorizon

from kronos_sk.calibration import backtest_windows
from kronos_sk.estimators import KronosForecaster
from kronos_sk.data.validation import make_candles_valid

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kronos-compat"
CASES = json.loads((FIXTURES / "cases.json").read_text())


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "candles.csv", index_col=0, parse_dates=True)


def fixture_forecaster(**params) -> KronosForecaster:
    defaults = dict(model=str(FIXTURES / "model"), tokenizer=str(FIXTURES / "tokenizer"),
                    max_context=128, n_samples=8, top_p=0.95, random_state=0,
                    precision="float32", prefill_precision="float32")  # golden values

    return KronosForecaster(**{**defaults, **params})


@pytest.mark.parametrize("case", CASES["cases"], ids=lambda c: c["expected"])
def test_greedy_forecast_reproduces_reference(case, candles):
    expected = pd.read_csv(FIXTURES / case["expected"], index_col=0, parse_dates=True)
    # Made valid as every sampled path is (open and close as they are).
    expected[:] = make_candles_valid(expected.to_numpy(copy=True))
    forecaster = fixture_forecaster(n_samples=1, temperature=1.0, top_k=1, top_p=1.0)
    forecaster.fit(candles.iloc[:case["context_rows"]])
    predicted = forecaster.predict(fh=expected.index)
    np.testing.assert_allclose(predicted.to_numpy(), expected.to_numpy(), rtol=1e-4)
    assert list(predicted.columns) == list(expected.columns)


def test_every_probabilistic_output_comes_from_the_same_paths(candles):
    forecaster = fixture_forecaster().fit(candles.iloc[:80])
    fh = candles.index[80:86]
    paths = forecaster.sample(fh)
    assert paths.shape == (8 * 6, 6)
    mean = paths.groupby(level=1).mean()
    pd.testing.assert_frame_equal(forecaster.predict(fh), mean, check_names=False,
                                  check_freq=False)
    # The variance of the paths, accumulated in float64 (pandas' float32 one is off by ~1e-4).
    variance = paths.astype(np.float64).groupby(level=1).var(ddof=0)
    np.testing.assert_allclose(forecaster.predict_var(fh).to_numpy(), variance.to_numpy(),
                               rtol=1e-6)
    quantiles = forecaster.predict_quantiles(fh, alpha=[0.1, 0.5, 0.9])
    close = paths["close"].unstack(level=0).to_numpy()  # (time, sample)
    for alpha in (0.1, 0.5, 0.9):
        q = quantiles[("close", alpha)].to_numpy()
        below = (close <= q[:, None] + 1e-9).mean(axis=1)
        assert (below >= alpha - 1e-9).all()  # a quantile of the empirical distribution
        assert (np.abs(close - q[:, None]).min(axis=1) < 1e-4).all()  # one of the paths
    interval = forecaster.predict_interval(fh, coverage=0.8)
    np.testing.assert_allclose(interval[("close", 0.8, "lower")], quantiles[("close", 0.1)])
    np.testing.assert_allclose(interval[("close", 0.8, "upper")], quantiles[("close", 0.9)])
    proba = forecaster.predict_proba(fh)
    np.testing.assert_allclose(proba.mean().to_numpy(), mean.to_numpy(), rtol=1e-6)


def test_volatility_is_the_sum_of_squared_log_returns_of_sampled_closes(candles):
    context = candles.iloc[:80]
    forecaster = fixture_forecaster().fit(context)
    fh = candles.index[80:86]
    closes = forecaster.sample(fh)["close"].unstack(level=1).to_numpy()  # (sample, time)
    closes = np.column_stack([np.full(len(closes), context["close"].iloc[-1]), closes])
    rv = (np.diff(np.log(closes), axis=1) ** 2).sum(axis=1)
    table = forecaster.predict_volatility(fh, quantiles=(0.5,))
    assert table["mean"].iloc[0] == pytest.approx(rv.mean())
    assert_sample_median(table["q0.5"].iloc[0], rv)


def assert_sample_median(value: float, values: np.ndarray) -> None:
    """`value` is skpro's median of `values` as equally weighted samples (`Empirical`),
    the quantile every output of the forecaster gives."""
    from skpro.distributions import Empirical
    samples = pd.DataFrame({"v": values}, index=pd.MultiIndex.from_product(
        [range(len(values)), [0]]))
    median = Empirical(spl=samples, index=pd.RangeIndex(1), columns=["v"]).ppf(0.5)
    assert value == pytest.approx(float(median.iloc[0, 0]), rel=1e-12)


def test_random_state_makes_paths_reproducible_and_seeds_matter(candles):
    fh = candles.index[64:70]
    a = fixture_forecaster(random_state=1).fit(candles.iloc[:64]).sample(fh)
    b = fixture_forecaster(random_state=1).fit(candles.iloc[:64]).sample(fh)
    c = fixture_forecaster(random_state=2).fit(candles.iloc[:64]).sample(fh)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a.to_numpy(), c.to_numpy())


def _panel(candles, lengths) -> pd.DataFrame:
    frames = {f"asset{i}": candles.iloc[200 - n:200] for i, n in enumerate(lengths)}
    return pd.concat(frames, names=["asset", "timestamp"])


def test_unequal_panel_is_batched_and_equals_each_series_alone(candles):
    panel = _panel(candles, [64, 100, 150])
    fh = candles.index[200:206]
    forecaster = fixture_forecaster().fit(panel)
    together = forecaster.predict(fh)
    assert together.index.nlevels == 2 and len(together) == 3 * 6
    for asset, frame in panel.groupby(level="asset"):
        single = pd.concat({asset: frame.droplevel(0)}, names=["asset", "timestamp"])
        alone = fixture_forecaster().fit(single).predict(fh)
        np.testing.assert_allclose(together.loc[asset].to_numpy(), alone.loc[asset].to_numpy(),
                                   rtol=1e-5)


def test_update_appends_the_new_candles_to_the_context(candles):
    fh = candles.index[90:94]
    updated = fixture_forecaster().fit(candles.iloc[:80])
    updated.update(candles.iloc[80:90], update_params=False)
    refit = fixture_forecaster().fit(candles.iloc[:90])
    pd.testing.assert_frame_equal(updated.predict(fh), refit.predict(fh))


def test_relative_horizon_uses_the_index_frequency():
    index = pd.date_range("2024-01-01", periods=60, freq="h")
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 60)))
    y = pd.DataFrame({"Open": close, "High": close * 1.01, "Low": close * 0.99,
                      "Close": close}, index=index)
    predicted = fixture_forecaster().fit(y).predict(fh=[1, 2, 3])
    assert list(predicted.index) == list(pd.date_range("2024-01-03 12:00", periods=3, freq="h"))
    assert list(predicted.columns) == ["Open", "High", "Low", "Close"]


def test_relative_horizon_follows_the_observed_session_calendar(candles):
    # Two days of 5-minute A-share bars with a lunch break and no pandas frequency: the
    # next session rows after 11:30 are 13:05 and 13:10, and calendar_ says what was read.
    end = candles.index.get_loc(pd.Timestamp("2025-03-05 11:30"))
    forecaster = fixture_forecaster(n_samples=2).fit(candles.iloc[:end + 1])
    assert candles.index[:end + 1].freq is None
    predicted = forecaster.predict(fh=[1, 2])
    assert list(predicted.index) == list(candles.index[end + 1:end + 3])
    assert predicted.index[0] == pd.Timestamp("2025-03-05 13:05")
    assert forecaster.calendar_ == {"y": "every 5min, 48 times of day from "
                                         "09:35 to 15:00 (observed)"}


def test_relative_horizon_where_no_calendar_can_be_read_is_a_clear_error(candles):
    stamps = pd.DatetimeIndex(np.cumsum(np.arange(1, 65)) * pd.Timedelta(minutes=1)
                              + pd.Timestamp("2025-03-03 09:30"))
    forecaster = fixture_forecaster().fit(candles.iloc[:64].set_axis(stamps))
    with pytest.raises(ValueError, match="relative fh needs a calendar.*pass freq="):
        forecaster.predict(fh=[1, 2])


def test_absolute_horizon_across_the_lunch_break(candles):
    # The context ends at 11:30; the next rows of the session are 13:05, 13:10, ...
    end = candles.index.get_loc(pd.Timestamp("2025-03-03 11:30"))
    future = candles.index[end + 1:end + 4]
    assert future[0] == pd.Timestamp("2025-03-03 13:05")
    forecaster = fixture_forecaster(n_samples=1, top_k=1).fit(candles.iloc[:end + 1])
    predicted = forecaster.predict(fh=future)
    assert list(predicted.index) == list(future)


def test_univariate_series_are_forecast_as_flat_candles():
    y = pd.Series(100 + np.cumsum(np.random.default_rng(1).normal(0, 1, 50)),
                  index=pd.period_range("2020-01", periods=50, freq="M"), name="price")
    predicted = fixture_forecaster().fit(y).predict(fh=[1, 2, 3])
    assert isinstance(predicted, pd.Series) and len(predicted) == 3
    assert np.isfinite(predicted.to_numpy()).all()


def test_bad_candles_name_the_problem(candles):
    with pytest.raises(ValueError, match=r"\['low'\]"):
        fixture_forecaster().fit(candles.drop(columns="low").iloc[:64])
    with pytest.raises(ValueError, match="'note'"):
        fixture_forecaster().fit(candles.iloc[:64].assign(note=1.0))
    broken = candles.iloc[:64].copy()
    broken.iloc[10, broken.columns.get_loc("high")] = np.inf
    with pytest.raises(ValueError, match=r"'high' at row 10 .* is inf"):
        fixture_forecaster().fit(broken)
    broken.iloc[10, broken.columns.get_loc("high")] = np.nan  # before sktime's own check
    with pytest.raises(ValueError, match=r"y: column 'high' at row 10 \(2025-03-03 10:25:00\) "
                                         r"is NaN"):
        fixture_forecaster().fit(broken)
    with pytest.raises(ValueError, match="fit_strategy"):
        fixture_forecaster(fit_strategy="finetune").fit(candles.iloc[:64])


def test_rows_newest_first_are_named_before_sktimes_own_check(candles):
    # a vendor's newest-first table: sktime's check would answer with every mtype it tried
    newest_first = candles.iloc[:64].iloc[::-1]
    expected = (f"y: timestamps are not sorted: row 1 ({candles.index[62]}) comes after "
                f"row 0 ({candles.index[63]}); sort with frame.sort_index()")
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        fixture_forecaster().fit(newest_first)
    fitted = fixture_forecaster().fit(candles.iloc[:64])
    with pytest.raises(ValueError, match=r"^y: timestamps are not sorted: row 1 "):
        fitted.update(candles.iloc[64:68].iloc[::-1], update_params=False)


def test_input_is_not_modified(candles):
    context = candles.iloc[:64].copy()
    before = context.copy()
    fixture_forecaster().fit(context).predict(fh=candles.index[64:66])
    pd.testing.assert_frame_equal(context, before)


def test_clone_pickle_and_joblib_keep_fitted_weights(candles, tmp_path):
    fh = candles.index[64:68]
    fitted = fixture_forecaster().fit(candles.iloc[:64])
    expected = fitted.predict(fh)
    restored = pickle.loads(pickle.dumps(fitted))
    pd.testing.assert_frame_equal(restored.predict(fh), expected)
    joblib.dump(fitted, tmp_path / "f.joblib")
    pd.testing.assert_frame_equal(joblib.load(tmp_path / "f.joblib").predict(fh), expected)
    cloned = clone(fitted).fit(candles.iloc[:64])
    assert cloned.predictor_ is fitted.predictor_  # shared from the weight cache
    pd.testing.assert_frame_equal(cloned.predict(fh), expected)


def test_fine_tune_trains_a_copy_and_lowers_the_loss(candles):
    base = fixture_forecaster().fit(candles.iloc[:150])
    tuned = fixture_forecaster(fit_strategy="fine-tune", max_steps=30, learning_rate=3e-3,
                               lookback=48, horizon=8, batch_size=8).fit(candles.iloc[:150])
    assert tuned.predictor_ is not base.predictor_
    first, last = np.mean(tuned.loss_curve_[:5]), np.mean(tuned.loss_curve_[-5:])
    assert last < first
    np.testing.assert_array_equal(  # the shared cached weights are untouched
        base.predictor_.head.proj_s1.weight.detach().numpy(),
        fixture_forecaster().fit(candles.iloc[:64]).predictor_.head.proj_s1.weight.detach())


def test_pretrain_then_fit_on_a_new_series(candles):
    from sktime.exceptions import NotFittedError
    params = KronosForecaster.get_test_params()[0]
    forecaster = KronosForecaster(**params)
    forecaster.pretrain(_panel(candles, [60, 80]))
    with pytest.raises(NotFittedError):
        forecaster.predict(fh=candles.index[200:202])
    pretrained = forecaster.predictor_
    forecaster.fit(candles.iloc[:64])
    assert forecaster.predictor_ is pretrained
    assert forecaster.predict(fh=candles.index[64:66]).shape == (2, 6)


def test_forecasts_do_not_depend_on_the_price_unit_below_one(candles):
    # The reference's fixed 1e-5 floor on the std would flatten prices quoted near 1e-7; with
    # the level-relative floor, quoting in 1e-6 times the unit scales the forecast by 1e-6.
    def quoted(factor: float) -> pd.DataFrame:
        scaled = candles.iloc[:120].copy()
        scaled[["open", "high", "low", "close"]] *= factor
        return scaled

    def bands(factor: float) -> pd.DataFrame:
        forecaster = fixture_forecaster(freq="5min").fit(quoted(factor))
        return forecaster.predict_quantiles(fh=list(range(1, 9)), alpha=[0.1, 0.9])

    cents, tiny = bands(1e-2), bands(1e-8)
    prices = [c for c in cents.columns if c[0] in ("open", "high", "low", "close")]
    np.testing.assert_allclose(tiny[prices].to_numpy() * 1e6, cents[prices].to_numpy(),
                               rtol=1e-3)
    band = (tiny[("close", 0.9)] - tiny[("close", 0.1)]) / tiny[("close", 0.9)]
    assert band.between(1e-4, 0.5).all()


@pytest.mark.parametrize("seed", ["abc", 1.5, -1, True, 2**32])
def test_bad_random_state_is_refused_at_fit(candles, seed):
    with pytest.raises(ValueError, match=r"'random_state' parameter of KronosForecaster must "
                                         r"be an int in the range \[0, 4294967296\) or None\. "
                                         rf"Got {re.escape(repr(seed))} instead"):
        fixture_forecaster(random_state=seed).fit(candles.iloc[:80])


def test_update_that_would_move_the_cutoff_back_is_refused(candles):
    forecaster = fixture_forecaster().fit(candles.iloc[:80])
    cutoff = forecaster.cutoff
    with pytest.raises(ValueError, match=r"update: y ends at .* before the cutoff"):
        forecaster.update(candles.iloc[40:50], update_params=False)
    assert forecaster.cutoff.equals(cutoff)
    # Resending seen rows with new ones, as sktime's backtests do, is fine.
    forecaster.update(candles.iloc[:90], update_params=False)
    assert forecaster.cutoff[0] == candles.index[89]


# ---------------------------------------------------------------- one generation per state
PATHS_767EAE1 = FIXTURES.parent / "paths_767eae1.csv"


@pytest.fixture
def generations(monkeypatch):
    """The n_samples of every call of the real generation function (which still runs)."""
    from kronos_sk import pipeline as module
    real, calls = module.forecast_paths, []

    def counted(*args, **kwargs):
        calls.append(kwargs["n_samples"])
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "forecast_paths", counted)
    return calls


def _every_output(forecaster, fh) -> dict:
    proba = forecaster.predict_proba(fh)
    return {"predict": forecaster.predict(fh),
            "quantiles": forecaster.predict_quantiles(fh, alpha=[0.1, 0.5, 0.9]),
            "interval": forecaster.predict_interval(fh, coverage=[0.5, 0.9]),
            "var": forecaster.predict_var(fh),
            "proba": proba.spl, "proba_mean": proba.mean(),
            "volatility": forecaster.predict_volatility(fh),
            "sample": forecaster.sample(fh)}


def test_every_output_on_one_fh_shares_one_generation(candles, generations):
    panel, fh = _panel(candles, [64, 100, 150]), candles.index[200:206]
    shared = _every_output(fixture_forecaster().fit(panel), fh)
    assert generations == [8]  # seven methods, one generation
    for name, output in shared.items():  # each equals a fresh forecaster's own generation
        fresh = _every_output(fixture_forecaster().fit(panel), fh)[name]
        pd.testing.assert_frame_equal(output, fresh, check_exact=True)
    assert len(generations) == 1 + len(shared)


def test_kept_paths_follow_the_forecast_state(candles, generations):
    fh, other = candles.index[80:84], candles.index[80:86]
    forecaster = fixture_forecaster().fit(candles.iloc[:80])
    first = forecaster.predict(fh)
    forecaster.predict(other)
    assert len(generations) == 2  # another fh samples again (only the last paths are kept)
    pd.testing.assert_frame_equal(forecaster.predict(fh), first, check_exact=True)
    assert len(generations) == 3

    forecaster.temperature = 0.5  # a sampling setting changed without set_params
    cooler = forecaster.predict(fh)
    assert len(generations) == 4
    pd.testing.assert_frame_equal(
        cooler, fixture_forecaster(temperature=0.5).fit(candles.iloc[:80]).predict(fh),
        check_exact=True)

    forecaster.set_params(temperature=1.0, n_samples=3).fit(candles.iloc[:80])
    assert forecaster.sample(fh).shape == (3 * 4, 6)
    assert generations[-1] == 3

    fh = candles.index[84:88]
    forecaster.predict(fh)
    forecaster.update(candles.iloc[80:84], update_params=False)  # same fh, new context
    pd.testing.assert_frame_equal(
        forecaster.predict(fh),
        fixture_forecaster(n_samples=3).fit(candles.iloc[:84]).predict(fh), check_exact=True)

    forecaster.fit(candles.iloc[:70])
    calls = len(generations)
    pd.testing.assert_frame_equal(
        forecaster.predict(candles.index[70:74]),
        fixture_forecaster(n_samples=3).fit(candles.iloc[:70]).predict(candles.index[70:74]),
        check_exact=True)
    assert len(generations) == calls + 2  # ours after the refit, and the fresh one's

    restored = pickle.loads(pickle.dumps(forecaster))  # pickles leave the paths out
    from kronos_sk.estimators.forecaster import _KEPT_PATHS
    assert restored not in _KEPT_PATHS
    pd.testing.assert_frame_equal(restored.predict(candles.index[70:74]),
                                  forecaster.predict(candles.index[70:74]), check_exact=True)
    assert len(generations) == calls + 3


def test_paths_are_those_sampled_before_the_paths_were_kept(candles):
    # Written by 767eae1 (the commit before this cache) for the same panel and seed, with
    # one series sliding past max_context=128 (exact sliding), with independent paths.
    expected = pd.read_csv(PATHS_767EAE1, index_col=[0, 1, 2], parse_dates=["timestamp"])
    # 767eae1 returned raw decoded candles; paths are made valid since (open, close kept).
    expected[:] = make_candles_valid(expected.to_numpy(copy=True))
    panel = pd.concat({"asset0": candles.iloc[136:200], "asset1": candles.iloc[70:200]},
                      names=["asset", "timestamp"])
    forecaster = fixture_forecaster(n_samples=3, random_state=7, stratified=False).fit(panel)
    paths = forecaster.sample(candles.index[200:204])
    assert list(paths.index) == list(expected.index) and paths.shape == (24, 6)
    np.testing.assert_allclose(paths.to_numpy(), expected.to_numpy(np.float32), rtol=1e-5)


def test_numpy_reductions_equal_skpro_on_the_same_samples(candles):
    from skpro.distributions import Empirical
    panel = _panel(candles, [64, 100])
    fh = candles.index[200:204]
    forecaster = fixture_forecaster(n_samples=10).fit(panel)
    samples = forecaster.sample(fh)
    reference = Empirical(spl=samples, index=forecaster.predict(fh).index,
                          columns=samples.columns)  # skpro sorts the samples itself
    alpha = [0.05, 0.1, 0.3, 0.5, 0.9, 0.99]
    pd.testing.assert_frame_equal(forecaster.predict_quantiles(fh, alpha=alpha),
                                  reference.quantile(alpha), check_exact=True)
    pd.testing.assert_frame_equal(forecaster.predict(fh), reference.mean(), rtol=1e-6)
    pd.testing.assert_frame_equal(forecaster.predict_var(fh), reference.var(), rtol=1e-3)
    proba = forecaster.predict_proba(fh)  # its sorted cache comes from numpy
    level = forecaster.predict(fh) * 1.001
    pd.testing.assert_frame_equal(proba.cdf(level), reference.cdf(level), check_exact=True)
    pd.testing.assert_frame_equal(proba.ppf(level * 0 + 0.3), reference.ppf(level * 0 + 0.3),
                                  check_exact=True)
    pd.testing.assert_frame_equal(proba.energy(), reference.energy(), check_exact=True)


def test_volatility_of_flat_series_from_their_sampled_values():
    index = pd.date_range("2024-01-01", periods=60, freq="D")
    rng = np.random.default_rng(3)
    y = pd.DataFrame({"a": 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 60))),
                      "b": 50 * np.exp(np.cumsum(rng.normal(0, 0.02, 60)))}, index=index)
    forecaster = fixture_forecaster().fit(y)
    table = forecaster.predict_volatility(fh=[1, 2, 3], quantiles=(0.5,))
    samples = forecaster.sample(fh=[1, 2, 3])
    for column in ("a", "b"):
        closes = samples[column].unstack(level=1).to_numpy(np.float64)  # (sample, time)
        closes = np.column_stack([np.full(len(closes), y[column].iloc[-1]), closes])
        rv = (np.diff(np.log(closes), axis=1) ** 2).sum(axis=1)
        assert table.loc[(None, column), "mean"] == pytest.approx(rv.mean(), rel=1e-12)
        assert_sample_median(table.loc[(None, column), "q0.5"], rv)


def calibrated(**params) -> KronosForecaster:
    settings = dict(n_samples=21, calibration="conformal", calibration_origins=6,
                    calibration_stride=2, horizon=4)
    return fixture_forecaster(**{**settings, **params})


def test_calibrated_outputs_describe_one_set_of_paths_around_the_same_median(candles):
    fh = candles.index[120:124]
    plain = fixture_forecaster(n_samples=21).fit(candles.iloc[:120])
    forecaster = calibrated().fit(candles.iloc[:120])
    scales = forecaster.calibration_.price_scale
    assert scales.shape == (4,) and not np.allclose(scales, 1.0)
    assert forecaster.calibration_.n_windows == 6 and forecaster.calibration_seconds_ > 0
    paths = forecaster.sample(fh)
    pd.testing.assert_frame_equal(forecaster.predict(fh), paths.groupby(level=1).mean(),
                                  check_names=False, check_freq=False)
    variance = paths.astype(np.float64).groupby(level=1).var(ddof=0)
    np.testing.assert_allclose(forecaster.predict_var(fh).to_numpy(), variance.to_numpy(),
                               rtol=1e-6)
    quantiles = forecaster.predict_quantiles(fh, alpha=[0.05, 0.25, 0.5, 0.75, 0.95])
    close = quantiles["close"].to_numpy()
    assert (np.diff(close, axis=1) >= 0).all()  # monotone in alpha
    np.testing.assert_allclose(forecaster.predict(fh)["close"], plain.predict(fh)["close"],
                               rtol=1e-5)  # the point forecast (the mean) stays
    interval = forecaster.predict_interval(fh, coverage=0.9)
    np.testing.assert_allclose(interval[("close", 0.9, "lower")], quantiles[("close", 0.05)])
    proba = forecaster.predict_proba(fh)
    np.testing.assert_allclose(proba.mean().to_numpy(), forecaster.predict(fh).to_numpy(),
                               rtol=1e-5)
    width = (quantiles[("close", 0.95)] - quantiles[("close", 0.05)]).to_numpy()
    plain_q = plain.predict_quantiles(fh, alpha=[0.05, 0.95])
    plain_width = (plain_q[("close", 0.95)] - plain_q[("close", 0.05)]).to_numpy()
    # At the horizon the spread is the model's times the last factor (the tail widens the
    # outer quantiles further).
    ratio = width[-1] / plain_width[-1]
    assert scales[-1] * 0.95 <= ratio <= scales[-1] * (1.05 + forecaster.calibration_.price_tail)

    def envelope(paths):  # per row: whether high and low bound open and close
        return ((paths["high"] >= paths[["open", "close"]].max(axis=1))
                & (paths["low"] <= paths[["open", "close"]].min(axis=1))).to_numpy()

    np.testing.assert_array_equal(envelope(paths), envelope(plain.sample(fh)))


def test_calibration_backtests_see_only_rows_before_their_origin(candles):
    forecaster = calibrated().fit(candles.iloc[:120])
    contexts, futures, truths, _, _ = backtest_windows(
        [s.candles for s in forecaster._contexts], [(None, None)], 4, origins=6, stride=2)
    values = candles.iloc[:120].to_numpy(np.float32)
    assert [len(c) for c in contexts] == [116, 114, 112, 110, 108, 106]
    for context, future, truth in zip(contexts, futures, truths):
        np.testing.assert_array_equal(np.concatenate([context.to_numpy(np.float32), truth]),
                                      values[:len(context) + 4])
        assert future.equals(candles.index[len(context):len(context) + 4])
    # Rows after an origin change only that origin's truth: its context, hence its paths,
    # are those of a series cut at the origin.
    changed = candles.iloc[:120].copy()
    changed.iloc[110:] *= 1.5
    cut = backtest_windows([changed], [(None, None)], 4, origins=6, stride=2)[0]
    for original, other in zip(contexts[3:], cut[3:]):
        pd.testing.assert_frame_equal(original, other)


def test_update_refreshes_the_calibration_from_the_arrived_truth(candles, generations):
    forecaster = calibrated().fit(candles.iloc[:120])
    before = forecaster.calibration_
    forecaster.predict_interval(fh=candles.index[120:124], coverage=0.8)
    calls = len(generations)
    forecaster.update(candles.iloc[120:124])
    assert len(generations) == calls  # the kept paths are scored, nothing is sampled
    after = forecaster.calibration_
    assert after.n_windows == before.n_windows + 1
    # one rate-sized step (the price factor of this tiny model sits at the grid's edge, 20)
    moved = np.log(np.concatenate([after.price_scale / before.price_scale,
                                   after.volume_scale / before.volume_scale]))
    assert np.abs(moved).max() > 0
    np.testing.assert_allclose(moved, 0, atol=0.05)


def test_calibration_parameters_are_checked_at_fit(candles):
    for params, match in (({"calibration": "isotonic"},
                           "'calibration' parameter .* must be a str among {'conformal'} or "
                           "None. Got 'isotonic'"),
                          ({"calibration_origins": 0}, "'calibration_origins' parameter .* "
                                                       r"must be an int in the range \[1, inf\)"),
                          ({"calibration_rate": 0}, "'calibration_rate' parameter .* Got 0 ")):
        with pytest.raises(ValueError, match=match):
            calibrated(**params).fit(candles.iloc[:120])
    with pytest.raises(ValueError, match="needs series of at least 20 rows"):
        calibrated().fit(candles.iloc[:18])


def test_every_parameter_has_a_constraint_checked_at_fit(candles):
    from sklearn.utils._param_validation import InvalidParameterError
    assert set(KronosForecaster._parameter_constraints) == set(KronosForecaster().get_params())
    for name, bad in (("n_samples", 0), ("n_samples", True), ("top_p", 1.5), ("top_k", -1),
                      ("temperature", float("inf")), ("lookback", 2.0), ("max_paths", None),
                      ("precision", "float16"), ("sliding", "slide"), ("max_context", 0),
                      ("finetune_tokenizer", 1), ("model_config", "small"),
                      ("stratified", "yes")):
        forecaster = fixture_forecaster(**{name: bad})  # the constructor only stores it
        assert forecaster.get_params()[name] is bad
        with pytest.raises(InvalidParameterError,
                           match=rf"The '{name}' parameter of KronosForecaster must be .* Got "
                                 rf"{re.escape(repr(bad))} instead\."):
            forecaster.fit(candles.iloc[:64])


def test_one_set_of_defaults_across_faces():
    import inspect

    from kronos_sk import cli
    from kronos_sk.estimators import KLineTokenizer
    from kronos_sk.generation import DEFAULT_N_SAMPLES, DEFAULT_TOP_P, forecast_paths
    from kronos_sk.pipeline import KronosPipeline
    from kronos_sk.runtime import DEFAULT_DEVICE
    assert (DEFAULT_N_SAMPLES, DEFAULT_TOP_P, DEFAULT_DEVICE) == (20, 1.0, "auto")

    def defaults(function):
        return {name: p.default for name, p in inspect.signature(function).parameters.items()}

    forecaster, sample = defaults(KronosForecaster), defaults(KronosPipeline.sample)
    paths = defaults(forecast_paths)
    for face in (forecaster, sample, paths):
        assert (face["n_samples"], face["top_p"], face["stratified"]) == (
            DEFAULT_N_SAMPLES, DEFAULT_TOP_P, True)
    assert forecaster["device"] == defaults(KLineTokenizer)["device"] == \
        defaults(KronosPipeline.from_pretrained)["device"] == DEFAULT_DEVICE
    parser = cli.build_parser()
    for command in ("demo", "forecast", "sample", "evaluate"):
        required = {"forecast": ["--input", "x", "--horizon", "1"],
                    "sample": ["--input", "x", "--horizon", "1", "--out", "x.csv"],
                    "evaluate": ["--input", "x"]}.get(command, [])
        args = parser.parse_args([command, *required])
        assert (args.samples, args.top_p, args.device) == (DEFAULT_N_SAMPLES, DEFAULT_TOP_P,
                                                           DEFAULT_DEVICE), command
        assert not args.independent_paths, command
    tokenizer = defaults(KLineTokenizer)
    for name in ("max_steps", "batch_size", "learning_rate"):
        assert forecaster[name] == tokenizer[name], name
    assert (forecaster["max_steps"], forecaster["batch_size"], forecaster["learning_rate"]) == (
        100, 16, None)


@pytest.mark.parametrize("fit_strategy, rate", [("from-scratch", 1e-3), ("fine-tune", 1e-4)])
def test_learning_rate_none_is_the_fit_strategys_default(candles, fit_strategy, rate):
    from kronos_sk.estimators import KLineTokenizer
    params = dict(fit_strategy=fit_strategy, max_steps=3, batch_size=2, window=16,
                  random_state=0)
    if fit_strategy == "from-scratch":
        params["config"] = {"d_model": 8, "ff_dim": 16, "n_heads": 2}
    else:
        params["tokenizer"] = str(FIXTURES / "tokenizer")
    X = candles.iloc[:80]

    def weights(**extra):
        fitted = KLineTokenizer(**{**params, **extra}).fit(X)
        return np.concatenate([p.detach().numpy().ravel()
                               for p in fitted.tokenizer_.parameters()])

    default = weights()
    np.testing.assert_array_equal(default, weights(learning_rate=rate))
    assert not np.array_equal(default, weights(learning_rate=rate * 3))


def test_auto_device_forecasts_on_the_device_it_picks(candles):
    import torch
    forecaster = fixture_forecaster(device="auto", n_samples=2).fit(candles.iloc[:64])
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert next(forecaster.predictor_.parameters()).device.type == expected
    assert next(forecaster.tokenizer_.parameters()).device.type == expected
    from kronos_sk.pipeline import KronosPipeline
    pipe = KronosPipeline.from_pretrained(FIXTURES / "model", FIXTURES / "tokenizer")
    assert next(pipe.predictor.parameters()).device.type == expected
    assert pipe.max_context == 512  # no inference.json, not the Kronos-mini shape
    explicit = fixture_forecaster(device="cpu", n_samples=2).fit(candles.iloc[:64])
    if expected == "cpu":  # the same device, so the same paths
        np.testing.assert_array_equal(forecaster.sample(fh=candles.index[64:67]).to_numpy(),
                                      explicit.sample(fh=candles.index[64:67]).to_numpy())


def test_from_scratch_trains_the_tokenizers_small_network(candles):
    from kronos_sk.nn.config import SMALL_PREDICTOR, SMALL_TOKENIZER
    forecaster = KronosForecaster(fit_strategy="from-scratch", max_steps=1, batch_size=2,
                                  lookback=8, horizon=2, n_samples=2, random_state=0,
                                  device="cpu").fit(candles.iloc[:40])
    tokenizer, predictor = forecaster.tokenizer_.config, forecaster.predictor_.config
    assert {k: getattr(tokenizer, k) for k in SMALL_TOKENIZER} == SMALL_TOKENIZER
    assert {k: getattr(predictor, k) for k in SMALL_PREDICTOR} == SMALL_PREDICTOR
    assert (predictor.s1_bits, predictor.s2_bits) == (tokenizer.s1_bits, tokenizer.s2_bits)


def test_a_frame_without_timestamps_is_forecast_with_a_warning(candles):
    values = candles.iloc[:80].reset_index(drop=True)
    with pytest.warns(UserWarning, match=r"y has no timestamps \(its time index is a "
                                         r"RangeIndex\).*one D step apart from 2000-01-03"):
        fitted = fixture_forecaster(n_samples=2, random_state=0).fit(values, fh=[1, 2])
    assert fitted.predict().index.tolist() == [80, 81]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        fixture_forecaster(n_samples=2, random_state=0).fit(candles.iloc[:80],
                                                            fh=candles.index[80:82])
    assert not [w for w in seen if "no timestamps" in str(w.message)]


def test_update_keeps_the_calendar_the_rows_show(us_stocks_daily_file):
    # sktime reads 'D' off five Mon-Fri rows; the steps must stay on trading days
    frame = pd.read_parquet(us_stocks_daily_file)
    y = frame[frame.asset == "A"].set_index("timestamp").drop(columns="asset").iloc[-100:]
    updated = fixture_forecaster().fit(y.iloc[:-5])
    updated.update(y.iloc[-5:], update_params=False)
    direct = fixture_forecaster().fit(y)
    assert list(updated.predict(fh=[1, 2, 3]).index) == list(direct.predict(fh=[1, 2, 3]).index)


def test_fh_and_update_on_the_same_time_index_in_another_form_are_taken(candles):
    import datetime

    hourly = candles.iloc[:200].set_axis(pd.date_range("2025-01-01", periods=200, freq="h",
                                                       tz="UTC"))
    forecaster = fixture_forecaster(n_samples=2).fit(hourly.iloc[:190])
    # an fh whose own frequency is not the cutoff's (every other hour, one stamp)
    every_other = pd.date_range(hourly.index[189] + pd.Timedelta("2h"), periods=3, freq="2h")
    assert list(forecaster.predict(fh=every_other).index) == list(every_other)
    assert len(forecaster.predict(fh=every_other[:1].copy())) == 1
    # UTC spelled otherwise is UTC; integers of another width are integers
    rows = hourly.iloc[190:].tz_convert(datetime.timezone.utc)
    assert forecaster.update(rows).cutoff[0] == hourly.index[-1]
    integers = fixture_forecaster(n_samples=2).fit(candles.iloc[:100].reset_index(drop=True))
    fh = ForecastingHorizon(pd.Index(np.array([100, 101], dtype=np.int32)), is_relative=False)
    assert len(integers.predict(fh=fh)) == 2
    series = candles["close"].rename(None)
    with pytest.raises(ValueError, match=r"update: y has columns \['close'\] but the forecaster "
                                         r"was fitted on \[0\]"):
        fixture_forecaster(n_samples=2).fit(series.iloc[:100]).update(
            series.iloc[100:105].rename("close"))
