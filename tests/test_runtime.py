import warnings
from pathlib import Path

import pytest
import torch

from kronos_sk.runtime import native_bf16, resolve_dtype, slow_bf16_warning


def cpu_flags() -> set[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo to read the CPU flags from")
    lines = [line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")]
    return set(lines[0].split(":", 1)[1].split()) if lines else set()


def test_native_bf16_follows_the_cpu_flags():
    flags = cpu_flags()
    assert native_bf16("cpu") == bool(flags & {"avx512_bf16", "amx_bf16"})


def test_bf16_on_a_cpu_without_it_warns_and_float32_never_does():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_dtype("float32", "cpu") == torch.float32
        assert resolve_dtype("bf16") == torch.bfloat16  # no device: nothing to judge
    if native_bf16("cpu"):
        assert slow_bf16_warning("cpu") is None
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    else:
        with pytest.warns(UserWarning, match="no native bfloat16"):
            resolve_dtype("bfloat16", "cpu")


def test_unknown_precision_is_named():
    with pytest.raises(ValueError, match="'half'"):
        resolve_dtype("half")
