"""Helpers shared by the benchmark scripts: real candles, released model sizes, measuring."""

from __future__ import annotations

import os
import platform
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kronos_sk.data import assemble_features, future_index, time_features
from kronos_sk.nn.config import PredictorConfig, TokenizerConfig
from kronos_sk.nn.predictor import KronosPredictor
from kronos_sk.nn.tokenizer import KronosTokenizer

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# The released sizes (kronos-reference.md); dropouts do not matter in eval mode.
TOKENIZER_BASE = TokenizerConfig()
PREDICTORS = {
    "Kronos-mini": (PredictorConfig(d_model=256, n_layers=4, n_heads=4, ff_dim=512), 2048),
    "Kronos-small": (PredictorConfig(d_model=512, n_layers=8, n_heads=8, ff_dim=1024), 512),
}


def random_models(name: str, seed: int = 0) -> tuple[KronosTokenizer, KronosPredictor, int]:
    """Random-weight Tokenizer-base and predictor of a released size, with its context."""
    torch.manual_seed(seed)
    config, max_context = PREDICTORS[name]
    return KronosTokenizer(TOKENIZER_BASE).eval(), KronosPredictor(config).eval(), max_context


def real_contexts(n_series: int, lookback: int, horizon: int,
                  file: str = "us_stocks_daily_2008_2017.parquet"):
    """The last `lookback` daily candles of the first `n_series` long-enough assets.

    Returns (contexts, context stamps, future stamps) as expected by `forecast_paths`.
    """
    path = SHARED_DATA / file
    if not path.is_file():
        raise SystemExit(f"real data {path} not found; see ../shared/data/README.md")
    frame = pd.read_parquet(path)
    contexts, stamps, futures = [], [], []
    for _, rows in frame.groupby("asset", sort=True):
        if len(rows) < lookback:
            continue
        rows = rows.iloc[-lookback:].set_index("timestamp")
        contexts.append(assemble_features(rows))
        stamps.append(time_features(rows.index))
        futures.append(time_features(future_index(rows.index, horizon, freq="B")))
        if len(contexts) == n_series:
            break
    return contexts, stamps, np.stack(futures)


def machine() -> str:
    """The CPU model, torch version, CPU capability, native bf16 and thread count."""
    from kronos_sk.runtime import native_bf16
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, torch {torch.__version__} (CPU capability "
            f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {native_bf16()}), "
            f"{torch.get_num_threads()} threads")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """This process's peak resident memory (VmHWM).

    Not `resource.getrusage(...).ru_maxrss`: Linux carries that over from the parent
    through fork and exec, so a child would report the parent's peak whenever it is larger.
    """
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


class PeakMemory:
    """Peak resident memory above the starting level while the block runs (sampled every 2 ms)."""

    def __enter__(self) -> PeakMemory:
        self.start = self.peak = rss_bytes()
        self._running = True
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while self._running:
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc) -> None:
        self._running = False
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def added_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def measure(fn, *args, **kwargs) -> tuple[float, float, object]:
    """(seconds, peak added MiB, result) of one call."""
    with PeakMemory() as memory:
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds = time.perf_counter() - start
    return seconds, memory.added_mb, result


def copy_bandwidth(n_bytes: int = 256 * 2**20, repeats: int = 10) -> float:
    """Memory copy bandwidth in bytes/s, counting bytes read plus bytes written (STREAM)."""
    src = torch.ones(n_bytes // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    start = time.perf_counter()
    for _ in range(repeats):
        dst.copy_(src)
    return 2 * n_bytes * repeats / (time.perf_counter() - start)
