"""The comparison set of sktime forecasters for the Kronos forecasting benchmarks."""

from __future__ import annotations

import importlib.util

from sklearn.preprocessing import StandardScaler
from sktime.forecasting.arch import ARCH
from sktime.forecasting.arima import StatsModelsARIMA
from sktime.forecasting.base import BaseForecaster
from sktime.forecasting.compose import TransformedTargetForecaster
from sktime.forecasting.ets import AutoETS
from sktime.forecasting.ltsf import LTSFDLinearForecaster
from sktime.forecasting.naive import NaiveForecaster
from sktime.transformations.series.adapt import TabularToSeriesAdaptor

from kronos_sk.baselines.itransformer import ITransformerForecaster

# Soft dependencies of the set (the `baselines` extra), checked up front so a missing one is
# named with its install command rather than surfacing from inside sktime.
REQUIRED_PACKAGES = ("statsmodels", "arch")


def baseline_forecasters(lookback: int = 64, horizon: int = 16,
                         random_state: int | None = 0) -> dict[str, BaseForecaster]:
    """Fresh, unfitted baseline forecasters, by name.

    Every forecaster but "garch" forecasts price (or any) levels and takes a frame of any
    columns, e.g. open, high, low, close, volume: the univariate ones (naive, ETS, ARIMA,
    GARCH) are applied to each column separately by sktime, which broadcasts forecasters
    whose `capability:multivariate` tag is False. Pass ``fh`` to `fit`: DLinear needs it
    there (`requires-fh-in-fit`) and the others accept it.

    - "naive-last": `NaiveForecaster(strategy="last")`, the random walk.
    - "naive-drift": `NaiveForecaster(strategy="drift")`, the line through the first and
      last values.
    - "ets": `AutoETS(auto=False)`, simple exponential smoothing (statsmodels).
    - "arima": `StatsModelsARIMA(order=(1, 1, 1))` (statsmodels).
    - "dlinear": DLinear (`LTSFDLinearForecaster`, torch) on standardised columns, as in
      its paper; trained for 16 epochs of `lookback`-row windows. It has no random_state:
      sktime initialises it from torch's global random state.
    - "itransformer": `ITransformerForecaster` (`kronos_sk.baselines`), trained in `fit`.
    - "garch": `sktime.forecasting.arch.ARCH`, GARCH(1, 1) with a constant mean, the
      volatility baseline: fit it on returns (e.g. percent log returns of the close), not
      on levels; `predict_var(fh)` gives the variance of each future return, and its sum
      over the horizon the realized-variance forecast.

    Parameters
    ----------
    lookback : int, default=64
        Context rows of the network baselines (DLinear, iTransformer).
    horizon : int, default=16
        Longest forecast of the network baselines, in steps; fh may not go beyond it.
    random_state : int or None, default=0
        Seed of the iTransformer and the GARCH simulations.

    Returns
    -------
    dict of str to BaseForecaster
        Unfitted forecasters, in the order above.

    Raises
    ------
    ImportError
        If statsmodels or arch is missing, with the command that installs them.

    Examples
    --------
    >>> from kronos_sk.baselines import baseline_forecasters
    >>> sorted(baseline_forecasters(lookback=32, horizon=8))
    ['arima', 'dlinear', 'ets', 'garch', 'itransformer', 'naive-drift', 'naive-last']
    """
    missing = [name for name in REQUIRED_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"baseline_forecasters needs {', '.join(missing)}: "
                          'pip install "kronos-sk[baselines]"')
    dlinear = LTSFDLinearForecaster(seq_len=lookback, pred_len=horizon)
    return {
        "naive-last": NaiveForecaster(strategy="last"),
        "naive-drift": NaiveForecaster(strategy="drift"),
        "ets": AutoETS(auto=False),
        "arima": StatsModelsARIMA(order=(1, 1, 1)),
        "dlinear": TransformedTargetForecaster([
            ("standardise", TabularToSeriesAdaptor(StandardScaler())),
            ("dlinear", dlinear)]),
        "itransformer": ITransformerForecaster(lookback=lookback, horizon=horizon,
                                               random_state=random_state),
        "garch": ARCH(random_state=random_state),
    }
