"""Panels and origins of the benchmark suite on synthetic candles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.suite.config import load_config
from benchmarks.suite.data import load_panel, origins, windows_at


def test_origins_windows_and_repairs(tmp_path: Path, synthetic_candles, write_config):
    data = synthetic_candles(tmp_path / "candles.parquet", n_assets=3)
    frame = pd.read_parquet(data)
    s1 = frame.index[frame["asset"] == "S1"]
    frame.loc[s1[10], "high"] = frame.loc[s1[10], "low"] * 0.5  # a broken candle
    s2 = frame.index[frame["asset"] == "S2"]
    late = s2[-20:]  # a 50 % jump inside the evaluation period
    frame.loc[late, ["open", "high", "low", "close"]] *= 1.5
    frame.to_parquet(data)
    path = write_config(tmp_path / "tiny.toml", data, assets=3)
    path.write_text(path.read_text().replace('freq = "B"',
                                             'freq = "B"\nmax_abs_log_return = 0.2'))
    config = load_config(path)
    panel = load_panel(config)
    repaired = panel.frames["S1"].iloc[10]
    assert repaired["high"] == max(repaired["open"], repaired["close"])
    planned = origins(panel, config)
    assert len(planned) == 2 and planned[0] >= pd.Timestamp("2016-01-01")
    windows = windows_at(panel, planned[-1], config)
    assert windows.assets == ["S0", "S1"]  # S2's target crosses the jump
    assert all(len(c) == 32 and c.index[-1] == planned[-1] for c in windows.contexts)
    assert all(len(h) == 64 for h in windows.histories)
    assert windows.target_array().shape == (2, 4, 4)
    steps = windows.history_panel(["close"]).index.get_level_values("step")
    assert steps.max() == 0 and steps.min() == -63
    np.testing.assert_allclose(windows.last_close(),
                               [c["close"].iloc[-1] for c in windows.contexts])
    center, scale = windows.close_scale()  # the price task's units: population std + eps
    np.testing.assert_allclose(center, [c["close"].mean() for c in windows.contexts])
    np.testing.assert_allclose(scale, [c["close"].std(ddof=0) + 1e-5 for c in windows.contexts])
