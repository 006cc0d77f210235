import os
import platform
import warnings
from pathlib import Path

import pytest
import torch

from kronos_sk.runtime import (native_bf16, release_freed_memory, resolve_dtype,
                               retain_freed_memory, slow_bf16_warning)


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


def _resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="the allocator settings are glibc's")
def test_freed_memory_stays_in_the_process_until_released():
    size = 256 * 2 ** 20
    assert retain_freed_memory()
    try:
        before = _resident_bytes()
        block = torch.ones(size // 4)  # written, so resident
        del block
        kept = _resident_bytes() - before
    finally:
        release_freed_memory()
    released = _resident_bytes() - before
    assert kept > size / 2  # glibc's default would have unmapped it at once
    assert released < size / 4


def test_auto_precision_is_bfloat16_only_where_it_is_native(compat_dir, compat_candles):
    from kronos_sk import KronosForecaster
    from kronos_sk.cli import build_parser
    from kronos_sk.runtime import auto_precision, native_bf16, resolve_dtype, resolve_precision

    # The guard: bf16 prefill stays within seed noise, bf16 weights flip greedy ids.
    assert auto_precision("prefill_precision", True) == "bfloat16"
    assert auto_precision("precision", True) == "float32"
    assert auto_precision("prefill_precision", False) == "float32"
    expected = "bfloat16" if native_bf16("cpu") else "float32"
    assert resolve_precision("auto", "cpu", "prefill_precision") == expected
    assert resolve_precision("auto", "cpu") == "float32"
    assert resolve_precision("bf16") == "bfloat16" and resolve_precision("fp32") == "float32"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "auto" never warns, native or not
        assert resolve_dtype("auto", "cpu", "prefill_precision") == getattr(torch, expected)
    forecaster = KronosForecaster(model=str(compat_dir / "model"),
                                  tokenizer=str(compat_dir / "tokenizer"), max_context=128,
                                  n_samples=2, device="cpu").fit(compat_candles.iloc[:64])
    assert forecaster.precision == "auto" and forecaster.precision_ == "float32"
    assert forecaster.prefill_precision_ == expected
    assert forecaster.predictor_.norm.weight.dtype == torch.float32
    args = build_parser().parse_args(["sample", "--input", "x.csv", "--horizon", "2",
                                      "--out", "y.csv"])
    assert args.precision == "auto" and args.prefill_precision == "auto"


def test_the_gpu_check_skips_without_cuda():
    import subprocess
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine runs the whole check")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "skipped: no CUDA"
