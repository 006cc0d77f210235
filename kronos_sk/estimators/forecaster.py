"""`KronosForecaster`: Kronos as an sktime forecaster with probabilistic output."""

from __future__ import annotations

import os
import time
import warnings
import weakref
from numbers import Integral, Real

import numpy as np
import pandas as pd
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sktime.forecasting.base import BaseForecaster, ForecastingHorizon

from kronos_sk._defaults import (DEFAULT_BATCH_SIZE, DEFAULT_DEVICE, DEFAULT_MAX_STEPS,
                                DEFAULT_N_SAMPLES, DEFAULT_TOP_P, learning_rate_for)
from kronos_sk._params import positive_int, positive_real, validate_params
from kronos_sk._sktime_notices import no_remember_data_notice
from kronos_sk.calibration import PathCalibration
from kronos_sk.checkpoints import default_checkpoint, model_context
from kronos_sk.data import (FEATURE_COLUMNS, PRICE_COLUMNS, SeriesWindows, assemble_features,
                            canonical_columns, time_features, validate_candles)
from kronos_sk.data.validation import check_cells, check_values
from kronos_sk.data.windows import DEFAULT_MIN_CONTEXT
from kronos_sk.estimators._training import train_network
from kronos_sk.estimators._weights import (cached_predictor, cached_tokenizer, load_references,
                                           reference_modules)
from kronos_sk.generation import SLIDING_MODES, check_sampling, series_key
from kronos_sk.nn.config import small_predictor_config, small_tokenizer_config
from kronos_sk.nn.predictor import KronosPredictor
from kronos_sk.nn.tokenizer import KronosTokenizer
from kronos_sk.pipeline import KronosPipeline
from kronos_sk.runtime import PRECISIONS, resolve_device

FIT_STRATEGIES = ("zero-shot", "fine-tune", "from-scratch")
CALIBRATIONS = ("conformal",)
MIN_CALIBRATION_CONTEXT = 16  # fewest context rows of a calibration backtest


class _PathCache:
    """The last generation of each live forecaster, kept outside its ``__dict__``.

    A cache is not state: sktime checks that predict leaves the state unchanged, and pickles
    and copies should not carry it. Entries go with their forecaster (sktime estimators
    compare by value, so they cannot be weak dictionary keys; entries are keyed by id).
    """

    def __init__(self) -> None:
        self._entries: dict[int, tuple] = {}
        self._watched: set[int] = set()  # owners with a finalizer: one each, however often

    def get(self, owner: object) -> tuple | None:
        return self._entries.get(id(owner))

    def put(self, owner: object, entry: tuple) -> None:
        if id(owner) not in self._watched:
            self._watched.add(id(owner))
            weakref.finalize(owner, self._forget, id(owner))
        self._entries[id(owner)] = entry

    def _forget(self, key: int) -> None:
        self._entries.pop(key, None)
        self._watched.discard(key)

    def drop(self, owner: object) -> None:
        self._entries.pop(id(owner), None)

    def __contains__(self, owner: object) -> bool:
        return id(owner) in self._entries


_KEPT_PATHS = _PathCache()
# Integer and period indexes get calendar stamps counted from this Monday (see the docs).
SYNTHETIC_ORIGIN = pd.Timestamp("2000-01-03")
CLOSE = FEATURE_COLUMNS.index("close")


