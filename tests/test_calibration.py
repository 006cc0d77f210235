from dataclasses import replace

import numpy as np
import pytest

from kronos_sk.calibration import (RAMP_GRID, SCALE_GRID, TAIL_GRID, PathCalibration,
                                   _pooled_scores, _sharpest_calibrated)
from kronos_sk.data import FEATURE_COLUMNS
from kronos_sk.metrics import crps_from_samples, realized_volatility, sample_quantiles

OPEN, HIGH, LOW, CLOSE, VOLUME, AMOUNT = range(6)
assert FEATURE_COLUMNS == ("open", "high", "low", "close", "volume", "amount")


def toy(n_windows, pull, seed, samples=41, horizon=10, truth_pull=0.0, truth_step=0.01):
    """Paths that move as much as the truth from step to step but wander less far.

    Each window has its own level. The truth's log close is a random walk (step sigma
    0.01) pulled back to the level by `truth_pull` per step; the model's paths take steps
    of the same size but are pulled back by `pull`, so their horizon spread is narrower
    (pull = truth_pull: a calibrated model). `truth_step`: the truth's step sigma.
    """
    rng = np.random.default_rng(seed)
    level = np.log(rng.uniform(10, 100, (n_windows, 1)))

    def walk(shape, strength, sigma=0.01):
        steps = sigma * rng.standard_normal(shape + (horizon,))
        out = np.empty_like(steps)
        position = np.zeros(shape)
        for h in range(horizon):
            position = (1 - strength) * position + steps[..., h]
            out[..., h] = position
        return out

    close = np.exp(level[:, :, None] + walk((n_windows, samples), pull))
    true_close = np.exp(level + walk((n_windows,), truth_pull, truth_step))

    def candles(close, rng):
        open_ = close * np.exp(0.002 * rng.standard_normal(close.shape))
        high = np.maximum(open_, close) * (1 + 0.003 * rng.random(close.shape))
        low = np.minimum(open_, close) * (1 - 0.003 * rng.random(close.shape))
        volume = np.exp(8 + 0.3 * rng.standard_normal(close.shape))
        return np.stack([open_, high, low, close, volume, volume * close], axis=-1)

    return candles(close, rng), candles(true_close, rng)


def origin_close(n_windows, seed):
    """The close every path and the truth of `toy(n_windows, ..., seed)` start from."""
    return np.random.default_rng(seed).uniform(10, 100, (n_windows, 1))


def central_coverage(paths, truth, level, step=None):
    close, true_close = paths[..., CLOSE], truth[..., CLOSE]
    if step is not None:
        close, true_close = close[..., [step]], true_close[..., [step]]
    low, high = sample_quantiles(close, [(1 - level) / 2, (1 + level) / 2], axis=-2)
    return float(((low <= true_close) & (true_close <= high)).mean())


def step_return_std(paths):
    return float(np.diff(np.log(paths[..., CLOSE]), axis=-1).std())


def test_a_model_that_wanders_too_little_gets_nominal_coverage_and_keeps_its_steps():
    paths, truth = toy(600, pull=0.3, seed=0)
    calibration = PathCalibration.fit(paths, truth)
    held_paths, held_truth = toy(600, pull=0.3, seed=1)
    calibrated = calibration.apply(held_paths)
    for level in (0.5, 0.8, 0.9):
        assert central_coverage(held_paths, held_truth, level, step=-1) < level - 0.15
        assert abs(central_coverage(calibrated, held_truth, level) - level) <= 0.05
        for step in (2, 5, 9):  # pooled over steps, each step within 0.15
            covered = central_coverage(calibrated, held_truth, level, step=step)
            assert abs(covered - level) <= 0.15, (level, step, covered)
    # Day-to-day moves stay about the model's: the realized volatility from the origin moves
    # by less than 2 % (a drift added to every step: x1.3 at this width); the square-root
    # ramp, chosen here, moves some of the later steps' variance into the first, so the
    # step-return std after it moves by less than 3 %.
    origin = origin_close(600, seed=1)
    assert realized_volatility(calibrated[..., CLOSE], origin).mean() / realized_volatility(
        held_paths[..., CLOSE], origin).mean() == pytest.approx(1, abs=0.02)
    assert step_return_std(calibrated) / step_return_std(held_paths) == pytest.approx(1, abs=.03)
    # The spread grows along the horizon: at most a third of it at step 1, the most at the end.
    growth = calibration.price_scale - 1
    assert (np.diff(growth) > 0).all() and growth[0] < 0.35 * growth[-1]
    assert calibration.price_space == "log"
    assert calibration.coverage(held_paths, held_truth)[0.8] == pytest.approx(
        central_coverage(calibrated, held_truth, 0.8))


