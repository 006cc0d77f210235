"""A small, bounded, thread-safe cache of loaded Kronos checkpoints, shared by all estimators.

Cross-validation folds, clones and grid-search candidates that name the same checkpoint get
the same module object instead of loading the weights again. The key is the checkpoint's
resolved absolute directory, the modification times of its two files, the device and the
precision, so a checkpoint rewritten in place is loaded afresh. Each kind (tokenizers,
predictors) keeps at most `MAX_ENTRIES` modules, least recently used evicted first.

Cached modules are shared: treat them as read-only. Code that trains a network works on a
copy (``copy.deepcopy``) or on a module it loaded itself.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path

import torch

from kronos_sk.checkpoints import (CONFIG_FILE, WEIGHTS_FILE, load_predictor, load_tokenizer,
                                   resolve_checkpoint)
from kronos_sk.nn.predictor import KronosPredictor
from kronos_sk.nn.tokenizer import KronosTokenizer
from kronos_sk.runtime import resolve_device, resolve_dtype

#: Most modules kept per kind; read at every insertion, so it may be changed at run time.
MAX_ENTRIES = 4


class _CheckpointCache:
    """Least-recently-used map from a checkpoint key to its loaded module."""

    def __init__(self, load: Callable[[Path, torch.device, torch.dtype], torch.nn.Module]):
        self._load = load
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


_TOKENIZERS = _CheckpointCache(load_tokenizer)
_PREDICTORS = _CheckpointCache(load_predictor)


def cached_tokenizer(name_or_path: str | os.PathLike, device: str | torch.device = "cpu",
                     precision: str | torch.dtype = "float32") -> KronosTokenizer:
    """Load a tokenizer checkpoint once and share it (read-only) between callers.

    Parameters
    ----------
    name_or_path : str or path-like
        Checkpoint directory or hub id, as for
        [`load_tokenizer`][kronos_sk.checkpoints.load_tokenizer].
    device : str or torch.device, default="cpu"
        "auto" resolves first, so "auto" and the device it picks share one entry.
    precision : str or torch.dtype, default="float32"

    Returns
    -------
    KronosTokenizer
        In eval mode; the same object for the same directory, file times, device and precision.
    """
    return _TOKENIZERS.get(name_or_path, device, precision)


def cached_predictor(name_or_path: str | os.PathLike, device: str | torch.device = "cpu",
                     precision: str | torch.dtype = "float32") -> KronosPredictor:
    """Load a predictor checkpoint once and share it (read-only); see `cached_tokenizer`."""
    return _PREDICTORS.get(name_or_path, device, precision)


def clear_cache() -> None:
    """Drop every cached module, releasing its memory once no estimator holds it."""
    _TOKENIZERS.clear()
    _PREDICTORS.clear()