class KronosForecaster(BaseForecaster):
    """Kronos, the foundation model for candlesticks, as a probabilistic sktime forecaster.

    Every forecast comes from `n_samples` sampled paths of the whole candle (open, high,
    low, close, volume, amount): `predict` is their mean; `predict_quantiles`,
    `predict_interval`, `predict_var` and `predict_proba` (an skpro `Empirical` over the
    paths) all describe the same paths, and `sample` returns them. All series of a panel are
    generated in one batched call, whatever their lengths, and once per fh: the last paths
    are kept until the next fit, update or parameter change, so that several methods on one
    fh cost one generation.

    Parameters
    ----------
    model : str or None, default=None
        Predictor checkpoint: a directory in the released layout (`config.json` +
        `model.safetensors`) or a hub id; None for the bundled default model.
    tokenizer : str or None, default=None
        Tokenizer checkpoint, likewise.
    fit_strategy : {"zero-shot", "fine-tune", "from-scratch"}, default="zero-shot"
        "zero-shot" keeps the weights and only stores the context; "fine-tune" trains the
        predictor (and the tokenizer if `finetune_tokenizer`) on `y`; "from-scratch" trains
        a new tokenizer and predictor of `tokenizer_config` / `model_config` on `y`.
    n_samples : int, default=20
        Sampled paths per series.
    temperature : float, default=1.0
        Logits are divided by it before sampling.
    top_k : int, default=0
        Keep the k most likely ids (0 disables it); ``n_samples=1, top_k=1`` is the released
        greedy forecast.
    top_p : float, default=1.0
        Keep the smallest set of ids whose probability reaches it, within the top-k ids.
    max_context : int or None, default=None
        The predictor's window in tokens. None: the window the model was trained on
        (``lookback + horizon`` for "from-scratch"; else read from the checkpoint by
        [`model_context`][kronos_sk.checkpoints.model_context]: its ``inference.json``, 2048
        for the Kronos-mini shape, 512 for Kronos-small and Kronos-base).
    device : str or torch.device, default="auto"
        "auto" (CUDA, then MPS, then the CPU), "cpu", "cuda", "cuda:N" or "mps"; loading,
        generation and training all run on exactly this device.
    random_state : int or None, default=None
        Seeds the paths of each series from (random_state, series name), so results do not
        depend on the batch or on the order of series; also seeds training.
    precision : {"float32", "bfloat16"}, default="float32"
    sliding : {"exact", "rolling"}, default="exact"
        How the window slides once context + forecast outgrow `max_context` (see
        `kronos_sk.generation`).
    freq : str or None, default=None
        Frequency of future rows for relative horizons when the index has none; also the
        step of synthetic stamps for integer indexes (default "D").
    lookback : int, default=64
        Rows of a training window whose statistics normalise it.
    horizon : int, default=16
        Further rows of a training window (normalised with the lookback statistics).
    max_steps : int, default=100
        Optimizer steps per trained network ("fine-tune", "from-scratch", `pretrain`).
    batch_size : int, default=16
        Training windows per optimizer step.
    learning_rate : float or None, default=None
        Peak learning rate of AdamW (short linear warm-up, then cosine decay); None: 1e-4 to
        fine-tune a checkpoint, 1e-3 from scratch (the same defaults in every estimator).
    finetune_tokenizer : bool, default=False
        With "fine-tune" and `pretrain`, also train the tokenizer before the predictor.
    model_config : dict or None, default=None
        `PredictorConfig` fields for "from-scratch", overriding the small CPU-friendly
        network `kronos_sk.nn.config.SMALL_PREDICTOR` (the one `KLineTokenizer` pairs with).
    tokenizer_config : dict or None, default=None
        `TokenizerConfig` fields for "from-scratch", overriding
        `kronos_sk.nn.config.SMALL_TOKENIZER` (the network of
        ``KLineTokenizer(fit_strategy="from-scratch")``).
    max_paths : int, default=256
        At most this many paths (series x samples) are generated at once.
    calibration : {None, "conformal"}, default=None
        "conformal": at fit, backtest the model on the last `calibration_origins` origins
        inside `y` (every series, pooled, in one batched generation) and learn a spread
        scale per horizon step of close and volume
        ([`PathCalibration`][kronos_sk.calibration.PathCalibration]); every output then
        describes the calibrated paths. The median path does not move.
    calibration_origins : int, default=8
        Backtest origins per series; fit costs about this many predictions more.
    calibration_stride : int or None, default=None
        Rows between backtest origins; None: the calibrated horizon (non-overlapping).
    calibration_rate : float, default=0.05
        Step of the adaptive-conformal correction applied by `update` when the truth of the
        last prediction arrives.
    prefill_precision : {"float32", "bfloat16"}, default="float32"
        Precision of the batched context passes (prefill and exact window re-runs); the
        one-token steps keep `precision`. "bfloat16" is faster on CPUs with native bf16, at
        an accuracy cost measured in `benchmarks/bench_precision.py`; it warns elsewhere.

    Attributes
    ----------
    tokenizer_ : KronosTokenizer
        The tokenizer used; shared read-only with other estimators loading the same files,
        unless trained.
    predictor_ : KronosPredictor
        The predictor used, likewise.
    columns_ : list
        The columns of `y` that are forecast, in order.
    loss_curve_ : list of float
        Training losses of the last fit or pretrain that trained.
    calibration_ : PathCalibration or None
        The learned spread scales (``calibration="conformal"``), refreshed by `update`.
    calibration_seconds_ : float
        Wall time of the calibration backtests at fit.

    Notes
    -----
    Columns of `y` are matched to open, high, low, close (+ volume, amount) by name, case
    insensitive, with aliases (`vol`, `amt`, `turnover`). If no column is a candle field (or
    the only one is a close), each column is forecast as its own "flat candle" series
    (open = high = low = close = value, no volume), so any univariate price series works.
    Integer and period indexes get calendar stamps counted from 2000-01-03 in steps of
    `freq`.

    Absolute horizons on an index without a frequency (sessions, lunch breaks, holidays) are
    read as the timestamps of the next rows, in order.

    Pickles carry a reference (absolute directory + SHA-256) for weights loaded from a
    checkpoint and reload them through the weight cache, refusing changed files; trained
    weights travel in the pickle. Unpickle only files you trust: pickles run code.

    Examples
    --------
    >>> import pandas as pd
    >>> from kronos_sk.estimators import KronosForecaster
    >>> y = pd.read_csv("tests/fixtures/kronos-compat/candles.csv", index_col=0,
    ...                 parse_dates=True).iloc[:64]
    >>> forecaster = KronosForecaster(model="tests/fixtures/kronos-compat/model",
    ...                               tokenizer="tests/fixtures/kronos-compat/tokenizer",
    ...                               max_context=128, n_samples=5, random_state=0)
    >>> future = pd.date_range("2025-03-04 10:55", periods=4, freq="5min")
    >>> forecaster.fit(y).predict(fh=future).shape
    (4, 6)
    """

    _tags = {
        "authors": ["kronos-sk developers"],
        "maintainers": ["kronos-sk developers"],
        "python_dependencies": ["torch", "safetensors", "skpro"],
        "y_inner_mtype": ["pd.DataFrame", "pd-multiindex", "pd_multiindex_hier"],
        "X_inner_mtype": ["pd.DataFrame", "pd-multiindex", "pd_multiindex_hier"],
        "capability:multivariate": True,
        "capability:exogenous": False,
        "capability:insample": False,
        "capability:pred_int": True,
        "capability:pred_int:insample": False,
        "capability:missing_values": False,
        "capability:pretrain": True,
        "pretrain:fitted_params": ["tokenizer_", "predictor_", "pretrain_loss_curve_"],
        "capability:update": True,
        "capability:random_state": True,
        "property:randomness": "derandomized",
        "capability:unequal_length": True,
        "requires-fh-in-fit": False,
    }
    _config = {"remember_data": True}  # self._y is the context that update() extends

    # Checked at fit (and pretrain); messages name the parameter and the value given.
    _parameter_constraints: dict = {
        "model": [str, os.PathLike, None],
        "tokenizer": [str, os.PathLike, None],
        "fit_strategy": [StrOptions(set(FIT_STRATEGIES))],
        "n_samples": positive_int(),
        "temperature": positive_real(),
        "top_k": [Interval(Integral, 0, None, closed="left")],
        "top_p": [Interval(Real, 0, 1, closed="right")],
        "max_context": positive_int(allow_none=True),
        "device": [str, torch.device],
        "random_state": [Interval(Integral, 0, 2**32, closed="left"), None],
        "precision": [StrOptions(set(PRECISIONS))],
        "prefill_precision": [StrOptions(set(PRECISIONS))],
        "sliding": [StrOptions(set(SLIDING_MODES))],
        "freq": [str, pd.DateOffset, None],
        "lookback": positive_int(),
        "horizon": positive_int(),
        "max_steps": positive_int(),
        "batch_size": positive_int(),
        "learning_rate": [*positive_real(), None],
        "finetune_tokenizer": ["boolean"],
        "model_config": [dict, None],
        "tokenizer_config": [dict, None],
        "max_paths": positive_int(),
        "calibration": [StrOptions(set(CALIBRATIONS)), None],
        "calibration_origins": positive_int(),
        "calibration_stride": positive_int(allow_none=True),
        "calibration_rate": positive_real(),
    }

    def __init__(self, model=None, tokenizer=None, fit_strategy="zero-shot",
                 n_samples=DEFAULT_N_SAMPLES, temperature=1.0, top_k=0, top_p=DEFAULT_TOP_P,
                 max_context=None, device=DEFAULT_DEVICE,
                 random_state=None, precision="float32", sliding="exact", freq=None,
                 lookback=64, horizon=16, max_steps=DEFAULT_MAX_STEPS,
                 batch_size=DEFAULT_BATCH_SIZE, learning_rate=None,
                 finetune_tokenizer=False, model_config=None, tokenizer_config=None,
                 max_paths=256, calibration=None, calibration_origins=8,
                 calibration_stride=None, calibration_rate=0.05, prefill_precision="float32"):
        self.model = model
        self.tokenizer = tokenizer
        self.fit_strategy = fit_strategy
        self.n_samples = n_samples
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.max_context = max_context
        self.device = device
        self.random_state = random_state
        self.precision = precision
        self.prefill_precision = prefill_precision
        self.sliding = sliding
        self.freq = freq
        self.lookback = lookback
        self.horizon = horizon
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.finetune_tokenizer = finetune_tokenizer
        self.model_config = model_config
        self.tokenizer_config = tokenizer_config
        self.max_paths = max_paths
        self.calibration = calibration
        self.calibration_origins = calibration_origins
        self.calibration_stride = calibration_stride
        self.calibration_rate = calibration_rate
        # remember_data is set explicitly in _config (self._y is the context), so sktime's
        # notice about that config's changing default does not apply here.
        with no_remember_data_notice():
            super().__init__()

    # ------------------------------------------------------------------ pickles
    def __getstate__(self) -> dict:
        # Weights loaded from a checkpoint travel as a reference (directory + sha256) and
        # come back through the weight cache; trained weights travel in the pickle.
        return reference_modules(self.__dict__, ("tokenizer_", "predictor_"))

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(load_references(state, state["device"], state["precision"]))

    # ------------------------------------------------------------------ checks and data
    def _check_params(self) -> None:
        validate_params(self, self._parameter_constraints)
        self._max_context = self._resolved_context()
        check_sampling(self.n_samples, self.temperature, self.top_k, self.top_p,
                       self._max_context, self.sliding)
        resolve_device(self.device)  # names an accelerator that is not there

    def _resolved_context(self) -> int:
        if self.max_context is not None:
            return self.max_context
        if self.fit_strategy == "from-scratch":
            return self.lookback + self.horizon
        return model_context(self.model if self.model is not None
                             else default_checkpoint("predictor"))

    def _layout(self, y: pd.DataFrame) -> tuple[str, dict]:
        """("candles", {user column: field}) or ("flat", {}) for the columns of `y`."""
        mapping = canonical_columns(y.columns)
        if not mapping or set(mapping.values()) == {"close"}:  # e.g. a lone close series
            return "flat", {}
        missing = [c for c in PRICE_COLUMNS if c not in mapping.values()]
        if missing:
            raise ValueError(
                f"y: columns {list(y.columns)} name some candle fields but not {missing}; "
                "give open, high, low and close (+ volume, amount), or columns that are not "
                "candle fields to forecast each as a flat series")
        extra = [c for c in y.columns if c not in mapping]
        if extra:
            raise ValueError(f"y: column(s) {extra} are not candle fields (open, high, low, "
                             "close, volume, amount); drop them")
        return "candles", mapping

    def _warn_without_timestamps(self, y: pd.DataFrame) -> None:
        times = y.index.get_level_values(-1)
        if not isinstance(times, (pd.DatetimeIndex, pd.PeriodIndex)):
            warnings.warn(
                f"y has no timestamps (its time index is a {type(times).__name__}): Kronos's "
                f"calendar embeddings see invented dates, one {self.freq or 'D'} step apart "
                f"from {SYNTHETIC_ORIGIN.date()}; give y a DatetimeIndex or PeriodIndex for "
                "real calendar features", UserWarning, stacklevel=2)

    def _datetime(self, index: pd.Index) -> pd.DatetimeIndex:
        """Wall-clock timestamps of an index (synthetic for integer indexes)."""
        if isinstance(index, pd.DatetimeIndex):
            return index
        if isinstance(index, pd.PeriodIndex):
            return index.to_timestamp()
        step = pd.tseries.frequencies.to_offset(self.freq or "D")
        return pd.DatetimeIndex([SYNTHETIC_ORIGIN + int(i) * step for i in index])

    def _series(self, y: pd.DataFrame) -> list[tuple[object, str | None, pd.DataFrame]]:
        """Split `y` into (instance key, flat column or None, candles) triples."""
        if isinstance(y.index, pd.MultiIndex):
            levels = list(range(y.index.nlevels - 1))
            missing = y.index.droplevel(-1).to_frame().isna().any(axis=1).to_numpy()
            if missing.any():  # groupby would drop those rows without a word
                pos = int(missing.argmax())
                raise ValueError(f"y: the series name at row {pos} {y.index[pos]} is missing; "
                                 "drop or name those rows")
            groups = [(key if len(levels) > 1 else key[0], frame.droplevel(levels))
                      for key, frame in y.groupby(level=levels, sort=False)]
        else:
            groups = [(None, y)]
        out = []
        for key, frame in groups:
            name = "y" if key is None else f"y[{key!r}]"
            if self._mode == "flat":
                for column in frame.columns:
                    values = frame[column].astype(float)
                    candles = pd.DataFrame({c: values for c in PRICE_COLUMNS})
                    candles.index = self._datetime(frame.index)
                    out.append((key, column, _checked(candles, f"{name}[{column!r}]",
                                                      flat=True)))
            else:
                candles = frame.rename(columns=self._mapping)
                candles.index = self._datetime(frame.index)
                out.append((key, None, _checked(candles, name, flat=False)))
        return out

    # ------------------------------------------------------------------ fit
    def _fit(self, y, X=None, fh=None):
        self._check_params()
        self._mode, self._mapping = self._layout(y)
        self._warn_without_timestamps(y)
        self.columns_ = list(y.columns)
        self._set_context(y)
        if self.state == "pretrained":  # keep what pretrain learned
            pass
        elif self.fit_strategy == "from-scratch":
            self._train_from_scratch()
        else:
            self.tokenizer_, self.predictor_ = self._load_networks()
            self.loss_curve_ = []
            if self.fit_strategy == "fine-tune":
                self._fine_tune(self._windows(self._contexts))
        self._calibrate(fh)
        return self

    def _calibrate(self, fh) -> None:
        """Learn `calibration_` from backtests at the last origins inside the context."""
        self.calibration_, self.calibration_seconds_ = None, 0.0
        if self.calibration is None:
            return
        start = time.perf_counter()
        horizon = self.horizon
        if fh is not None and fh.is_relative:
            horizon = int(max(fh.to_pandas()))
        contexts, futures, truths, keys = self._backtests(horizon)
        paths = self._sample(contexts, futures, keys)
        self.calibration_ = PathCalibration.fit(paths, np.stack(truths))
        self.calibration_seconds_ = time.perf_counter() - start

    def _backtests(self, horizon: int) -> tuple[list, list, list, list]:
        """Contexts, future timestamps, truths and seed keys of the calibration backtests:
        origin k of a series ends its context `horizon + k * stride` rows before the series'
        end, and the next `horizon` rows are the truth."""
        stride = self.calibration_stride or horizon
        contexts, futures, truths, keys = [], [], [], []
        for key, column, candles in self._contexts:
            values = assemble_features(candles)
            for k in range(self.calibration_origins):
                origin = len(candles) - horizon - k * stride
                if origin < MIN_CALIBRATION_CONTEXT:
                    break
                contexts.append(candles.iloc[:origin])
                futures.append(candles.index[origin:origin + horizon])
                truths.append(values[origin:origin + horizon])
                keys.append(repr(("calibration", key, column, k)))
        if not contexts:
            raise ValueError(
                f"calibration='conformal' needs series of at least "
                f"{MIN_CALIBRATION_CONTEXT + horizon} rows ({MIN_CALIBRATION_CONTEXT} of context "
                f"+ a horizon of {horizon}); the longest has "
                f"{max(len(c) for _, _, c in self._contexts)}")
        return contexts, futures, truths, keys

    def _set_context(self, y: pd.DataFrame) -> None:
        self._contexts = self._series(y)
        # Drawn once per fit, so every prediction method describes the same paths.
        self._path_seed = (self.random_state if self.random_state is not None
                      else int(np.random.SeedSequence().entropy % 2**63))
        _KEPT_PATHS.drop(self)  # sampled from the previous context

    def _load_networks(self) -> tuple[KronosTokenizer, KronosPredictor]:
        model = self.model if self.model is not None else default_checkpoint("predictor")
        tokenizer = (self.tokenizer if self.tokenizer is not None
                     else default_checkpoint("tokenizer"))
        return (cached_tokenizer(tokenizer, self.device, self.precision),
                cached_predictor(model, self.device, self.precision))

    def _windows(self, contexts) -> SeriesWindows:
        series = [(assemble_features(c), time_features(c.index)) for _, _, c in contexts]
        length = min(self.lookback + self.horizon, max(len(v) for v, _ in series))
        if length < 2:
            raise ValueError("training needs series of at least 2 rows")
        horizon = min(self.horizon, length - 1)
        lookback = length - horizon
        return SeriesWindows(series, lookback, horizon, self.batch_size,
                             min_context=min(DEFAULT_MIN_CONTEXT, lookback),
                             seed=self._training_seed(), mask_fraction=0.05)

    def _training_seed(self) -> int:
        return int(np.random.RandomState(self.random_state).randint(0, 2**31 - 1))

    def _train(self, task, source, start=None, model_config=None):
        module, losses = train_network(
            task, source, start=start, model_config=model_config,
            tokenizer=self.tokenizer_ if task == "predictor" else None,
            max_steps=self.max_steps, batch_size=self.batch_size,
            learning_rate=learning_rate_for(self.fit_strategy, self.learning_rate),
            seed=self._training_seed(), device=self.device)
        self.loss_curve_ = list(getattr(self, "loss_curve_", [])) + losses
        return module

    def _train_from_scratch(self) -> None:
        source = self._windows(self._contexts)
        tokenizer_config = small_tokenizer_config(self.tokenizer_config)
        model_config = small_predictor_config(tokenizer_config, self.model_config)
        self.loss_curve_ = []
        self.tokenizer_ = self._train("tokenizer", source, model_config=tokenizer_config.to_dict())
        self.predictor_ = self._train("predictor", source, model_config=model_config.to_dict())

    def _fine_tune(self, source: SeriesWindows) -> None:
        if self.finetune_tokenizer:
            self.tokenizer_ = self._train("tokenizer", source, start=self.tokenizer_)
        self.predictor_ = self._train("predictor", source, start=self.predictor_)

    def _pretrain(self, y, X=None, fh=None):
        self._check_params()
        _KEPT_PATHS.drop(self)
        self._mode, self._mapping = self._layout(y)
        self._warn_without_timestamps(y)
        contexts = self._series(y)
        self.loss_curve_ = []
        if self.fit_strategy == "from-scratch":
            self._contexts = contexts
            self._train_from_scratch()
        else:
            self.tokenizer_, self.predictor_ = self._load_networks()
            self._fine_tune(self._windows(contexts))
        self.pretrain_loss_curve_ = self.loss_curve_
        return self

    def _pretrain_update(self, y, X=None, fh=None):
        _KEPT_PATHS.drop(self)
        self._mode, self._mapping = self._layout(y)
        self._fine_tune(self._windows(self._series(y)))
        self.pretrain_loss_curve_ = self.pretrain_loss_curve_ + self.loss_curve_
        return self

    def fit(self, y, X=None, fh=None):
        """Fit to `y` (sktime's `fit`); bad cells are named before sktime's checks run."""
        _check_cells_of(y)
        return super().fit(y, X=X, fh=fh)

    def pretrain(self, y, X=None, fh=None):
        """Pre-train on the panel `y` (sktime's `pretrain`); bad cells are named first."""
        _check_cells_of(y)
        return super().pretrain(y, X=X, fh=fh)

    def update(self, y, X=None, update_params=True):
        """Append new rows of `y` to the context (sktime's `update`).

        Rows already seen may be passed again (sktime's backtests resend the whole window),
        but `y` must reach the cutoff: ending before it would move the cutoff back.
        """
        _check_cells_of(y)
        if self.is_fitted and isinstance(y, (pd.Series, pd.DataFrame)) and len(y):
            times = (y.index.get_level_values(-1) if isinstance(y.index, pd.MultiIndex)
                     else y.index)
            if times.max() < self.cutoff[0]:
                raise ValueError(f"update: y ends at {times.max()}, before the cutoff "
                                 f"{self.cutoff[0]} (the last row already seen); pass the rows "
                                 "that follow it")
        return super().update(y, X=X, update_params=update_params)

    def _update(self, y, X=None, update_params=True):
        self._adapt_calibration(y)
        self._set_context(self._y)  # the base class has appended y to self._y
        return self

    def _adapt_calibration(self, y: pd.DataFrame) -> None:
        """The adaptive-conformal step: score the kept paths of the last prediction against
        the rows that have now arrived, for the series whose whole forecast grid they hold."""
        kept = _KEPT_PATHS.get(self)
        if getattr(self, "calibration_", None) is None or kept is None:
            return
        _, raw, _, grids, _, _ = kept
        arrived = {(key, column): candles for key, column, candles in self._series(y)}
        rows, truths = [], []
        for i, (key, column, _) in enumerate(self._contexts):
            candles = arrived.get((key, column))
            if candles is not None and candles.index[:len(grids[i])].equals(grids[i]):
                rows.append(i)
                truths.append(assemble_features(candles.iloc[:len(grids[i])]))
        H = min(len(grids[i]) for i in rows) if rows else 0
        if H:
            self.calibration_ = self.calibration_.update(
                raw[rows, :, :H], np.stack([t[:H] for t in truths]),
                rate=self.calibration_rate)

    # ------------------------------------------------------------------ predict
    def _check_fh(self, fh, pred_int=False):
        # sktime checks that fh is out of sample by converting timestamps to steps, which
        # needs a frequency. Irregular calendars (sessions, lunch breaks, holidays) have none,
        # so for absolute timestamps there the check compares them with the cutoff instead.
        cutoff = getattr(self, "_cutoff", None)
        if fh is None or not isinstance(cutoff, pd.DatetimeIndex) or cutoff.freq is not None:
            return super()._check_fh(fh, pred_int)
        fh = fh if isinstance(fh, ForecastingHorizon) else ForecastingHorizon(fh)
        if fh.is_relative:
            if self.freq is None:
                raise ValueError(
                    "a relative fh needs a frequency, and the index of y has none: pass "
                    "freq= (e.g. '5min', 'B') or the absolute future timestamps")
            step = pd.tseries.frequencies.to_offset(self.freq)
            fh = ForecastingHorizon(pd.DatetimeIndex(
                [cutoff[-1] + int(k) * step for k in fh.to_pandas()]), is_relative=False)
        names = ("capability:insample", "capability:pred_int:insample")
        saved = {name: self.get_tag(name) for name in names}
        self.set_tags(**dict.fromkeys(names, True))
        try:
            checked = super()._check_fh(fh, pred_int)
        finally:
            self.set_tags(**saved)
        if (checked.to_pandas() <= cutoff[-1]).any():
            raise NotImplementedError(f"{type(self).__name__} can not perform in-sample "
                                      f"prediction. Found fh with in sample index: {fh}")
        return checked

    def _targets(self, absolute: pd.Index, candles: pd.DataFrame, original: pd.Index):
        """(steps 1.., datetime stamps of steps 1..H) of the fh timestamps for one series."""
        if isinstance(original, pd.DatetimeIndex):
            freq = self.freq or original.freq or _inferred_freq(original)
            if freq is None:  # irregular calendar: the targets are the next rows, in order
                targets = pd.DatetimeIndex(absolute)
                if targets[0] <= candles.index[-1]:
                    raise ValueError(f"fh: {targets[0]} is not after the last observation "
                                     f"{candles.index[-1]}")
                return np.arange(1, len(targets) + 1), targets
            last = original[-1]
            targets = pd.DatetimeIndex(absolute)
            steps = np.array([len(pd.date_range(last, t, freq=freq)) - 1 for t in targets])
            grid = pd.date_range(last, periods=steps.max() + 1, freq=freq)[1:]
            if not targets.isin(grid).all():
                raise ValueError(f"fh: {list(targets[~targets.isin(grid)])} are not on the "
                                 f"{freq} grid after {last}")
            return steps, grid
        # integer or period index: steps counted in index units
        last = original[-1]
        if isinstance(original, pd.PeriodIndex):
            steps = np.array([(t - last).n for t in absolute])
            grid_index = pd.period_range(last + 1, periods=steps.max(), freq=original.freq)
        else:
            steps = np.array([int(t) - int(last) for t in absolute])
            grid_index = pd.Index(np.arange(int(last) + 1, int(last) + steps.max() + 1))
        return steps, self._datetime(grid_index)

    def _paths(self, absolute: pd.Index) -> tuple[np.ndarray, np.ndarray]:
        """(paths (n_series, S, H, 6), steps (n_series, len(fh))) at these fh timestamps.

        Paths are a pure function of the fitted context, the fh timestamps and the sampling
        settings, so every prediction method on one fh reads one generation: the last one
        is kept under a key of the latter two and dropped when the context changes (fit,
        update, pretrain; set_params resets the whole estimator). Both arrays are read-only.
        """
        calibration = getattr(self, "calibration_", None)
        key = (self.tokenizer_, self.predictor_, self._path_seed, self._max_context,
               self.n_samples, self.temperature, self.top_k, self.top_p, self.sliding,
               self.max_paths, self.prefill_precision, self.freq, str(absolute.dtype),
               tuple(absolute))
        kept = _KEPT_PATHS.get(self)
        if kept is None or kept[0] != key:
            kept = None  # free the previous paths before sampling the next
            _KEPT_PATHS.drop(self)
            raw, steps, grids = self._generate(absolute)
            raw.flags.writeable = steps.flags.writeable = False
            kept = (key, raw, steps, grids, None, None)
        key, raw, steps, grids, paths, calibrated_by = kept
        if paths is None or calibrated_by is not calibration:
            paths = raw if calibration is None else calibration.apply(raw)
            paths.flags.writeable = False
        # (key, generated paths, steps, future grids, paths as returned, their calibration)
        _KEPT_PATHS.put(self, (key, raw, steps, grids, paths, calibration))
        return paths, steps

    def _generate(self, absolute: pd.Index) -> tuple[np.ndarray, np.ndarray, list]:
        plans = [self._targets(absolute, candles, original)
                 for (_, _, candles), original in zip(self._contexts, self._original_indexes())]
        steps = np.stack([steps for steps, _ in plans])
        if steps.min() < 1:
            raise ValueError("KronosForecaster forecasts the future only: every fh step must "
                             "be after the last observation")
        H = max(len(grid) for _, grid in plans)
        paths = self._sample([c for _, _, c in self._contexts],
                             [_extend(grid, H) for _, grid in plans],
                             [series_key(key, column) for key, column, _ in self._contexts])
        return paths, steps, [grid for _, grid in plans]

    def _sample(self, contexts: list[pd.DataFrame], futures: list[pd.DatetimeIndex],
                keys: list[str]) -> np.ndarray:
        """Paths of these validated contexts at these future timestamps, through the one
        forecasting procedure (`KronosPipeline.sample_validated`)."""
        pipeline = KronosPipeline(self.tokenizer_, self.predictor_, self._max_context)
        return pipeline.sample_validated(
            contexts, futures, keys, n_samples=self.n_samples, temperature=self.temperature,
            top_k=self.top_k, top_p=self.top_p, random_state=self._path_seed,
            sliding=self.sliding, max_paths=self.max_paths,
            prefill_precision=self.prefill_precision)

    def _original_indexes(self) -> list[pd.Index]:
        y = self._y
        if not isinstance(y.index, pd.MultiIndex):
            return [y.index] * len(self._contexts)
        levels = list(range(y.index.nlevels - 1))
        by_key = {(k if len(levels) > 1 else k[0]): f.index.get_level_values(-1)
                  for k, f in y.groupby(level=levels, sort=False)}
        return [by_key[key] for key, _, _ in self._contexts]

    def _fh_values(self, fh: ForecastingHorizon) -> tuple[np.ndarray, pd.Index]:
        """(values (n_instances, S, len(fh), n_columns) float32, absolute fh timestamps).

        The paths at the fh steps in the columns of y, instances in the order of y; every
        output below is a numpy reduction of these values over the sample axis.
        """
        absolute = fh.to_absolute_index(self.cutoff)
        paths, steps = self._paths(absolute)
        picked = np.take_along_axis(paths, steps[:, None, :, None] - 1, axis=2)  # (n, S, F, 6)
        if self._mode == "flat":  # one series per (instance, column): their closes
            n, S, F = picked.shape[:3]
            closes = picked[..., CLOSE].reshape(-1, len(self.columns_), S, F)
            return closes.transpose(0, 2, 3, 1), absolute
        fields = [FEATURE_COLUMNS.index(self._mapping[c]) for c in self.columns_]
        return picked[..., fields], absolute

    def _row_index(self, absolute: pd.Index, n_samples: int = 0) -> pd.Index:
        """Rows of an output: the fh timestamps of each instance, instances in the order of
        y; with `n_samples`, that block once per sample under a first level "sample"."""
        instances = list(dict.fromkeys(key for key, _, _ in self._contexts))
        times = _without_freq(absolute)
        n_i, n_t = len(instances), len(times)
        instance_codes = np.repeat(np.arange(n_i), n_t)
        time_codes = np.tile(np.arange(n_t), n_i)
        arrays, names = [], list(self._y.index.names)
        if n_samples:
            arrays.append(np.repeat(np.arange(n_samples), n_i * n_t))
            instance_codes = np.tile(instance_codes, n_samples)
            time_codes = np.tile(time_codes, n_samples)
            names = ["sample", *names]
        if isinstance(self._y.index, pd.MultiIndex):
            keys = [key if isinstance(key, tuple) else (key,) for key in instances]
            arrays += [pd.Index([key[j] for key in keys]).take(instance_codes)
                       for j in range(len(keys[0]))]
        arrays.append(times.take(time_codes))
        if len(arrays) == 1:
            return arrays[0].rename(names[-1])
        return pd.MultiIndex.from_arrays(arrays, names=names)

    def _frame(self, values: np.ndarray, absolute: pd.Index, columns=None) -> pd.DataFrame:
        """One frame of (n_instances, len(fh), k) values, rows as `_row_index`."""
        n_i, n_t, k = values.shape
        return pd.DataFrame(values.reshape(n_i * n_t, k), index=self._row_index(absolute),
                            columns=self.columns_ if columns is None else columns)

    def _samples(self, values: np.ndarray, absolute: pd.Index) -> pd.DataFrame:
        """Every path as a frame indexed (sample, [instance levels], time), columns of y."""
        n_i, S, n_t, k = values.shape
        flat = values.transpose(1, 0, 2, 3).reshape(S * n_i * n_t, k)
        return pd.DataFrame(flat, index=self._row_index(absolute, S), columns=self.columns_)

    def _predict(self, fh, X=None):
        values, absolute = self._fh_values(fh)
        return self._frame(values.mean(1, dtype=np.float64).astype(values.dtype), absolute)

    def _predict_quantiles(self, fh, X=None, alpha=None):
        values, absolute = self._fh_values(fh)
        quantiles = _empirical_quantiles(values, alpha)  # (n_instances, len(fh), k, n_alpha)
        n_i, n_t, k, n_a = quantiles.shape
        columns = pd.MultiIndex.from_product([pd.Index(self.columns_), alpha])
        return self._frame(quantiles.reshape(n_i, n_t, k * n_a), absolute, columns)

    def _predict_var(self, fh, X=None, cov=False):
        # Marginal variances over the paths (as skpro's Empirical gives them); cov is ignored.
        values, absolute = self._fh_values(fh)
        return self._frame(values.var(1, dtype=np.float64).astype(values.dtype), absolute)

    def _predict_proba(self, fh, X=None, marginal=True):
        values, absolute = self._fh_values(fh)
        return _empirical(self._samples(values, absolute), values,
                          self._row_index(absolute), pd.Index(self.columns_))

    # ------------------------------------------------------------------ public extras
    def sample(self, fh=None) -> pd.DataFrame:
        """Every sampled path: a frame indexed (sample, [instance levels], time).

        Synthetic K-lines conditioned on the context, in the columns of `y`.
        """
        self.check_is_fitted()
        return self._samples(*self._fh_values(self._check_fh(fh)))

    def predict_volatility(self, fh=None, quantiles=(0.05, 0.5, 0.95)) -> pd.DataFrame:
        """Realized volatility over the horizon, from the sampled paths.

        The paper's definition: the sum of squared log returns of the predicted closes over
        steps 1..H (the first return from the last observed close). Returns one row per
        series (per column for flat series) with the mean over paths and the quantiles.
        """
        self.check_is_fitted()
        fh = self._check_fh(fh)
        paths, steps = self._paths(fh.to_absolute_index(self.cutoff))
        last = np.array([c["close"].iloc[-1] for _, _, c in self._contexts], dtype=np.float64)
        horizons = steps.max(axis=1)  # each series' returns run over its steps 1..H
        rv = np.empty(paths.shape[:2])
        bad = np.zeros(len(paths), dtype=bool)
        for H in np.unique(horizons):  # usually one group: the same last step for all
            rows = np.flatnonzero(horizons == H)
            closes = np.concatenate(
                [np.broadcast_to(last[rows, None, None], (len(rows), paths.shape[1], 1)),
                 paths[rows, :, :H, CLOSE].astype(np.float64)], axis=2)
            bad[rows] = (closes <= 0).any(axis=(1, 2))
            with np.errstate(invalid="ignore", divide="ignore"):
                rv[rows] = (np.diff(np.log(closes), axis=2) ** 2).sum(2)
        if bad.any():
            key = self._contexts[int(np.flatnonzero(bad)[0])][0]
            raise ValueError("realized volatility needs positive closes; a sampled path "
                             f"of series {key!r} has a close <= 0")
        labels = [(key, column) if self._mode == "flat" else key
                  for key, column, _ in self._contexts]
        table = {"mean": rv.mean(1)}
        table.update({f"q{q:g}": np.quantile(rv, q, axis=1) for q in quantiles})
        return pd.DataFrame(table, index=pd.Index(labels))

    @classmethod
    def get_test_params(cls, parameter_set="default"):
        """Two tiny offline configurations trained from scratch in a few steps."""
        tiny_tokenizer = {"d_model": 16, "n_heads": 2, "ff_dim": 16, "n_enc_layers": 2,
                          "n_dec_layers": 2, "s1_bits": 2, "s2_bits": 2, "group_size": 2}
        tiny_model = {"d_model": 16, "n_heads": 2, "ff_dim": 16, "n_layers": 1,
                      "s1_bits": 2, "s2_bits": 2}
        common = {"fit_strategy": "from-scratch", "tokenizer_config": tiny_tokenizer,
                  "model_config": tiny_model, "max_steps": 2, "batch_size": 2,
                  "lookback": 8, "horizon": 2, "random_state": 0}
        return [{**common, "n_samples": 3},
                {**common, "n_samples": 2, "top_k": 2, "top_p": 0.9, "sliding": "rolling",
                 "max_context": 16}]


