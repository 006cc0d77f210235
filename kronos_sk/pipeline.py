"""The forecasting procedure on pandas candles: validate, stamp, sample, label.

`KronosPipeline` holds a tokenizer and a predictor and turns a candle frame, a list of them or
an (asset, timestamp) panel into `ForecastPaths`: every sampled path in original units with its
future timestamps. It is the one forecasting procedure: `KronosForecaster` (its forecasts and
its calibration backtests) and the command line end in `KronosPipeline.sample_validated`, so
the same candles and `random_state` give the same paths through every face.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import pandas as pd
import torch

from kronos_sk._params import probability_levels
from kronos_sk.calibration import PathCalibration, fit_calibration
from kronos_sk.checkpoints import (Spread, load_predictor, load_tokenizer, model_context,
                                   model_spread)
from kronos_sk.data import (FEATURE_COLUMNS, assemble_features, future_index, time_features,
                            validate_candles, validate_panel)
from kronos_sk.data.normalize import check_model_space
from kronos_sk.generation import (DEFAULT_MAX_PATHS, DEFAULT_N_SAMPLES, DEFAULT_TOP_P,
                                  MIN_CONTEXT_ROWS, check_sampling, forecast_paths,
                                  series_key, series_seeds)
from kronos_sk.metrics import sample_quantiles
from kronos_sk.nn.predictor import KronosPredictor
from kronos_sk.nn.tokenizer import KronosTokenizer
from kronos_sk.runtime import DEFAULT_DEVICE

Candles = pd.DataFrame | Sequence[pd.DataFrame] | Mapping[str, pd.DataFrame]


@dataclass
class ForecastPaths:
    """Sampled future candles of several series.

    Attributes
    ----------
    paths : ndarray of shape (n_series, n_samples, horizon, 6), float32
        Every path in original units, columns in `columns` order.
    index : list of DatetimeIndex
        The `horizon` future timestamps of each series.
    assets : list
        The name of each series.
    columns : tuple of str
    redrawn : ndarray of shape (n_series, 2), int
        Per series, the paths drawn again by the positive-price rule and, of those, the
        ones replaced by an accepted path (see `kronos_sk.generation.forecast_paths`).
    """

    paths: np.ndarray
    index: list[pd.DatetimeIndex]
    assets: list
    columns: tuple[str, ...] = FEATURE_COLUMNS
    redrawn: np.ndarray | None = None

    def _frame(self, values: np.ndarray, columns) -> pd.DataFrame:
        """Stack (n_series, horizon, k) values into one float64 frame, indexed like the input."""
        frames = [pd.DataFrame(v.astype(np.float64), index=idx, columns=columns)
                  for v, idx in zip(values, self.index)]
        if len(frames) == 1 and self.assets == [None]:
            return frames[0]
        return pd.concat(frames, keys=self.assets, names=["asset", "timestamp"])

    def mean(self) -> pd.DataFrame:
        """The mean over samples of every column."""
        return self._frame(self.paths.mean(axis=1, dtype=np.float64), list(self.columns))

    def quantiles(self, levels: Sequence[float] = (0.05, 0.25, 0.5, 0.75, 0.95),
                  columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Quantiles over samples (`kronos_sk.metrics.sample_quantiles`, as the forecaster
        reads them); columns named like `close_q0.05`."""
        levels = probability_levels(levels, "levels")
        columns = list(self.columns if columns is None else columns)
        unknown = [c for c in columns if c not in self.columns]
        if unknown:
            raise ValueError(f"columns: {unknown} are not among the paths' {self.columns}")
        picks = [self.columns.index(c) for c in columns]
        q = sample_quantiles(self.paths[..., picks], levels, axis=1)  # (n_levels, B, H, k)
        values = np.concatenate([q[i] for i in range(len(levels))], axis=-1)
        names = [f"{c}_q{level:g}" for level in levels for c in columns]
        return self._frame(values, names)


def _check_random_state(random_state: object) -> None:
    """The estimators' rule for a seed: None or an int in [0, 2**32)."""
    if random_state is not None and (isinstance(random_state, (bool, np.bool_))
                                     or not isinstance(random_state, Integral)
                                     or not 0 <= random_state < 2**32):
        raise ValueError(f"random_state must be None or an int in [0, 2**32), got "
                         f"{random_state!r}")


