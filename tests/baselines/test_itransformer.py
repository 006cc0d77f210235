"""ITransformerForecaster: sktime conformance, the network's symmetries, fit and predict."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sktime.utils.estimator_checks import check_estimator

from kronos_sk.baselines import ITransformerForecaster
from kronos_sk.baselines.itransformer import ITransformer, ITransformerConfig

TINY = {"lookback": 16, "horizon": 4, "d_model": 8, "n_heads": 2, "n_layers": 1,
        "max_epochs": 1, "max_steps": 5, "batch_size": 8, "random_state": 0}


def candles(n: int, seed: int = 0, start: str = "2024-01-01") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return pd.DataFrame({"open": close * 0.999, "high": close * 1.01, "low": close * 0.99,
                         "close": close, "volume": rng.lognormal(12, 0.3, n)},
                        index=pd.date_range(start, periods=n, freq="D"))


def test_sktime_check_estimator_passes_every_check():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(ITransformerForecaster, raise_exceptions=False)
    failed = {name: str(outcome)[:300] for name, outcome in results.items()
              if outcome != "PASSED"}
    assert len(results) > 700
    assert not failed, failed


# ---------------------------------------------------------------------- network
@pytest.fixture
def network() -> ITransformer:
    torch.manual_seed(0)
    return ITransformer(ITransformerConfig(lookback=12, horizon=3, d_model=8, n_heads=2,
                                           n_layers=2)).eval()


def test_network_shapes_and_loss(network):
    x, target = torch.randn(5, 12, 4), torch.randn(5, 3, 4)
    forecast, loss = network(x, target)
    assert forecast.shape == (5, 3, 4) and forecast.dtype == torch.float32
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert network(x)[1] is None


def test_network_is_permutation_equivariant_over_variates(network):
    x = torch.randn(2, 12, 5)
    order = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        assert torch.allclose(network(x[..., order])[0], network(x)[0][..., order], atol=1e-5)


def test_network_is_scale_and_shift_equivariant(network):
    # Instance normalisation: a window in other units gives the forecast in those units.
    x = torch.randn(2, 12, 3, dtype=torch.float64)
    network = network.double()
    with torch.no_grad():
        base = network(x)[0]
        scaled = network(1000.0 * x + 50.0)[0]
    torch.testing.assert_close(scaled, 1000.0 * base + 50.0, rtol=1e-3, atol=1e-2)


def test_network_is_scale_equivariant_for_tiny_prices(network):
    # A token quoted near 1e-5: the variance floor follows the level, so it does not flatten
    # the window (an absolute floor of 1e-5 would dwarf a variance near 1e-14).
    x = 1.0 + 0.01 * torch.randn(2, 12, 3, dtype=torch.float64)
    network = network.double()
    with torch.no_grad():
        base = network(x)[0]
        tiny = network(1e-5 * x)[0]
    torch.testing.assert_close(tiny, 1e-5 * base, rtol=1e-6, atol=0.0)


# ---------------------------------------------------------------------- estimator
def test_fit_predict_multivariate_candles():
    y = candles(80)
    forecaster = ITransformerForecaster(**TINY).fit(y)
    prediction = forecaster.predict(fh=[1, 2, 4])
    assert list(prediction.columns) == list(y.columns)
    assert list(prediction.index) == list(pd.date_range("2024-03-21", periods=4)[[0, 1, 3]])
    assert np.isfinite(prediction.to_numpy()).all()
    assert forecaster.n_windows_ == 80 - 16 - 4 + 1
    assert len(forecaster.loss_curve_) == 5


def test_learns_a_periodic_signal_better_than_the_last_value():
    t = np.arange(400)
    y = pd.DataFrame({"a": 10 + np.sin(2 * np.pi * t / 20),
                      "b": 1000 + 100 * np.cos(2 * np.pi * t / 20)})
    train, test = y.iloc[:-8], y.iloc[-8:]
    forecaster = ITransformerForecaster(lookback=40, horizon=8, d_model=16, n_heads=2,
                                        n_layers=1, dropout=0.0, max_epochs=20,
                                        max_steps=300, learning_rate=3e-3, random_state=0)
    prediction = forecaster.fit(train).predict(fh=np.arange(1, 9))
    naive = np.abs(test.to_numpy() - train.to_numpy()[-1]) / test.std().to_numpy()
    error = np.abs(test.to_numpy() - prediction.to_numpy()) / test.std().to_numpy()
    assert np.mean(forecaster.loss_curve_[-20:]) < 0.2 * np.mean(forecaster.loss_curve_[:20])
    assert error.mean() < 0.3 * naive.mean()


def test_random_state_reproducible_and_global_rng_untouched():
    y = candles(60)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    first = ITransformerForecaster(**TINY).fit(y).predict(fh=[1, 2])
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])
    again = ITransformerForecaster(**TINY).fit(y).predict(fh=[1, 2])
    other = ITransformerForecaster(**{**TINY, "random_state": 1}).fit(y).predict(fh=[1, 2])
    pd.testing.assert_frame_equal(first, again)
    assert not np.allclose(first.to_numpy(), other.to_numpy())


def test_fh_beyond_the_trained_horizon_is_refused():
    forecaster = ITransformerForecaster(**TINY).fit(candles(40))
    with pytest.raises(ValueError, match="beyond the trained horizon=4; fit with horizon >= 5"):
        forecaster.predict(fh=[1, 5])


def test_short_series_is_padded_with_its_first_row():
    y = candles(7)
    forecaster = ITransformerForecaster(**TINY).fit(y)  # needs 16 + 4 rows
    assert forecaster.n_windows_ == 1
    assert np.isfinite(forecaster.predict(fh=[1, 2, 3, 4]).to_numpy()).all()


def test_panel_is_one_global_model_and_each_series_forecast_from_its_end():
    panel = pd.concat({"a": candles(50, seed=1), "b": candles(40, seed=2),
                       "c": candles(60, seed=3, start="2023-12-01")},
                      names=["asset", "time"])
    forecaster = ITransformerForecaster(**TINY).fit(panel)
    assert forecaster.n_windows_ == (50 - 19) + (40 - 19) + (60 - 19)
    prediction = forecaster.predict(fh=[1, 2])
    assert prediction.index.names == ["asset", "time"]
    assert list(prediction.loc["b"].index) == list(pd.date_range("2024-02-10", periods=2))
    assert list(prediction.loc["c"].index) == list(pd.date_range("2024-01-30", periods=2))
    assert np.isfinite(prediction.to_numpy()).all()


def test_update_extends_the_context_and_keeps_the_weights():
    y = candles(70)
    forecaster = ITransformerForecaster(**TINY).fit(y.iloc[:60])
    weights = {k: v.clone() for k, v in forecaster.network_.state_dict().items()}
    before = forecaster.predict(fh=[1])
    forecaster.update(y.iloc[60:])
    after = forecaster.predict(fh=[1])
    assert after.index[0] == y.index[-1] + pd.Timedelta(days=1)
    assert not np.allclose(before.to_numpy(), after.to_numpy())
    for name, value in forecaster.network_.state_dict().items():
        assert torch.equal(value, weights[name])
    context = torch.tensor(y.to_numpy()[None, -TINY["lookback"]:], dtype=torch.float32)
    with torch.no_grad():
        expected = forecaster.network_(context)[0][0, :1].double().numpy()
    np.testing.assert_allclose(after.to_numpy(), expected)


@pytest.mark.parametrize("params, message", [
    ({"n_heads": 3}, "n_heads=3 must divide d_model=8"),
    ({"dropout": 1.0}, "dropout must be in"),
    ({"lookback": 0}, "lookback must be a positive integer"),
    ({"max_steps": 2.5}, "max_steps must be a positive integer"),
    ({"learning_rate": 0}, "learning_rate must be positive"),
    ({"random_state": -1}, "random_state must be None or a non-negative integer"),
    ({"device": "gpu7"}, "device must name a torch device"),
])
def test_invalid_parameters_are_refused_in_fit(params, message):
    with pytest.raises(ValueError, match=message):
        ITransformerForecaster(**{**TINY, **params}).fit(candles(40))
