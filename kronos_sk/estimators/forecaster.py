"""`KronosForecaster`: Kronos as an sktime forecaster with probabilistic output."""

from __future__ import annotations

import os
import time
from numbers import Integral, Real

import numpy as np
import pandas as pd
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sktime.forecasting.base import BaseForecaster, ForecastingHorizon

from kronos_sk._defaults import (DEFAULT_BATCH_SIZE, DEFAULT_DEVICE, DEFAULT_MAX_STEPS,
                                 DEFAULT_N_SAMPLES, DEFAULT_TOP_P)
from kronos_sk._params import (positive_int, positive_real, probability_levels,
                               validate_params)
from kronos_sk._sktime_notices import no_remember_data_notice
from kronos_sk.calibration import adapt_calibration, fit_calibration
from kronos_sk.checkpoints import Spread, model_context, model_spread
from kronos_sk.data import FEATURE_COLUMNS
from kronos_sk.data.calendar import frequency_offset
from kronos_sk.data.horizon import padded, plan_series, read_calendar, relative_targets
from kronos_sk.estimators._paths import (PathCache, empirical, path_covariance, redrawn_frame,
                                         volatility_table)
from kronos_sk.estimators._series import (Outputs, check_cells_of, check_like_fit, check_update,
                                          columns_of, layout, same_time_kind, series_name,
                                          split_series, time_kind,
                                          warn_without_timestamps)
from kronos_sk.estimators._training import TRAINING_PARAMETERS, train_forecaster_networks
from kronos_sk.estimators._weights import (cached_networks, checkpoints, load_references,
                                           reference_modules)
from kronos_sk.generation import SLIDING_MODES, check_sampling, series_key
from kronos_sk.lookahead import guard_look_ahead
from kronos_sk.metrics import sample_quantiles
from kronos_sk.pipeline import KronosPipeline
from kronos_sk.runtime import PRECISION_OPTIONS, resolve_device, resolve_precision

FIT_STRATEGIES = ("zero-shot", "fine-tune", "from-scratch")
CALIBRATIONS = ("conformal",)
_KEPT_PATHS = PathCache()
CLOSE = FEATURE_COLUMNS.index("close")


