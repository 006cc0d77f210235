"""Tiny benchmark configurations: synthetic candles, fixture checkpoints, one torch thread."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kronos-compat"


@pytest.fixture(autouse=True)
def _one_thread_here(one_torch_thread):
    """Every benchmark test runs on one torch thread (tests/conftest.py)."""


def _synthetic_candles(path: Path, n_assets: int = 4, start: str = "2015-01-01",
                       end: str = "2016-03-31", seed: int = 0) -> Path:
    """Write GBM candles of `n_assets` business-day series as long-format Parquet."""
    rng = np.random.default_rng(seed)
    stamps = pd.bdate_range(start, end)
    frames = []
    for i in range(n_assets):
        close = 50.0 * (i + 1) * np.exp(np.cumsum(rng.normal(0, 0.015, len(stamps))))
        open_ = np.concatenate([[close[0]], close[:-1]])
        body_high, body_low = np.maximum(open_, close), np.minimum(open_, close)
        volume = rng.lognormal(12, 0.4, len(stamps))
        frames.append(pd.DataFrame({
            "asset": f"S{i}", "timestamp": stamps, "open": open_,
            "high": body_high * (1 + rng.exponential(0.004, len(stamps))),
            "low": body_low * (1 - rng.exponential(0.004, len(stamps))),
            "close": close, "volume": volume, "amount": volume * close}))
    pd.concat(frames, ignore_index=True).to_parquet(path)
    return path


def _write_config(path: Path, data_file: Path, assets: int | list[str] = 4,
                  extra: str = "") -> Path:
    """A tiny configuration: lookback 32, horizon 4, 2 origins, 4 samples, three models."""
    assets_value = assets if isinstance(assets, int) else "[" + ", ".join(
        f'"{a}"' for a in assets) + "]"
    path.write_text(f"""
name = "tiny"
[data]
files = ["{data_file}"]
assets = {assets_value}
freq = "B"
[windows]
lookback = 32
horizon = 4
history = 64
[evaluation]
start = "2016-01-01"
origins = 2
n_samples = 4
seeds = [0]
[[models]]
name = "kronos"
kind = "kronos"
model = "{FIXTURES / 'model'}"
tokenizer = "{FIXTURES / 'tokenizer'}"
max_context = 128
[[models]]
name = "naive-last"
[[models]]
name = "itransformer"
max_steps = 5
params = {{ d_model = 16, n_heads = 2, n_layers = 1 }}
[price]
sktime_assets = 1
[generation]
epochs = 2
hidden_size = 8
[investment]
top_k = 2
max_turnover = 0.5
cost_bps = 10
{extra}
""")
    return path


@pytest.fixture(scope="session")
def synthetic_candles():
    """`synthetic_candles(path, ...)`: write synthetic GBM candles as Parquet."""
    return _synthetic_candles


@pytest.fixture(scope="session")
def write_config():
    """`write_config(path, data_file, assets=4, extra="")`: write a tiny configuration."""
    return _write_config