def test_coverage_reads_a_band_from_the_paths_a_forecaster_returns():
    # 20 paths drawn like the truth: skpro's Empirical reads the 90 % band as the 1st to the
    # 19th smallest path (cumulative shares 1/20 >= 0.05, 19/20 >= 0.95), which holds the
    # truth with probability 18/21; linear interpolation reads a narrower band there.
    paths, truth = toy(2000, pull=0.0, seed=12, samples=20)
    close, true_close = np.sort(paths[..., CLOSE], axis=1), truth[..., CLOSE]
    inside = (close[:, 0] <= true_close) & (true_close <= close[:, 18])
    covered = PathCalibration(np.ones(10), np.ones(10)).coverage(paths, truth)[0.9]
    assert covered == inside.mean() == pytest.approx(18 / 21, abs=0.02)
    low, high = np.quantile(paths[..., CLOSE], [0.05, 0.95], axis=1)
    assert ((low <= true_close) & (true_close <= high)).mean() < covered - 0.01


def test_calibrated_paths_keep_the_mean_the_envelope_and_the_input():
    paths, truth = toy(200, pull=0.3, seed=2)
    original = paths.copy()
    calibration = PathCalibration.fit(paths, truth)
    out = calibration.apply(paths)
    np.testing.assert_array_equal(paths, original)
    np.testing.assert_allclose(out[..., CLOSE].mean(axis=1), paths[..., CLOSE].mean(axis=1),
                               rtol=1e-12)  # the point forecast does not move
    assert abs(np.log(calibration.volume_scale[-1])) > 0.1  # the volume was moved too...
    np.testing.assert_allclose(out[..., VOLUME].mean(axis=1), paths[..., VOLUME].mean(axis=1),
                               rtol=1e-9)  # ...and its point forecast stays
    assert (out[..., HIGH] >= np.maximum(out[..., OPEN], out[..., CLOSE])).all()
    assert (out[..., LOW] <= np.minimum(out[..., OPEN], out[..., CLOSE])).all()
    assert (out[..., VOLUME] >= 0).all() and (out[..., AMOUNT] >= 0).all()
    # Paths keep their rank at the last step: its quantiles are scaled, in order.
    np.testing.assert_array_equal(np.argsort(out[..., -1, CLOSE], axis=1),
                                  np.argsort(paths[..., -1, CLOSE], axis=1))


def test_a_well_calibrated_model_is_left_about_as_it_is():
    paths, truth = toy(600, pull=0.0, seed=3)
    calibration = PathCalibration.fit(paths, truth)
    np.testing.assert_allclose(calibration.price_scale, 1.0, atol=0.2)


def test_the_drift_follows_its_ramp_and_later_steps_reuse_the_last():
    paths, truth = toy(20, pull=0.3, seed=4)
    calibration = PathCalibration.fit(paths, truth)
    ramp = calibration.price_scale - 1
    assert calibration.price_ramp in (1.0, 0.5)
    np.testing.assert_allclose(ramp, ramp[-1] * (np.arange(1, 11) / 10) ** calibration.price_ramp)
    longer, _ = toy(3, pull=0.3, seed=5, horizon=14)
    assert calibration.apply(longer).shape == longer.shape


def test_paths_too_narrow_at_every_step_get_the_square_root_ramp():
    # A random walk whose steps are 0.7 of the truth's: too narrow from the first step on,
    # which the linear ramp (nothing at step 1) cannot mend.
    paths, truth = toy(400, pull=0.0, seed=0, truth_step=0.014)
    calibration = PathCalibration.fit(paths, truth)
    assert calibration.price_ramp == 0.5
    held_paths, held_truth = toy(400, pull=0.0, seed=10, truth_step=0.014)
    calibrated = calibration.apply(held_paths)
    for step in range(10):
        before = central_coverage(held_paths, held_truth, 0.8, step=step)
        after = central_coverage(calibrated, held_truth, 0.8, step=step)
        assert abs(after - 0.8) < abs(before - 0.8) - 0.05, (step, before, after)
    linear = replace(calibration, price_ramp=1.0,
                     price_scale=1 + (calibration.price_scale[-1] - 1) * np.arange(1, 11) / 10)
    assert central_coverage(linear.apply(held_paths), held_truth, 0.8, step=0) < 0.65


