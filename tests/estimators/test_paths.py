"""The kept-path cache and the numpy reductions of paths: kronos_sk.estimators._paths."""

import gc

import numpy as np

from kronos_sk.calibration import PathCalibration
from kronos_sk.estimators._paths import PathCache, path_covariance, realized_volatility


class Owner:
    pass


def generator(calls):
    def generate():
        calls.append(1)
        rng = np.random.default_rng(len(calls))
        return (100 + rng.normal(size=(2, 8, 3, 6)), np.array([[1, 3], [2, 3]]), ["g0", "g1"],
                np.zeros((2, 2), dtype=int))
    return generate


def test_one_generation_per_key_and_a_new_one_when_the_key_changes():
    cache, owner, calls = PathCache(), Owner(), []
    first = cache.paths(owner, ("fh", 1), generator(calls))
    again = cache.paths(owner, ("fh", 1), generator(calls))
    assert len(calls) == 1 and again.raw is first.raw and not first.raw.flags.writeable
    other = cache.paths(owner, ("fh", 2), generator(calls))
    assert len(calls) == 2 and other.raw is not first.raw
    cache.drop(owner)  # the context changed
    assert owner not in cache
    cache.paths(owner, ("fh", 2), generator(calls))
    assert len(calls) == 3


def test_the_calibrated_view_follows_the_calibration_not_the_generation():
    cache, owner, calls = PathCache(), Owner(), []
    plain = cache.paths(owner, "k", generator(calls))
    calibration = PathCalibration(np.full(3, 2.0), np.ones(3), n_windows=1)
    calibrated = cache.paths(owner, "k", generator(calls), calibration)
    assert len(calls) == 1 and calibrated.raw is plain.raw
    np.testing.assert_allclose(calibrated.paths, calibration.apply(plain.raw))
    assert cache.paths(owner, "k", generator(calls)).paths is plain.raw


def test_entries_go_with_their_owner():
    cache, owner = PathCache(), Owner()
    cache.paths(owner, "k", generator([]))
    del owner
    gc.collect()
    assert not cache._entries


def test_reductions_of_paths():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(2, 50, 4, 3))
    cov = path_covariance(values)
    np.testing.assert_allclose(cov[1, 2], np.cov(values[1, :, :, 2], rowvar=False, ddof=0))
    closes = 10 * np.exp(np.cumsum(rng.normal(0, .01, (2, 5, 3)), axis=-1))
    rv, bad = realized_volatility(closes, np.array([10.0, 10.0]), np.array([3, 2]))
    expected = (np.diff(np.log(np.concatenate([np.full((5, 1), 10.0), closes[1, :, :2]], 1)),
                        axis=1) ** 2).sum(1)
    np.testing.assert_allclose(rv[1], expected)
    closes[0, 2, 1] = -1.0
    assert list(realized_volatility(closes, np.array([10.0, 10.0]), np.array([3, 2]))[1]) \
        == [True, False]