class KronosForecaster(BaseForecaster):
    """Kronos, the foundation model for candlesticks, as a probabilistic sktime forecaster.

    Every output describes `n_samples` sampled paths of the whole candle (open, high, low,
    close, volume, amount): `predict` is their mean; quantiles, intervals, variances and
    `predict_proba` (an skpro `Empirical`) describe the same paths; `sample` returns them.
    A panel's series are generated in one batched call, once per fh. Columns named like
    candle fields are forecast as candles, any other column as its own price series.

    The parameters used most are below; the user guide ("KronosForecaster parameters")
    documents all. The 8 training parameters (`lookback`, `horizon`, `max_steps`, ...) stay
    flat rather than one `training` dict, as in scikit-learn's `MLPRegressor` and sktime's
    neural forecasters: `get_params`, `clone` and grid searches reach each by name.

    Parameters
    ----------
    model, tokenizer : str or None, default=None
        Checkpoint directories in the released layout (or hub ids); None for the bundled
        default model.
    n_samples : int, default=20
        Sampled paths per series.
    top_p : float, default=1.0
        Nucleus sampling: keep the smallest set of ids whose probability reaches it.
    random_state : int or None, default=None
        Seeds each series' paths from (random_state, series name): results do not depend on
        the batch or on the order of series. Also seeds training.
    calibration : {None, "conformal"}, default=None
        "conformal": backtest the model at the last origins inside `y` at fit and calibrate
        every output with the learned `PathCalibration`; `update` refines it. With a
        model's own spread, kept only where it carries over from origin to origin.
    freq : str or None, default=None
        Step of future rows. None: the index's frequency, else the calendar the rows show
        (trading days, sessions); see `calendar_`.

    Attributes
    ----------
    tokenizer_, predictor_ : KronosTokenizer, KronosPredictor
        The networks used.
    columns_ : list
        The columns of `y` that are forecast, in order.
    calendar_ : dict
        The calendar each series' future rows follow, in words, by series name.
    precision_, prefill_precision_ : {"float32", "bfloat16"}
        What "auto" (float32 weights; bf16 prefill where native) came to on this device.
    look_ahead_ : dict
        Series whose origin lies in data the model was trained or validated on, with those
        periods; `fit` then warns `LookAheadWarning` (see `kronos_sk.lookahead`).
    calibration_, calibration_seconds_ : PathCalibration or None, float
        The learned calibration, refreshed by `update`, and the seconds its backtests took.
    loss_curve_ : list of float
        Training losses of the last fit or pretrain that trained.

    Examples
    --------
    >>> import pandas as pd
    >>> from kronos_sk.estimators import KronosForecaster
    >>> y = pd.read_csv("tests/fixtures/kronos-compat/candles.csv", index_col=0,
    ...                 parse_dates=True).iloc[:64]
    >>> forecaster = KronosForecaster(model="tests/fixtures/kronos-compat/model",
    ...                               tokenizer="tests/fixtures/kronos-compat/tokenizer",
    ...                               max_context=128, n_samples=5, random_state=0)
    >>> forecaster.fit(y).predict_interval(fh=[1, 2, 3, 4], coverage=0.9).shape
    (4, 12)
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
        "precision": [StrOptions(set(PRECISION_OPTIONS))],
        "prefill_precision": [StrOptions(set(PRECISION_OPTIONS))],
        "sliding": [StrOptions(set(SLIDING_MODES))],
        "freq": [str, pd.DateOffset, None],
        "lookback": positive_int(), "horizon": positive_int(), "max_steps": positive_int(),
        "batch_size": positive_int(), "learning_rate": [*positive_real(), None],
        "finetune_tokenizer": ["boolean"],
        "model_config": [dict, None], "tokenizer_config": [dict, None],
        "max_paths": positive_int(),
        "calibration": [StrOptions(set(CALIBRATIONS)), None],
        "calibration_origins": positive_int(),
        "calibration_stride": positive_int(allow_none=True),
        "calibration_rate": [Interval(Real, 0, 1, closed="right")],
        "valid_candles": ["boolean"],
        "stratified": ["boolean"],
    }

    def __init__(self, model=None, tokenizer=None, fit_strategy="zero-shot",
                 n_samples=DEFAULT_N_SAMPLES, temperature=1.0, top_k=0, top_p=DEFAULT_TOP_P,
                 max_context=None, device=DEFAULT_DEVICE,
                 random_state=None, precision="auto", sliding="exact", freq=None,
                 lookback=64, horizon=16, max_steps=DEFAULT_MAX_STEPS,
                 batch_size=DEFAULT_BATCH_SIZE, learning_rate=None,
                 finetune_tokenizer=False, model_config=None, tokenizer_config=None,
                 max_paths=256, calibration=None, calibration_origins=2,
                 calibration_stride=None, calibration_rate=0.05, prefill_precision="auto",
                 valid_candles=True, stratified=True):
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
        self.valid_candles = valid_candles
        self.stratified = stratified
        # remember_data is set explicitly in _config (self._y is the context), so sktime's
        # notice about that config's changing default does not apply here.
        with no_remember_data_notice():
            super().__init__()

    def __getstate__(self) -> dict:  # checkpoint weights travel as (directory, sha256)
        return reference_modules(self.__dict__, ("tokenizer_", "predictor_"))

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(load_references(state, state["device"], state["precision"]))

    def _check_params(self) -> None:
        validate_params(self, self._parameter_constraints)
        if self.freq is not None:
            frequency_offset(self.freq)
        if self.fit_strategy != "from-scratch":
            for name in ("model_config", "tokenizer_config"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} is only used with fit_strategy='from-scratch', "
                                     f"got fit_strategy={self.fit_strategy!r}; set {name}=None")
        self._model = None if self.fit_strategy == "from-scratch" else \
            checkpoints(self.model, None)[0]
        self._max_context = self.max_context or (
            self.lookback + self.horizon if self._model is None else model_context(self._model))
        self._spread = Spread() if self._model is None else model_spread(self._model)
        check_sampling(self.n_samples, self.temperature, self.top_k, self.top_p,
                       self._max_context, self.sliding)
        device = resolve_device(self.device)  # names an accelerator that is not there
        self.precision_ = resolve_precision(self.precision, device)
        self.prefill_precision_ = resolve_precision(self.prefill_precision, device,
                                                    "prefill_precision")

    def _read_y(self, y: pd.DataFrame, warn: bool = True) -> list:
        self._mode, self._mapping = layout(y)
        if warn:
            warn_without_timestamps(y, self.freq)
        return split_series(y, self._mode, self._mapping, self.freq)

    def _fit(self, y, X=None, fh=None):
        self._check_params()
        self.columns_ = list(y.columns)
        self._set_context(self._read_y(y))
        if self.state != "pretrained":  # else keep what pretrain learned
            self._set_networks(self._contexts, train=self.fit_strategy != "zero-shot")
        self.look_ahead_ = guard_look_ahead(self._model, {
            series_name(s): s.candles.index[-1] for s in self._contexts
            if isinstance(s.index, (pd.DatetimeIndex, pd.PeriodIndex))})
        self._calibrate(fh)
        return self

    def _set_networks(self, contexts: list, train: bool, start: tuple | None = None) -> None:
        """Load the checkpoints (or start from `start`), and train on `contexts` if asked."""
        if start is None:
            start = (None, None) if self.fit_strategy == "from-scratch" else \
                cached_networks(self.model, self.tokenizer, self.device, self.precision_)
        self.tokenizer_, self.predictor_, self.loss_curve_ = (*start, []) if not train else \
            train_forecaster_networks([s.candles for s in contexts], *start,
                                      **{k: getattr(self, k) for k in TRAINING_PARAMETERS})

    def _calibrate(self, fh) -> None:
        """Learn `calibration_` from backtests at the last origins inside the context."""
        self.calibration_, self.calibration_seconds_ = None, 0.0
        if self.calibration is None:
            return
        start = time.perf_counter()
        horizon = int(max(fh.to_pandas())) if fh is not None and fh.is_relative else self.horizon
        self.calibration_ = fit_calibration(
            self._pipeline(), [s.candles for s in self._contexts],
            [(s.key, s.column) for s in self._contexts], horizon,
            origins=self.calibration_origins, stride=self.calibration_stride, **self._sampling())
        self.calibration_seconds_ = time.perf_counter() - start

    def _set_context(self, contexts: list) -> None:
        self._contexts = contexts
        self.calendar_ = {series_name(s): read_calendar(s.index, self.freq) for s in contexts}
        # Drawn once per fit, so every prediction method describes the same paths.
        self._path_seed = (self.random_state if self.random_state is not None
                           else int(np.random.SeedSequence().entropy % 2**63))
        _KEPT_PATHS.drop(self)  # sampled from the previous context

    def _pretrain(self, y, X=None, fh=None):
        self._check_params()
        _KEPT_PATHS.drop(self)
        self._set_networks(self._read_y(y), train=True)
        self.pretrain_loss_curve_ = self.loss_curve_
        return self

    def _pretrain_update(self, y, X=None, fh=None):
        _KEPT_PATHS.drop(self)
        self._set_networks(self._read_y(y, warn=False), train=True,
                           start=(self.tokenizer_, self.predictor_))
        self.pretrain_loss_curve_ = self.pretrain_loss_curve_ + self.loss_curve_
        return self

    def _check_X_y(self, X=None, y=None, **kwargs):
        check_cells_of(y)  # named by column, row and value before sktime's own checks
        return super()._check_X_y(X=X, y=y, **kwargs)

    def update(self, y, X=None, update_params=True):
        """Append the rows of `y` after each series' own end (rows seen may be resent, a
        lagging series may get rows before the cutoff; a gap in a fixed calendar is refused).
        With ``update_params=False`` only the context and the cutoff move."""
        check_cells_of(y)
        if self.is_fitted and isinstance(y, pd.Series) and len(y):
            check_like_fit(y.to_frame(), self._y)
        if not (self.is_fitted and isinstance(y, pd.DataFrame) and len(y)):
            return super().update(y, X=X, update_params=update_params)
        check_like_fit(y, self._y)
        check_update(self._contexts, split_series(y, self._mode, self._mapping, self.freq),
                     self.cutoff[0], self.freq)
        cutoff = self.cutoff
        super().update(y, X=X, update_params=update_params)
        if self.cutoff[0] < cutoff[0]:  # rows of lagging series only: the cutoff stays
            self._set_cutoff(cutoff)
        elif isinstance(self.cutoff, pd.DatetimeIndex) and self.cutoff.freq \
                and getattr(cutoff, "freq", None) is None:
            # sktime reads a frequency off the rows sent alone ('D' from Mon-Fri); steps stay
            # on the calendar every row shows, as after a fit on all of them
            self._set_cutoff(pd.DatetimeIndex(self.cutoff, freq=None))
        return self

    def _update(self, y, X=None, update_params=True):
        updated = self._read_y(self._y, warn=False)  # the base class has appended y to self._y
        kept = _KEPT_PATHS.get(self)
        if update_params and self.calibration_ is not None and kept is not None:
            # The adaptive-conformal step: the kept paths against the rows that arrived.
            arrived = {(s.key, s.column): s.candles for s in updated}
            self.calibration_ = adapt_calibration(
                self.calibration_, kept.raw, kept.grids,
                [arrived[(s.key, s.column)] for s in self._contexts], self.calibration_rate)
        self._set_context(updated)
        return self

    def _check_fh(self, fh, pred_int=False):
        cutoff = getattr(self, "_cutoff", None)
        if fh is not None and isinstance(cutoff, pd.Index):
            given = fh if isinstance(fh, ForecastingHorizon) else ForecastingHorizon(fh)
            if not given.is_relative and not same_time_kind(given.to_pandas(), cutoff):
                raise ValueError(f"fh: holds {time_kind(given.to_pandas())} but y's index "
                                 f"holds {time_kind(cutoff)}; give fh on y's time index")
        # Absolute fh on a cutoff without a frequency: compared with the cutoff directly.
        if fh is None or not isinstance(cutoff, pd.DatetimeIndex) or cutoff.freq is not None:
            return super()._check_fh(fh, pred_int)
        fh = given
        if fh.is_relative:
            return super()._check_fh(fh, pred_int)
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

    def _absolute(self, fh: ForecastingHorizon) -> tuple[pd.Index, pd.Index | None]:
        """(fh timestamps, calendar stamps after the cutoff up to the last, or None)."""
        if fh.is_relative and isinstance(self.cutoff, pd.DatetimeIndex) \
                and self.cutoff.freq is None:  # steps on the calendar the rows show
            return relative_targets(fh.to_numpy(), self._times(), self.freq, grid=True)
        return fh.to_absolute_index(self.cutoff), None

    def _times(self) -> pd.Index:
        """Every timestamp of the panel, sorted: the calendar its series share."""
        return self._y.index.get_level_values(-1).unique().sort_values()

    def _sampling(self) -> dict:
        return dict(n_samples=self.n_samples, temperature=self.temperature, top_k=self.top_k,
                    top_p=self.top_p, random_state=self._path_seed, sliding=self.sliding,
                    max_paths=self.max_paths, prefill_precision=self.prefill_precision_,
                    valid_candles=self.valid_candles, stratified=self.stratified)

    def _pipeline(self) -> KronosPipeline:
        return KronosPipeline(self.tokenizer_, self.predictor_, self._max_context, self._spread)

    def _paths(self, fh: ForecastingHorizon):
        """(the kept paths (`_paths.KeptPaths`) of this fh, generated once, fh timestamps)."""
        absolute, future = self._absolute(fh)
        key = (self.tokenizer_, self.predictor_, self._max_context, self.freq,
               *self._sampling().items(), str(absolute.dtype), tuple(absolute),
               None if future is None else tuple(future))
        kept = _KEPT_PATHS.paths(self, key, lambda: self._generate(absolute, future),
                                 getattr(self, "calibration_", None))
        return kept, absolute

    def _generate(self, absolute: pd.Index, future) -> tuple[np.ndarray, np.ndarray, list]:
        steps, grids = plan_series(absolute, [s.index for s in self._contexts],
                                   [series_name(s) for s in self._contexts], self.cutoff[0],
                                   self._times(), self.freq, future)
        H = max(len(grid) for grid in grids)
        paths, redrawn = self._pipeline().sample_validated(
            [s.candles for s in self._contexts], [padded(grid, H) for grid in grids],
            [series_key(s.key, s.column) for s in self._contexts], **self._sampling(),
            names=[series_name(s) for s in self._contexts], return_redraws=True)
        return paths, steps, grids, redrawn

    def _fh_values(self, fh: ForecastingHorizon) -> tuple[np.ndarray, pd.Index]:
        """(values (n_instances, S, len(fh), n_columns), absolute fh timestamps): the paths
        at the fh steps in the columns of y; every output reduces them over samples."""
        kept, absolute = self._paths(fh)
        return columns_of(kept.paths, kept.steps, self._mode, self._mapping,
                          self.columns_), absolute

    def _out(self) -> Outputs:
        return Outputs([s.key for s in self._contexts], self._y.index, self.columns_)

    def _predict(self, fh, X=None):
        values, absolute = self._fh_values(fh)
        return self._out().frame(values.mean(1, dtype=np.float64).astype(values.dtype),
                                 absolute)

    def _predict_quantiles(self, fh, X=None, alpha=None):
        values, absolute = self._fh_values(fh)
        # (n_instances, len(fh), k, n_alpha), as predict_proba's skpro Empirical gives them
        quantiles = np.moveaxis(sample_quantiles(values, alpha, axis=1), 0, -1)
        n_i, n_t, k, n_a = quantiles.shape
        columns = pd.MultiIndex.from_product([pd.Index(self.columns_), alpha])
        return self._out().frame(quantiles.reshape(n_i, n_t, k * n_a), absolute, columns)

    def _predict_var(self, fh, X=None, cov=False):
        values, absolute = self._fh_values(fh)
        if cov:  # sktime's fh x fh covariance of the paths, per instance
            return self._out().covariance(path_covariance(values), absolute)
        # marginal variances over the paths, as skpro's Empirical gives them
        return self._out().frame(values.var(1, dtype=np.float64).astype(values.dtype), absolute)

    def _predict_proba(self, fh, X=None, marginal=True):
        values, absolute = self._fh_values(fh)
        out = self._out()
        return empirical(out.samples(values, absolute), values, out.index(absolute),
                         pd.Index(self.columns_))

    @property
    def redrawn_(self) -> pd.DataFrame | None:
        """Per series, the paths of the last generation that the positive-price rule drew
        again (`redrawn`) and replaced by an accepted path (`replaced`); None before any."""
        kept = _KEPT_PATHS.get(self)
        return None if kept is None else redrawn_frame(
            kept.redrawn, [series_name(s) for s in self._contexts])

    def sample(self, fh=None) -> pd.DataFrame:
        """Every sampled path: a frame indexed (sample, [instance levels], time).

        Synthetic K-lines conditioned on the context, in the columns of `y`.
        """
        self.check_is_fitted()
        return self._out().samples(*self._fh_values(self._check_fh(fh)))

    def predict_volatility(self, fh=None, quantiles=(0.05, 0.5, 0.95)) -> pd.DataFrame:
        """Realized volatility over the horizon, from the sampled paths.

        The paper's definition: the sum of squared log returns of the predicted closes over
        steps 1..H (the first return from the last observed close). Returns one row per
        series (per column for flat series) with the mean over paths and the quantiles.
        """
        self.check_is_fitted()
        quantiles = probability_levels(quantiles, "quantiles")
        fh = self._check_fh(fh)
        kept, _ = self._paths(fh)
        labels = [(s.key, s.column) if self._mode == "flat" else s.key for s in self._contexts]
        return volatility_table(kept.paths[..., CLOSE], kept.steps.max(axis=1),
                                [s.candles["close"].iloc[-1] for s in self._contexts],
                                labels, [series_name(s) for s in self._contexts], quantiles)

    @classmethod
    def get_test_params(cls, parameter_set="default"):
        """Two tiny offline configurations trained from scratch in a few steps."""
        tiny = {"d_model": 16, "n_heads": 2, "ff_dim": 16, "s1_bits": 2, "s2_bits": 2}
        common = {"fit_strategy": "from-scratch", "model_config": {**tiny, "n_layers": 1},
                  "tokenizer_config": {**tiny, "n_enc_layers": 2, "n_dec_layers": 2,
                                       "group_size": 2},
                  "max_steps": 2, "batch_size": 2, "lookback": 8, "horizon": 2,
                  "random_state": 0}
        return [{**common, "n_samples": 3},
                {**common, "n_samples": 2, "top_k": 2, "top_p": 0.9, "sliding": "rolling",
                 "max_context": 16, "stratified": False}]
