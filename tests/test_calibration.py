import numpy as np
import pytest

from kronos_sk.calibration import PathCalibration
from kronos_sk.data import FEATURE_COLUMNS

OPEN, HIGH, LOW, CLOSE, VOLUME, AMOUNT = range(6)
assert FEATURE_COLUMNS == ("open", "high", "low", "close", "volume", "amount")


def toy(n_windows, spread_ratio, seed, samples=41, horizon=5):
    """A model whose log-close paths are `spread_ratio` times too narrow, and the truth.

    Each window has its own level; the truth's log deviation from it grows with the step
    (sigma 0.01 * sqrt(h)); the model samples sigma / spread_ratio around the same level.
    """
    rng = np.random.default_rng(seed)
    level = np.log(rng.uniform(10, 100, (n_windows, 1, 1)))
    sigma = 0.01 * np.sqrt(np.arange(1, horizon + 1))
    true_close = np.exp(level[:, 0] + sigma * rng.standard_normal((n_windows, horizon)))
    close = np.exp(level + sigma / spread_ratio * rng.standard_normal(
        (n_windows, samples, horizon)))

    def candles(close, rng):
        open_ = close * np.exp(0.002 * rng.standard_normal(close.shape))
        high = np.maximum(open_, close) * (1 + 0.003 * rng.random(close.shape))
        low = np.minimum(open_, close) * (1 - 0.003 * rng.random(close.shape))
        volume = np.exp(8 + 0.3 * rng.standard_normal(close.shape))
        return np.stack([open_, high, low, close, volume, volume * close], axis=-1)

    return candles(close, rng), candles(true_close, rng)


def central_coverage(paths, truth, level):
    low, high = np.quantile(paths[..., CLOSE], [(1 - level) / 2, (1 + level) / 2], axis=-2)
    return float(((low <= truth[..., CLOSE]) & (truth[..., CLOSE] <= high)).mean())


def test_a_too_narrow_model_gets_nominal_coverage_on_held_back_windows():
    paths, truth = toy(600, spread_ratio=2.5, seed=0)
    calibration = PathCalibration.fit(paths, truth)
    held_paths, held_truth = toy(600, spread_ratio=2.5, seed=1)
    for level in (0.5, 0.8, 0.9):
        assert central_coverage(held_paths, held_truth, level) < level - 0.15  # miscalibrated
        calibrated = central_coverage(calibration.apply(held_paths), held_truth, level)
        assert abs(calibrated - level) <= 0.05, (level, calibrated)
    np.testing.assert_allclose(calibration.price_scale, 2.5, rtol=0.2)
    assert calibration.coverage(held_paths, held_truth)[0.8] == pytest.approx(
        central_coverage(calibration.apply(held_paths), held_truth, 0.8))


def test_calibrated_paths_keep_the_median_the_envelope_and_the_input():
    paths, truth = toy(200, spread_ratio=2.0, seed=2)
    original = paths.copy()
    out = PathCalibration.fit(paths, truth).apply(paths)
    np.testing.assert_array_equal(paths, original)
    np.testing.assert_allclose(np.median(out[..., CLOSE], axis=1),
                               np.median(paths[..., CLOSE], axis=1), rtol=1e-12)
    assert (out[..., HIGH] >= np.maximum(out[..., OPEN], out[..., CLOSE])).all()
    assert (out[..., LOW] <= np.minimum(out[..., OPEN], out[..., CLOSE])).all()
    assert (out[..., VOLUME] >= 0).all() and (out[..., AMOUNT] >= 0).all()
    # Each path keeps its rank at every step: quantiles of the outputs stay ordered.
    np.testing.assert_array_equal(np.argsort(out[..., CLOSE], axis=1),
                                  np.argsort(paths[..., CLOSE], axis=1))


def test_a_well_calibrated_model_is_left_about_as_it_is():
    paths, truth = toy(600, spread_ratio=1.0, seed=3)
    calibration = PathCalibration.fit(paths, truth)
    np.testing.assert_allclose(calibration.price_scale, 1.0, atol=0.2)


def test_few_windows_share_one_pooled_scale_and_later_steps_reuse_the_last():
    paths, truth = toy(20, spread_ratio=2.0, seed=4)
    calibration = PathCalibration.fit(paths, truth, min_windows=30)
    assert len(set(calibration.price_scale.tolist())) == 1
    longer, _ = toy(3, spread_ratio=2.0, seed=5, horizon=8)
    assert calibration.apply(longer).shape == longer.shape


def test_update_moves_the_scales_towards_nominal_coverage_under_a_shift():
    paths, truth = toy(400, spread_ratio=2.0, seed=6)
    calibration = PathCalibration.fit(paths, truth)
    # The market turns twice as volatile: the fitted scales now cover too little.
    shifted = [toy(50, spread_ratio=4.0, seed=10 + k) for k in range(30)]
    before = np.mean([central_coverage(calibration.apply(p), t, 0.8) for p, t in shifted[-5:]])
    for p, t in shifted[:25]:
        calibration = calibration.update(p, t, rate=0.3)
    after = np.mean([central_coverage(calibration.apply(p), t, 0.8) for p, t in shifted[-5:]])
    assert before < 0.65 and abs(after - 0.8) < abs(before - 0.8) / 2
    assert calibration.n_windows == 400 + 25 * 50


def test_bad_shapes_and_levels_are_named():
    paths, truth = toy(5, spread_ratio=1.0, seed=7)
    with pytest.raises(ValueError, match="paths must be"):
        PathCalibration.fit(paths[0], truth)
    with pytest.raises(ValueError, match="levels must lie in"):
        PathCalibration.fit(paths, truth, levels=(0.5, 1.0))
    with pytest.raises(ValueError, match="rate must be > 0"):
        PathCalibration.fit(paths, truth).update(paths, truth, rate=0)
