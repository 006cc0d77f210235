"""A small, bounded, thread-safe cache of loaded Kronos checkpoints, shared by all estimators.

Cross-validation folds, clones and grid-search candidates that name the same checkpoint get
the same module object instead of loading the weights again. The key is the checkpoint's
resolved absolute directory, the modification times of its two files, the device and the
precision, so a checkpoint rewritten in place is loaded afresh. Each kind (tokenizers,
predictors) keeps at most `MAX_ENTRIES` modules, least recently used evicted first.

Cached modules are shared: treat them as read-only. Code that trains a network works on a
copy (``copy.deepcopy``) or on a module it loaded itself.

A cached module can be named by a `CheckpointReference` (its directory and the SHA-256 of its
files): estimators pickle that instead of the weights, and unpickling loads the checkpoint
back through this cache after checking that the files are still the same.
"""

from __future__ import annotations

import hashlib
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path

import torch

from kronos_sk.checkpoints import (CONFIG_FILE, WEIGHTS_FILE, CheckpointError,
                                   default_checkpoint, load_predictor, load_tokenizer,
                                   resolve_checkpoint)
from kronos_sk.nn.predictor import KronosPredictor
from kronos_sk.nn.tokenizer import KronosTokenizer
from kronos_sk.runtime import DEFAULT_DEVICE, resolve_device, resolve_dtype

#: Most modules kept per kind; read at every insertion, so it may be changed at run time.
MAX_ENTRIES = 4


@dataclass(frozen=True)
class CheckpointReference:
    """What an estimator pickles in place of weights loaded from a checkpoint.

    Attributes
    ----------
    kind : {"tokenizer", "predictor"}
    path : str
        The checkpoint's resolved absolute directory.
    sha256 : str
        Hex digest of its config.json and model.safetensors, in that order.
    """

    kind: str
    path: str
    sha256: str

    def load(self, device: str | torch.device, precision: str | torch.dtype) -> torch.nn.Module:
        """The module, through the cache; CheckpointError if the files are gone or changed."""
        directory = Path(self.path)
        if not (directory / WEIGHTS_FILE).is_file():
            raise CheckpointError(
                f"unpickling needs the {self.kind} checkpoint {self.path!r}, which no longer "
                "exists: restore it there, or refit and pickle again")
        found = content_hash(directory)
        if found != self.sha256:
            raise CheckpointError(
                f"the {self.kind} checkpoint {self.path!r} changed since this estimator was "
                f"pickled (sha256 {self.sha256[:12]}... then, {found[:12]}... now): restore "
                "the files it was fitted with, or refit and pickle again")
        return _CACHES[self.kind].get(directory, device, precision)


# Which live cached module came from which checkpoint files: (kind, directory, stamp).
_ORIGINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# sha256 per (directory, stamp): the files are hashed again only when their times change.
_HASHES: dict[tuple[str, tuple], str] = {}
_HASH_LOCK = threading.Lock()


def content_hash(directory: Path) -> str:
    """SHA-256 of a checkpoint's config.json then model.safetensors (memoized by mtimes)."""
    directory = Path(directory).resolve()
    key = (str(directory), tuple(_mtime_ns(directory / n) for n in (CONFIG_FILE, WEIGHTS_FILE)))
    with _HASH_LOCK:
        known = _HASHES.get(key)
    if known is not None:
        return known
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        with open(directory / name, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    with _HASH_LOCK:
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def checkpoint_reference(module: object) -> CheckpointReference | None:
    """The reference of a module this cache loaded, if its files are unchanged; else None.

    None for any other module (trained, built or loaded elsewhere): its weights must travel.
    """
    try:
        origin = _ORIGINS.get(module)
    except TypeError:  # not weak-referenceable: not ours
        return None
    if origin is None:
        return None
    kind, directory, stamp = origin
    now = tuple(_mtime_ns(Path(directory) / n) for n in (CONFIG_FILE, WEIGHTS_FILE))
    if now != stamp:  # rewritten since it was loaded: the file no longer holds these weights
        return None
    return CheckpointReference(kind, directory, content_hash(Path(directory)))


class _CheckpointCache:
    """Least-recently-used map from a checkpoint key to its loaded module."""

    def __init__(self, load: Callable[[Path, torch.device, torch.dtype], torch.nn.Module],
                 kind: str):
        self._load = load
        self._kind = kind
        self._modules: OrderedDict[tuple[Hashable, ...], torch.nn.Module] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name_or_path: str | os.PathLike, device: str | torch.device,
            precision: str | torch.dtype) -> torch.nn.Module:
        # Resolving may download a hub id: do it outside the lock.
        directory = resolve_checkpoint(name_or_path).resolve()
        device = resolve_device(device)
        dtype = resolve_dtype(precision, device)
        stamp = tuple(_mtime_ns(directory / name) for name in (CONFIG_FILE, WEIGHTS_FILE))
        key = (str(directory), stamp, device, dtype)
        with self._lock:
            module = self._modules.get(key)
            if module is None:
                # An older version of the same files can never be asked for again.
                for stale in [k for k in self._modules if k[0] == key[0] and k[1] != stamp]:
                    del self._modules[stale]
                module = self._modules[key] = self._load(directory, device, dtype)
                _ORIGINS[module] = (self._kind, str(directory), stamp)
            self._modules.move_to_end(key)
            while len(self._modules) > max(MAX_ENTRIES, 0):
                self._modules.popitem(last=False)
            return module

    def clear(self) -> None:
        with self._lock:
            self._modules.clear()