def _split_input(candles: Candles) -> tuple[list, list[pd.DataFrame]]:
    """Validate the user's candles; return (asset names, one validated frame per series)."""
    # Too-short series are named here, by asset, rather than by position in the batch.
    if isinstance(candles, pd.DataFrame) and isinstance(candles.index, pd.MultiIndex):
        panel = validate_panel(candles, min_rows=MIN_CONTEXT_ROWS)
        level = panel.index.names[0] if panel.index.names[0] is not None else 0
        assets = list(panel.index.get_level_values(0).unique())
        frames = [panel.xs(asset, level=level) for asset in assets]
        return assets, frames
    if isinstance(candles, pd.DataFrame):
        return [None], [validate_candles(candles, min_rows=MIN_CONTEXT_ROWS)]
    if isinstance(candles, Mapping):
        items = list(candles.items())
    elif isinstance(candles, Sequence) and not isinstance(candles, (str, bytes)):
        items = list(enumerate(candles))
    else:
        raise TypeError("candles must be a DataFrame, an (asset, timestamp) panel, or a list "
                        f"or dict of DataFrames, got {type(candles).__name__}")
    if not items:
        raise ValueError("candles: no series given")
    return [k for k, _ in items], [validate_candles(f, name=f"candles[{k!r}]",
                                                    min_rows=MIN_CONTEXT_ROWS)
                                   for k, f in items]


