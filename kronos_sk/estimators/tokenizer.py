"""`KLineTokenizer`: the Kronos tokenizer as a scikit-learn transformer.

It maps a time-ordered table of candles to one (coarse id, fine id) pair per candle and back,
and can be used as released, fine-tuned on the table, or trained from scratch with the
project's training engine.
"""

from __future__ import annotations

import dataclasses
import os
from numbers import Integral
from typing import Any

import numpy as np
import pandas as pd
import torch

from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import Tags, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (_check_feature_names_in, check_array, check_is_fitted,
                                      validate_data)

from kronos_sk._defaults import (DEFAULT_BATCH_SIZE, DEFAULT_DEVICE, DEFAULT_MAX_STEPS,
                                 learning_rate_for)
from kronos_sk._params import positive_int, positive_real, validate_params
from kronos_sk.checkpoints import CheckpointError, default_checkpoint
from kronos_sk.data.normalize import Normalizer
from kronos_sk.data.schema import FEATURE_COLUMNS, PRICE_COLUMNS, canonical_columns
from kronos_sk.data.validation import assemble_features, check_numeric_columns, check_values
from kronos_sk.estimators._training import train_network
from kronos_sk.estimators._weights import cached_tokenizer, load_references, reference_modules
from kronos_sk.nn.config import SMALL_TOKENIZER, TokenizerConfig, small_tokenizer_config
from kronos_sk.nn.tokenizer import KronosTokenizer
from kronos_sk.runtime import resolve_device

#: Network of ``fit_strategy="from-scratch"`` when `config` is None (the one
#: `KronosForecaster` trains too); a dict `config` overrides these fields.
SMALL_CONFIG = SMALL_TOKENIZER
#: The forecaster's names: "zero-shot" keeps the loaded weights.
FIT_STRATEGIES = ("zero-shot", "fine-tune", "from-scratch")
RENAMED = {"fit_strategy": {"pretrained": "zero-shot"}}
OUTPUT_NAMES = ("coarse_id", "fine_id")


def _candle_names(columns: pd.Index) -> dict[str, str]:
    """{canonical: user name} of the candle columns, in the order of `columns` ({} for
    none): fitted columns keep the user's order, so arrays are read and returned in it.

    Raises ValueError when some candle names are present but a price column is missing.
    """
    order = {user: position for position, user in enumerate(columns)}
    found = {canonical: user for user, canonical in canonical_columns(columns).items()}
    missing = [c for c in PRICE_COLUMNS if c not in found]
    if found and missing:
        raise ValueError(
            f"X: missing price column(s) {missing}; found columns {list(columns)} (names match "
            "case-insensitively, aliases such as 'o', 'h', 'l', 'c' are accepted)")
    return dict(sorted(found.items(), key=lambda item: order[item[1]]))


class _TableWindows:
    """Training batch source: random windows of one table, each normalised on its own.

    ``batch(step)`` is a pure function of `step` (as the training engine requires): window
    starts come from a numpy Generator seeded with ``(seed, step)``. Every window is
    normalised with its own mean and std, the statistics `transform` uses for a whole table.
    """

    def __init__(self, features: np.ndarray, length: int, batch_size: int, seed: int,
                 clip: float, value_transform: str) -> None:
        self.features, self.length, self.batch_size = features, length, batch_size
        self.seed, self.clip, self.value_transform = seed, clip, value_transform

    def batch(self, step: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, step])
        starts = rng.integers(len(self.features) - self.length + 1, size=self.batch_size)
        windows = self.features[starts[:, None] + np.arange(self.length)]  # (B, L, F)
        statistics = Normalizer.fit(list(windows), self.clip, self.value_transform)
        return {"values": statistics.transform(windows)}


