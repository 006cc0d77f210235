"""Synthetic K-line path generators: fitted statistics, candle rules, reproducibility."""

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from kronos_sk.baselines import BlockBootstrapGenerator, GARCHGenerator, GBMGenerator
from kronos_sk.data import repair_candles

GENERATORS = [GBMGenerator(), GARCHGenerator(), GARCHGenerator(dist="t"),
              BlockBootstrapGenerator(block_length=4)]


def candles_from_returns(returns: np.ndarray, seed: int = 0, volume: bool = True,
                         start: float = 100.0) -> pd.DataFrame:
    """Candles around a close path: gapped opens, exponential wicks, lognormal volume."""
    rng = np.random.default_rng(seed)
    close = start * np.exp(np.cumsum(returns))
    open_ = np.concatenate([[start], close[:-1]]) * np.exp(rng.normal(0, 0.002, len(close)))
    frame = pd.DataFrame({
        "open": open_,
        "high": np.maximum(open_, close) * np.exp(rng.exponential(0.005, len(close))),
        "low": np.minimum(open_, close) * np.exp(-rng.exponential(0.004, len(close))),
        "close": close})
    if volume:
        frame["volume"] = rng.lognormal(13, 0.4, len(close))
    return frame


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return candles_from_returns(np.random.default_rng(1).normal(2e-4, 0.012, 600))


def simulate_garch(n: int, omega: float, alpha: float, beta: float, seed: int) -> np.ndarray:
    """Percent returns of a zero-mean GARCH(1, 1) with normal innovations."""
    rng = np.random.default_rng(seed)
    variance, returns = omega / (1 - alpha - beta), np.empty(n)
    for t in range(n):
        returns[t] = np.sqrt(variance) * rng.standard_normal()
        variance = omega + alpha * returns[t] ** 2 + beta * variance
    return returns


def assert_valid_candles(paths: np.ndarray, columns: list) -> None:
    o, h, l, c = (paths[..., columns.index(name)] for name in ("open", "high", "low", "close"))
    assert np.isfinite(paths).all()
    assert (h >= np.maximum(o, c)).all()
    assert (np.minimum(o, c) >= l).all()
    assert (l > 0).all()


# ---------------------------------------------------------------------- all generators
@pytest.mark.parametrize("generator", GENERATORS, ids=repr)
@pytest.mark.parametrize("volume", [True, False])
def test_paths_are_valid_candles_in_the_fitted_columns(generator, history, volume):
    columns = ["close", "volume", "low", "open", "high"] if volume else ["high", "close",
                                                                         "open", "low"]
    fitted = generator.fit(history[columns])
    paths = fitted.sample(horizon=30, n_paths=200, random_state=0)
    assert paths.shape == (200, 30, len(columns)) and paths.dtype == np.float64
    assert fitted.columns_ == columns
    assert_valid_candles(paths, columns)
    if volume:
        assert np.isin(paths[..., 1], history["volume"].to_numpy()).all()


@pytest.mark.parametrize("generator", GENERATORS, ids=repr)
def test_same_seed_same_paths(generator, history):
    fitted = generator.fit(history)
    first = fitted.sample(10, 5, random_state=3)
    np.testing.assert_array_equal(first, fitted.sample(10, 5, random_state=3))
    assert not np.array_equal(first, fitted.sample(10, 5, random_state=4))


@pytest.mark.parametrize("generator", GENERATORS, ids=repr)
def test_input_errors(generator, history):
    with pytest.raises(NotFittedError, match="call fit"):
        type(generator)().sample(5, 2)
    with pytest.raises(ValueError, match=r"missing \['low'\], not supported \['amount'\]"):
        generator.fit(history.drop(columns="low").assign(amount=1.0))
    with pytest.raises(ValueError, match="must be positive"):
        generator.fit(history.assign(low=history["low"] - 1000))
    with pytest.raises(ValueError, match="horizon must be a positive integer"):
        generator.fit(history).sample(0, 2)


def test_return_models_continue_from_the_last_close(history):
    for generator in (GBMGenerator(), GARCHGenerator()):
        paths = generator.fit(history).sample(5, 50, random_state=0)
        np.testing.assert_array_equal(paths[:, 0, 0], history["close"].iloc[-1])
        np.testing.assert_array_equal(paths[:, 1:, 0], paths[:, :-1, 3])  # open = last close


# ---------------------------------------------------------------------- GBM
def test_gbm_recovers_drift_and_volatility():
    mu, sigma, n = 4e-4, 0.015, 20000
    log_returns = np.random.default_rng(7).normal(mu - sigma**2 / 2, sigma, n)
    generator = GBMGenerator().fit(candles_from_returns(log_returns))
    assert abs(generator.drift_ - mu) < 4 * sigma / np.sqrt(n)
    assert abs(generator.volatility_ / sigma - 1) < 0.02
    # the fitted mean wick (0.005 up, 0.004 down, plus the open gap) in units of sigma
    assert 0.005 / sigma < generator.upper_wick_ < 0.008 / sigma
    assert 0.004 / sigma < generator.lower_wick_ < 0.007 / sigma


