"""sktime's y <-> per-series candles and back, and the forecaster's training orchestration."""

import numpy as np
import pandas as pd
import pytest

from kronos_sk.estimators._series import Outputs, check_update, layout, split_series
from kronos_sk.estimators._training import series_windows, train_forecaster_networks


def test_layout_reads_candles_or_flat_series(compat_candles):
    assert layout(compat_candles)[0] == "candles"
    assert layout(compat_candles[["close"]]) == ("flat", {})
    assert layout(pd.DataFrame({"spread": [1.0], "basis": [2.0]})) == ("flat", {})
    with pytest.raises(ValueError, match=r"name some candle fields but not \['open'"):
        layout(compat_candles[["high", "close"]])


def test_split_series_names_each_series_by_key(compat_candles):
    panel = pd.concat({"A": compat_candles.iloc[:30], "B": compat_candles.iloc[30:50]},
                      names=["asset", "time"])
    series = split_series(panel, *layout(panel))
    assert [(s.key, len(s.candles)) for s in series] == [("A", 30), ("B", 20)]
    broken = panel.copy()
    broken.iloc[35, broken.columns.get_loc("high")] = 0.0  # high below low in B
    with pytest.raises(ValueError, match=r"y\['B'\]"):
        split_series(broken, *layout(broken))
    flat = split_series(panel[["close"]], "flat", {})
    assert [(s.key, s.column) for s in flat] == [("A", "close"), ("B", "close")]


def test_check_update_names_the_first_missing_step(compat_candles):
    hourly = compat_candles.iloc[:40].set_axis(pd.date_range("2024-01-01", periods=40,
                                                             freq="h"))
    old = split_series(hourly.iloc[:30], "candles", {c: c for c in hourly.columns})
    new = split_series(hourly.iloc[32:40], "candles", {c: c for c in hourly.columns})
    with pytest.raises(ValueError, match=r"leave 2 step\(s\) missing from 2024-01-02 06:00"):
        check_update(old, new, hourly.index[29])


def test_outputs_stack_instances_in_order():
    index = pd.MultiIndex.from_tuples([("A", 0), ("B", 0)], names=["asset", "t"])
    out = Outputs(["A", "B"], index, ["x"])
    frame = out.frame(np.arange(4.0).reshape(2, 2, 1), pd.Index([5, 6]))
    assert list(frame.index) == [("A", 5), ("A", 6), ("B", 5), ("B", 6)]
    assert list(frame["x"]) == [0, 1, 2, 3]
    samples = out.samples(np.zeros((2, 3, 2, 1)), pd.Index([5, 6]))
    assert samples.index.names == ["sample", "asset", "t"] and len(samples) == 12


def test_training_windows_and_networks_from_the_series(compat_candles):
    contexts = [compat_candles.iloc[:40], compat_candles.iloc[40:70]]
    windows = series_windows(contexts, lookback=16, horizon=4, batch_size=2, seed=0)
    batch = windows.batch(0)
    assert len(batch) >= 1
    tiny = {"d_model": 16, "n_heads": 2, "ff_dim": 16, "s1_bits": 2, "s2_bits": 2}
    settings = dict(fit_strategy="from-scratch", finetune_tokenizer=False,
                    tokenizer_config={**tiny, "n_enc_layers": 1, "n_dec_layers": 1},
                    model_config={**tiny, "n_layers": 1}, lookback=16, horizon=4,
                    max_steps=2, batch_size=2, learning_rate=None, random_state=0,
                    device="cpu")
    tokenizer, predictor, losses = train_forecaster_networks(contexts, None, None, **settings)
    assert len(losses) == 4 and all(np.isfinite(losses))  # 2 tokenizer + 2 predictor steps
    again = train_forecaster_networks(contexts, None, None, **settings)
    assert again[2] == losses  # random_state makes training repeatable
    tuned = train_forecaster_networks(contexts, tokenizer, predictor,
                                      **{**settings, "fit_strategy": "fine-tune"})
    assert tuned[0] is tokenizer and tuned[1] is not predictor and len(tuned[2]) == 2