class KLineTokenizer(TransformerMixin, BaseEstimator):
    """Turn candles into Kronos token ids (coarse, fine) and back.

    The Kronos tokenizer quantizes every normalised candle (open, high, low, close, volume,
    amount) into a pair of integers: a coarse id of ``s1_bits`` bits and a fine id of
    ``s2_bits`` bits. Its encoder and decoder are causal Transformers, so the ids of a candle
    depend on the candles before it: rows are a time series, not independent samples.

    Parameters
    ----------
    tokenizer : str, path-like or None, default=None
        Checkpoint directory (released layout: ``config.json`` + ``model.safetensors``) or hub
        id such as ``"NeoQuasar/Kronos-Tokenizer-base"``. None means the bundled default
        tokenizer ([`default_checkpoint`][kronos_sk.checkpoints.default_checkpoint]); none is
        bundled yet, so
        for now "zero-shot" and "fine-tune" need a checkpoint here (``fit`` says so).
        "from-scratch" takes no checkpoint: leave it None.
    fit_strategy : {"zero-shot", "fine-tune", "from-scratch"}, default="zero-shot"
        "zero-shot": load `tokenizer` and use it as is (shared, read-only, through a small
        cache). "fine-tune": load `tokenizer`, then train a copy on X. "from-scratch": build a
        network from `config` and train it on X. The names are `KronosForecaster`'s; the
        former name "pretrained" is refused with a message naming "zero-shot".
    config : dict or None, default=None
        ``TokenizerConfig`` fields of the from-scratch network, overriding `SMALL_CONFIG`
        (`kronos_sk.nn.config.SMALL_TOKENIZER`: d_model 32, one encoder and one decoder
        block, 6 + 6 bits; the network `KronosForecaster` trains from scratch too); None
        uses it unchanged.
        Only for "from-scratch". ``d_in`` is not accepted: it is set from X (see Notes).
    window : int, default=64
        Rows per training window. A shorter table is one window of all its rows.
    max_steps : int, default=100
        Optimizer steps per trained network ("fine-tune", "from-scratch").
    batch_size : int, default=16
        Training windows per optimizer step.
    learning_rate : float or None, default=None
        Peak learning rate of AdamW (short linear warm-up, then cosine decay); None: 1e-4 to
        fine-tune a checkpoint, 1e-3 from scratch (the same defaults in every estimator).
    clip : float, default=5.0
        Normalised values are clipped to ``[-clip, clip]`` (the reference uses 5), both in
        training windows and in `transform`.
    device : str or torch.device, default="auto"
        "auto" (CUDA, then MPS, then the CPU), "cpu", "cuda", "cuda:N" or "mps". Loading,
        training and tokenizing all run on exactly this device.
    random_state : int, RandomState instance or None, default=None
        Seeds the network initialisation, dropout and the choice of training windows; an int
        makes ``fit`` reproducible. Global random states are left as they were.

    Attributes
    ----------
    tokenizer_ : KronosTokenizer
        The network in eval mode. With "zero-shot" it is the cached module shared with other
        estimators: do not modify it.
    candle_columns_ : list of str or None
        The candle feature each column seen in ``fit`` was read as (e.g. ``["open", "high",
        "low", "close"]``), or None when the columns are the network's features as given.
    mean_ : ndarray of shape (n_model_features,), float32
        Per-feature mean of the table passed to ``fit``, over the network's input features:
        the six candle features (open, high, low, close, volume, amount, after volume and
        amount are filled in), or the columns as given when `candle_columns_` is None.
    std_ : ndarray of shape (n_model_features,), float32
        Per-feature population standard deviation of that table. Both are statistics of
        the features in the network's value space (`value_transform_`).
    value_transform_ : {"none", "log"}
        The network config's ``value_transform``: "log" tokenizes log prices and log1p
        volumes (X then needs prices > 0), "none" the values as they are.
    n_iter_ : int
        Optimizer steps run by ``fit`` (0 for "zero-shot").
    loss_curve_ : list of float
        Training loss of every step (empty for "zero-shot").
    n_features_in_ : int
        Number of columns seen in ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of those columns, when X was a DataFrame with string column names.

    See Also
    --------
    kronos_sk.nn.tokenizer.KronosTokenizer : The network itself.
    kronos_sk.pipeline.KronosPipeline : Forecasting with a tokenizer and a predictor.

    Notes
    -----
    **Input.** X is one time-ordered series, shape (n_candles, n_columns). A DataFrame with
    candle column names is read by name (any case; aliases such as "o", "vol", "turnover");
    its other columns are ignored. Any other table is read by position:

    - with a checkpoint ("zero-shot", "fine-tune"), as open, high, low, close[, volume[,
      amount]] (4 to 6 columns; other widths raise ValueError);
    - "from-scratch" builds the network for the table, so its columns, any number of them,
      are the network's input features as they are. Fit on a DataFrame with candle names to
      get a six-feature tokenizer that `KronosPipeline` can use.

    Candle tables become the six model features by the reference rules: no volume means
    volume = amount = 0 (amount is zeroed even when given), volume without amount means
    ``amount = volume * mean(open, high, low, close)``.

    **Scale.** The reference normalises each series with its own mean and std. Here ``fit``
    stores the statistics of its table (`mean_`, `std_`) and `transform`, `inverse_transform`
    and `score` all use them, so that ids decode back in the units of X. To tokenize a table
    with its own statistics, as the reference does, fit on that table: with
    "zero-shot" fitting only computes the statistics. Training windows are normalised with
    their own statistics, whatever `mean_` and `std_` are.

    **Rows are not independent.** The ids of a row depend on the rows before it (and only on
    those), so the ids of ``X[:k]`` are the first k rows of the ids of X, while the ids of a
    shuffle or another subset of X differ from the matching rows of X's ids.

    Examples
    --------
    >>> import pandas as pd
    >>> from kronos_sk.estimators.tokenizer import KLineTokenizer
    >>> candles = pd.read_csv("tests/fixtures/kronos-compat/candles.csv", index_col=0,
    ...                       parse_dates=True).iloc[:64]
    >>> tok = KLineTokenizer("tests/fixtures/kronos-compat/tokenizer").fit(candles)
    >>> ids = tok.transform(candles)
    >>> ids.shape, ids.dtype
    ((64, 2), dtype('int64'))
    >>> tok.inverse_transform(ids).shape
    (64, 6)
    """

    _parameter_constraints: dict = {
        "tokenizer": [str, os.PathLike, None],
        "fit_strategy": [StrOptions(set(FIT_STRATEGIES))],
        "config": [dict, None],
        "window": [Interval(Integral, 2, None, closed="left")],
        "max_steps": positive_int(),
        "batch_size": positive_int(),
        "learning_rate": [*positive_real(), None],
        "clip": positive_real(),
        "device": [str, torch.device],
        "random_state": ["random_state"],
    }

    def __init__(self, tokenizer: str | os.PathLike | None = None, *,
                 fit_strategy: str = "zero-shot", config: dict[str, Any] | None = None,
                 window: int = 64, max_steps: int = DEFAULT_MAX_STEPS,
                 batch_size: int = DEFAULT_BATCH_SIZE, learning_rate: float | None = None,
                 clip: float = 5.0,
                 device: str | torch.device = DEFAULT_DEVICE,
                 random_state: int | np.random.RandomState | None = None) -> None:
        self.tokenizer = tokenizer
        self.fit_strategy = fit_strategy
        self.config = config
        self.window = window
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.clip = clip
        self.device = device
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: None = None) -> KLineTokenizer:
        """Compute the scale of X and load, fine-tune or train the tokenizer.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_candles, n_columns)
            One time-ordered series of at least 2 candles (see Notes of the class).
        y : None
            Ignored.

        Returns
        -------
        self : KLineTokenizer
        """
        network_config = self._check_strategy()
        device = resolve_device(self.device)
        pretrained = None
        if self.fit_strategy != "from-scratch":
            checkpoint = self._checkpoint()
            pretrained = cached_tokenizer(checkpoint, device)
            if pretrained.config.d_in != len(FEATURE_COLUMNS):
                raise ValueError(
                    f"tokenizer {os.fspath(checkpoint)!r} reads {pretrained.config.d_in} "
                    f"features; a checkpoint must read the {len(FEATURE_COLUMNS)} candle "
                    f"features {list(FEATURE_COLUMNS)}")
        self.value_transform_ = (pretrained.config if pretrained is not None
                                 else network_config).value_transform
        features = self._features(X, reset=True)
        statistics = Normalizer.fit([features], self.clip, self.value_transform_)
        self.mean_, self.std_ = statistics.mean[0], statistics.std[0]
        if self.fit_strategy == "zero-shot":
            self.tokenizer_, self.loss_curve_ = pretrained, []
        else:
            if network_config is not None:
                network_config = dataclasses.replace(network_config, d_in=features.shape[1])
            self.tokenizer_, self.loss_curve_ = self._train(features, pretrained,
                                                            network_config, device)
        self.n_iter_ = len(self.loss_curve_)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Tokenize candles, normalised with the statistics of the fitted table.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_candles, n_features_in_)
            The columns seen in ``fit``, time-ordered.

        Returns
        -------
        ndarray of shape (n_candles, 2), int64
            Coarse id (column 0) and fine id (column 1) of every candle.
        """
        check_is_fitted(self)
        x = self._to_tensor(self._normalise(self._features(X, reset=False)))
        s1_ids, s2_ids = self.tokenizer_.encode(x)  # (1, T) each
        return torch.stack((s1_ids[0], s2_ids[0]), dim=1).cpu().numpy()

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Decode ids back to candles in the units of the fitted table.

        Parameters
        ----------
        X : array-like of shape (n_candles, 2)
            Coarse and fine ids, as returned by `transform`, time-ordered.

        Returns
        -------
        ndarray of shape (n_candles, n_features_in_), float64
            The decoded candles, in the columns (and order) seen in ``fit``. Values beyond
            ``clip`` standard deviations were clipped before tokenizing and do not come back.
        """
        check_is_fitted(self)
        ids = torch.from_numpy(self._check_ids(X)).to(self.tokenizer_.head.weight.device)
        decoded = self.tokenizer_.decode(ids[None, :, 0], ids[None, :, 1])  # (1, T, F)
        scale = Normalizer(self.mean_[None], self.std_[None], self.clip, self.value_transform_)
        candles = scale.inverse_transform(decoded.cpu().numpy())[0]
        return candles[:, self._feature_positions()].astype(np.float64)

    def score(self, X: Any, y: None = None) -> float:
        """Negative mean squared reconstruction error of X, in normalised units.

        X is normalised with the fitted statistics, tokenized, decoded, and compared with
        its normalised self over the columns seen in ``fit``. Higher is better.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_candles, n_features_in_)
        y : None
            Ignored.

        Returns
        -------
        float
        """
        check_is_fitted(self)
        x = self._to_tensor(self._normalise(self._features(X, reset=False)))
        recon = self.tokenizer_.decode(*self.tokenizer_.encode(x))
        error = (recon - x)[..., self._feature_positions()]
        return -float(error.pow(2).mean())

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the two output columns.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Checked against `feature_names_in_` when given; it does not change the output.

        Returns
        -------
        ndarray of str objects
            ``["coarse_id", "fine_id"]``.
        """
        check_is_fitted(self, "n_features_in_")
        _check_feature_names_in(self, input_features)
        return np.asarray(OUTPUT_NAMES, dtype=object)

    def __getstate__(self) -> dict:
        # A loaded checkpoint travels as a reference (directory + sha256), reloaded through
        # the weight cache; trained weights travel in the pickle.
        state = super().__getstate__()
        return reference_modules(state, ("tokenizer_",))

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(load_references(state, state["device"], "float32"))

    def _validate_params(self) -> None:
        # sklearn's check (run by _fit_context), plus: no bools for numbers, renamed options.
        validate_params(self, self._parameter_constraints, renamed=RENAMED)

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.requires_fit = True
        # Token ids are int64 whatever the input's float dtype.
        tags.transformer_tags.preserves_dtype = []
        return tags

    # ------------------------------------------------------------------ helpers
    def _check_strategy(self) -> TokenizerConfig | None:
        """Reject contradictory options; return the from-scratch network config."""
        if self.fit_strategy != "from-scratch":
            if self.config is not None:
                raise ValueError(f"config is only used with fit_strategy='from-scratch', got "
                                 f"fit_strategy={self.fit_strategy!r}; set config=None")
            return None
        if self.tokenizer is not None:
            raise ValueError("fit_strategy='from-scratch' builds a new network and does not "
                             f"use tokenizer={self.tokenizer!r}: set tokenizer=None, or use "
                             "fit_strategy='fine-tune' to start from that checkpoint")
        if "d_in" in (self.config or {}):
            raise ValueError("config: remove 'd_in'; the input width is set from X (6 for "
                             "candles, else the number of columns)")
        return small_tokenizer_config(self.config, source="KLineTokenizer config")

    def _checkpoint(self) -> str | os.PathLike:
        """`tokenizer`, or the bundled default tokenizer when it is None."""
        if self.tokenizer is not None:
            return self.tokenizer
        try:
            return default_checkpoint("tokenizer")
        except CheckpointError as error:
            raise CheckpointError(f"{error}, or use fit_strategy='from-scratch'") from None

    def _features(self, X: Any, *, reset: bool) -> np.ndarray:
        """Validate X (learning how to read it when `reset`); return the network's features.

        Returns (T, 6) float32 candle features, or X's (T, n_features_in_) columns as float32
        when `candle_columns_` is None.
        """
        labels, by_name = None, {}
        if isinstance(X, pd.DataFrame):
            labels = X.index
            by_name = _candle_names(X.columns)
            if by_name and not reset and self.candle_columns_ is not None \
                    and set(by_name) == set(self.candle_columns_):
                by_name = {c: by_name[c] for c in self.candle_columns_}  # read by name
            if by_name and (reset or self.candle_columns_ is not None):
                X = X[list(by_name.values())]
            check_numeric_columns(X, "X")
        values = validate_data(self, X, reset=reset, dtype=np.float64, ensure_all_finite=False,
                               ensure_min_samples=2 if reset else 1)
        if reset:
            self.candle_columns_ = self._read_as(by_name, values.shape[1])
        names = self.candle_columns_ or (list(X.columns) if labels is not None
                                         else list(range(values.shape[1])))
        check_values(values, names, pd.RangeIndex(len(values)) if labels is None else labels,
                     "X")
        if self.candle_columns_ is None:
            if self.value_transform_ != "none":
                raise ValueError(f"value_transform={self.value_transform_!r} reads candle "
                                 "columns; name X's columns open, high, low, close[, volume"
                                 "[, amount]]")
            return values.astype(np.float32)
        # check_values has refused prices <= 0 and negative volumes: "log" can read them all.
        return assemble_features(pd.DataFrame(values, columns=self.candle_columns_))

    def _read_as(self, by_name: dict[str, str], n_columns: int) -> list[str] | None:
        """The candle features the fitted columns are, or None for the columns as given."""
        if by_name:
            return list(by_name)
        if self.fit_strategy == "from-scratch":
            return None
        if not len(PRICE_COLUMNS) <= n_columns <= len(FEATURE_COLUMNS):
            raise ValueError(
                f"X has {n_columns} columns; with a checkpoint KLineTokenizer reads 4 to 6: "
                "open, high, low, close[, volume[, amount]] in this order, or a DataFrame "
                "with those column names")
        return list(FEATURE_COLUMNS[:n_columns])

    def _feature_positions(self) -> list[int]:
        """Where the fitted columns sit among the network's features."""
        if self.candle_columns_ is None:
            return list(range(self.n_features_in_))
        return [FEATURE_COLUMNS.index(name) for name in self.candle_columns_]

    def _normalise(self, features: np.ndarray) -> np.ndarray:
        """(T, F) features -> (1, T, F) float32, scaled with the fitted statistics."""
        return Normalizer(self.mean_[None], self.std_[None], self.clip,
                          self.value_transform_).transform(features[None])

    def _to_tensor(self, values: np.ndarray) -> torch.Tensor:
        weight = self.tokenizer_.head.weight
        return torch.from_numpy(values).to(device=weight.device, dtype=weight.dtype)

    def _check_ids(self, X: Any) -> np.ndarray:
        """(T, 2) integer ids within the vocabularies of `tokenizer_`."""
        ids = check_array(X, dtype="numeric", input_name="ids")
        if ids.shape[1] != len(OUTPUT_NAMES):
            raise ValueError(f"ids must have 2 columns {list(OUTPUT_NAMES)}, got "
                             f"{ids.shape[1]}")
        config = self.tokenizer_.config
        for column, (name, bits) in enumerate(zip(OUTPUT_NAMES, (config.s1_bits,
                                                                 config.s2_bits))):
            values = ids[:, column]
            bad = (values != np.round(values)) | (values < 0) | (values >= 2 ** bits)
            if bad.any():
                row = int(bad.argmax())
                raise ValueError(f"ids: {name} at row {row} is {values[row]}; it must be an "
                                 f"integer in [0, {2 ** bits}) ({bits} bits)")
        return ids.astype(np.int64)

    def _train(self, features: np.ndarray, pretrained: KronosTokenizer | None,
               network_config: TokenizerConfig | None,
               device: torch.device) -> tuple[KronosTokenizer, list[float]]:
        """Train a copy of `pretrained`, or a new network of `network_config`, on windows of
        `features` with the project's engine; return it and the loss of every step."""
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        source = _TableWindows(features, min(self.window, len(features)), self.batch_size,
                               seed, self.clip, self.value_transform_)
        return train_network(
            "tokenizer", source, start=pretrained,
            model_config=None if network_config is None else network_config.to_dict(),
            max_steps=self.max_steps, batch_size=self.batch_size,
            learning_rate=learning_rate_for(self.fit_strategy, self.learning_rate), seed=seed,
            device=str(device))