def test_gbm_samples_have_the_fitted_return_distribution(history):
    generator = GBMGenerator().fit(history)
    paths = generator.sample(horizon=50, n_paths=2000, random_state=0)
    closes = np.concatenate([np.full((2000, 1), history["close"].iloc[-1]), paths[..., 3]], 1)
    returns = np.diff(np.log(closes), axis=1)
    assert abs(returns.mean() - (generator.drift_ - generator.volatility_**2 / 2)) < 2e-4
    assert abs(returns.std() / generator.volatility_ - 1) < 0.01
    wicks = np.log(paths[..., 1] / np.maximum(paths[..., 0], paths[..., 3]))
    assert abs(wicks.mean() / (generator.upper_wick_ * generator.volatility_) - 1) < 0.02


# ---------------------------------------------------------------------- GARCH
def test_garch_recovers_parameters_and_is_stationary():
    returns = simulate_garch(4000, omega=0.05, alpha=0.08, beta=0.88, seed=3) / 100
    generator = GARCHGenerator().fit(candles_from_returns(returns))
    assert generator.persistence_ < 1
    assert abs(generator.alpha_ - 0.08) < 0.04
    assert abs(generator.beta_ - 0.88) < 0.06
    assert abs(generator.persistence_ - 0.96) < 0.03
    assert generator.nu_ is None


def test_garch_first_step_has_the_next_conditional_variance():
    returns = simulate_garch(3000, omega=0.05, alpha=0.1, beta=0.85, seed=5) / 100
    generator = GARCHGenerator().fit(candles_from_returns(returns))
    paths = generator.sample(horizon=3, n_paths=20000, random_state=0)
    first = np.log(paths[:, 0, 3] / generator.last_close_) * 100
    assert abs(first.std() / np.sqrt(generator.next_variance_) - 1) < 0.03


def test_garch_t_fits_degrees_of_freedom(history):
    generator = GARCHGenerator(dist="t").fit(history)
    assert generator.nu_ > 2 and generator.persistence_ < 1


def test_garch_refuses_short_history(history):
    with pytest.raises(ValueError, match="at least 50 candles"):
        GARCHGenerator().fit(history.iloc[:20])
    with pytest.raises(ValueError, match="dist must be"):
        GARCHGenerator(dist="skewt").fit(history)


# ---------------------------------------------------------------------- block bootstrap
@pytest.mark.parametrize("block_length", [1, 5, 700])
def test_bootstrap_paths_are_circular_blocks_of_the_history(history, block_length):
    generator = BlockBootstrapGenerator(block_length=block_length).fit(history)
    paths = generator.sample(horizon=23, n_paths=40, random_state=0)
    closes = history["close"].to_numpy()
    ratios = closes[1:] / closes[:-1]
    n = len(ratios)
    previous = np.concatenate([np.full((40, 1), closes[-1]), paths[:, :-1, 3]], axis=1)
    for path, before in zip(paths, previous):
        # every candle is a historical candle (prices over the previous close, volume)
        positions = np.array([np.argmin(np.abs(ratios - r)) for r in path[:, 3] / before])
        np.testing.assert_allclose(path[:, 3] / before, ratios[positions], rtol=1e-12)
        np.testing.assert_array_equal(path[:, 4], history["volume"].to_numpy()[1:][positions])
        np.testing.assert_allclose(path[:, 0] / before,
                                   history["open"].to_numpy()[1:][positions] / closes[:-1][
                                       positions], rtol=1e-12)
        # consecutive within a block, wrapping around the end of the history
        within = np.arange(1, 23) % block_length != 0
        np.testing.assert_array_equal((positions[1:] - positions[:-1])[within] % n, 1)


@pytest.mark.parametrize("generator", [GBMGenerator(), BlockBootstrapGenerator(block_length=3)])
def test_broken_source_rows_are_named_and_repair_candles_fixes_them(history, generator):
    broken = history.set_axis(pd.bdate_range("2020-01-01", periods=len(history)))
    broken.loc[broken.index[5], "high"] = broken["close"].iloc[5] * 0.99  # high < close
    with pytest.raises(ValueError, match=r"fit: candles: column 'high' at row 5 \(2020-01-08"):
        generator.fit(broken)
    repaired = repair_candles(broken).candles
    assert repaired["high"].iloc[5] == max(broken["open"].iloc[5], broken["close"].iloc[5])
    generator.fit(repaired)
    assert_valid_candles(generator.sample(50, 100, random_state=0), list(repaired.columns))


def test_bootstrap_refuses_bad_block_length(history):
    with pytest.raises(ValueError, match="block_length must be a positive integer"):
        BlockBootstrapGenerator(block_length=0).fit(history)
