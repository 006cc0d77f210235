"""Synthetic K-line path generators: the classical baselines of the generation benchmark.

Each generator is fitted on one series of candles (a frame with columns open, high, low,
close and optionally volume) and samples paths of future candles that continue from its
last candle: `sample(horizon, n_paths, random_state)` returns an array of shape
(n_paths, horizon, n_columns), float64, in the columns (and column order) of the fitted
frame. Every sampled candle satisfies high >= max(open, close) >= min(open, close) >= low > 0.

- `GBMGenerator`: geometric Brownian motion of the close.
- `GARCHGenerator`: GARCH(1, 1) log returns (needs the `arch` package).
- `BlockBootstrapGenerator`: circular block bootstrap of whole historical candles.

The two return models build candles the same way: each open is the previous close, the
wicks above and below the body are exponential draws whose mean is the fitted average wick
in units of the bar's return volatility, and volumes are drawn from the history with
replacement (independently of the returns).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from kronos_sk._params import check_positive_int
from kronos_sk.data.validation import check_values

PRICE_COLUMNS = ("open", "high", "low", "close")
VOLUME = "volume"
# arch's optimiser is tuned for returns of order 1, so GARCH is fitted on percent returns.
PERCENT = 100.0


def _check_candles(candles: pd.DataFrame, min_rows: int, owner: str) -> np.ndarray:
    """Validate a candle frame; return its values (T, n_columns) as float64."""
    if not isinstance(candles, pd.DataFrame):
        raise TypeError(f"{owner}.fit expects a pandas DataFrame of candles, "
                        f"got {type(candles).__name__}")
    columns = list(candles.columns)
    missing = [c for c in PRICE_COLUMNS if c not in columns]
    extra = [c for c in columns if c not in (*PRICE_COLUMNS, VOLUME)]
    if missing or extra:
        raise ValueError(f"{owner}.fit: candles need columns open, high, low, close and "
                         f"optionally volume; missing {missing}, not supported {extra}")
    if len(set(columns)) != len(columns):
        raise ValueError(f"{owner}.fit: duplicated columns in {columns}")
    if len(candles) < min_rows:
        raise ValueError(f"{owner}.fit needs at least {min_rows} candles, got {len(candles)}")
    values = candles.to_numpy(dtype=np.float64)
    check_values(values, columns, candles.index, f"{owner}.fit: candles")
    return values


def _check_sample_args(horizon: int, n_paths: int) -> None:
    for name, value in (("horizon", horizon), ("n_paths", n_paths)):
        check_positive_int(value, name)


def _check_fitted(generator: BaseEstimator) -> None:
    if not hasattr(generator, "columns_"):
        raise NotFittedError(f"{type(generator).__name__} is not fitted; call fit(candles) "
                             "before sample")


def _wicks(values: np.ndarray, columns: list) -> tuple[np.ndarray, np.ndarray]:
    """Log upper and lower wicks of every candle, each (T,), >= 0 also for rows that break the
    envelope by float noise (within the validator's tolerance)."""
    o, h, l, c = (values[:, columns.index(name)] for name in PRICE_COLUMNS)
    upper = np.log(np.maximum(h, np.maximum(o, c)) / np.maximum(o, c))
    lower = np.log(np.minimum(o, c) / np.minimum(l, np.minimum(o, c)))
    return upper, lower


class _ReturnModelGenerator(BaseEstimator):
    """Shared state and candle construction of the generators that model close returns."""

    def _fit_common(self, values: np.ndarray, columns: list) -> None:
        self.columns_ = columns
        self.last_close_ = float(values[-1, columns.index("close")])
        self.volumes_ = values[:, columns.index(VOLUME)] if VOLUME in columns else None

    def sample(self, horizon: int, n_paths: int, random_state=None) -> np.ndarray:
        """Sample candle paths continuing from the last fitted candle.

        Parameters
        ----------
        horizon : int
            Candles per path.
        n_paths : int
            Number of paths.
        random_state : int, numpy Generator or None, default=None
            Seed of the draws; the same seed gives the same paths.

        Returns
        -------
        numpy.ndarray of shape (n_paths, horizon, n_columns), float64
            The candles, in the columns of the fitted frame.
        """
        _check_fitted(self)
        _check_sample_args(horizon, n_paths)
        rng = np.random.default_rng(random_state)
        returns, sigma = self._returns(horizon, n_paths, rng)
        return self._candles(returns, sigma, rng)

    def _returns(self, horizon: int, n_paths: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Log returns of the close and bar volatilities, each (n_paths, horizon)."""
        raise NotImplementedError

    def _candles(self, returns: np.ndarray, sigma: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
        """Candles (P, H, n_columns) from log returns (P, H) and bar volatilities (P, H)."""
        closes = self.last_close_ * np.exp(np.cumsum(returns, axis=1))
        opens = np.concatenate([np.full((len(closes), 1), self.last_close_),
                                closes[:, :-1]], axis=1)
        fields = {
            "open": opens,
            "close": closes,
            "high": np.maximum(opens, closes) * np.exp(rng.exponential(self.upper_wick_ * sigma)),
            "low": np.minimum(opens, closes) * np.exp(-rng.exponential(self.lower_wick_ * sigma)),
        }
        if self.volumes_ is not None:
            fields[VOLUME] = rng.choice(self.volumes_, size=returns.shape)
        return np.stack([fields[c] for c in self.columns_], axis=-1)


class GBMGenerator(_ReturnModelGenerator):
    """Geometric Brownian motion of the close, with candles built around it.

    Log returns per bar are i.i.d. normal with mean ``drift_ - volatility_**2 / 2`` and
    standard deviation ``volatility_``, both fitted by maximum likelihood on the log returns
    of the closes. See the module docstring for how opens, wicks and volumes are made.

    Attributes
    ----------
    drift_ : float
        GBM drift per bar (mu; the expected close grows by exp(mu) per bar).
    volatility_ : float
        GBM volatility per bar (sigma).
    upper_wick_, lower_wick_ : float
        Mean log wick above / below the candle body, in units of `volatility_`.
    last_close_ : float
        Close of the last candle, where every path starts.
    columns_ : list
        Columns of the fitted candles, the columns of the samples.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from kronos_sk.baselines import GBMGenerator
    >>> close = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, 250)))
    >>> candles = pd.DataFrame({"open": close, "high": close * 1.01, "low": close * 0.99,
    ...                         "close": close})
    >>> GBMGenerator().fit(candles).sample(horizon=20, n_paths=100, random_state=0).shape
    (100, 20, 4)
    """

    def fit(self, candles: pd.DataFrame) -> GBMGenerator:
        """Fit drift, volatility and wick sizes on candles (at least 3 rows)."""
        values = _check_candles(candles, 3, type(self).__name__)
        columns = list(candles.columns)
        returns = np.diff(np.log(values[:, columns.index("close")]))
        mean = returns.mean()
        self.volatility_ = float(np.sqrt(np.mean((returns - mean) ** 2)))  # MLE: divide by n
        self.drift_ = float(mean + self.volatility_**2 / 2)
        upper, lower = _wicks(values, columns)
        scale = self.volatility_ if self.volatility_ > 0 else 1.0  # a constant close: no wicks
        self.upper_wick_ = float(upper.mean() / scale)
        self.lower_wick_ = float(lower.mean() / scale)
        self._fit_common(values, columns)
        return self

    def _returns(self, horizon: int, n_paths: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        returns = rng.normal(self.drift_ - self.volatility_**2 / 2, self.volatility_,
                             size=(n_paths, horizon))
        return returns, np.full_like(returns, self.volatility_)


class GARCHGenerator(_ReturnModelGenerator):
    """GARCH(1, 1) log returns of the close, with candles built around them.

    Fits ``r_t = mu + e_t``, ``e_t = s_t z_t``, ``s_t^2 = omega + alpha e_{t-1}^2 +
    beta s_{t-1}^2`` on the percent log returns of the closes with the `arch` package
    (maximum likelihood), then simulates the recursion forward from the last fitted
    conditional variance, so paths start in the volatility regime of the last candle.
    Wick sizes are fitted in units of each bar's conditional volatility, so wicks widen and
    narrow with it.

    Parameters
    ----------
    dist : {"normal", "t"}, default="normal"
        Distribution of the innovations z_t; "t" is a Student t scaled to unit variance
        with fitted degrees of freedom (fatter tails).

    Attributes
    ----------
    mu_, omega_, alpha_, beta_ : float
        Fitted parameters, with returns in percent (omega in percent squared).
    nu_ : float or None
        Degrees of freedom of the t innovations; None for "normal".
    persistence_ : float
        ``alpha_ + beta_``, below 1 for a stationary variance.
    next_variance_ : float
        Conditional variance (percent squared) of the first sampled return.
    upper_wick_, lower_wick_ : float
        Mean log wick above / below the body, in units of the bar's conditional volatility.
    last_close_ : float
        Close of the last candle, where every path starts.
    columns_ : list
        Columns of the fitted candles, the columns of the samples.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from kronos_sk.baselines import GARCHGenerator
    >>> close = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, 250)))
    >>> candles = pd.DataFrame({"open": close, "high": close * 1.01, "low": close * 0.99,
    ...                         "close": close})
    >>> GARCHGenerator().fit(candles).sample(horizon=20, n_paths=100, random_state=0).shape
    (100, 20, 4)
    """

    def __init__(self, dist: str = "normal"):
        self.dist = dist

    def fit(self, candles: pd.DataFrame) -> GARCHGenerator:
        """Fit GARCH(1, 1) and wick sizes on candles (at least 50 rows)."""
        try:
            from arch import arch_model
        except ImportError as error:
            raise ImportError("GARCHGenerator needs the arch package: "
                              'pip install "kronos-sk[baselines]"') from error
        if self.dist not in ("normal", "t"):
            raise ValueError(f"dist must be 'normal' or 't', got {self.dist!r}")
        values = _check_candles(candles, 50, type(self).__name__)
        columns = list(candles.columns)
        returns = PERCENT * np.diff(np.log(values[:, columns.index("close")]))
        result = arch_model(returns, mean="Constant", vol="GARCH", p=1, q=1, dist=self.dist,
                            rescale=False).fit(disp="off", show_warning=False)
        params = result.params
        self.mu_ = float(params["mu"])
        self.omega_ = float(params["omega"])
        self.alpha_ = float(params["alpha[1]"])
        self.beta_ = float(params["beta[1]"])
        self.nu_ = float(params["nu"]) if self.dist == "t" else None
        self.persistence_ = self.alpha_ + self.beta_
        variance = np.asarray(result.conditional_volatility) ** 2  # of returns 1..T
        self.next_variance_ = float(self.omega_ + self.alpha_ * (returns[-1] - self.mu_) ** 2
                                    + self.beta_ * variance[-1])
        upper, lower = _wicks(values[1:], columns)  # the candles whose return has a variance
        bar_vol = np.sqrt(variance) / PERCENT
        self.upper_wick_ = float(np.mean(upper / bar_vol))
        self.lower_wick_ = float(np.mean(lower / bar_vol))
        self._fit_common(values, columns)
        return self

    def _returns(self, horizon: int, n_paths: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if self.nu_ is None:
            shocks = rng.standard_normal((n_paths, horizon))
        else:  # unit-variance Student t
            shocks = rng.standard_t(self.nu_, (n_paths, horizon)) * np.sqrt(
                (self.nu_ - 2) / self.nu_)
        variance = np.full(n_paths, self.next_variance_)
        returns = np.empty((n_paths, horizon))
        sigma = np.empty((n_paths, horizon))
        for t in range(horizon):
            sigma[:, t] = np.sqrt(variance)
            error = sigma[:, t] * shocks[:, t]
            returns[:, t] = self.mu_ + error
            variance = self.omega_ + self.alpha_ * error**2 + self.beta_ * variance
        return returns / PERCENT, sigma / PERCENT


class BlockBootstrapGenerator(BaseEstimator):
    """Circular block bootstrap of whole historical candles.

    Every historical candle (from the second on) is stored relative to the close before
    it: open, high, low and close as ratios to the previous close, and its volume. A path
    is made of blocks of `block_length` consecutive such candles starting at uniformly
    drawn positions, wrapping around the end of the history (circular), chained from the
    last close: each candle's prices are its ratios times the close before it. Paths keep
    the gaps, wicks, volume and short-range dependence of the history.

    Parameters
    ----------
    block_length : int, default=10
        Consecutive historical candles per block.

    Attributes
    ----------
    relative_ : numpy.ndarray of shape (n_candles - 1, 4)
        Open, high, low, close of each candle over the previous close; high and low are
        widened to cover open and close where a source row breaks that rule.
    volumes_ : numpy.ndarray of shape (n_candles - 1,) or None
        Volume of each of those candles; None without a volume column.
    last_close_ : float
        Close of the last candle, where every path starts.
    columns_ : list
        Columns of the fitted candles, the columns of the samples.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from kronos_sk.baselines import BlockBootstrapGenerator
    >>> close = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, 250)))
    >>> candles = pd.DataFrame({"open": close, "high": close * 1.01, "low": close * 0.99,
    ...                         "close": close, "volume": 1e6})
    >>> generator = BlockBootstrapGenerator(block_length=5).fit(candles)
    >>> generator.sample(horizon=20, n_paths=100, random_state=0).shape
    (100, 20, 5)
    """

    def __init__(self, block_length: int = 10):
        self.block_length = block_length

    def fit(self, candles: pd.DataFrame) -> BlockBootstrapGenerator:
        """Store the candles relative to their previous close (at least 2 rows)."""
        block = self.block_length
        check_positive_int(block, "block_length")
        values = _check_candles(candles, 2, type(self).__name__)
        columns = list(candles.columns)
        o, h, l, c = (values[:, columns.index(name)] for name in PRICE_COLUMNS)
        relative = np.stack([o[1:], np.maximum(h[1:], np.maximum(o[1:], c[1:])),
                             np.minimum(l[1:], np.minimum(o[1:], c[1:])), c[1:]], axis=1)
        self.relative_ = relative / c[:-1, None]
        self.volumes_ = values[1:, columns.index(VOLUME)] if VOLUME in columns else None
        self.last_close_ = float(c[-1])
        self.columns_ = columns
        return self

    def sample(self, horizon: int, n_paths: int, random_state=None) -> np.ndarray:
        """Sample candle paths continuing from the last fitted candle.

        Parameters
        ----------
        horizon : int
            Candles per path.
        n_paths : int
            Number of paths.
        random_state : int, numpy Generator or None, default=None
            Seed of the block positions; the same seed gives the same paths.

        Returns
        -------
        numpy.ndarray of shape (n_paths, horizon, n_columns), float64
            The candles, in the columns of the fitted frame.
        """
        _check_fitted(self)
        _check_sample_args(horizon, n_paths)
        rng = np.random.default_rng(random_state)
        n, block = len(self.relative_), self.block_length
        n_blocks = -(-horizon // block)
        starts = rng.integers(0, n, size=(n_paths, n_blocks))
        picks = ((starts[:, :, None] + np.arange(block)) % n).reshape(n_paths, -1)[:, :horizon]
        ratios = self.relative_[picks]  # (P, H, 4): open, high, low, close over previous close
        closes = self.last_close_ * np.cumprod(ratios[..., 3], axis=1)
        previous = np.concatenate([np.full((n_paths, 1), self.last_close_), closes[:, :-1]],
                                  axis=1)
        fields = dict(zip(PRICE_COLUMNS, np.moveaxis(ratios * previous[..., None], -1, 0)))
        if self.volumes_ is not None:
            fields[VOLUME] = self.volumes_[picks]
        return np.stack([fields[c] for c in self.columns_], axis=-1)
