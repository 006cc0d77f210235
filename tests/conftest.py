"""Shared fixtures: the released-format parity checkpoints, real data, one torch thread."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures" / "kronos-compat"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def compat_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def compat_candles() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "candles.csv", index_col="timestamps", parse_dates=True)


def shared_data(name: str) -> Path:
    """Path of a real data file in ../shared/data; skip the test when it is absent."""
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"real data {path} not available")
    return path


@pytest.fixture(scope="session")
def cn_index_file() -> Path:
    """The real China index file in ../shared/data; skip when it is absent."""
    return shared_data("cn_index_daily_2011_2017.parquet")


@pytest.fixture
def one_torch_thread():
    """Run the test on one torch thread (for tests that share the CPU with other jobs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def us_stocks_daily_file() -> Path:
    """The real US stock trading-day file in ../shared/data; skip when it is absent."""
    return shared_data("us_stocks_daily_2008_2017.parquet")