def _check_cells_of(y) -> None:
    """Name the first text, missing or infinite cell of a pandas `y` (sktime's own checks
    would answer "categorical features" or "missing data" without saying where)."""
    if isinstance(y, (pd.DataFrame, pd.Series)):
        check_cells(y, "y")


def _checked(candles: pd.DataFrame, name: str, flat: bool) -> pd.DataFrame:
    """Validate candles; a flat series (its value in every price column) is only checked for
    missing and infinite values, as any column that is not a candle field."""
    if not flat:
        return validate_candles(candles, name=name)
    check_values(candles[["close"]].to_numpy(), ["value"], candles.index, name)
    return candles


def _inferred_freq(index: pd.DatetimeIndex):
    return pd.infer_freq(index) if len(index) >= 3 else None


def _extend(grid: pd.DatetimeIndex, length: int) -> pd.DatetimeIndex:
    """Pad a grid to `length` stamps by repeating its last step (rows beyond are unused)."""
    if len(grid) >= length:
        return grid[:length]
    step = grid[-1] - grid[-2] if len(grid) > 1 else pd.Timedelta(days=1)
    return grid.append(pd.DatetimeIndex([grid[-1] + step * k
                                         for k in range(1, length - len(grid) + 1)]))



def _without_freq(index: pd.Index) -> pd.Index:
    """The index without its `freq` (outputs carry plain timestamps, as sktime's do)."""
    if isinstance(index, (pd.DatetimeIndex, pd.TimedeltaIndex)) and index.freq is not None:
        return type(index)(index, freq=None)
    return index