def test_update_moves_the_factors_towards_nominal_coverage_under_a_shift():
    paths, truth = toy(400, pull=0.2, seed=6)
    calibration = PathCalibration.fit(paths, truth)
    # The market starts to wander further: the fitted factors now cover too little.
    shifted = [toy(50, pull=0.2, seed=10 + k, truth_pull=-0.1) for k in range(30)]
    before = np.mean([central_coverage(calibration.apply(p), t, 0.8, step=-1)
                      for p, t in shifted[-5:]])
    for p, t in shifted[:25]:
        calibration = calibration.update(p, t, rate=0.3)
    after = np.mean([central_coverage(calibration.apply(p), t, 0.8, step=-1)
                     for p, t in shifted[-5:]])
    assert before < 0.72 and abs(after - 0.8) < abs(before - 0.8) / 2
    assert calibration.n_windows == 400 + 25 * 50


def test_values_that_are_not_positive_prices_are_calibrated_additively():
    # A spread or a return series: flat candles whose value is around 0.
    paths, truth = toy(300, pull=0.3, seed=8)
    paths[..., :4] = np.log(paths[..., [CLOSE]]) - 3.5  # values around 0, both signs
    truth[..., :4] = np.log(truth[..., [CLOSE]]) - 3.5
    assert (paths[..., CLOSE] < 0).any() and (paths[..., CLOSE] > 0).any()
    calibration = PathCalibration.fit(paths, truth)
    out = calibration.apply(paths)
    assert calibration.price_space == "linear" and np.isfinite(out).all()
    assert calibration.price_scale[-1] > 1.3  # the spread was widened, not left alone
    # Additively: without the tail, every band at the last step is the factor times wider.
    one_width = replace(calibration, price_tail=0.0)
    width = np.subtract(*np.quantile(one_width.apply(paths)[..., -1, CLOSE], [0.9, 0.1], axis=1))
    plain = np.subtract(*np.quantile(paths[..., -1, CLOSE], [0.9, 0.1], axis=1))
    np.testing.assert_allclose(width / plain, calibration.price_scale[-1], rtol=1e-6)


def test_bad_shapes_and_levels_are_named():
    paths, truth = toy(5, pull=0.0, seed=7)
    with pytest.raises(ValueError, match="paths must be"):
        PathCalibration.fit(paths[0], truth)
    with pytest.raises(ValueError, match="levels must lie in"):
        PathCalibration.fit(paths, truth, levels=(0.5, 1.0))
    with pytest.raises(ValueError, match=r"rate must be in \(0, 1\], got 0"):
        PathCalibration.fit(paths, truth).update(paths, truth, rate=0)
    with pytest.raises(ValueError, match=r"rate must be in \(0, 1\], got 50"):
        PathCalibration.fit(paths, truth).update(paths, truth, rate=50)


def test_updates_keep_the_factors_among_those_a_fit_can_choose():
    paths, truth = toy(200, pull=0.2, seed=11)
    calibration = PathCalibration.fit(paths, truth)
    far = truth.copy()
    far[..., :4] *= 3.0  # every outcome far outside every band: each update widens
    for _ in range(40):
        calibration = calibration.update(paths, far, rate=1.0)
    assert calibration.price_scale[-1] == pytest.approx(SCALE_GRID[-1])
    assert calibration.volume_scale[-1] <= SCALE_GRID[-1]
    assert np.isfinite(calibration.apply(paths)).all() and (calibration.apply(paths) > 0).all()
    near = np.repeat(np.median(paths, axis=1, keepdims=True), paths.shape[1], axis=1)[:, 0]
    for _ in range(80):  # every outcome at the median: each update narrows
        calibration = calibration.update(paths, near, rate=1.0)
    assert calibration.price_scale[-1] == pytest.approx(SCALE_GRID[0])


def held_out_crps(paths, truth):
    samples = np.moveaxis(np.log(paths[..., CLOSE]), 1, 0)
    return float(crps_from_samples(samples, np.log(truth[..., CLOSE]), fair=True).mean())


