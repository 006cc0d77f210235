"""Shared fixtures: the released-format parity checkpoints and real data location."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

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