def _empirical_quantiles(values: np.ndarray, alpha) -> np.ndarray:
    """Quantiles over axis 1 as skpro's `Empirical` defines them, as float64.

    The alpha-quantile is the smallest sample whose cumulative weight (1/S each, summed as
    skpro sums them, so that ties with alpha resolve alike) reaches alpha.
    (n, S, F, k) values -> (n, F, k, len(alpha)).
    """
    S = values.shape[1]
    cumulative = np.cumsum(np.ones(S) / S)
    ranks = np.minimum(np.searchsorted(cumulative, np.asarray(alpha, dtype=np.float64)), S - 1)
    ordered = np.sort(values, axis=1)[:, ranks]  # (n, n_alpha, F, k)
    return np.moveaxis(ordered, 1, -1).astype(np.float64)


def _empirical(samples: pd.DataFrame, values: np.ndarray, index: pd.Index, columns: pd.Index):
    """skpro's `Empirical` over the paths, without skpro's per-entry sorting.

    skpro sorts the samples of every (row, column) through pandas lookups when built, which
    takes seconds for a panel. Where it can defer that (`skip_init_sorted`), its sorted
    cache is filled here from one numpy sort of `values` (n, S, F, k) instead; the test
    suite checks that this distribution equals one skpro builds itself.
    """
    import inspect

    from skpro.distributions import Empirical

    if "skip_init_sorted" not in inspect.signature(Empirical).parameters:
        return Empirical(spl=samples, index=index, columns=columns)
    dist = Empirical(spl=samples, index=index, columns=columns, skip_init_sorted=True)
    if not hasattr(dist, "_sorted_initialized"):  # another skpro: let it sort lazily
        return dist
    S = values.shape[1]
    ordered = np.moveaxis(np.sort(values, axis=1), 1, -1)  # (n, F, k, S)
    rows = ordered.reshape(len(index), len(columns), S)
    weights = np.ones(S)
    dist._sorted = {ix: dict(zip(columns, row)) for ix, row in zip(index, rows)}
    dist._weights = {ix: dict.fromkeys(columns, weights) for ix in index}
    dist._sorted_initialized = True
    return dist
