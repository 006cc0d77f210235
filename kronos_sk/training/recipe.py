"""Pre-training and fine-tuning recipes: one TOML file from candle files to a model pair.

`pretrain` trains a fresh tokenizer, then a fresh predictor against the frozen best
tokenizer; `finetune` does the same starting from given checkpoints. Both read one TOML file
that holds every setting::

    out_dir = "runs/my-model"     # tokenizer/{best,last}, predictor/{best,last}, recipe.json
    resume = false                # true continues both stages; a finished stage is skipped
                                  # (a changed setting is refused unless a stage table's
                                  # resume_changes lists it, e.g. ["lr", "data.lookback"])

    [data]
    sources = ["../shared/data"]  # files and directories of long-format candles
    markets = { us_stocks_daily_2008_2017 = "us_stocks" }  # file stem -> market name
    weights = { us_stocks = 1.0 }                           # market -> sampling weight
    max_gap_factor = 15.0
    max_abs_log_return = { cn_ashare = 0.1044 }             # market -> jump threshold
    lookback = 128
    horizon = 24
    mask_fraction = 0.05
    assets_per_block = 64
    steps_per_block = 200

    [data.split]                  # market (or "*" for the rest) -> TimeSplit fields
    us_stocks = { cutoff = "2016-01-01" }
    "*" = { last = "30D" }

    [tokenizer]                   # TrainConfig settings of the tokenizer stage
    max_steps = 1000
    [tokenizer.model]             # TokenizerConfig fields
    d_model = 128

    [predictor]                   # TrainConfig settings of the predictor stage
    max_steps = 4000
    [predictor.model]             # PredictorConfig fields
    d_model = 256

Relative paths (``out_dir``, ``data.sources``, a stage's ``init_checkpoint``) are resolved
against the *parent of the config file's directory*, the repository root for a recipe kept in
``configs/``; so ``"../shared/data"`` in ``configs/default-model.toml`` names the ``shared/data``
folder beside the repository. An ``init_checkpoint`` that names no existing path there is
passed on unchanged (a hub id such as ``NeoQuasar/Kronos-small``).

Precedence is fixed: dataclass defaults, then the file, then `overrides`, whose keys are dotted
paths into the file (``"predictor.max_steps"``, ``"data.split.*.cutoff"``, ``"resume"``).
A stage table takes every `TrainConfig` setting except those the recipe sets itself
(``task``, ``out_dir``, ``resume``, ``tokenizer_checkpoint``, ``data``). Training batches come
from a `WindowSampler` (its block and batch seeds count micro-batches, as the engine's batch
index does); validation is ``eval_batches * batch_size`` windows of `validation_batches`,
read once and kept in memory.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kronos_sk import checkpoints
from kronos_sk._files import write_atomically
from kronos_sk.data import CandleCorpus, TimeSplit, WindowSampler, validation_batches
from kronos_sk.data.normalize import DEFAULT_CLIP
from kronos_sk.data.windows import DEFAULT_MIN_CONTEXT, Batch, check_targets
from kronos_sk.lookahead import corpus_periods, data_periods, write_data_periods
from kronos_sk.training import distributed
from kronos_sk.training.config import TrainConfig, _coerce
from kronos_sk.training.engine import (METRICS_FILE, STATE_FILE, check_resume_settings,
                                       read_training_state, recover_interrupted_saves,
                                       run_training)

logger = logging.getLogger(__name__)

STAGES = ("tokenizer", "predictor")
RECIPE_FILE = "recipe.json"
TOP_LEVEL = ("out_dir", "resume", "data", *STAGES)
# TrainConfig settings that the recipe derives itself; a stage table may not set them.
RESERVED = ("task", "out_dir", "resume", "tokenizer_checkpoint", "data")


@dataclass
class DataSettings:
    """The ``[data]`` table: which candles, how they are split and cut into windows.

    Parameters
    ----------
    sources : list of str
        Parquet/CSV files and directories (see `CandleCorpus`), resolved as the module
        docstring says.
    markets : dict of str to str, default={}
        File stem -> market name; a file left out is the market named by its stem.
    weights : dict of str to float, default={}
        Market -> sampling weight (1.0 when left out).
    split : dict of str to dict, default={}
        Market (or ``"*"``) -> `TimeSplit` fields (``cutoff``, ``last``). Validation needs at
        least one market with a rule that leaves it validation rows.
    max_gap_factor : float or dict of str to float, default=5.0
        A step longer than this many median steps starts a new segment (about 15 for daily
        exchange data, to bridge holidays); a table gives one per market (``"*"``: the rest).
    max_abs_log_return : dict of str to float, default={}
        Market -> largest close-to-close ``|log return|`` inside a segment (markets left out:
        no limit); ``log(1.11)`` cuts the unadjusted A-share file at ex-rights jumps.
    lookback, horizon : int, default=256, 32
        Longest context and fewest targets per window: a window has ``lookback + horizon``
        rows, fewer where its segment ends sooner.
    min_context : int, default=32
        Shortest context: each window's context length is drawn uniformly between
        `min_context` and `lookback`; it is normalised with those rows' statistics and only
        the later targets are scored (see `kronos_sk.data.windows`).
    targets : {"all", "horizon"}, default="all"
        The rows a window keeps after its context, which the predictor scores: all of them,
        or only the `horizon` rows right after it (training batches then share one context
        length and are cut to it plus `horizon` rows; the tokenizer stage reconstructs those
        shorter windows; see `kronos_sk.data.windows.WindowSampler`).
    mask_fraction : float, default=0.05
        Share of training windows whose volume and amount are zeroed.
    assets_per_block, steps_per_block : int, default=64, 200
        Assets read per block of training micro-batches, and micro-batches per block.
    clip : float, default=DEFAULT_CLIP
        Normalised values are clipped to ``[-clip, clip]``.
    """

    sources: list[str]
    markets: dict[str, str] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    split: dict[str, dict[str, str]] = field(default_factory=dict)
    max_gap_factor: float | dict[str, float] = 5.0
    max_abs_log_return: dict[str, float] = field(default_factory=dict)
    lookback: int = 256
    horizon: int = 32
    min_context: int = DEFAULT_MIN_CONTEXT
    targets: str = "all"
    mask_fraction: float = 0.05
    assets_per_block: int = 64
    steps_per_block: int = 200
    clip: float = DEFAULT_CLIP

    def __post_init__(self) -> None:
        if isinstance(self.sources, (str, os.PathLike)):
            self.sources = [self.sources]
        if not (isinstance(self.sources, list) and self.sources
                and all(isinstance(s, (str, os.PathLike)) for s in self.sources)):
            raise ValueError(f"data.sources must be a path or a non-empty list of paths, got "
                             f"{self.sources!r}")
        self.sources = [os.fspath(s) for s in self.sources]
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            if f.name != "sources":
                setattr(self, f.name,
                        _coerce(f"data.{f.name}", getattr(self, f.name), hints[f.name]))
        check_targets(self.targets, "data.targets")
        if self.min_context > self.lookback:
            raise ValueError(f"data.min_context ({self.min_context}) must be <= data.lookback "
                             f"({self.lookback})")
        self.time_split()  # name a bad split rule now, not at the first batch

    def time_split(self) -> dict[str, TimeSplit]:
        """The ``split`` table as market -> `TimeSplit`."""
        rules = {}
        for market, rule in self.split.items():
            if not isinstance(rule, Mapping):
                raise ValueError(f"data.split.{market} must be a table such as "
                                 f"{{ cutoff = \"2016-01-01\" }}, got {rule!r}")
            unknown = sorted(set(rule) - {"cutoff", "last"})
            if unknown:
                raise ValueError(f"data.split.{market}: unknown setting(s) {unknown}; a rule "
                                 "takes cutoff and last")
            # TOML dates arrive as datetime.date; TimeSplit wants text or a Timestamp.
            rules[market] = TimeSplit(**{k: str(v) for k, v in rule.items()})
        return rules

    def corpus(self) -> CandleCorpus:
        """Index the sources (asset and timestamp columns only)."""
        return CandleCorpus(self.sources, markets=self.markets, weights=self.weights,
                            max_gap_factor=self.max_gap_factor,
                            max_abs_log_return=self.max_abs_log_return)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Recipe:
    """A resolved recipe: absolute paths, data settings and the two stage tables.

    Attributes
    ----------
    source : str
        Where the settings came from (the config file), for error messages.
    out_dir : Path
    resume : bool
    data : DataSettings
    stages : dict of str to dict
        ``"tokenizer"`` / ``"predictor"`` -> `TrainConfig` settings from the file.
    """

    source: str
    out_dir: Path
    resume: bool
    data: DataSettings
    stages: dict[str, dict[str, Any]]

    def stage_dir(self, stage: str) -> Path:
        return self.out_dir / stage

    def train_config(self, stage: str) -> TrainConfig:
        """The `TrainConfig` of `stage`; the predictor's tokenizer is the tokenizer stage's best."""
        settings = dict(self.stages[stage], task=stage, out_dir=str(self.stage_dir(stage)),
                        resume=False, data=self.data.to_dict())
        if stage == "predictor":
            settings["tokenizer_checkpoint"] = str(self.stage_dir("tokenizer") / "best")
        try:
            return TrainConfig(**settings)
        except ValueError as error:
            raise ValueError(f"{self.source} [{stage}]: {error}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"out_dir": str(self.out_dir), "resume": self.resume,
                "data": self.data.to_dict(), **self.stages}


def load_recipe(config_path: str | os.PathLike,
                overrides: Mapping[str, Any] | None = None) -> Recipe:
    """Read a recipe TOML file, apply `overrides`, resolve paths and check every setting.

    Parameters
    ----------
    config_path : path-like
    overrides : mapping of str to object, default=None
        Dotted keys into the file (``{"predictor.max_steps": 10}``), winning over it.

    Returns
    -------
    Recipe

    Raises
    ------
    ValueError
        Naming an unknown key, with its table, or an invalid value.
    """
    path = Path(config_path)
    try:
        values = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML ({error})") from None
    for key, value in (overrides or {}).items():
        _set_dotted(values, key, value)
    source = str(path)
    _check_known(values, TOP_LEVEL, source, "")
    for stage in STAGES:
        table = values.get(stage, {})
        if not isinstance(table, dict):
            raise ValueError(f"{source}: [{stage}] must be a table")
        allowed = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in RESERVED]
        reserved = sorted(set(table) & set(RESERVED))
        if reserved:
            raise ValueError(f"{source}: {stage}.{reserved[0]} is set by the recipe itself; "
                             "remove it")
        _check_known(table, allowed, source, f"{stage}.")
    data = values.get("data")
    if not isinstance(data, dict) or "sources" not in data:
        raise ValueError(f"{source}: [data] needs sources, the candle files or directories")
    _check_known(data, [f.name for f in dataclasses.fields(DataSettings)], source, "data.")

    root = path.resolve().parent.parent
    data = dict(data)
    sources = data["sources"]
    if isinstance(sources, str):
        sources = [sources]
    if isinstance(sources, list):
        data["sources"] = [str((root / s).resolve()) if isinstance(s, str) else s
                           for s in sources]
    try:
        settings = DataSettings(**data)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None
    stages = {}
    for stage in STAGES:
        table = dict(values.get(stage, {}))
        init = table.get("init_checkpoint")
        if isinstance(init, str) and (root / init).exists():
            table["init_checkpoint"] = str(root / init)
        stages[stage] = table
    resume = values.get("resume", False)
    if not isinstance(resume, bool):
        raise ValueError(f"{source}: resume must be true or false, got {resume!r}")
    out_dir = values.get("out_dir")
    if not isinstance(out_dir, str):
        raise ValueError(f"{source}: out_dir must be set to the run directory, got {out_dir!r}")
    recipe = Recipe(source, root / out_dir, resume, settings, stages)
    for stage in STAGES:
        recipe.train_config(stage)  # names any bad stage setting before anything is read
    return recipe


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["predictor.lr=1e-4", "out_dir=runs/x"]`` -> dotted-key dict; values read as TOML.

    A value that is not valid TOML (a bare path, say) is kept as text.
    """
    overrides = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r} is not of the form key=value")
        try:
            value = tomllib.loads(f"value = {text}")["value"]
        except tomllib.TOMLDecodeError:
            value = text
        overrides[key.strip()] = value
    return overrides


