"""Device and precision settings shared by loading, generation and training."""

from __future__ import annotations

import functools
import warnings

import torch

from kronos_sk._defaults import DEFAULT_DEVICE

PRECISIONS = {"float32": torch.float32, "fp32": torch.float32,
              "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def resolve_device(device: str | torch.device | None = DEFAULT_DEVICE) -> torch.device:
    """Return a torch device; "auto" picks CUDA, then MPS, then the CPU.

    Raises ValueError when an explicitly requested accelerator is not available.
    """
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto', "
                         f"got {device!r}") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available; "
                         "use device='cpu' or 'auto'")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r} requested but MPS is not available; "
                         "use device='cpu' or 'auto'")
    return resolved


def resolve_dtype(precision: str | torch.dtype = "float32",
                  device: str | torch.device | None = None) -> torch.dtype:
    """Map "float32"/"fp32" or "bfloat16"/"bf16" (or the torch dtype) to a torch dtype.

    With `device`, bfloat16 on a device without native bfloat16 warns (see `native_bf16`).
    """
    if isinstance(precision, torch.dtype) and precision in PRECISIONS.values():
        dtype = precision
    elif isinstance(precision, str) and precision.lower() in PRECISIONS:
        dtype = PRECISIONS[precision.lower()]
    else:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if dtype == torch.bfloat16 and device is not None:
        message = slow_bf16_warning(device)
        if message:
            warnings.warn(message, UserWarning, stacklevel=3)
    return dtype


@functools.cache
def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether `device` computes bfloat16 natively.

    On a CPU, only AVX-512 BF16 or AMX make bfloat16 fast; without them (AVX2 only) torch
    emulates it, about 80x slower than float32. CUDA devices report their own support; other
    devices are taken at their word.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return True
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def slow_bf16_warning(device: str | torch.device = "cpu") -> str | None:
    """The warning to give where bfloat16 is requested on `device`, or None where it is fast."""
    if native_bf16(device):
        return None
    return (f"bfloat16 was requested but this {torch.device(device).type} has no native "
            "bfloat16 (no AVX-512 BF16 or AMX); it will run far slower than float32 (about "
            "80x on an AVX2 CPU): use float32")
