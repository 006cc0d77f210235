"""Training settings: one dataclass with a visible default for every setting.

Precedence is fixed: the defaults below, then a TOML file, then an overrides dict (what a
command line will pass). A TOML file holds the top-level settings plus two tables, `[model]`
(fields of `TokenizerConfig` or `PredictorConfig` for a freshly initialised model) and
`[data]` (interpreted by whoever builds the batch source)::

    task = "predictor"
    tokenizer_checkpoint = "checkpoints/tokenizer"
    lr = 4e-5
    max_steps = 2000

    [model]
    d_model = 256
    n_layers = 4

    [data]
    window = 512
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kronos_sk.nn.config import PredictorConfig, TokenizerConfig

TASKS = ("tokenizer", "predictor")
PRECISIONS = ("fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
# Settings that hold a table; an override such as {"data.window": 64} sets one entry.
TABLES = ("model", "data")


# The network config keys that [model] may change on a checkpoint it starts from.
CHECKPOINT_MODEL_KEYS = {"tokenizer": ("value_transform",), "predictor": ()}


@dataclass
class TrainConfig:
    """Every training setting, validated on construction.

    Parameters
    ----------
    task : {"tokenizer", "predictor"}, default="tokenizer"
        Which module to train; the predictor trains against a frozen tokenizer.
    model : dict, default={}
        Fields of `TokenizerConfig` / `PredictorConfig` for a fresh model (their defaults
        are the released sizes). With `init_checkpoint` it may only set the tokenizer's
        ``value_transform``: the checkpoint's weights are then trained into that value
        space (e.g. a released-style tokenizer into log prices).
    init_checkpoint : str or None, default=None
        Released-layout directory (or hub id) to start from instead of a fresh model.
    tokenizer_checkpoint : str or None, default=None
        Frozen tokenizer for the predictor task (required there unless the tokenizer module
        is given to the `Trainer`; rejected for the tokenizer task).
    lr : float, default=1e-4
        Peak learning rate, reached after `warmup_steps`.
    min_lr_ratio : float, default=0.1
        The cosine decay ends at `lr * min_lr_ratio` at `max_steps`.
    weight_decay : float, default=0.1
        AdamW decay of matrices; norms, biases and embeddings are never decayed.
    betas : tuple of float, default=(0.9, 0.95)
    warmup_steps : int, default=100
        Linear warm-up length in optimizer steps.
    max_steps : int, default=1000
        Optimizer steps of the whole run (the schedule's length).
    batch_size : int, default=32
        Sequences per micro-batch per process; the source must deliver exactly this many.
        Effective batch = batch_size * grad_accum_steps * world size.
    grad_accum_steps : int, default=1
        Micro-batches per optimizer step.
    grad_clip : float, default=1.0
        Maximum global gradient norm; 0 disables clipping (TOML has no null).
    precision : {"fp32", "bf16"}, default="fp32"
        "bf16" runs forward passes under bfloat16 autocast; weights stay float32.
    device : {"auto", "cpu", "cuda", "cuda:N", "mps"}, default="auto"
        "auto" picks CUDA when available, else the CPU; under torchrun the GPU index is the
        process's local rank. "cuda:N" and "mps" are used exactly (one process only).
    quant_weight : float, default=1.0
        The paper's lambda: weight of the BSQ loss in the tokenizer objective.
    teacher_forcing : bool, default=False
        Condition the predictor's fine head on the true next coarse id instead of one
        sampled from its own coarse distribution (paper section 4.2).
    eval_every : int, default=100
        Optimizer steps between evaluations (also run at the last step).
    eval_batches : int, default=10
        Most validation batches read per evaluation.
    early_stopping_patience : int or None, default=None
        Evaluations without improvement before stopping; None disables early stopping.
    save_every : int, default=100
        Optimizer steps between saves of `out_dir/last/` (also saved at the end).
    log_every : int, default=10
        Optimizer steps between records in `out_dir/metrics.jsonl`.
    progress : bool, default=True
        Show a progress bar (main process only).
    seed : int, default=0
        Model initialisation seed (same on every rank); data and sampling use seed + rank.
    num_threads : int, default=0
        CPU threads for torch; 0 keeps torch's default. Pin it for bit-exact resumes, since
        CPU reductions may depend on the thread count.
    out_dir : str or None, default="runs/kronos"
        Run directory: `best/`, `last/`, `metrics.jsonl`, `train_config.json`. None: an
        in-memory run that writes nothing (see `kronos_sk.training.train_modules`).
    resume : bool, default=False
        Continue the run saved in `out_dir/last/`. Settings that differ from the saved run's
        are refused by name, except `max_steps` (not below the saved step), `progress`,
        `log_every`, `save_every`, `num_threads`, `device` and those in `resume_changes`.
    resume_changes : tuple of str, default=()
        Settings a resume may change anyway, e.g. ``("lr", "data.lookback")``; an entry
        names a setting, a table (``"data"``) or one of its entries.
    data : dict, default={}
        Data settings, passed through untouched for the code that builds the batch source.
    """

    task: str = "tokenizer"
    model: dict[str, Any] = field(default_factory=dict)
    init_checkpoint: str | None = None
    tokenizer_checkpoint: str | None = None
    lr: float = 1e-4
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 100
    max_steps: int = 1000
    batch_size: int = 32
    grad_accum_steps: int = 1
    grad_clip: float = 1.0
    precision: str = "fp32"
    device: str = "auto"
    quant_weight: float = 1.0
    teacher_forcing: bool = False
    eval_every: int = 100
    eval_batches: int = 10
    early_stopping_patience: int | None = None
    save_every: int = 100
    log_every: int = 10
    progress: bool = True
    seed: int = 0
    num_threads: int = 0
    out_dir: str | None = "runs/kronos"
    resume: bool = False
    resume_changes: tuple[str, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(f.name, getattr(self, f.name), hints[f.name]))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the setting to change when settings contradict each other."""
        _choice("task", self.task, TASKS)
        _choice("precision", self.precision, PRECISIONS)
        if not _is_device(self.device):
            raise ValueError(f"device must be one of {list(DEVICES)} (N a GPU index), got "
                             f"{self.device!r}")
        for name in ("max_steps", "batch_size", "grad_accum_steps", "eval_every",
                     "eval_batches", "save_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "num_threads", "weight_decay", "grad_clip", "quant_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not all(0.0 <= beta < 1.0 for beta in self.betas):
            raise ValueError(f"betas must both be in [0, 1), got {self.betas}")
        if self.warmup_steps > self.max_steps:
            raise ValueError(f"warmup_steps={self.warmup_steps} exceeds max_steps="
                             f"{self.max_steps}; lower warmup_steps or raise max_steps")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ValueError("early_stopping_patience must be at least 1, or None to disable it")
        if self.init_checkpoint is not None and (
                set(self.model) - set(CHECKPOINT_MODEL_KEYS[self.task])):
            raise ValueError("set either [model] (fresh weights) or init_checkpoint, not both; "
                             "with init_checkpoint [model] may only set "
                             f"{list(CHECKPOINT_MODEL_KEYS[self.task]) or 'nothing'}")
        if self.task == "tokenizer" and self.tokenizer_checkpoint is not None:
            raise ValueError("tokenizer_checkpoint is only used by task = 'predictor'; remove it "
                             "or use init_checkpoint to start the tokenizer from weights")
        if self.task == "tokenizer" and self.teacher_forcing:
            raise ValueError("teacher_forcing applies to task = 'predictor' only")
        # Building the network config is cheap and names any unknown or invalid [model] key.
        self.model_config_class().from_dict(dict(self.model), source="TrainConfig.model")

    def model_config_class(self) -> type[TokenizerConfig] | type[PredictorConfig]:
        """The network config dataclass of `task`."""
        return TokenizerConfig if self.task == "tokenizer" else PredictorConfig

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_train_config(path: str | os.PathLike | None = None,
                      overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Resolve a `TrainConfig`: defaults < TOML file at `path` < `overrides`.

    Parameters
    ----------
    path : path-like or None
        TOML file of settings (see the module docstring); None uses the defaults only.
    overrides : dict or None
        Settings that win over the file. A key "model.x" or "data.x" sets one entry of that
        table; a whole-table value ({"data": {...}}) is merged into the file's table.

    Raises
    ------
    ValueError
        On an unknown key (named, with its source) or an invalid or contradictory value.
    """
    values: dict[str, Any] = {}
    if path is not None:
        with Path(path).open("rb") as file:
            try:
                values = tomllib.load(file)
            except tomllib.TOMLDecodeError as error:
                raise ValueError(f"{path}: not valid TOML ({error})") from None
        _check_keys(values, source=str(path))
    updates = _nest(overrides or {})
    _check_keys(updates, source="overrides")
    for key, value in updates.items():
        if key in TABLES and isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    config = TrainConfig(**values)
    if config.task == "predictor" and config.tokenizer_checkpoint is None:
        # A file run has no tokenizer module: it must name the checkpoint.
        raise ValueError("task = 'predictor' needs tokenizer_checkpoint (a trained tokenizer)")
    return config


def _nest(overrides: dict[str, Any]) -> dict[str, Any]:
    """Turn {"data.window": 64} into {"data": {"window": 64}}."""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        table, dot, entry = key.partition(".")
        if not dot:
            nested[key] = value
        elif table in TABLES:
            nested.setdefault(table, {})[entry] = value
        else:
            raise ValueError(f"overrides: unknown key {key!r}; only {list(TABLES)} take "
                             "dotted entries")
    return nested


def _check_keys(values: dict[str, Any], source: str) -> None:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    for key in values:
        if key not in known:
            raise ValueError(f"{source}: unknown setting {key!r}; known settings are "
                             f"{sorted(known)}")


def _is_device(name: str) -> bool:
    """"auto", "cpu", "cuda", "mps" or "cuda:N" with N a non-negative integer."""
    kind, colon, index = name.partition(":")
    if not colon:
        return name in ("auto", "cpu", "cuda", "mps")
    return kind == "cuda" and index.isdigit() and index == str(int(index))


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Check `value` against a field's type hint, converting ints to floats and lists to tuples."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in (arg for arg in options if arg is not type(None)):
            try:
                return _coerce(name, value, option)
            except ValueError:
                continue
        raise ValueError(f"{name} must be {_type_name(hint)}, got {value!r}")
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    ok = False
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, (str, os.PathLike))
        value = os.fspath(value) if ok else value
    elif origin is tuple:
        variadic = len(args) == 2 and args[1] is Ellipsis  # tuple[str, ...]
        ok = isinstance(value, (list, tuple)) and (variadic or len(value) == len(args))
        if ok:
            items = args[:1] * len(value) if variadic else args
            return tuple(_coerce(name, item, arg) for item, arg in zip(value, items))
    elif origin is dict:
        ok = isinstance(value, dict)
        value = dict(value) if ok else value
    if not ok:
        raise ValueError(f"{name} must be {_type_name(hint)}, got {value!r}")
    return value


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint)
