"""scripts/build_compact_corpus.py: the corpus a lent GPU takes along."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_compact_corpus.py"


def candles(assets: int, rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (assets, rows)), axis=1))
    return pd.DataFrame({
        "asset": np.repeat([f"A{i:03d}" for i in range(assets)], rows),
        "timestamp": np.tile(pd.date_range("2015-01-01", periods=rows, freq="D"), assets),
        "open": close.ravel(), "high": close.ravel() * 1.01, "low": close.ravel() * 0.99,
        "close": close.ravel(), "volume": rng.uniform(1e5, 1e6, assets * rows)})


def build(data: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(out), "--data", str(data), *args],
                          capture_output=True, text=True)


def test_keeps_small_files_whole_and_a_share_of_the_large_ones_under_the_budget(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    large, small = candles(60, 400, 0), candles(2, 400, 1)
    large.to_parquet(data / "large_daily.parquet")
    small.to_parquet(data / "small_daily.parquet")
    budget_mib = 0.35 * (data / "large_daily.parquet").stat().st_size / 2 ** 20
    done = build(data, tmp_path / "compact", "--max-mib", f"{budget_mib}",
                 "--keep-whole-mib", "0.05")
    assert done.returncode == 0, done.stderr
    out = tmp_path / "compact"
    assert sorted(p.name for p in out.iterdir()) == ["compact.json", "large_daily.parquet",
                                                     "small_daily.parquet"]
    assert sum(p.stat().st_size for p in out.glob("*.parquet")) <= budget_mib * 2 ** 20
    kept_small = pd.read_parquet(out / "small_daily.parquet")
    assert len(kept_small) == len(small) and kept_small["close"].dtype == np.float32
    kept = pd.read_parquet(out / "large_daily.parquet")
    kept_assets = kept["asset"].unique()
    assert 1 <= len(kept_assets) < 60
    record = json.loads((out / "compact.json").read_text())
    assert record["whole"] == ["small_daily"]
    assert round(record["share"] * 60) == len(kept_assets)
    assert (kept.groupby("asset").size() == 400).all()  # whole assets, not rows
    source = large[large["asset"].isin(kept_assets)].reset_index(drop=True)
    np.testing.assert_allclose(kept["close"], source["close"], rtol=1e-6)


def test_refuses_to_overwrite_and_names_an_empty_source(tmp_path):
    (tmp_path / "data").mkdir()
    done = build(tmp_path / "data", tmp_path / "compact")
    assert done.returncode != 0 and "no .parquet files in" in done.stderr
    candles(2, 50, 0).to_parquet(tmp_path / "data" / "one.parquet")
    (tmp_path / "compact").mkdir()
    done = build(tmp_path / "data", tmp_path / "compact")
    assert done.returncode != 0 and "exists; remove it" in done.stderr


def test_a_budget_too_small_is_an_error_and_leaves_nothing(tmp_path):
    (tmp_path / "data").mkdir()
    candles(40, 300, 0).to_parquet(tmp_path / "data" / "large.parquet")
    done = build(tmp_path / "data", tmp_path / "compact", "--max-mib", "0.0001",
                 "--keep-whole-mib", "0")
    assert done.returncode != 0 and "could not fit" in done.stderr
    assert not (tmp_path / "compact").exists()
