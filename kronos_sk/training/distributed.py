"""Process-group plumbing for data-parallel training, and per-rank random state.

The launcher's environment decides everything: `torchrun` sets RANK, LOCAL_RANK and
WORLD_SIZE (plus MASTER_ADDR/MASTER_PORT); a plain `python` run has none of them and trains
as a single process, so the same entry point serves both::

    python train.py                                  # one process
    torchrun --standalone --nproc_per_node 4 train.py  # four processes, one per GPU or CPU

CPU processes talk over gloo, CUDA processes over NCCL, each on the GPU of its local rank.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ContextManager

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistributedEnv:
    """This process's place in the job: global rank, rank on its node, number of processes."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """The one process that logs, evaluates and writes checkpoints."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def read_env(environ: Mapping[str, str] = os.environ) -> DistributedEnv:
    """Read RANK, LOCAL_RANK and WORLD_SIZE (as set by torchrun); absent means one process."""
    values = {}
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        text = environ.get(name, "1" if name == "WORLD_SIZE" else "0")
        try:
            values[name] = int(text)
        except ValueError:
            raise ValueError(f"environment variable {name}={text!r} is not an integer") from None
    env = DistributedEnv(values["RANK"], values["LOCAL_RANK"], values["WORLD_SIZE"])
    if env.world_size < 1 or not 0 <= env.rank < env.world_size or env.local_rank < 0:
        raise ValueError(f"inconsistent launcher environment {env}; launch with torchrun")
    return env


def resolve_device(name: str, env: DistributedEnv) -> torch.device:
    """"auto", "cpu", "cuda", "cuda:N" or "mps" -> the device of this process.

    "auto" and "cuda" use the GPU of the local rank; "cuda:N" and "mps" are used exactly,
    and so only by a single process (each rank of a job needs its own device).
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("device = 'mps' but MPS is not available; set device = 'cpu' or "
                             "'auto'")
        if env.is_distributed:
            raise ValueError("device = 'mps' trains in one process; launch without torchrun")
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise ValueError(f"device = {name!r} but CUDA is not available; set device = 'cpu' or "
                         "'auto'")
    if name != "cuda":  # "cuda:N"
        index = int(name.partition(":")[2])
        if env.is_distributed:
            raise ValueError(f"device = {name!r} names one GPU, but {env.world_size} processes "
                             "train; set device = 'cuda' (each rank takes its local rank's GPU)")
        if index >= torch.cuda.device_count():
            raise ValueError(f"device = {name!r} but only {torch.cuda.device_count()} GPU(s) "
                             "are visible")
        return torch.device("cuda", index)
    if env.local_rank >= torch.cuda.device_count():
        raise ValueError(f"local rank {env.local_rank} has no GPU ({torch.cuda.device_count()} "
                         "visible); lower --nproc_per_node")
    return torch.device("cuda", env.local_rank)


def init_process_group(env: DistributedEnv, device: torch.device) -> bool:
    """Join the launcher's process group; return True when this call created it.

    Nothing happens for a single process or when the caller already initialised a group.
    """
    if not env.is_distributed or dist.is_initialized():
        return False
    if device.type == "cuda":
        # NCCL object collectives use the current device; make it this rank's GPU.
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    # DistributedDataParallel imports torch._dynamo, and importing it while a group exists
    # keeps references to that group for the life of the interpreter (torch 2.13). Leaving
    # the group would then not stop its threads; gloo's are torn down during interpreter
    # shutdown instead, where a rank can abort ("terminate called without an active
    # exception"). Imported before the group exists, it holds none.
    import torch._dynamo  # noqa: F401
    dist.init_process_group(backend, rank=env.rank, world_size=env.world_size)
    return True


def shutdown(owns_group: bool, barrier: bool) -> None:
    """Leave the process group if we created it, first waiting for every rank if `barrier`.

    Skip the barrier after a failure: the other ranks may never reach it.
    """
    if not (owns_group and dist.is_initialized()):
        return
    if barrier:
        dist.barrier()
    dist.destroy_process_group()


def wrap(module: nn.Module, device: torch.device, env: DistributedEnv) -> nn.Module:
    """Wrap `module` in DistributedDataParallel when several processes train it."""
    if not env.is_distributed:
        return module
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda"
                                   else None)


def gradient_sync(model: nn.Module, sync: bool) -> ContextManager:
    """Context for a backward pass: all-reduce gradients only when `sync` is True.

    Micro-steps of gradient accumulation skip the all-reduce and accumulate locally.
    """
    if sync or not isinstance(model, DistributedDataParallel):
        return contextlib.nullcontext()
    return model.no_sync()


def broadcast_float(value: float, env: DistributedEnv, device: torch.device) -> float:
    """The main process's `value`, on every rank."""
    if not env.is_distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return tensor.item()


def all_gather(obj: Any, env: DistributedEnv) -> list[Any]:
    """Every rank's `obj` (picklable), in rank order, on every rank."""
    if not env.is_distributed:
        return [obj]
    gathered: list[Any] = [None] * env.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's global generator and `random`."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's RNG states, as tensors, lists and numbers only.

    The content loads with `torch.load(..., weights_only=True)`: numpy's and Python's states
    are converted from arrays and tuples.
    """
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
    }


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what `rng_state` captured."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state["cuda"] is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    np_state = state["numpy"]
    np.random.set_state((np_state["name"], np_state["keys"].numpy().astype(np.uint32),
                         np_state["pos"], np_state["has_gauss"], np_state["cached"]))
    py_state = state["python"]
    random.setstate((py_state["version"], tuple(py_state["state"]), py_state["gauss_next"]))
