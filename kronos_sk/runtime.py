"""Device and precision settings shared by loading, generation and training."""

from __future__ import annotations

import ctypes
import functools
import platform
import warnings

import torch

from kronos_sk._defaults import DEFAULT_DEVICE

PRECISIONS = {"float32": torch.float32, "fp32": torch.float32,
              "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
# "auto": float32 weights everywhere, and bfloat16 context passes (prefill) where the device
# computes bfloat16 natively. The guard, measured on a Sapphire Rapids CPU with
# benchmarks/bench_precision.py: bf16 prefill kept greedy parity of the released fixtures
# (48/48 rows within 1e-4) and moved sampled mean paths by 0.093 context std against 0.152
# for another float32 seed; full bf16 weights flipped greedy ids (0/48 rows within 1e-4,
# max relative error 0.48), a change no seed noise covers, so "auto" keeps them float32.
BF16_WHERE_NATIVE = {"precision": False, "prefill_precision": True}
AUTO = "auto"
PRECISION_OPTIONS = (*PRECISIONS, AUTO)


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


def resolve_precision(precision: str, device: str | torch.device | None = None,
                      setting: str = "precision") -> str:
    """"float32" or "bfloat16": `precision` by its canonical name, or "auto" decided for
    `device` (default the CPU) and the `setting` ("precision" or "prefill_precision")."""
    if precision == AUTO:
        return auto_precision(setting, native_bf16(resolve_device(device or "cpu")))
    return "bfloat16" if resolve_dtype(precision) == torch.bfloat16 else "float32"


def auto_precision(setting: str, native: bool) -> str:
    """What "auto" means for a setting on a device that does (`native`) or does not compute
    bfloat16 natively: bfloat16 only where native (~80x slower where emulated) and where the
    accuracy guard passed for that setting (`BF16_WHERE_NATIVE`)."""
    return "bfloat16" if native and BF16_WHERE_NATIVE[setting] else "float32"


def resolve_dtype(precision: str | torch.dtype = "float32",
                  device: str | torch.device | None = None,
                  setting: str = "precision") -> torch.dtype:
    """Map "float32"/"fp32", "bfloat16"/"bf16" (or the torch dtype) or "auto" to a dtype.

    With `device`, bfloat16 on a device without native bfloat16 warns (see `native_bf16`);
    "auto" never warns: it is what `auto_precision` says for `setting` on `device`.
    """
    if precision == AUTO:
        return PRECISIONS[resolve_precision(AUTO, device, setting)]
    if isinstance(precision, torch.dtype) and precision in PRECISIONS.values():
        dtype = precision
    elif isinstance(precision, str) and precision.lower() in PRECISIONS:
        dtype = PRECISIONS[precision.lower()]
    else:
        raise ValueError(f"precision must be one of {sorted(PRECISION_OPTIONS)}, got "
                         f"{precision!r}")
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


# glibc mallopt parameters and their documented defaults.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
_GLIBC_DEFAULTS = {_M_TRIM_THRESHOLD: 128 * 1024, _M_TOP_PAD: 128 * 1024, _M_MMAP_MAX: 65536}


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    libc = ctypes.CDLL(None)
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def retain_freed_memory() -> bool:
    """Keep the CPU memory that tensors free inside the process, for reuse (glibc only).

    A CPU training step frees and allocates tensors of tens of MB. By default glibc maps each
    one afresh and returns it to the system when freed, so the kernel zeroes new pages at
    every allocation: on a 2-core CPU a third of the wall time of a Kronos-small step went there.
    This takes large blocks from the heap instead and keeps freed memory there, so the
    process holds its peak memory until `release_freed_memory`. Returns whether it applied
    (False on other C libraries, where it does nothing).
    """
    libc = _glibc()
    if libc is None:
        return False
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1)
    libc.mallopt(_M_TOP_PAD, 256 * 2 ** 20)
    return True


def release_freed_memory() -> None:
    """Undo `retain_freed_memory`: glibc's default settings, and free memory given back."""
    libc = _glibc()
    if libc is not None:
        for parameter, value in _GLIBC_DEFAULTS.items():
            libc.mallopt(parameter, value)
        libc.malloc_trim(0)