class CorpusBatches:
    """Training windows of a `WindowSampler`, behind the engine's batch-source protocol.

    ``batch(index, rank=, world_size=)`` is ``WindowSampler.batch(index)`` of the sampler of
    that rank, so micro-batch `index` depends on nothing else.
    """

    def __init__(self, corpus: CandleCorpus, data: DataSettings, batch_size: int,
                 seed: int, value_transform: str = "none") -> None:
        self.corpus, self.data, self.batch_size, self.seed = corpus, data, batch_size, seed
        self.value_transform = value_transform
        self._sampler = self._make_sampler(0, 1)  # fails now if the split has no windows

    def _make_sampler(self, rank: int, world_size: int) -> WindowSampler:
        d = self.data
        return WindowSampler(self.corpus, d.lookback, d.horizon, self.batch_size,
                             min_context=d.min_context, seed=self.seed, split="train",
                             time_split=d.time_split(), assets_per_block=d.assets_per_block,
                             steps_per_block=d.steps_per_block, mask_fraction=d.mask_fraction,
                             clip=d.clip, value_transform=self.value_transform,
                             targets=d.targets, rank=rank, world_size=world_size)

    def batch(self, index: int, rank: int = 0, world_size: int = 1) -> Batch:
        if (self._sampler.rank, self._sampler.world_size) != (rank, world_size):
            self._sampler = self._make_sampler(rank, world_size)
        return self._sampler.batch(index)


