"""Each metric against a hand-computed case or an independent implementation.

Independent references: scipy.stats (rankdata, pearsonr, spearmanr, norm), scikit-learn's
regression metrics, Python's `statistics` and `math`, brute-force loops over pairs, and the
integral definition of the CRPS.
"""

from __future__ import annotations

import math
import statistics
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st
from sklearn.metrics import mean_absolute_error, mean_pinball_loss, r2_score

from kronos_sk import metrics
from kronos_sk.metrics import (
    central_bands,
    coverage_table,
    sample_quantiles,
    cross_sectional_rank_ic,
    crps_from_samples,
    discriminative_score,
    horizon_return,
    ic_summary,
    interval_coverage,
    log_returns,
    make_panel_rank_ic_scorer,
    normalised_errors,
    panel_rank_ic,
    pinball_loss,
    predictive_score,
    price_ic,
    price_ic_by_window,
    price_rank_ic,
    realized_volatility,
    return_ic,
    return_rank_ic,
    volatility_scores,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_all_names_exist():
    assert sorted(metrics.__all__) == sorted(set(metrics.__all__))
    for name in metrics.__all__:
        assert callable(getattr(metrics, name)), name


# 1. Price IC / RankIC ------------------------------------------------------------------------


def test_average_ranks_match_scipy_with_ties(rng):
    x = rng.integers(0, 4, size=(6, 9)).astype(float)  # many ties
    for axis in (0, 1):
        np.testing.assert_allclose(metrics._average_ranks(x, axis), st.rankdata(x, axis=axis))


def test_price_ic_is_mean_over_windows_of_mean_over_columns_of_scipy(rng):
    pred, true = rng.normal(size=(5, 8, 4)), rng.normal(size=(5, 8, 4))
    pred[..., 0] = np.round(pred[..., 0])  # ties for the ranks
    for method, func, corr in (("pearson", price_ic, st.pearsonr),
                               ("spearman", price_rank_ic, st.spearmanr)):
        per_window = [np.mean([corr(pred[w, :, c], true[w, :, c])[0] for c in range(4)])
                      for w in range(5)]
        np.testing.assert_allclose(price_ic_by_window(pred, true, method), per_window)
        assert func(pred, true) == pytest.approx(np.mean(per_window))


def test_price_ic_skips_constant_columns_and_windows(rng):
    pred, true = rng.normal(size=(3, 6, 2)), rng.normal(size=(3, 6, 2))
    pred[0, :, 1] = 7.3  # window 0 keeps column 0 only
    true[1] = 1.1  # window 1 has no defined correlation
    by_window = price_ic_by_window(pred, true)
    assert by_window[0] == pytest.approx(st.pearsonr(pred[0, :, 0], true[0, :, 0])[0])
    assert np.isnan(by_window[1])
    expected_2 = np.mean([st.pearsonr(pred[2, :, c], true[2, :, c])[0] for c in range(2)])
    assert by_window[2] == pytest.approx(expected_2)
    assert price_ic(pred, true) == pytest.approx((by_window[0] + by_window[2]) / 2)
    assert np.isnan(price_ic(np.ones((2, 5)), rng.normal(size=(2, 5))))


def test_price_ic_hand_cases(rng):
    true = rng.normal(size=(4, 10))
    # A path against itself correlates perfectly, against its mirror image at -1; a strictly
    # increasing transform (cube) keeps the ranks, so RankIC stays 1 while IC drops below 1.
    assert price_ic(true, true) == pytest.approx(1.0)
    assert price_ic(-true, true) == pytest.approx(-1.0)
    assert price_rank_ic(true**3, true) == pytest.approx(1.0)
    assert price_ic(true**3, true) < 1.0
    np.testing.assert_allclose(price_ic_by_window(true, true), price_ic_by_window(
        true[..., None], true[..., None]))
    with pytest.raises(ValueError, match="same shape"):
        price_ic(true, true[:, :5])


# 2. Return IC ----------------------------------------------------------------------------------


def test_horizon_return_hand_case():
    closes = np.array([[10.0, 11.0, 12.0], [20.0, 19.0, 15.0]])
    # 12 / 10 - 1 = 0.2 and 15 / 20 - 1 = -0.25
    np.testing.assert_allclose(horizon_return(closes, [10.0, 20.0]), [0.2, -0.25])


def test_return_ic_pools_finite_pairs_like_scipy(rng):
    pred, true = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    pred[2, 3] = np.nan
    keep = np.isfinite(pred.ravel())
    assert return_ic(pred, true) == pytest.approx(
        st.pearsonr(pred.ravel()[keep], true.ravel()[keep])[0])
    assert return_rank_ic(pred, true) == pytest.approx(
        st.spearmanr(pred.ravel()[keep], true.ravel()[keep])[0])
    assert np.isnan(return_ic(np.zeros(5), true[0]))
    assert np.isnan(return_rank_ic([1.0], [2.0]))


# 3. Cross-sectional RankIC --------------------------------------------------------------------


@pytest.fixture
def long_frame(rng) -> pd.DataFrame:
    rows = []
    for day, n_assets in (("2024-01-03", 6), ("2024-01-02", 7), ("2024-01-04", 3),
                          ("2024-01-05", 5)):
        pred = rng.normal(size=n_assets)
        if day == "2024-01-05":
            pred[:] = 0.01  # no ranking at all on that day
        for a in range(n_assets):
            rows.append((pd.Timestamp(day), f"A{a}", pred[a], rng.normal()))
    return pd.DataFrame(rows, columns=["date", "asset", "predicted_return", "realised_return"])


def test_cross_sectional_rank_ic_per_date_matches_scipy(long_frame):
    ic = cross_sectional_rank_ic(long_frame, min_assets=5)
    # 2024-01-04 has 3 assets (< 5) and 2024-01-05 constant predictions: both left out.
    assert list(ic.index) == [pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03")]
    for day, value in ic.items():
        rows = long_frame[long_frame["date"] == day]
        assert value == pytest.approx(
            st.spearmanr(rows["predicted_return"], rows["realised_return"])[0])
    assert ic.name == "rank_ic"
    same = cross_sectional_rank_ic(long_frame.set_index(["date", "asset"]), min_assets=5)
    pd.testing.assert_series_equal(same, ic)
    assert len(cross_sectional_rank_ic(long_frame, min_assets=3)) == 3


def test_cross_sectional_rank_ic_rejects_duplicate_assets(long_frame):
    with pytest.raises(ValueError, match="more than once"):
        cross_sectional_rank_ic(pd.concat([long_frame, long_frame.iloc[:1]]))


def test_ic_summary_against_statistics_module():
    values = [0.1, 0.3, -0.1, 0.2, np.nan]
    clean = values[:4]
    mean, std = statistics.mean(clean), statistics.stdev(clean)
    summary = ic_summary(pd.Series(values))
    assert summary["n"] == 4
    assert summary["mean"] == pytest.approx(mean)
    assert summary["std"] == pytest.approx(std)
    assert summary["icir"] == pytest.approx(mean / std)
    assert summary["t_stat"] == pytest.approx(mean / (std / math.sqrt(4)))
    assert summary["hit_rate"] == pytest.approx(3 / 4)
    assert math.isnan(ic_summary([0.2])["icir"])


# Panel RankIC from a common cutoff ------------------------------------------------------------


def _panel(values: dict[str, list[float]], start: str) -> pd.DataFrame:
    frames = [pd.DataFrame({"close": v}, index=pd.MultiIndex.from_product(
        [[asset], pd.date_range(start, periods=len(v), freq="D")], names=["asset", "time"]))
        for asset, v in values.items()]
    return pd.concat(frames)


@pytest.fixture
def panel_case():
    # Last closes rise with the asset; predicted returns rise too, realised returns fall, so
    # the price levels rank the same way in both (level RankIC +1) while returns rank opposite.
    last = {f"A{i}": 10.0 * (i + 1) for i in range(6)}
    pred_ret = {a: 0.01 * i for i, a in enumerate(last)}
    true_ret = {a: -0.02 * i for i, a in enumerate(last)}
    context = _panel({a: [c * 0.9, c] for a, c in last.items()}, "2024-01-01")
    y_pred = _panel({a: [c, c, c * (1 + pred_ret[a])] for a, c in last.items()}, "2024-01-03")
    y_true = _panel({a: [c, c, c * (1 + true_ret[a])] for a, c in last.items()}, "2024-01-03")
    return context, y_true, y_pred, pd.Series(last)


def test_panel_rank_ic_ranks_returns_not_levels(panel_case):
    context, y_true, y_pred, last = panel_case
    final_pred = y_pred.groupby(level=0).tail(1)["close"].to_numpy()
    final_true = y_true.groupby(level=0).tail(1)["close"].to_numpy()
    assert st.spearmanr(final_pred, final_true)[0] == pytest.approx(1.0)  # levels: useless
    assert panel_rank_ic(y_true, y_pred, last) == pytest.approx(-1.0)
    assert panel_rank_ic(y_true, y_pred, context, column="close") == pytest.approx(-1.0)
    assert math.isnan(panel_rank_ic(y_true, y_pred, last, min_assets=7))


def test_panel_rank_ic_matches_scipy_on_random_panel(rng):
    last = pd.Series(rng.uniform(10, 100, 8), index=[f"A{i}" for i in range(8)])
    y_pred = _panel({a: list(c * (1 + rng.normal(0, 0.05, 4))) for a, c in last.items()},
                    "2024-02-01")
    y_true = _panel({a: list(c * (1 + rng.normal(0, 0.05, 4))) for a, c in last.items()},
                    "2024-02-01")
    pred_ret = y_pred.groupby(level=0).tail(1)["close"].to_numpy() / last.to_numpy() - 1
    true_ret = y_true.groupby(level=0).tail(1)["close"].to_numpy() / last.to_numpy() - 1
    assert panel_rank_ic(y_true, y_pred, last) == pytest.approx(
        st.spearmanr(pred_ret, true_ret)[0])


def test_panel_scorer_uses_y_train_as_context(panel_case):
    context, y_true, y_pred, _ = panel_case
    scorer = make_panel_rank_ic_scorer()
    assert scorer(y_true, y_pred, y_train=context) == pytest.approx(-1.0)
    assert not scorer.get_tag("lower_is_better")
    with pytest.raises(ValueError, match="y_train"):
        scorer(y_true, y_pred)


def test_panel_scorer_in_sktime_evaluate_scores_each_fold():
    from sktime.forecasting.model_evaluation import evaluate
    from sktime.forecasting.naive import NaiveForecaster
    from sktime.split import ExpandingWindowSplitter

    gen = np.random.default_rng(3)
    y = _panel({f"A{i}": list(50 * np.exp(np.cumsum(gen.normal(0, 0.02, 20))))
                for i in range(6)}, "2024-01-01")
    cv = ExpandingWindowSplitter(fh=[1, 2, 3], initial_window=14, step_length=3)
    with warnings.catch_warnings():
        # sktime 1.2 warns about its coming remember_data default on every clone, and its
        # _SuppressWarningPattern leaves a "default" FutureWarning filter in front of ours on
        # exit, so those warnings still show; this block at least keeps that filter local.
        warnings.simplefilter("ignore", FutureWarning)
        results = evaluate(NaiveForecaster(strategy="drift"), cv, y,
                           scoring=make_panel_rank_ic_scorer(), return_data=True)
    assert len(results) == 2
    for _, row in results.iterrows():
        expected = panel_rank_ic(row["y_test"], row["y_pred"], row["y_train"])
        assert row["test_PanelRankIC"] == pytest.approx(expected)
        assert np.isfinite(expected)


# 4. Normalised errors ------------------------------------------------------------------------


def test_normalised_errors_hand_case():
    pred = np.array([[[10.0, 4.0], [12.0, 2.0]]])  # (1 window, 2 steps, 2 columns)
    true = np.array([[[11.0, 4.0], [10.0, 5.0]]])
    mean, std = np.array([[10.0, 3.0]]), np.array([[2.0, 1.0]])
    # z = (x - mean) / std: column 0 errors (10 - 11) / 2, (12 - 10) / 2 = -0.5, 1;
    # column 1 errors 0 / 1, (2 - 5) / 1 = 0, -3.
    errors = [-0.5, 1.0, 0.0, -3.0]
    out = normalised_errors(pred, true, mean, std, eps=0.0)
    assert out["mae"] == pytest.approx(sum(abs(e) for e in errors) / 4)
    assert out["mse"] == pytest.approx(sum(e * e for e in errors) / 4)
    # Per-column statistics (n_columns,) broadcast the same way here (one window).
    assert normalised_errors(pred, true, mean[0], std[0], eps=0.0) == out
    # Default eps is the model's 1e-5, added to std.
    assert normalised_errors(pred[..., 0], true[..., 0], [10.0], [2.0])["mae"] == pytest.approx(
        (0.5 + 1.0) * 2 / (2 + 1e-5) / 2)


# 5. Realised volatility ---------------------------------------------------------------------


def test_realized_volatility_hand_case():
    closes = np.array([[110.0, 99.0, 99.0], [50.0, 55.0, 50.0]])
    with_last = realized_volatility(closes, last_close=[100.0, 50.0])
    np.testing.assert_allclose(with_last, [
        math.log(1.1) ** 2 + math.log(0.9) ** 2 + 0.0,
        0.0 + math.log(1.1) ** 2 + math.log(50 / 55) ** 2])
    np.testing.assert_allclose(realized_volatility(closes), [
        math.log(0.9) ** 2, math.log(1.1) ** 2 + math.log(50 / 55) ** 2])
    assert realized_volatility(closes[0]).shape == ()
    with pytest.raises(ValueError, match="two prices"):
        realized_volatility([[100.0]])


def test_log_returns_from_the_last_close_hand_case():
    closes = np.array([[110.0, 99.0], [50.0, 55.0]])
    np.testing.assert_allclose(log_returns(closes, [100.0, 50.0]),
                               [[math.log(1.1), math.log(0.9)], [0.0, math.log(1.1)]])
    np.testing.assert_allclose(log_returns(closes), [[math.log(0.9)], [math.log(1.1)]])
    paths = np.stack([closes, 2 * closes], axis=1)  # (2 series, 2 paths, 2 steps)
    np.testing.assert_allclose(log_returns(paths, np.array([[100.0], [50.0]]))[:, 1, 0],
                               [math.log(2.2), math.log(2.0)])


def test_volatility_scores_against_sklearn(rng):
    true_rv, pred_rv = rng.gamma(2.0, 1e-3, 30), rng.gamma(2.0, 1e-3, 30)
    scores = volatility_scores(pred_rv, true_rv)
    assert scores["mae"] == pytest.approx(mean_absolute_error(true_rv, pred_rv))
    assert scores["r2"] == pytest.approx(r2_score(true_rv, pred_rv))
    # Hand case: true (1, 3), mean 2, SST = 2; pred (2, 2): SSE = 2, R² = 0, MAE = 1.
    assert volatility_scores([2.0, 2.0], [1.0, 3.0]) == {"mae": 1.0, "r2": 0.0}
    assert math.isnan(volatility_scores([1.0, 2.0], [2.0, 2.0])["r2"])


# 6. Probabilistic ----------------------------------------------------------------------------


def test_crps_degenerate_sample_is_absolute_error():
    samples = np.full((5, 3), 2.0)
    np.testing.assert_allclose(crps_from_samples(samples, [2.0, 5.0, -1.0]), [0.0, 3.0, 3.0])


def test_crps_matches_brute_force_pairs_and_the_integral_definition(rng):
    samples, y = rng.normal(size=(7, 4)), rng.normal(size=4)
    m = samples.shape[0]
    for j in range(4):
        x = samples[:, j]
        pairs = np.abs(x[:, None] - x[None, :]).sum()
        term = np.abs(x - y[j]).mean()
        assert crps_from_samples(x, y[j]) == pytest.approx(term - 0.5 * pairs / m**2)
        assert crps_from_samples(x, y[j], fair=True) == pytest.approx(
            term - 0.5 * pairs / (m * (m - 1)))
        # CRPS = integral of (F(z) - 1{z >= y})^2 dz; both step functions are constant
        # between consecutive points of {samples, y}, so the integral is an exact sum.
        knots = np.sort(np.append(x, y[j]))
        mids = (knots[:-1] + knots[1:]) / 2
        ecdf = (x[None, :] <= mids[:, None]).mean(axis=1)
        integral = np.sum((ecdf - (mids >= y[j])) ** 2 * np.diff(knots))
        assert crps_from_samples(x, y[j]) == pytest.approx(integral)


def test_crps_of_large_normal_sample_matches_gaussian_closed_form():
    gen = np.random.default_rng(5)
    mu, sigma, y = 1.0, 2.0, np.array([-3.0, 0.0, 1.0, 2.5, 6.0])
    samples = gen.normal(mu, sigma, size=(40_000, 1))
    z = (y - mu) / sigma
    closed = sigma * (z * (2 * st.norm.cdf(z) - 1) + 2 * st.norm.pdf(z) - 1 / math.sqrt(math.pi))
    # Monte Carlo error of the sample estimate is O(sigma / sqrt(n)) = 0.01 here.
    np.testing.assert_allclose(crps_from_samples(samples, y), closed, atol=0.04)


def test_pinball_loss_hand_case_and_sklearn(rng):
    # y = 10, quantiles 8 (alpha 0.1) and 12 (alpha 0.9): u = 2 -> max(0.2, -1.8) = 0.2;
    # u = -2 -> max(-1.8, 0.2) = 0.2. y = 7: u = -1 -> 0.9; u = -5 -> 0.5.
    q = np.array([[8.0, 12.0], [8.0, 12.0]])
    np.testing.assert_allclose(pinball_loss(q, [10.0, 7.0], [0.1, 0.9]),
                               [(0.2 + 0.9) / 2, (0.2 + 0.5) / 2])
    alphas = [0.1, 0.5, 0.9]
    preds, y = rng.normal(size=(4, 5, 3)), rng.normal(size=(4, 5))
    expected = [mean_pinball_loss(y.ravel(), preds[..., k].ravel(), alpha=a)
                for k, a in enumerate(alphas)]
    np.testing.assert_allclose(pinball_loss(preds, y, alphas), expected)
    with pytest.raises(ValueError, match="levels"):
        pinball_loss(preds, y, [0.5])


def test_interval_coverage_includes_bounds():
    # -1 is outside; 0 (lower bound), 0.5 and 1 (upper bound) are inside: 3 of 4.
    assert interval_coverage(0.0, 1.0, [-1.0, 0.0, 0.5, 1.0]) == 0.75
    with pytest.raises(ValueError, match="exceed"):
        interval_coverage([1.0], [0.0], [0.5])


def test_coverage_table_hand_case():
    # Samples 0, 1, ..., 100 for every point: the quantile at p is the smallest sample whose
    # cumulative weight (k + 1) / 101 reaches p, so the central intervals are [25, 75], [10, 90]
    # and [5, 95].
    y = np.array([0.0, 7.0, 20.0, 50.0, 80.0, 92.0, 100.0, 75.0])
    samples = np.repeat(np.arange(101.0)[:, None], y.size, axis=1)
    table = coverage_table(samples, y)
    # inside [25, 75]: 50, 75; [10, 90]: 20, 50, 80, 75; [5, 95]: 7, 20, 50, 80, 92, 75.
    np.testing.assert_allclose(table["coverage"], [2 / 8, 4 / 8, 6 / 8])
    np.testing.assert_allclose(table["mean_width"], [50.0, 80.0, 90.0])
    assert list(table.index) == [0.5, 0.8, 0.9]


def test_sample_quantiles_are_the_inverse_of_the_empirical_cdf():
    samples = np.array([3.0, 1.0, 2.0, 4.0])  # cumulative weights .25, .5, .75, 1 once sorted
    np.testing.assert_array_equal(sample_quantiles(samples, [0.0, 0.25, 0.26, 0.5, 0.51, 1.0]),
                                  [1.0, 1.0, 2.0, 2.0, 3.0, 4.0])
    assert sample_quantiles(samples, 0.6).shape == ()
    for bad in (-0.1, 1.5, np.nan):
        with pytest.raises(ValueError, match="alpha must lie in"):
            sample_quantiles(samples, [0.5, bad])
    with pytest.raises(ValueError, match="at least one sample"):
        sample_quantiles(np.empty((0, 3)), 0.5)
    grid = np.arange(24.0).reshape(2, 3, 4)  # samples along axis 1: rows 0..3 of each block
    out = sample_quantiles(grid, [[0.1, 0.9], [0.5, 1.0]], axis=1)
    assert out.shape == (2, 2, 2, 4)
    np.testing.assert_array_equal(out[0, 1], grid[:, 2])  # 0.9 -> the third of three
    np.testing.assert_array_equal(out[1, 0], grid[:, 1])  # 0.5 -> the second


def test_central_bands_run_from_the_lower_to_the_upper_tail_of_each_level():
    samples = np.arange(20.0)[::-1, None] * np.array([1.0, -1.0])  # (20, 2), unsorted
    lower, upper = central_bands(samples, [0.9, 0.5])
    assert lower.shape == upper.shape == (2, 2)
    # 90 %: the 1st and 19th of 20; 50 %: the 5th and the 15th (cumulative share >= level)
    np.testing.assert_array_equal(lower, [[0.0, -19.0], [4.0, -15.0]])
    np.testing.assert_array_equal(upper, [[18.0, -1.0], [14.0, -5.0]])


def test_sample_quantiles_equal_skpro_empirical_at_ties():
    from skpro.distributions import Empirical

    gen = np.random.default_rng(4)
    values = gen.normal(size=(10, 3))
    alpha = [0.1, 0.3, 0.5, 0.7, 0.9]  # ties with the cumulative weights of 10 samples
    frame = pd.DataFrame(values.reshape(-1, 1),
                         index=pd.MultiIndex.from_product([range(10), range(3)]))
    reference = Empirical(spl=frame, index=pd.RangeIndex(3), columns=frame.columns)
    np.testing.assert_array_equal(sample_quantiles(values, alpha),
                                  reference.quantile(alpha).to_numpy().T)


def test_central_bands_of_draws_from_the_truth_cover_by_order_statistics():
    # With S draws exchangeable with the outcome, the outcome falls between the i-th and j-th
    # smallest draws with probability (j - i) / (S + 1). For S = 20 the 50/80/90 % bands are
    # the 5th-15th, 2nd-18th and 1st-19th: 10/21, 16/21 and 18/21.
    gen = np.random.default_rng(2)
    table = coverage_table(gen.normal(size=(20, 20000)), gen.normal(size=20000))
    np.testing.assert_allclose(table["coverage"], [10 / 21, 16 / 21, 18 / 21], atol=0.012)


def test_coverage_table_is_calibrated_for_samples_from_the_truth():
    gen = np.random.default_rng(2)
    table = coverage_table(gen.normal(size=(400, 4000)), gen.normal(size=4000))
    # Binomial standard error of a coverage over 4000 points is at most 0.008.
    np.testing.assert_allclose(table["coverage"], table.index, atol=0.03)


# 7. Generation fidelity ---------------------------------------------------------------------


def _random_walks(gen: np.random.Generator, n: int, length: int = 24) -> np.ndarray:
    return 100 * np.exp(np.cumsum(gen.normal(0, 0.02, size=(n, length, 1)), axis=1))


def test_discriminative_score_identical_vs_different_distributions():
    import torch

    gen = np.random.default_rng(11)
    real, same = _random_walks(gen, 250), _random_walks(gen, 250)
    noise = 100 + gen.normal(0, 2.0, size=real.shape)
    kwargs = {"epochs": 15, "batch_size": 50, "lr": 1e-2, "random_state": 0}
    state = torch.random.get_rng_state()
    alike = discriminative_score(real, same, **kwargs)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    apart = discriminative_score(real, noise, **kwargs)
    assert abs(alike["accuracy"] - 0.5) <= 0.15
    assert apart["accuracy"] > 0.8
    for result in (alike, apart):
        assert result["test_error"] == pytest.approx(1 - result["accuracy"])
        assert result["score"] == pytest.approx(abs(result["accuracy"] - 0.5))
    assert discriminative_score(real, noise, **kwargs) == apart  # seeded
    with pytest.raises(ValueError, match="same shape"):
        discriminative_score(real, noise[:10], **kwargs)


def test_predictive_score_lower_when_synthetic_carries_the_dynamics():
    gen = np.random.default_rng(12)
    real = _random_walks(gen, 96)
    noise = 100 + gen.normal(0, 2.0, size=real.shape)
    kwargs = {"target": 0, "epochs": 10, "batch_size": 32, "lr": 1e-2, "random_state": 0}
    tstr_same = predictive_score(real, real, **kwargs)
    tstr_noise = predictive_score(real, noise, **kwargs)
    assert tstr_same < tstr_noise
    assert predictive_score(real, real, **kwargs) == tstr_same  # seeded
    with pytest.raises(ValueError, match="target"):
        predictive_score(real, noise, target=3)


def test_reversion_slope_by_hand():
    # z = (last - mean) / std = [-1, 0, 1, 2]; returns fall 0.05 per unit of z plus a level.
    last, mean, std = np.array([9.0, 10.0, 11.0, 12.0]), np.full(4, 10.0), np.ones(4)
    returns = np.array([0.06, 0.01, -0.04, -0.09])
    assert metrics.reversion_slope(returns, last, mean, std) == pytest.approx(-0.05)
    # Not 4 pairs but 3 finite ones: the NaN return is left out, the slope stays.
    returns[1] = np.nan
    assert metrics.reversion_slope(returns, last, mean, std) == pytest.approx(-0.05)
    assert np.isnan(metrics.reversion_slope([0.1, 0.2], [10.0, 10.0], [9.0, 9.0], [1.0, 1.0]))
