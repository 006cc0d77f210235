"""Device and precision settings shared by loading, generation and training."""

from __future__ import annotations

import torch

PRECISIONS = {"float32": torch.float32, "fp32": torch.float32,
              "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def resolve_device(device: str | torch.device | None = "cpu") -> torch.device:
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


def resolve_dtype(precision: str | torch.dtype = "float32") -> torch.dtype:
    """Map "float32"/"fp32" or "bfloat16"/"bf16" (or the torch dtype) to a torch dtype."""
    if isinstance(precision, torch.dtype) and precision in PRECISIONS.values():
        return precision
    if isinstance(precision, str) and precision.lower() in PRECISIONS:
        return PRECISIONS[precision.lower()]
    raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