def read_validation(corpus: CandleCorpus, data: DataSettings, batch_size: int,
                    n_batches: int, value_transform: str = "none") -> list[Batch]:
    """At most ``n_batches`` validation batches, shared evenly across markets.

    Raises ValueError when no market has a validation window.
    """
    batches = list(validation_batches(corpus, data.lookback, data.horizon, batch_size,
                                      time_split=data.time_split(),
                                      min_context=data.min_context,
                                      max_windows=batch_size * n_batches, clip=data.clip,
                                      value_transform=value_transform,
                                      targets=data.targets))
    if not batches:
        raise ValueError(f"no validation windows of {data.min_context + data.horizon} rows; give "
                         "data.split rules that leave each market validation rows")
    return batches


def pretrain(config_path: str | os.PathLike,
             overrides: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Train a fresh tokenizer, then a fresh predictor against its frozen best checkpoint.

    Parameters
    ----------
    config_path : path-like
        Recipe TOML file (see the module docstring); stages set ``[model]`` tables.
    overrides : mapping of str to object, default=None
        Dotted keys winning over the file.

    Returns
    -------
    dict of str to Path
        ``{"tokenizer": out_dir/tokenizer/best, "predictor": out_dir/predictor/best}``.
    """
    recipe = load_recipe(config_path, overrides)
    for stage in STAGES:
        if "init_checkpoint" in recipe.stages[stage]:
            raise ValueError(f"{recipe.source}: {stage}.init_checkpoint is set; pre-training "
                             "starts from fresh weights, use finetune to start from checkpoints")
    return _run(recipe)


def finetune(config_path: str | os.PathLike,
             overrides: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Fine-tune a tokenizer, then a predictor against the fine-tuned tokenizer.

    The recipe has the shape `pretrain` reads, but each stage names its starting weights with
    ``init_checkpoint`` (a directory or hub id) instead of a ``[model]`` table. The
    predictor's vocabulary must match the tokenizer's.

    Returns
    -------
    dict of str to Path
        ``{"tokenizer": out_dir/tokenizer/best, "predictor": out_dir/predictor/best}``.
    """
    recipe = load_recipe(config_path, overrides)
    for stage in STAGES:
        if "init_checkpoint" not in recipe.stages[stage]:
            raise ValueError(f"{recipe.source}: fine-tuning needs {stage}.init_checkpoint, the "
                             "checkpoint to start from")
    return _run(recipe)


def _run(recipe: Recipe) -> dict[str, Path]:
    """Both stages in order, each skipped when finished and continued when resumed."""
    configs = {stage: recipe.train_config(stage) for stage in STAGES}
    is_main = distributed.read_env().is_main
    # Only the main process checks and writes, so other ranks never see its fresh file.
    if is_main and not recipe.resume and (recipe.out_dir / RECIPE_FILE).exists():
        raise ValueError(f"{recipe.out_dir} already holds a run; set resume = true to continue "
                         "it, or choose another out_dir")
    # Every stage's resume is checked before anything is written, so a refusal changes nothing.
    finished = {stage: _prepare_resume(recipe, configs[stage], is_main) for stage in STAGES}
    if is_main:
        recipe.out_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(recipe.to_dict(), indent=2, default=str) + "\n"
        write_atomically(recipe.out_dir / RECIPE_FILE, lambda tmp: tmp.write_text(text))
    corpus = None
    # (batch_size, eval_batches, value_transform) -> batches
    validations: dict[tuple[int, int, str], list[Batch]] = {}
    best = {}
    for stage in STAGES:
        config = configs[stage]
        best[stage] = recipe.stage_dir(stage) / "best"
        if finished[stage]:
            logger.info("%s stage already finished in %s; skipped", stage, config.out_dir)
            continue
        if corpus is None:
            corpus = recipe.data.corpus()
            _log_corpus(corpus, recipe.data)
        transform = stage_value_transform(recipe, stage)
        source = CorpusBatches(corpus, recipe.data, config.batch_size, config.seed, transform)
        key = (config.batch_size, config.eval_batches, transform)
        if key not in validations:
            validations[key] = read_validation(corpus, recipe.data, *key)
        validation = validations[key]
        logger.info("%s stage: %d validation windows", stage,
                    sum(len(b["asset"]) for b in validation))
        best[stage] = run_training(config, source, lambda batches=validation: batches)
        if is_main:  # for the look-ahead guard: the corpus' periods and its start's
            init = recipe.stages[stage].get("init_checkpoint")
            seen = corpus_periods(corpus.assets,
                                  corpus.validation_starts(recipe.data.time_split()))
            write_data_periods(best[stage], seen + (data_periods(init) or () if init else ()))
    return best


def stage_value_transform(recipe: Recipe, stage: str) -> str:
    """The value space of the stage's windows: the tokenizer's, from its [model] table or
    the checkpoint it starts from (the predictor's: the trained tokenizer's)."""
    if stage == "predictor":
        tokenizer = recipe.stage_dir("tokenizer") / "best"
    else:
        settings = recipe.stages["tokenizer"]
        if "value_transform" in settings.get("model", {}):
            return settings["model"]["value_transform"]
        tokenizer = settings.get("init_checkpoint")
        if tokenizer is None:
            return "none"
    config = checkpoints.read_config(checkpoints.resolve_checkpoint(tokenizer))
    return config.get("value_transform", "none")


def _prepare_resume(recipe: Recipe, config: TrainConfig, is_main: bool) -> bool:
    """Set ``config.resume`` for a run to continue; return True when the stage is finished."""
    run_dir = Path(config.out_dir)
    state_file = run_dir / "last" / STATE_FILE
    if not recipe.resume:
        return False
    recover_interrupted_saves(run_dir)  # before deciding there is nothing to continue
    if not state_file.is_file() and state_file.parent.exists():
        raise ValueError(f"{state_file.parent} holds no {STATE_FILE}, so it cannot be resumed; "
                         "move it away to start the stage again")
    if not state_file.is_file():
        # Interrupted before its first save: nothing to continue, so the stage starts afresh.
        stale = run_dir / METRICS_FILE
        if is_main and stale.exists():
            logger.warning("%s: no saved state to resume; starting the stage again", run_dir)
            stale.unlink()
        return False
    state = read_training_state(state_file)
    if config.task == "predictor":  # its tokenizer is out_dir/tokenizer/best: moves with the run
        config.resume_changes = (*config.resume_changes, "tokenizer_checkpoint")
    try:  # a finished stage too: skipping it must not hide that its settings changed
        check_resume_settings(state, config)
    except ValueError as error:
        raise ValueError(f"{recipe.source} [{config.task}]: {error}") from None
    if state["stopped"] or state["step"] >= config.max_steps:
        return True
    config.resume = True
    return False


def _log_corpus(corpus: CandleCorpus, data: DataSettings) -> None:
    length = data.min_context + data.horizon
    counts = corpus.window_counts(length, time_split=data.time_split(), split="train")
    markets = corpus.assets["market"].to_numpy()
    weight = np.array([corpus.market_weights[m] for m in markets]) * counts
    shares = {m: round(float(weight[markets == m].sum() / weight.sum()), 4)
              for m in corpus.markets}
    logger.info("%r; share of training windows per market: %s", corpus, shares)


def _set_dotted(values: dict[str, Any], key: str, value: Any) -> None:
    """Set ``values["a"]["b"]["c"] = value`` for key ``"a.b.c"``, creating tables."""
    *tables, last = key.split(".")
    target = values
    for name in tables:
        target = target.setdefault(name, {})
        if not isinstance(target, dict):
            raise ValueError(f"override {key!r}: {name!r} is not a table")
    target[last] = value


def _check_known(table: Mapping[str, Any], known: typing.Iterable[str], source: str,
                 prefix: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        where = f" of [{prefix[:-1]}]" if prefix else ""
        raise ValueError(f"{source}: unknown setting '{prefix}{unknown[0]}'; the settings{where} "
                         f"are {sorted(known)}")
