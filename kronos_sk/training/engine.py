"""The training engine: `Trainer` (setup / train / save_checkpoint / cleanup), `run_training`
(a run in a directory: checkpoints, metrics, resume) and `train_modules` (in memory: modules
in, trained module and loss history out, nothing written).

Batch sources
-------------
A batch source has a method ``batch(index) -> {"values": ..., "stamps": ...}``:

- ``values``: (batch_size, L, d_in) float32 normalised candles (numpy array or tensor);
- ``stamps``: (batch_size, L, 5) int64 calendar stamps (minute, hour, weekday, day, month);
  the tokenizer task does not read them.
- ``context``: (batch_size,) int64, predictor task only: each window was normalised with the
  statistics of its first ``context`` rows, and only targets from there on are scored (see
  [`predictor_token_losses`][kronos_sk.training.losses.predictor_token_losses]), so that no
  scored target is normalised with statistics of itself or of later rows;
- ``length``: (batch_size,) int64, optional: real rows per window; later rows are padding
  that no loss term reads.

It must be stateless: micro-batch ``index`` is a pure function of ``index``. Optimizer step
``s`` reads micro-batches ``s * grad_accum_steps + m`` for ``m < grad_accum_steps``, so the
data position of a run is its step and resuming needs no data-loader state.

Under torchrun, a source whose ``batch`` accepts the keyword arguments ``rank`` and
``world_size`` is called as ``batch(index, rank=rank, world_size=world_size)`` and must give
each rank its own batch (for example by seeding on ``(index, rank)`` or by taking every
``world_size``-th window). A source without them gives every rank the same batch, which is
correct but wastes the extra processes (a warning says so).

Validation is a callable returning an iterable of such dicts, read afresh at every
evaluation on the main process, at most ``eval_batches`` of them.

In-memory runs
--------------
Given modules (``Trainer(..., module=..., tokenizer=...)``, or `train_modules`), the engine
trains `module` in place and freezes `tokenizer` in place: pass copies of weights you want
to keep. With ``out_dir = None`` nothing is written; every log and evaluation record is kept
in `Trainer.history` either way.

Run directory (``out_dir``)
---------------------------
``best/`` and ``last/`` hold checkpoints in the released layout (config.json +
model.safetensors) that `kronos_sk.checkpoints.load_tokenizer` / `load_predictor` read.
``last/training_state.pt`` adds what resuming needs. ``metrics.jsonl`` has one JSON record
per log or evaluation, ``train_config.json`` the resolved settings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import logging
import math
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn as nn
from safetensors.torch import load_file
from torch.optim import AdamW
from torch.optim.lr_scheduler import LambdaLR
from tqdm.auto import tqdm

from kronos_sk import checkpoints
from kronos_sk._files import write_atomically
from kronos_sk.nn.predictor import KronosPredictor
from kronos_sk.nn.tokenizer import KronosTokenizer
from kronos_sk.runtime import (release_freed_memory, retain_freed_memory,
                               slow_bf16_warning)
from kronos_sk.training import distributed
from kronos_sk.training.config import TrainConfig
from kronos_sk.training.losses import predictor_loss, tokenizer_loss

try:
    import resource
except ImportError:  # not on Windows
    resource = None

logger = logging.getLogger(__name__)

STATE_FILE = "training_state.pt"
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "train_config.json"
# Settings a resume may change without being told: they steer logging, saving, where the run
# lives, its length and the hardware, not what a step computes.
RESUMABLE = ("resume", "resume_changes", "out_dir", "max_steps", "progress", "log_every",
             "save_every", "num_threads", "device")
STATE_KEYS = ("step", "best_val_loss", "best_step", "bad_evals", "stopped", "optimizer",
              "scheduler", "rng", "world_size", "config")
N_STAMP_FIELDS = 5


class BatchSource(Protocol):
    def batch(self, index: int) -> dict[str, Any]: ...


Validation = Callable[[], Iterable[dict[str, Any]]]


def lr_multiplier(step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Learning-rate factor of optimizer step `step`: linear warm-up, then cosine decay."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(module: nn.Module, config: TrainConfig) -> AdamW:
    """AdamW that decays weight matrices only, never norms, biases or embedding tables."""
    decay, no_decay = [], []
    for owner in module.modules():
        for param in owner.parameters(recurse=False):
            if param.requires_grad:
                skip = isinstance(owner, nn.Embedding) or param.ndim < 2
                (no_decay if skip else decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return AdamW(groups, lr=config.lr, betas=config.betas)


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated on `device`, or the process's peak resident set on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    if resource is None:
        return math.nan
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 2 ** 10  # bytes vs KiB


class Trainer:
    """Trains a Kronos tokenizer, or a predictor against a frozen tokenizer.

    Call `setup`, `train`, then `cleanup` (always, e.g. in ``finally``); `run_training` does
    exactly that. The constructor only stores its arguments.

    Parameters
    ----------
    config : TrainConfig
    source : batch source
        See the module docstring for the protocol.
    validation : callable or None, default=None
        Returns an iterable of validation batches. Without it no evaluation runs and
        ``best/`` receives the final weights.
    module : KronosTokenizer or KronosPredictor or None, default=None
        The network to train, in place, instead of one built from ``config.model`` or
        loaded from ``config.init_checkpoint``.
    tokenizer : KronosTokenizer or None, default=None
        The frozen tokenizer of the predictor task, instead of
        ``config.tokenizer_checkpoint``; it is moved to the device and frozen in place.

    Attributes
    ----------
    module : KronosTokenizer or KronosPredictor
        The trained network, unwrapped: what checkpoints and evaluation use.
    model : torch.nn.Module
        What the training step calls: `module`, or its DistributedDataParallel wrapper.
    tokenizer : KronosTokenizer or None
        The frozen tokenizer of the predictor task.
    step : int
        Optimizer steps completed.
    best_val_loss : float
        Lowest validation loss so far (inf before the first evaluation).
    history : list of dict
        Every record also written to ``metrics.jsonl`` (training logs hold "loss",
        evaluations "val_loss"), in memory, including runs without `out_dir`.
    """

    def __init__(self, config: TrainConfig, source: BatchSource,
                 validation: Validation | None = None, *,
                 module: KronosTokenizer | KronosPredictor | None = None,
                 tokenizer: KronosTokenizer | None = None):
        self.config = config
        self.source = source
        self.validation = validation
        self._given_module, self._given_tokenizer = module, tokenizer
        self.history: list[dict[str, Any]] = []
        self._best_state: dict[str, torch.Tensor] | None = None
        self.step = 0
        self.best_val_loss = math.inf
        self.best_step: int | None = None
        self.bad_evals = 0
        self.stopped = False
        self._owns_group = False
        self._finished = False
        self._progress: tqdm | None = None
        self._previous_threads: int | None = None
        self._retains_memory = False

    @property
    def writes(self) -> bool:
        """Whether this run has a directory (``out_dir``) to write to."""
        return self.config.out_dir is not None

    @property
    def out_dir(self) -> Path:
        if not self.writes:
            raise ValueError("this run has no out_dir (an in-memory run writes nothing)")
        return Path(self.config.out_dir)

    @property
    def best_dir(self) -> Path:
        return self.out_dir / "best"

    @property
    def last_dir(self) -> Path:
        return self.out_dir / "last"

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        """Check the options, join the process group, build model, optimizer and schedule.

        With ``config.resume`` the weights, optimizer, schedule, counters and RNG states
        come from ``out_dir/last/``.
        """
        cfg = self.config
        self.env = distributed.read_env()
        self.device = distributed.resolve_device(cfg.device, self.env)
        self._check_options()  # everything that can be wrong is named before any allocation
        self._previous_threads = torch.get_num_threads()
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        # Steps free and allocate large tensors: reuse the memory instead of faulting it in.
        self._retains_memory = self.device.type == "cpu" and retain_freed_memory()
        self._owns_group = distributed.init_process_group(self.env, self.device)

        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        module = self._given_module if self._given_module is not None else self._build_module()
        self.module = module.to(self.device).train()
        self.tokenizer = None
        if cfg.task == "predictor":
            self.tokenizer = self._given_tokenizer
            if self.tokenizer is None:
                self.tokenizer = checkpoints.load_tokenizer(cfg.tokenizer_checkpoint,
                                                            device="cpu")
            self.tokenizer = self.tokenizer.to(self.device).eval()
            self.tokenizer.requires_grad_(False)
        if cfg.resume:
            checkpoints.load_state(self.module, load_file(self.last_dir / checkpoints.WEIGHTS_FILE),
                                   str(self.last_dir / checkpoints.WEIGHTS_FILE))
        self.model = distributed.wrap(self.module, self.device, self.env)
        self.optimizer = build_optimizer(self.module, cfg)
        self.scheduler = LambdaLR(self.optimizer, self._schedule)
        # Dropout, sampled coarse ids and the data differ between ranks.
        distributed.seed_everything(cfg.seed + self.env.rank)
        self._batch_kwargs = self._rank_arguments()

        if cfg.resume:
            self._load_training_state()
        if self.env.is_main and self.writes:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            text = json.dumps(cfg.to_dict(), indent=2) + "\n"
            write_atomically(self.out_dir / CONFIG_FILE, lambda tmp: tmp.write_text(text))
            self._trim_metrics()
        logger.info("training %s: %d parameters, device %s, world size %d, seed %d", cfg.task,
                    sum(p.numel() for p in self.module.parameters() if p.requires_grad),
                    self.device, self.env.world_size, cfg.seed)

    def _schedule(self, step: int) -> float:
        cfg = self.config
        return lr_multiplier(step, cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio)

    def _check_options(self) -> None:
        cfg = self.config
        if cfg.precision == "bf16" and self.device.type == "cuda" \
                and not torch.cuda.is_bf16_supported():
            raise ValueError(f"precision = 'bf16' but {torch.cuda.get_device_name(self.device)} "
                             "lacks bfloat16; set precision = 'fp32'")
        if cfg.precision == "bf16" and (message := slow_bf16_warning(self.device)):
            warnings.warn(message + " (set precision = 'fp32')", UserWarning, stacklevel=3)
            logger.warning(message)
        if cfg.early_stopping_patience is not None and self.validation is None:
            raise ValueError("early_stopping_patience needs validation batches; pass "
                             "validation or set early_stopping_patience = None")
        if not callable(getattr(self.source, "batch", None)):
            raise TypeError(f"the batch source {type(self.source).__name__} has no batch(index) "
                            "method")
        self._check_modules()
        if not self.writes:
            if cfg.resume:
                raise ValueError("resume = true needs the out_dir of the run to continue")
            if cfg.task == "predictor":
                self._check_tokenizer_matches()
            return
        if cfg.resume:
            recover_interrupted_saves(self.out_dir)
        if cfg.resume and not (self.last_dir / STATE_FILE).is_file():
            raise ValueError(f"resume = true but {self.last_dir} holds no {STATE_FILE}; "
                             "set resume = false to start a new run")
        if not cfg.resume and self.env.is_main and (
                self.last_dir.exists() or (self.out_dir / METRICS_FILE).exists()):
            raise ValueError(f"{self.out_dir} already holds a run; set resume = true to continue "
                             "it, or choose another out_dir")
        if cfg.task == "predictor":
            self._check_tokenizer_matches()

    def _check_modules(self) -> None:
        """Given modules must be of the task's kind; a predictor needs a tokenizer."""
        cfg = self.config
        kind = KronosTokenizer if cfg.task == "tokenizer" else KronosPredictor
        if self._given_module is not None and not isinstance(self._given_module, kind):
            raise TypeError(f"task = {cfg.task!r} trains a {kind.__name__}, got module="
                            f"{type(self._given_module).__name__}")
        if cfg.task == "tokenizer" and self._given_tokenizer is not None:
            raise ValueError("tokenizer= is only used by task = 'predictor'")
        if cfg.task == "predictor":
            if self._given_tokenizer is None and cfg.tokenizer_checkpoint is None:
                raise ValueError("task = 'predictor' needs tokenizer_checkpoint (a trained "
                                 "tokenizer) or a tokenizer module")
            if self._given_tokenizer is not None and not isinstance(self._given_tokenizer,
                                                                    KronosTokenizer):
                raise TypeError(f"tokenizer= must be a KronosTokenizer, got "
                                f"{type(self._given_tokenizer).__name__}")

    def _check_tokenizer_matches(self) -> None:
        """The predictor's vocabulary must be the tokenizer's; compare configs, not weights."""
        cfg = self.config
        if self._given_tokenizer is not None:
            tokenizer = self._given_tokenizer.config.to_dict()
        else:
            tokenizer = checkpoints.read_config(checkpoints.resolve_checkpoint(
                cfg.tokenizer_checkpoint))
        if self._given_module is not None:
            predictor = self._given_module.config
        else:
            predictor = dict(cfg.model) if cfg.init_checkpoint is None else \
                checkpoints.read_config(checkpoints.resolve_checkpoint(cfg.init_checkpoint))
            predictor = cfg.model_config_class().from_dict(predictor, source="predictor config")
        for bits in ("s1_bits", "s2_bits"):
            if tokenizer.get(bits) != getattr(predictor, bits):
                raise ValueError(
                    f"the tokenizer has {bits} = {tokenizer.get(bits)} but the predictor "
                    f"{getattr(predictor, bits)}; set model.{bits} or tokenizer_checkpoint "
                    "so that they match")

    def _build_module(self) -> KronosTokenizer | KronosPredictor:
        cfg = self.config
        if cfg.init_checkpoint is not None:
            load = checkpoints.load_tokenizer if cfg.task == "tokenizer" else \
                checkpoints.load_predictor
            module = load(cfg.init_checkpoint, device="cpu")
            module.config = dataclasses.replace(module.config, **cfg.model)
            return module
        network = KronosTokenizer if cfg.task == "tokenizer" else KronosPredictor
        return network(cfg.model_config_class().from_dict(dict(cfg.model),
                                                          source="TrainConfig.model"))

    def _rank_arguments(self) -> dict[str, int]:
        parameters = inspect.signature(self.source.batch).parameters
        if {"rank", "world_size"} <= set(parameters):
            return {"rank": self.env.rank, "world_size": self.env.world_size}
        if self.env.is_distributed and self.env.is_main:
            logger.warning("the batch source takes no rank/world_size: every rank reads the "
                           "same batches")
        return {}

    # ------------------------------------------------------------------ train
    def train(self) -> None:
        """Run optimizer steps until `max_steps` or early stopping.

        Logs every `log_every` steps, evaluates every `eval_every` steps and at the last,
        saves ``last/`` every `save_every` steps and at the end.
        """
        cfg = self.config
        self._progress = tqdm(total=cfg.max_steps, initial=self.step, desc=f"train {cfg.task}",
                              disable=not (self.env.is_main and cfg.progress),
                              dynamic_ncols=True)
        window: list[dict[str, float]] = []
        tokens, seconds = 0, 0.0  # throughput counts optimizer steps, not evaluation or saving
        while self.step < cfg.max_steps and not self.stopped:
            started = time.perf_counter()
            metrics, step_tokens = self._optimizer_step()
            seconds += time.perf_counter() - started
            self.step += 1
            window.append(metrics)
            tokens += step_tokens
            self._progress.update()
            if self.step % cfg.log_every == 0:
                self._log_train(window, tokens / seconds)
                window, tokens, seconds = [], 0, 0.0
            end = self.step == cfg.max_steps
            if self.validation is not None and (self.step % cfg.eval_every == 0 or end):
                self._evaluate_and_track()
            if self.writes and (self.step % cfg.save_every == 0 or end or self.stopped):
                self.save_checkpoint()
        if self.validation is None and self.env.is_main:
            self._save_best()
        elif not self.writes and self._best_state is not None:
            self.module.load_state_dict(self._best_state)  # as best/ would hold
        self._finished = True

    def _optimizer_step(self) -> tuple[dict[str, float], int]:
        cfg = self.config
        accum = cfg.grad_accum_steps
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, float] = {"lr": self.optimizer.param_groups[0]["lr"]}
        tokens = 0
        for micro in range(accum):
            batch = self._fetch(self.step * accum + micro)
            with distributed.gradient_sync(self.model, sync=micro == accum - 1):
                with self._autocast():
                    loss, metrics = self._loss(self.model, batch)
                (loss / accum).backward()
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + value / accum
            tokens += batch["values"].shape[0] * batch["values"].shape[1]
        if cfg.grad_clip > 0:
            params = [p for p in self.module.parameters() if p.grad is not None]
            totals["grad_norm"] = nn.utils.clip_grad_norm_(params, cfg.grad_clip).item()
        self.optimizer.step()
        self.scheduler.step()
        return totals, tokens * self.env.world_size

    def _loss(self, model: nn.Module, batch: dict[str, torch.Tensor],
              ) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        if cfg.task == "tokenizer":
            return tokenizer_loss(model, batch["values"], cfg.quant_weight, batch.get("length"))
        return predictor_loss(model, self.tokenizer, batch["values"], batch["stamps"],
                              batch["context"], batch.get("length"), cfg.teacher_forcing)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16,
                              enabled=self.config.precision == "bf16")

    def _fetch(self, index: int) -> dict[str, torch.Tensor]:
        raw = self.source.batch(index, **self._batch_kwargs)
        batch = self._to_device(raw, f"source.batch({index})")
        if batch["values"].shape[0] != self.config.batch_size:
            raise ValueError(f"source.batch({index}) holds {batch['values'].shape[0]} sequences "
                             f"but batch_size = {self.config.batch_size}; make them agree")
        return batch

    def _to_device(self, raw: dict[str, Any], where: str) -> dict[str, torch.Tensor]:
        """Check shapes and move a batch dict to the training device."""
        d_in = (self.module if self.tokenizer is None else self.tokenizer).config.d_in
        needed = (("values",) if self.config.task == "tokenizer"
                  else ("values", "stamps", "context"))
        missing = [key for key in needed if key not in raw]
        if missing:
            raise ValueError(f"{where} lacks {missing}; a batch needs {list(needed)}")
        values = torch.as_tensor(raw["values"]).to(self.device, torch.float32, non_blocking=True)
        if values.ndim != 3 or values.shape[-1] != d_in:
            raise ValueError(f"{where}: values must be (B, L, {d_in}), got {tuple(values.shape)}")
        batch = {"values": values}
        if self.config.task == "predictor":
            stamps = torch.as_tensor(raw["stamps"]).to(self.device, torch.long, non_blocking=True)
            if stamps.shape != (*values.shape[:2], N_STAMP_FIELDS) or values.shape[1] < 2:
                raise ValueError(f"{where}: stamps must be (B, L, {N_STAMP_FIELDS}) with L >= 2 "
                                 f"matching values {tuple(values.shape)}, got "
                                 f"{tuple(stamps.shape)}")
            batch["stamps"] = stamps
        rows = values.shape[1]
        # Per-window row counts the task's loss reads, with their smallest value.
        counts_read = ({"length": 2} if self.config.task == "tokenizer"
                       else {"context": 1, "length": 2})
        for key, low in counts_read.items():
            if key not in raw:
                continue
            counts = torch.as_tensor(raw[key]).to(self.device, torch.long)
            if counts.shape != values.shape[:1] or bool(((counts < low) | (counts > rows)).any()):
                raise ValueError(f"{where}: {key} must be ({values.shape[0]},) integers in "
                                 f"[{low}, {rows}], got {raw[key]!r}")
            batch[key] = counts
        return batch

    # ------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean validation loss of the current weights over at most `eval_batches` batches.

        Runs in eval mode (no dropout) with the RNG forked and seeded by `seed`, so that the
        predictor's sampled coarse ids are the same at every evaluation and the training
        RNG streams are untouched (exact resume does not depend on evaluation).
        """
        if self.validation is None:
            raise ValueError("this Trainer was given no validation batches")
        losses = []
        devices = [self.device] if self.device.type == "cuda" else []
        with _evaluation_mode(self.module), torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.config.seed)
            for i, raw in enumerate(islice(self.validation(), self.config.eval_batches)):
                batch = self._to_device(raw, f"validation batch {i}")
                with self._autocast():
                    loss, _ = self._loss(self.module, batch)
                losses.append(loss.item())
        if not losses:
            raise ValueError("validation() yielded no batches")
        return sum(losses) / len(losses)

    def _evaluate_and_track(self) -> None:
        """Evaluate on the main process, share the result, keep the best, count patience."""
        val_loss = self.evaluate() if self.env.is_main else math.nan
        # Every rank must take the same early-stopping decision, or the others would hang.
        val_loss = distributed.broadcast_float(val_loss, self.env, self.device)
        if val_loss < self.best_val_loss:
            self.best_val_loss, self.best_step, self.bad_evals = val_loss, self.step, 0
            if self.env.is_main:
                self._save_best()
        else:
            self.bad_evals += 1
        patience = self.config.early_stopping_patience
        self.stopped = patience is not None and self.bad_evals >= patience
        self._record({"step": self.step, "val_loss": val_loss,
                      "best_val_loss": self.best_val_loss, "best_step": self.best_step})
        if self.stopped and self.env.is_main:
            logger.info("early stopping at step %d: no improvement in %d evaluations (best %.5g "
                        "at step %s)", self.step, patience, self.best_val_loss, self.best_step)

    # ---------------------------------------------------------------- logging
    def _log_train(self, window: list[dict[str, float]], tokens_per_s: float) -> None:
        record = {"step": self.step}
        for key in window[0]:
            record[key] = sum(m[key] for m in window) / len(window)
        record["tokens_per_s"] = tokens_per_s
        record["peak_memory_mb"] = peak_memory_mb(self.device)
        self._record(record)
        if self._progress is not None:
            self._progress.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")

    def _record(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.env.is_main and self.writes:
            with (self.out_dir / METRICS_FILE).open("a") as file:
                file.write(json.dumps(record) + "\n")

    def _trim_metrics(self) -> None:
        """Drop records of steps after the resumed checkpoint; they will be logged again."""
        path = self.out_dir / METRICS_FILE
        if path.exists():
            kept = [line for line in path.read_text().splitlines()
                    if line and json.loads(line)["step"] <= self.step]
            write_atomically(path, lambda tmp: tmp.write_text("".join(line + "\n"
                                                                      for line in kept)))

    # ------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path:
        """Save the weights and everything needed to resume to ``out_dir/last/``.

        A collective: every rank must call it (it gathers each rank's RNG states); only the
        main process writes. Returns the directory.
        """
        if not self.writes:
            raise ValueError("save_checkpoint needs an out_dir; this run is in memory")
        rng = distributed.all_gather(distributed.rng_state(self.device), self.env)
        if self.env.is_main:
            state = {
                "step": self.step,
                "best_val_loss": self.best_val_loss,
                "best_step": self.best_step,
                "bad_evals": self.bad_evals,
                "stopped": self.stopped,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": rng,  # one entry per rank
                "world_size": self.env.world_size,
                # JSON text: [data] may hold TOML dates, which weights_only loading refuses.
                "config": json.dumps(self.config.to_dict(), default=str),
            }

            def write(tmp: Path) -> None:
                checkpoints.save_checkpoint(self.module, tmp)
                torch.save(state, tmp / STATE_FILE)

            _write_atomically(self.last_dir, write)
        return self.last_dir

    def _save_best(self) -> None:
        if not self.writes:  # in memory: keep a copy of the best weights
            if self.validation is not None:
                self._best_state = {key: value.detach().clone()
                                    for key, value in self.module.state_dict().items()}
            return
        _write_atomically(self.best_dir, lambda tmp: checkpoints.save_checkpoint(self.module, tmp))

    def _load_training_state(self) -> None:
        state = read_training_state(self.last_dir / STATE_FILE)
        check_resume_settings(state, self.config)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = state["step"]
        self.best_val_loss = state["best_val_loss"]
        self.best_step = state["best_step"]
        self.bad_evals = state["bad_evals"]
        self.stopped = state["stopped"]
        if state["world_size"] == self.env.world_size:
            distributed.set_rng_state(state["rng"][self.env.rank], self.device)
        elif self.env.is_main:
            logger.warning("resuming a %d-process run with %d processes: RNG streams restart "
                           "from the seed, so the run is not an exact continuation",
                           state["world_size"], self.env.world_size)
        logger.info("resumed from %s at step %d", self.last_dir, self.step)

    # ---------------------------------------------------------------- cleanup
    def cleanup(self) -> None:
        """Close the progress bar, unwrap `model`, leave the process group (after a barrier on
        success), give torch back its previous thread count and the C library its allocator
        settings."""
        if self._progress is not None:
            self._progress.close()
        if self._previous_threads is not None:
            torch.set_num_threads(self._previous_threads)
        if self._retains_memory:
            release_freed_memory()
            self._retains_memory = False
        if hasattr(self, "module"):
            # The DistributedDataParallel wrapper holds the process group: drop it first, so
            # that leaving the group stops its threads now, not at interpreter shutdown.
            self.model = self.module
        distributed.shutdown(self._owns_group, barrier=self._finished)
        self._owns_group = False


def run_training(config: TrainConfig, source: BatchSource,
                 validation: Validation | None = None) -> Path:
    """Set up, train and clean up; return the best checkpoint directory ``out_dir/best``.

    Works the same in a plain process and under ``torchrun`` (see
    `kronos_sk.training.distributed`); ``config.resume`` continues ``out_dir/last``.
    """
    trainer = Trainer(config, source, validation)
    try:
        trainer.setup()
        trainer.train()
    finally:
        trainer.cleanup()
    return trainer.best_dir


def train_modules(config: TrainConfig, source: BatchSource, *,
                  module: KronosTokenizer | KronosPredictor | None = None,
                  tokenizer: KronosTokenizer | None = None,
                  validation: Validation | None = None,
                  ) -> tuple[KronosTokenizer | KronosPredictor, list[dict[str, Any]]]:
    """Train in memory: return the trained module (eval mode) and the run's records.

    `module` is trained in place (None: a fresh network of ``config.model``, initialised
    from ``config.seed`` as `run_training` does); `tokenizer` is the predictor task's frozen
    tokenizer. With ``config.out_dir = None`` nothing touches the disk; with validation,
    the module ends with the weights of its best evaluation. The records are those of
    ``metrics.jsonl``: ``[r["loss"] for r in records if "loss" in r]`` is the loss history.
    """
    trainer = Trainer(config, source, validation, module=module, tokenizer=tokenizer)
    try:
        trainer.setup()
        trainer.train()
    finally:
        trainer.cleanup()
    return trainer.module.eval(), trainer.history


@contextlib.contextmanager
def _evaluation_mode(module: nn.Module) -> Iterator[None]:
    module.eval()
    try:
        yield
    finally:
        module.train()


def read_training_state(path: Path) -> dict[str, Any]:
    """The resume state saved in `path`, loaded without unpickling code (``weights_only``).

    Raises `CheckpointError` in one line for a truncated, foreign or tampered file.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types: zip, pickle, EOF, runtime
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise checkpoints.CheckpointError(
            f"{path}: not a readable training state ({type(error).__name__}: {reason}); "
            "resume from another copy or set resume = false") from None
    missing = sorted(set(STATE_KEYS) - set(state)) if isinstance(state, dict) else STATE_KEYS
    if missing:
        raise checkpoints.CheckpointError(f"{path}: not a training state of this engine (no "
                                          f"{', '.join(missing)})")
    return state


def check_resume_settings(state: dict[str, Any], config: TrainConfig) -> None:
    """Refuse to resume the run saved as `state` with settings it was not trained with.

    Raises ValueError naming each changed setting (dotted inside ``model`` and ``data``)
    with its saved and requested value, unless it is in `RESUMABLE` or
    ``config.resume_changes``; and when ``config.max_steps`` is below the saved step.
    """
    where = Path(config.out_dir) / "last"
    if config.max_steps < state["step"]:
        raise ValueError(f"max_steps = {config.max_steps} is below step {state['step']} of the "
                         f"run saved in {where}; set max_steps >= {state['step']}")
    allowed = (*RESUMABLE, *config.resume_changes)
    current = json.loads(json.dumps(config.to_dict(), default=str))
    changed = [(key, old, new) for key, old, new in _differences(json.loads(state["config"]),
                                                                 current)
               if not any(key == name or key.startswith(name + ".") for name in allowed)]
    if changed:
        listed = "; ".join(f"{key}: {old!r} -> {new!r}" for key, old, new in changed)
        names = ", ".join(f'"{key}"' for key, _, _ in changed)
        raise ValueError(f"resuming {where} with changed settings ({listed}); set them back, "
                         f"or set resume_changes = [{names}] to continue anyway")


def _differences(saved: dict[str, Any], current: dict[str, Any],
                 prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, saved value, current value) of every entry that differs, tables entered."""
    found = []
    for key in sorted(set(saved) | set(current)):
        old, new = saved.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            found += _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            found.append((f"{prefix}{key}", old, new))
    return found


def recover_interrupted_saves(out_dir: Path) -> None:
    """Put ``best/`` and ``last/`` back from ``*.old`` where a save died between its renames.

    `_write_atomically` renames the old directory to ``*.old`` before moving the new one in;
    a crash in between leaves only ``*.old``, the complete previous checkpoint.
    """
    for name in ("best", "last"):
        directory, old = Path(out_dir) / name, Path(out_dir) / f"{name}.old"
        if not directory.exists() and old.is_dir():
            try:
                old.rename(directory)
            except FileNotFoundError:  # another rank of the same run got there first
                continue
            logger.warning("%s: a save was interrupted; restored %s from %s", out_dir, name,
                           old.name)


def _write_atomically(directory: Path, write: Callable[[Path], Any]) -> None:
    """Fill a temporary sibling with `write`, then swap it in, so a crash never leaves a
    half-written checkpoint behind."""
    tmp = directory.with_name(directory.name + ".tmp")
    old = directory.with_name(directory.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)