def _mtime_ns(path: Path) -> int | None:
    """Modification time, or None for a missing file (loading then names the problem)."""
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


_TOKENIZERS = _CheckpointCache(load_tokenizer, "tokenizer")
_PREDICTORS = _CheckpointCache(load_predictor, "predictor")
_CACHES = {"tokenizer": _TOKENIZERS, "predictor": _PREDICTORS}


def cached_tokenizer(name_or_path: str | os.PathLike,
                     device: str | torch.device = DEFAULT_DEVICE,
                     precision: str | torch.dtype = "float32") -> KronosTokenizer:
    """Load a tokenizer checkpoint once and share it (read-only) between callers.

    Parameters
    ----------
    name_or_path : str or path-like
        Checkpoint directory or hub id, as for
        [`load_tokenizer`][kronos_sk.checkpoints.load_tokenizer].
    device : str or torch.device, default="auto"
        "auto" resolves first, so "auto" and the device it picks share one entry.
    precision : str or torch.dtype, default="float32"

    Returns
    -------
    KronosTokenizer
        In eval mode; the same object for the same directory, file times, device and precision.
    """
    return _TOKENIZERS.get(name_or_path, device, precision)


def cached_predictor(name_or_path: str | os.PathLike,
                     device: str | torch.device = DEFAULT_DEVICE,
                     precision: str | torch.dtype = "float32") -> KronosPredictor:
    """Load a predictor checkpoint once and share it (read-only); see `cached_tokenizer`."""
    return _PREDICTORS.get(name_or_path, device, precision)


def checkpoints(model: str | os.PathLike | None,
                tokenizer: str | os.PathLike | None) -> tuple[str | os.PathLike, ...]:
    """The (predictor, tokenizer) checkpoints an estimator names, the bundled model's for
    None."""
    return (model if model is not None else default_checkpoint("predictor"),
            tokenizer if tokenizer is not None else default_checkpoint("tokenizer"))


def cached_networks(model, tokenizer, device: str | torch.device = DEFAULT_DEVICE,
                    precision: str = "float32") -> tuple[KronosTokenizer, KronosPredictor]:
    """(tokenizer, predictor) of `checkpoints(model, tokenizer)`, through the weight cache."""
    model, tokenizer = checkpoints(model, tokenizer)
    return (cached_tokenizer(tokenizer, device, precision),
            cached_predictor(model, device, precision))


def clear_cache() -> None:
    """Drop every cached module, releasing its memory once no estimator holds it."""
    _TOKENIZERS.clear()
    _PREDICTORS.clear()


def reference_modules(state: dict, names: tuple[str, ...]) -> dict:
    """A copy of an estimator's ``__dict__`` with each module of `names` that this cache
    loaded (files unchanged) replaced by its `CheckpointReference`; others stay as they are."""
    state = dict(state)
    for name in names:
        reference = checkpoint_reference(state.get(name))
        if reference is not None:
            state[name] = reference
    return state


def load_references(state: dict, device: str | torch.device,
                    precision: str | torch.dtype) -> dict:
    """Undo `reference_modules`: load every referenced checkpoint through the cache."""
    return {key: value.load(device, precision) if isinstance(value, CheckpointReference)
            else value for key, value in state.items()}