@pytest.mark.parametrize("pull", [0.0, 0.3])
def test_the_sharpest_calibrated_setting_does_not_cost_crps(pull):
    # Coverage alone cannot choose between a narrow centre with a heavy tail and a wider
    # centre: among the settings that cover within 2 points, the fit keeps the lowest CRPS.
    calibration = PathCalibration.fit(*toy(600, pull=pull, seed=11))
    paths, truth = toy(600, pull=pull, seed=12)
    calibrated = calibration.apply(paths)
    for level in (0.5, 0.8, 0.9):
        assert abs(central_coverage(calibrated, truth, level) - level) <= 0.05
    ratio = held_out_crps(calibrated, truth) / held_out_crps(paths, truth)
    assert ratio < (0.97 if pull else 1.01), ratio


def test_a_single_path_per_window_is_fitted_and_left_as_it_is():
    paths, truth = toy(50, pull=0.3, seed=13, samples=1)  # nothing to widen around
    calibration = PathCalibration.fit(paths, truth)
    np.testing.assert_allclose(calibration.apply(paths), paths, rtol=1e-12)


def two_origins(first, second):
    """Windows of two backtest origins pooled, with the origin of each window."""
    (paths, truth), (other_paths, other_truth) = first, second
    return (np.concatenate([paths, other_paths]), np.concatenate([truth, other_truth]),
            np.repeat([0, 1], [len(paths), len(other_paths)]))


def test_a_width_that_does_not_carry_over_from_origin_to_origin_is_not_kept():
    # A model calibrated over both dates, but the market was calm at one backtest origin
    # and wild at the other (a move every series of a panel shares): the width fitted on
    # either date is wrong for the other, so the paths are left as they are.
    paths, truth, origins = two_origins(toy(150, pull=0.0, seed=20, truth_step=0.006),
                                        toy(150, pull=0.0, seed=21, truth_step=0.014))
    pooled = PathCalibration.fit(paths, truth)
    assert pooled.price_carried_over is None and pooled.price_scale[-1] != 1.0
    checked = PathCalibration.fit(paths, truth, origins=origins)
    assert checked.price_carried_over is False
    np.testing.assert_array_equal(checked.price_scale, 1.0)
    np.testing.assert_allclose(checked.apply(paths)[..., :4], paths[..., :4], rtol=1e-12)


def test_a_width_that_carries_over_is_kept_as_the_pooled_fit_has_it():
    # Too narrow at both origins: the width learned on one fixes the other.
    paths, truth, origins = two_origins(toy(150, pull=0.3, seed=22), toy(150, pull=0.3, seed=23))
    checked = PathCalibration.fit(paths, truth, origins=origins)
    assert checked.price_carried_over is True and checked.volume_carried_over is not None
    pooled = PathCalibration.fit(paths, truth)
    np.testing.assert_array_equal(checked.price_scale, pooled.price_scale)
    assert checked.price_scale[-1] > 1.3
    with pytest.raises(ValueError, match="origins must name the origin of each of the 300"):
        PathCalibration.fit(paths, truth, origins=origins[:10])


@pytest.mark.parametrize("pull", [0.1, 0.3])
def test_the_fit_finds_the_setting_a_search_of_every_fine_factor_finds(pull):
    # The coarse grid of factors moves the coverage by a few points a step, so for some
    # tail it can step over every factor that covers; the fit refines each tail's factor.
    paths, truth = toy(400, pull=pull, seed=21)
    calibration = PathCalibration.fit(paths, truth)
    values, realised = np.log(paths[..., CLOSE]), np.log(truth[..., CLOSE])
    settings = [(last, tail, power) for last in SCALE_GRID[(SCALE_GRID > 0.5) & (SCALE_GRID < 4)]
                for tail in TAIL_GRID for power in RAMP_GRID]
    lasts, tails, powers = (np.array(column) for column in zip(*settings))
    shapes = (np.arange(1, 11) / 10) ** powers[:, None]
    covered, crps = _pooled_scores(values, realised, 1 + (lasts[:, None] - 1) * shapes,
                                   tails[:, None] * shapes, (0.5, 0.8, 0.9), "log")
    best = _sharpest_calibrated(covered, crps, (0.5, 0.8, 0.9))
    assert (calibration.price_scale[-1], calibration.price_tail, calibration.price_ramp) == (
        pytest.approx(lasts[best]), tails[best], powers[best])
