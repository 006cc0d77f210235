"""`ITransformerForecaster`: a compact iTransformer trained per dataset, as an sktime forecaster.

iTransformer (Liu et al., 2024) inverts the usual time-series transformer: every variate
(column) is one token, embedded from its whole lookback window, and attention mixes the
variates rather than the time steps. The network comes first (config, module), then the
window sampler, then the estimator.

References
----------
Liu, Y., Hu, T., Zhang, H., Wu, H., Wang, S., Ma, L. and Long, M. (2024). iTransformer:
Inverted Transformers Are Effective for Time Series Forecasting. ICLR 2024.
https://arxiv.org/abs/2310.06625
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sktime.forecasting.base import BaseForecaster
from torch import nn

from kronos_sk._params import check_positive_int
from kronos_sk._sktime_notices import no_remember_data_notice

# Floor of the instance-normalisation variance, relative to the window's squared level (1 for
# an all-zero lookback): a constant lookback (a padded short series, a halted stock) would
# otherwise divide its targets by ~0 and blow up the loss. Relative, so that a token quoted
# near 1e-5 is not flattened by a floor far above its spread.
NORM_EPS = 1e-5


# ---------------------------------------------------------------------- network
@dataclass
class ITransformerConfig:
    """Shape of an `ITransformer` network; it does not depend on the number of variates."""

    lookback: int = 64
    horizon: int = 16
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    dropout: float = 0.1


class ITransformer(nn.Module):
    """Variate tokens -> pre-norm transformer encoder -> per-token linear forecast.

    Each window is normalised per variate by its lookback mean and standard deviation
    (RevIN without the affine part) and the forecast is de-normalised with the same
    statistics, so one network serves prices and volumes of any scale.
    """

    def __init__(self, config: ITransformerConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Linear(config.lookback, config.d_model)
        layer = nn.TransformerEncoderLayer(
            config.d_model, config.n_heads, dim_feedforward=4 * config.d_model,
            dropout=config.dropout, activation="gelu", batch_first=True, norm_first=True)
        # Nested tensors only speed up padded post-norm inference; they warn with norm_first.
        self.encoder = nn.TransformerEncoder(layer, config.n_layers,
                                             norm=nn.LayerNorm(config.d_model),
                                             enable_nested_tensor=False)
        self.head = nn.Linear(config.d_model, config.horizon)

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Forecast the next `horizon` rows of every variate.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, lookback, n_variates)
            Raw lookback windows.
        targets : torch.Tensor of shape (batch, horizon, n_variates), optional
            Raw future rows; when given, the loss is computed.

        Returns
        -------
        forecast : torch.Tensor of shape (batch, horizon, n_variates)
            De-normalised forecast, dtype and device of `x`.
        loss : torch.Tensor or None
            Mean squared error in the normalised space of each window (so every variate and
            window weighs alike), or None without `targets`.
        """
        mean = x.mean(dim=1, keepdim=True)  # (B, 1, N)
        var = x.var(dim=1, keepdim=True, unbiased=False)
        level = torch.where(mean != 0, mean.square(), torch.ones_like(mean))
        std = torch.sqrt(var + NORM_EPS * level)  # (B, 1, N)
        tokens = self.embed(((x - mean) / std).transpose(1, 2))  # (B, N, d_model)
        z = self.head(self.encoder(tokens)).transpose(1, 2)  # (B, H, N), normalised
        loss = None if targets is None else F.mse_loss(z, (targets - mean) / std)
        return z * std + mean, loss


# ---------------------------------------------------------------------- windows
def _pad_front(values: np.ndarray, length: int) -> np.ndarray:
    """Repeat the first row in front of `values` (T, N) until it has `length` rows."""
    missing = length - len(values)
    if missing <= 0:
        return values
    return np.concatenate([np.repeat(values[:1], missing, axis=0), values])