class KronosPipeline:
    """Kronos forecasting on pandas candles.

    Parameters
    ----------
    tokenizer : KronosTokenizer
    predictor : KronosPredictor
    max_context : int, default=512
        The predictor's window in tokens (512 for Kronos-small/base, 2048 for Kronos-mini).
    spread : Spread, default=Spread() (as sampled)
        How valid paths are adjusted: drawn towards the last close, then widened, the
        candles' gaps and wicks shaped like the context's, and the mean's candles drawn in
        alike (the model's own spread,
        [`model_spread`][kronos_sk.checkpoints.model_spread]).

    Examples
    --------
    >>> from kronos_sk.pipeline import KronosPipeline
    >>> pipe = KronosPipeline.from_pretrained("tests/fixtures/kronos-compat/model",
    ...                                       "tests/fixtures/kronos-compat/tokenizer")
    >>> import pandas as pd
    >>> candles = pd.read_csv("tests/fixtures/kronos-compat/candles.csv", index_col=0,
    ...                       parse_dates=True)
    >>> forecast = pipe.sample(candles.iloc[:64], horizon=4, n_samples=3, random_state=0)
    >>> forecast.paths.shape
    (1, 3, 4, 6)
    """

    def __init__(self, tokenizer: KronosTokenizer, predictor: KronosPredictor,
                 max_context: int = 512, spread: Spread = Spread()):
        if tokenizer.config.s1_bits != predictor.config.s1_bits or (
                tokenizer.config.s2_bits != predictor.config.s2_bits):
            raise ValueError(
                f"tokenizer ({tokenizer.config.s1_bits}+{tokenizer.config.s2_bits} bits) and "
                f"predictor ({predictor.config.s1_bits}+{predictor.config.s2_bits} bits) "
                "do not belong together")
        if tokenizer.config.d_in != len(FEATURE_COLUMNS):
            raise ValueError(f"tokenizer d_in={tokenizer.config.d_in}; Kronos candles have "
                             f"{len(FEATURE_COLUMNS)} features {FEATURE_COLUMNS}")
        self.tokenizer, self.predictor, self.max_context = tokenizer, predictor, max_context
        self.spread = spread

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike, tokenizer: str | os.PathLike, *,
                        max_context: int | None = None,
                        device: str | torch.device = DEFAULT_DEVICE,
                        precision: str = "auto") -> KronosPipeline:
        """Load checkpoint directories (or hub ids) of a predictor and its tokenizer.

        `max_context=None` uses the window the checkpoint was trained on
        ([`model_context`][kronos_sk.checkpoints.model_context]), and paths get the
        checkpoint's own spread ([`model_spread`][kronos_sk.checkpoints.model_spread]).
        `device="auto"` picks CUDA, then MPS, then the CPU; `precision="auto"` is float32
        (full bfloat16 weights change greedy forecasts, see
        `kronos_sk.runtime.BF16_WHERE_NATIVE`).
        """
        max_context = model_context(model) if max_context is None else max_context
        return cls(load_tokenizer(tokenizer, device, precision),
                   load_predictor(model, device, precision), max_context, model_spread(model))

    def sample(self, candles: Candles, horizon: int | None = None, *,
               future: pd.DatetimeIndex | Sequence[pd.DatetimeIndex] | None = None,
               freq: str | None = None, n_samples: int = DEFAULT_N_SAMPLES,
               temperature: float = 1.0, top_k: int = 0, top_p: float = DEFAULT_TOP_P,
               random_state: int | None = None, sliding: str = "exact",
               max_paths: int = DEFAULT_MAX_PATHS, prefill_precision: str = "auto",
               valid_candles: bool = True, stratified: bool = True) -> ForecastPaths:
        """Sample `n_samples` future paths of every series, all series in one batched call.

        Parameters
        ----------
        candles : DataFrame, list or dict of DataFrames, or panel
            Candles with a DatetimeIndex (or timestamp column) and OHLC (+ volume, + amount)
            columns; several series (lengths may differ); or an (asset, timestamp) panel.
        horizon : int or None, default=None
            Number of future rows; their timestamps continue each series at `freq`
            (default: the index's frequency, else the step and calendar the history shows,
            see `kronos_sk.data.future_index`). Or give `future` instead.
        future : DatetimeIndex, or a list or dict of them, default=None
            The future timestamps themselves: one index for all series, a dict by asset
            (candles a dict or a panel) or a list in the order of the series; use it for
            irregular calendars (sessions, lunch breaks, holidays).
        freq : str or None, default=None
            Frequency of the future rows when `horizon` is given.
        n_samples, temperature, top_k, top_p, sliding, max_paths, prefill_precision
            Sampling settings, see `kronos_sk.generation.forecast_paths` (defaults: 20
            paths, temperature 1, no top-k, top-p 1.0, "auto" prefill; the same in every
            face). ``prefill_precision="auto"`` runs the batched context passes in bfloat16
            where the device computes it natively (faster, within seed noise:
            `benchmarks/bench_precision.py`), in float32 elsewhere.
        random_state : int or None, default=None
            Seeds every path from (random_state, asset name), so a series gets the same
            paths whatever else is in the batch.
        valid_candles : bool, default=True
            True: valid candles with positive prices (see `forecast_paths`), adjusted by
            `spread`; False: the model's raw decoding, unchanged (the reference's).
        stratified : bool, default=True
            The paths of each series drawn stratified: each an exact draw of the model,
            together covering its distribution evenly, so their mean and quantiles move less
            from seed to seed (see `forecast_paths`); False: independent paths.

        Returns
        -------
        ForecastPaths
        """
        check_sampling(n_samples, temperature, top_k, top_p, self.max_context, sliding)
        _check_random_state(random_state)
        assets, frames = _split_input(candles)
        futures = self._future_indexes(assets, frames, horizon, future, freq)
        paths, redrawn = self.sample_validated(
            frames, futures, [series_key(asset) for asset in assets], n_samples=n_samples,
            temperature=temperature, top_k=top_k, top_p=top_p, random_state=random_state,
            sliding=sliding, max_paths=max_paths, prefill_precision=prefill_precision,
            valid_candles=valid_candles, stratified=stratified, return_redraws=True,
            names=["the series" if asset is None else f"series {asset!r}" for asset in assets])
        return ForecastPaths(paths, futures, assets, redrawn=redrawn)

    def calibrate(self, candles: Candles, horizon: int, *, origins: int = 2,
                  stride: int | None = None, n_samples: int = DEFAULT_N_SAMPLES,
                  temperature: float = 1.0, top_k: int = 0, top_p: float = DEFAULT_TOP_P,
                  random_state: int | None = None, sliding: str = "exact",
                  max_paths: int = DEFAULT_MAX_PATHS, prefill_precision: str = "auto",
                  stratified: bool = True) -> PathCalibration:
        """Backtest on the last `origins` origins inside each series and learn a calibration.

        All origins of all series are generated in one batched call; origin k ends its
        context ``horizon + k * stride`` rows before the series' end (`stride` default:
        `horizon`). Apply the result to the paths of a forecast with the same settings::

            calibration = pipe.calibrate(candles, horizon=10, random_state=0)
            paths = calibration.apply(pipe.sample(candles, 10, random_state=0).paths)

        Returns
        -------
        PathCalibration
        """
        check_sampling(n_samples, temperature, top_k, top_p, self.max_context, sliding)
        _check_random_state(random_state)
        assets, frames = _split_input(candles)
        return fit_calibration(
            self, frames, [(asset, None) for asset in assets], horizon, origins=origins,
            stride=stride, n_samples=n_samples, temperature=temperature, top_k=top_k,
            top_p=top_p, random_state=random_state, sliding=sliding, max_paths=max_paths,
            prefill_precision=prefill_precision, stratified=stratified)

    def sample_validated(self, frames: Sequence[pd.DataFrame],
                         futures: Sequence[pd.DatetimeIndex], keys: Sequence[str], *,
                         n_samples: int = DEFAULT_N_SAMPLES, temperature: float = 1.0,
                         top_k: int = 0, top_p: float = DEFAULT_TOP_P,
                         random_state: int | None = None, sliding: str = "exact",
                         max_paths: int = DEFAULT_MAX_PATHS,
                         prefill_precision: str = "auto", valid_candles: bool = True,
                         stratified: bool = True, names: Sequence[str] | None = None,
                         return_redraws: bool = False,
                         ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The procedure after validation: features, calendar stamps, seeds, generation.

        Every face ends here (`sample`, `KronosForecaster` and its calibration backtests,
        the command line), so the same candles give the same paths through each.

        Parameters
        ----------
        frames : sequence of DataFrame
            Candles as `kronos_sk.data.validate_candles` returns them.
        futures : sequence of DatetimeIndex
            The future timestamps of each series, all of one length H.
        keys : sequence of str
            The identity of each series (`kronos_sk.generation.series_key`); with
            `random_state` it seeds the series' paths.
        n_samples, temperature, top_k, top_p, random_state, sliding, max_paths
            Sampling settings, as for `sample`.
        prefill_precision, valid_candles, stratified
            As for `sample`.
        names : sequence of str or None, default=None
            How messages name each series (default "series i", by position).
        return_redraws : bool, default=False
            Also return the (n_series, 2) counts of `ForecastPaths.redrawn`.

        Returns
        -------
        ndarray of shape (n_series, n_samples, H, 6), float32
        """
        features = [assemble_features(f) for f in frames]
        names = [f"series {i}" for i in range(len(frames))] if names is None else list(names)
        for values, frame, name in zip(features, frames, names):  # rows named by their stamp
            check_model_space(values, self.tokenizer.config.value_transform, name, frame.index)
        return forecast_paths(
            self.tokenizer, self.predictor, features,
            [time_features(f.index) for f in frames],
            np.stack([time_features(idx) for idx in futures]), n_samples=n_samples,
            temperature=temperature, top_k=top_k, top_p=top_p, max_context=self.max_context,
            seeds=series_seeds(random_state, keys), sliding=sliding, max_paths=max_paths,
            prefill_precision=prefill_precision, valid_candles=valid_candles,
            spread=self.spread, stratified=stratified, names=names,
            return_redraws=return_redraws)

    @staticmethod
    def _future_indexes(assets: list, frames: list[pd.DataFrame], horizon: int | None, future,
                        freq) -> list[pd.DatetimeIndex]:
        if future is None:
            if horizon is None:
                raise ValueError("give the horizon (number of future rows) or the future "
                                 "timestamps")
            return [future_index(frame.index, horizon, freq) for frame in frames]
        if isinstance(future, pd.Index):
            indexes = [future] * len(frames)
        elif isinstance(future, Mapping):
            missing = [asset for asset in assets if asset not in future]
            if missing or len(future) != len(assets):
                extra = [key for key in future if key not in assets]
                raise ValueError(f"future: a dict needs one index per asset; missing "
                                 f"{missing}, unknown {extra}")
            indexes = [future[asset] for asset in assets]
        else:  # a list, in the order of the series
            indexes = list(future)
        if len(indexes) != len(frames):
            raise ValueError(f"future: got {len(indexes)} indexes for {len(frames)} series")
        indexes = [pd.DatetimeIndex(idx) for idx in indexes]
        lengths = {len(idx) for idx in indexes}
        if len(lengths) != 1 or 0 in lengths:
            raise ValueError(f"future: every series needs the same positive number of "
                             f"timestamps, got lengths {sorted(lengths)}")
        if horizon is not None and lengths != {horizon}:
            raise ValueError(f"horizon={horizon} disagrees with {lengths.pop()} future "
                             "timestamps")
        for frame, idx, asset in zip(frames, indexes, assets):
            name = f"future[{0 if asset is None else asset!r}]"
            if not idx.is_monotonic_increasing or idx.has_duplicates:
                raise ValueError(f"{name}: timestamps must be strictly increasing")
            if idx[0] <= frame.index[-1]:
                raise ValueError(f"{name}: first timestamp {idx[0]} is not after the last "
                                 f"context timestamp {frame.index[-1]}")
        return indexes
