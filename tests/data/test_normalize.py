"""Normalisation: the reference's std + 1e-5 at level 1 and above, unit-free below it."""

import numpy as np

from kronos_sk.data.normalize import Normalizer, normalising_scale


def test_scale_is_the_reference_floor_at_level_one_and_above():
    mean = np.array([24.0, -3.0, 1.0], dtype=np.float32)
    std = np.array([0.5, 2.0, 0.0], dtype=np.float32)
    expected = std + np.float32(1e-5)
    np.testing.assert_array_equal(normalising_scale(mean, std), expected)


def test_scale_floor_is_relative_below_level_one():
    mean = np.array([0.5, 2e-5, 0.0])
    std = np.array([0.01, 1e-7, 0.0])
    np.testing.assert_allclose(normalising_scale(mean, std),
                               [0.01 + 0.5e-5, 1e-7 + 2e-10, 1e-17], rtol=1e-12)


def test_normalised_values_do_not_depend_on_the_unit_below_one():
    rng = np.random.default_rng(0)
    context = 0.5 + 0.01 * rng.standard_normal((1, 40, 4))
    z = Normalizer.fit([context[0]]).transform(context)
    z_tiny = Normalizer.fit([context[0] * 1e-6]).transform(context * 1e-6)
    np.testing.assert_allclose(z_tiny, z, atol=1e-4)  # float32 statistics
    assert z.std() > 0.5  # not flattened by the floor


def test_inverse_transform_undoes_transform_for_tiny_prices():
    context = np.array([[1.0e-5], [1.2e-5], [0.9e-5], [1.1e-5]], dtype=np.float32)
    normalizer = Normalizer.fit([context])
    z = normalizer.transform(context[None])
    np.testing.assert_allclose(normalizer.inverse_transform(z)[0], context, rtol=1e-5)