class _Windows:
    """Every (lookback + horizon) window of a set of series, gathered in batches.

    The series are stored end to end in one array; a window never crosses two series.
    """

    def __init__(self, series: list[np.ndarray], lookback: int, horizon: int):
        length = lookback + horizon
        padded = [_pad_front(s, length) for s in series]
        offsets = np.cumsum([0] + [len(s) for s in padded])
        self.values = torch.from_numpy(np.concatenate(padded).astype(np.float32))  # (T, N)
        self.starts = np.concatenate([np.arange(o, o + len(s) - length + 1)
                                      for o, s in zip(offsets[:-1], padded)])
        self.lookback = lookback
        self._span = torch.arange(length)

    def __len__(self) -> int:
        return len(self.starts)

    def batch(self, picks: np.ndarray, device: torch.device
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """(lookback rows, future rows) of the windows `picks`, each (B, L or H, N)."""
        rows = torch.from_numpy(self.starts[picks])[:, None] + self._span  # (B, L + H)
        window = self.values[rows].to(device)  # (B, L + H, N)
        return window[:, :self.lookback], window[:, self.lookback:]


# ---------------------------------------------------------------------- estimator
class ITransformerForecaster(BaseForecaster):
    """iTransformer trained on `y` in `fit`, as a global multivariate sktime forecaster.

    Every column of `y` is a variate token, embedded from its last `lookback` values by one
    linear layer; a pre-norm transformer encoder attends across the variates, and a linear
    head maps each token to its next `horizon` values. Windows are instance-normalised per
    variate with their lookback mean and standard deviation (RevIN without affine) and the
    output de-normalised, so the network is independent of scale and of the number of
    columns. All series of a panel train one shared network (a global model) on their
    sliding windows, with AdamW and a mean squared error in the normalised space.

    Parameters
    ----------
    lookback : int, default=64
        Rows of context per forecast (and per training window).
    horizon : int, default=16
        Rows forecast by the network; `predict` handles any fh up to this many steps ahead.
    d_model : int, default=64
        Width of the variate tokens.
    n_heads : int, default=4
        Attention heads; must divide `d_model`.
    n_layers : int, default=2
        Encoder blocks (feed-forward width 4 * `d_model`, GELU).
    dropout : float, default=0.1
        Dropout in the encoder blocks during training.
    max_epochs : int, default=10
        Passes over all training windows, in a fresh random order each.
    max_steps : int or None, default=1000
        Optimizer steps at most, whichever of the two limits comes first; None for
        `max_epochs` only.
    batch_size : int, default=32
        Training windows per step.
    learning_rate : float, default=1e-3
        AdamW learning rate (constant; weight decay 0.01).
    random_state : int or None, default=None
        Seeds the initial weights, dropout and the window order; the global torch and numpy
        random states are left untouched.
    device : str, default="cpu"
        Torch device for training and prediction ("cpu", "cuda", "cuda:1", "mps").

    Attributes
    ----------
    network_ : ITransformer
        The trained network, in eval mode on `device`.
    columns_ : list
        The columns of `y` (the variates), in order.
    loss_curve_ : list of float
        Training loss of every optimizer step.
    n_windows_ : int
        Training windows drawn from `y`.

    Notes
    -----
    A series shorter than `lookback + horizon` rows is padded in front by repeating its
    first row, so it still gives one training window, and a context shorter than `lookback`
    at prediction is padded likewise. Series of a panel may have different lengths; each is
    forecast from its own last time (as sktime does for per-series forecasters). Indexes
    may be datetime, period or integer: the network only sees row order.

    `update(y)` appends the new rows to the context of the next forecast without retraining;
    fit again to train on them.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from kronos_sk.baselines import ITransformerForecaster
    >>> rng = np.random.default_rng(0)
    >>> close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 120)))
    >>> y = pd.DataFrame({"close": close, "volume": rng.lognormal(10, 0.3, 120)},
    ...                  index=pd.date_range("2024-01-01", periods=120, freq="D"))
    >>> forecaster = ITransformerForecaster(lookback=32, horizon=8, d_model=16, n_heads=2,
    ...                                     n_layers=1, max_epochs=2, random_state=0)
    >>> forecaster.fit(y).predict(fh=[1, 2, 3]).shape
    (3, 2)
    """

    _tags = {
        "authors": ["kronos-sk developers"],
        "maintainers": ["kronos-sk developers"],
        "python_dependencies": ["torch"],
        "y_inner_mtype": ["pd.DataFrame", "pd-multiindex", "pd_multiindex_hier"],
        "X_inner_mtype": ["pd.DataFrame", "pd-multiindex", "pd_multiindex_hier"],
        "capability:multivariate": True,
        "capability:exogenous": False,
        "capability:insample": False,
        "capability:pred_int": False,
        "capability:missing_values": False,
        "capability:update": True,
        "capability:random_state": True,
        "property:randomness": "derandomized",
        "capability:unequal_length": True,
        "requires-fh-in-fit": False,
    }
    _config = {"remember_data": True}  # self._y is the context that update() extends

    def __init__(self, lookback=64, horizon=16, d_model=64, n_heads=4, n_layers=2,
                 dropout=0.1, max_epochs=10, max_steps=1000, batch_size=32,
                 learning_rate=1e-3, random_state=None, device="cpu"):
        self.lookback = lookback
        self.horizon = horizon
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_layers = n_layers
        self.dropout = dropout
        self.max_epochs = max_epochs
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.random_state = random_state
        self.device = device
        # remember_data is set explicitly in _config (self._y is the context), so sktime's
        # notice about that config's changing default does not apply here.
        with no_remember_data_notice():
            super().__init__()

    # ------------------------------------------------------------------ checks and data
    def _check_params(self) -> torch.device:
        """Validate the hyperparameters; return the torch device."""
        for name in ("lookback", "horizon", "d_model", "n_heads", "n_layers", "max_epochs",
                     "batch_size"):
            check_positive_int(getattr(self, name), name)
        if self.max_steps is not None:
            check_positive_int(self.max_steps, "max_steps")
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads={self.n_heads} must divide d_model={self.d_model}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate!r}")
        if self.random_state is not None and (
                isinstance(self.random_state, bool)
                or not isinstance(self.random_state, (int, np.integer))
                or self.random_state < 0):
            raise ValueError(f"random_state must be None or a non-negative integer, "
                             f"got {self.random_state!r}")
        try:
            return torch.device(self.device)
        except (RuntimeError, TypeError) as error:
            raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda', "
                             f"got {self.device!r}") from error

    @staticmethod
    def _instances(y: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
        """Split `y` into (instance key, series) pairs; the key is () for a single series."""
        if not isinstance(y.index, pd.MultiIndex):
            return [((), y)]
        levels = list(range(y.index.nlevels - 1))
        return [(key, frame.droplevel(levels))
                for key, frame in y.groupby(level=levels, sort=False)]

    # ------------------------------------------------------------------ fit
    def _fit(self, y, X=None, fh=None):
        device = self._check_params()
        self.columns_ = list(y.columns)
        windows = _Windows([frame.to_numpy(dtype=np.float64)
                            for _, frame in self._instances(y)], self.lookback, self.horizon)
        self.n_windows_ = len(windows)
        seed = (self.random_state if self.random_state is not None
                else int(np.random.SeedSequence().entropy % 2**63))
        with torch.random.fork_rng():  # the CPU and every CUDA device
            torch.manual_seed(seed)
            network = ITransformer(ITransformerConfig(
                lookback=self.lookback, horizon=self.horizon, d_model=self.d_model,
                n_heads=self.n_heads, n_layers=self.n_layers, dropout=self.dropout)).to(device)
            self.loss_curve_ = self._train(network, windows, np.random.default_rng(seed),
                                           device)
        self.network_ = network.eval()
        return self

    def _train(self, network: ITransformer, windows: _Windows, rng: np.random.Generator,
               device: torch.device) -> list[float]:
        optimizer = torch.optim.AdamW(network.parameters(), lr=self.learning_rate)
        network.train()
        losses: list[float] = []
        for _ in range(self.max_epochs):
            order = rng.permutation(len(windows))
            for first in range(0, len(order), self.batch_size):
                x, target = windows.batch(order[first:first + self.batch_size], device)
                _, loss = network(x, target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                if self.max_steps is not None and len(losses) >= self.max_steps:
                    return losses
        return losses

    def _update(self, y, X=None, update_params=True):
        # The base class has appended y to self._y, the context of the next forecast; the
        # weights stay as trained in fit (see the class Notes).
        return self

    # ------------------------------------------------------------------ predict
    def _predict(self, fh, X=None):
        instances = self._instances(self._y)
        contexts = [_pad_front(frame.to_numpy(dtype=np.float64)[-self.lookback:],
                               self.lookback) for _, frame in instances]
        device = next(self.network_.parameters()).device
        x = torch.from_numpy(np.stack(contexts).astype(np.float32)).to(device)
        with torch.no_grad():
            forecast, _ = self.network_(x)  # (n_instances, horizon, N)
        forecast = forecast.double().cpu().numpy()
        frames = []
        for (key, frame), values in zip(instances, forecast):
            # Like sktime's per-series forecasters, a series of an unequal-length panel is
            # forecast from its own last time.
            cutoff = self._series_cutoff(frame.index)
            steps = fh.to_relative(cutoff).to_numpy().astype(int)
            if steps.max() > self.horizon:
                raise ValueError(
                    f"fh reaches {steps.max()} steps after the last time {cutoff[0]} of "
                    f"series {key!r}, beyond the trained horizon={self.horizon}; fit with "
                    f"horizon >= {steps.max()}")
            times = fh.to_absolute_index(cutoff)
            index = (pd.MultiIndex.from_tuples([(*key, t) for t in times])
                     if key else times)
            frames.append(pd.DataFrame(values[steps - 1], index=index, columns=self.columns_))
        prediction = pd.concat(frames) if len(frames) > 1 else frames[0]
        prediction.index = prediction.index.set_names(self._y.index.names)
        return prediction

    def _series_cutoff(self, index: pd.Index) -> pd.Index:
        """The last time of one series as a cutoff, with a frequency for datetime indexes.

        The frequency is that of the cutoff, else of the series' index, else inferred from
        it (sktime's panel cutoffs carry none).
        """
        last = index[-1:]
        if not isinstance(last, pd.DatetimeIndex):
            return last
        freq = self.cutoff.freq or index.freq
        if freq is None and len(index) >= 3:
            freq = pd.infer_freq(index)
        return pd.DatetimeIndex(last, freq=freq)

    @classmethod
    def get_test_params(cls, parameter_set="default"):
        """Two tiny configurations that train in a few steps on the CPU."""
        return [
            {"lookback": 8, "horizon": 5, "d_model": 8, "n_heads": 2, "n_layers": 1,
             "max_epochs": 1, "max_steps": 2, "batch_size": 4, "random_state": 0},
            {"lookback": 4, "horizon": 6, "d_model": 4, "n_heads": 1, "n_layers": 2,
             "dropout": 0.0, "max_epochs": 2, "max_steps": None, "batch_size": 16,
             "learning_rate": 1e-2, "random_state": 1},
        ]
