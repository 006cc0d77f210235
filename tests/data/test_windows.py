import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kronos_sk.data import (
    FEATURE_COLUMNS,
    CandleCorpus,
    TimeSplit,
    WindowSampler,
    time_features,
    validation_batches,
)

ROWS = 100
GAP_AT, JUMP_AT, BAD_AT = 40, 60, 30
LOOKBACK, HORIZON = 12, 4
LENGTH = LOOKBACK + HORIZON
EVERYTHING = TimeSplit(cutoff="2000-01-01")  # every row is validation
# The shortest context equal to the longest: every window has LENGTH rows and a LOOKBACK-row
# context, so the tests below can name each window's rows in advance.
FULL = {"min_context": LOOKBACK}
CUTOFF = "2024-03-15"  # day 74: after it, daily rows from 74 (AAA: 54); hourly rows all before


def candles(asset, n=ROWS, freq="D", tz=None, seed=0, gap_at=None, jump_at=None):
    """Random-walk candles from 2024-01-01 (local time), all within one calendar year."""
    rng = np.random.default_rng(seed)
    stamps = pd.date_range("2024-01-01", periods=n, freq=freq, tz=tz)
    if gap_at is not None:
        stamps = stamps[:gap_at].append(stamps[gap_at:] + pd.Timedelta(days=20))
    moves = rng.normal(0.0, 0.01, n)
    if jump_at is not None:
        moves[jump_at] = math.log(0.7)
    close = 100.0 * np.exp(np.cumsum(moves))
    open_ = close * np.exp(rng.normal(0.0, 0.003, n))
    return pd.DataFrame({
        "asset": asset,
        "timestamp": stamps,
        "open": open_,
        "high": np.maximum(open_, close) * 1.002,
        "low": np.minimum(open_, close) * 0.998,
        "close": close,
        "volume": rng.uniform(1e3, 2e3, n),
        "amount": rng.uniform(1e5, 2e5, n),
    })


def write(path, *frames):
    pq.write_table(pa.Table.from_pandas(pd.concat(frames, ignore_index=True),
                                        preserve_index=False), path)
    return path


@pytest.fixture
def corpus(tmp_path):
    """Daily market: AAA with a gap, BBB with a -30% jump, CCC with a bad row.
    Hourly market (Shanghai time, no amount): BTC, ETH."""
    ccc = candles("CCC", seed=3)
    ccc.loc[BAD_AT, "low"] = -1.0  # a non-positive price: the row is dropped
    write(tmp_path / "daily.parquet", candles("AAA", seed=1, gap_at=GAP_AT),
          candles("BBB", seed=2, jump_at=JUMP_AT), ccc)
    hourly = [candles(name, n=n, freq="h", tz="Asia/Shanghai", seed=seed).drop(columns="amount")
              for name, n, seed in (("BTC", 150, 4), ("ETH", 120, 5))]
    write(tmp_path / "hourly.parquet", *hourly)
    return CandleCorpus(tmp_path, max_abs_log_return=math.log(1.11))


def recovered(batch, b, column):
    """Raw values of one column of window b's real rows, where the normalisation was not
    clipped."""
    i = FEATURE_COLUMNS.index(column)
    values = batch["values"][b, :batch["length"][b], i].astype(float)
    raw = values * (float(batch["std"][b, i]) + 1e-5) + float(batch["mean"][b, i])
    return raw, np.abs(values) < 5.0


class Locator:
    """Finds the rows of a loaded asset that a window covers, by its stamps and close prices."""

    def __init__(self, corpus):
        self.corpus, self.frames = corpus, {}

    def __call__(self, batch, b):
        key = (batch["market"][b], batch["asset"][b])
        if key not in self.frames:
            frame = self.corpus.load(key)
            self.frames[key] = frame, time_features(pd.DatetimeIndex(frame["timestamp"]))
        frame, features = self.frames[key]
        stamps = batch["stamps"][b, :batch["length"][b]]
        close, unclipped = recovered(batch, b, "close")
        for start in np.flatnonzero((features == stamps[0]).all(axis=1)):
            rows = np.arange(start, start + len(stamps))
            if rows[-1] < len(frame) and (features[rows] == stamps).all() and np.allclose(
                    frame["close"].to_numpy()[rows][unclipped], close[unclipped], rtol=1e-4):
                return frame, rows
        raise AssertionError(f"window {b} of {key} matches no rows")


def windows(batches):
    """Concatenate batches."""
    batches = list(batches)
    return {key: np.concatenate([batch[key] for batch in batches]) for key in batches[0]}


def test_batch_format(corpus):
    batch = WindowSampler(corpus, LOOKBACK, HORIZON, 8, **FULL).batch(0)
    shapes = {key: (array.shape, array.dtype.kind) for key, array in batch.items()}
    assert shapes == {
        "values": ((8, LENGTH, 6), "f"), "stamps": ((8, LENGTH, 5), "i"),
        "context": ((8,), "i"), "length": ((8,), "i"), "mean": ((8, 6), "f"),
        "std": ((8, 6), "f"), "asset": ((8,), "O"), "market": ((8,), "O"),
    }
    assert batch["values"].dtype == np.float32 and batch["stamps"].dtype == np.int64
    assert np.isfinite(batch["values"]).all() and np.abs(batch["values"]).max() <= 5.0
    assert (batch["context"] == LOOKBACK).all() and (batch["length"] == LENGTH).all()


def test_validation_windows_with_stride_one_are_exactly_those_inside_segments(corpus):
    found = windows(validation_batches(corpus, LOOKBACK, HORIZON, 64, **FULL, stride=1,
                                       time_split=EVERYTHING))
    locate, starts = Locator(corpus), {}
    for b in range(len(found["asset"])):
        _, rows = locate(found, b)
        starts.setdefault(found["asset"][b], []).append(rows[0])

    def inside(*bounds):
        return [s for lo, hi in zip(bounds[:-1], bounds[1:]) for s in range(lo, hi - LENGTH + 1)]

    assert starts == {
        "AAA": inside(0, GAP_AT, ROWS),
        "BBB": inside(0, JUMP_AT, ROWS),
        "CCC": inside(0, BAD_AT, ROWS - 1),  # the bad row is gone: rows shift by one after it
        "BTC": inside(0, 150),
        "ETH": inside(0, 120),
    }


def test_stamps_are_wall_clock_time_of_the_files_zone(corpus):
    first = next(iter(validation_batches(corpus, LOOKBACK, HORIZON, 1000, **FULL, stride=1,
                                         time_split=EVERYTHING)))
    btc = np.flatnonzero(first["asset"] == "BTC")[0]
    # 2024-01-01 00:00 in Shanghai, a Monday; in UTC it would still be Sunday, 16:00.
    assert first["stamps"][btc, 0].tolist() == [0, 0, 0, 1, 1]
    assert first["stamps"][btc, 1].tolist() == [0, 1, 0, 1, 1]


def test_train_windows_never_cross_a_segment_or_the_cutoff(corpus):
    # Short contexts: windows as short as 8 rows, at segment ends and in short segments.
    sampler = WindowSampler(corpus, LOOKBACK, HORIZON, 32, min_context=4,
                            time_split=TimeSplit(cutoff=CUTOFF), steps_per_block=3,
                            assets_per_block=4)
    cutoff, locate = pd.Timestamp(CUTOFF), Locator(corpus)
    for step in range(12):
        batch = sampler.batch(step)
        for b in range(len(batch["asset"])):
            frame, rows = locate(batch, b)
            assert len(set(frame["segment"].to_numpy()[rows])) == 1
            last = frame["timestamp"].iloc[rows[-1]]
            assert last < (cutoff.tz_localize(last.tz) if last.tz else cutoff)


def test_validation_sampler_draws_only_after_the_cutoff(corpus):
    sampler = WindowSampler(corpus, LOOKBACK, HORIZON, 64, **FULL, split="validation",
                            time_split=TimeSplit(cutoff=CUTOFF))
    batch = sampler.batch(0)
    assert set(batch["asset"]) <= {"AAA", "BBB", "CCC"}  # hourly data ends before the cutoff
    locate = Locator(corpus)
    for b in range(len(batch["asset"])):
        frame, rows = locate(batch, b)
        assert frame["timestamp"].iloc[rows[0]] >= pd.Timestamp(CUTOFF)


def test_statistics_come_from_the_lookback_rows_only(corpus):
    batch = WindowSampler(corpus, LOOKBACK, HORIZON, 4, **FULL, mask_fraction=0.0).batch(3)
    locate = Locator(corpus)
    for b in range(4):
        frame, rows = locate(batch, b)
        raw = frame[list(FEATURE_COLUMNS)].to_numpy()[rows]
        mean, std = raw[:LOOKBACK].mean(axis=0), raw[:LOOKBACK].std(axis=0)
        np.testing.assert_allclose(batch["mean"][b], mean, rtol=1e-5)
        np.testing.assert_allclose(batch["std"][b], std, rtol=1e-4)
        expected = np.clip((raw - mean) / (std + 1e-5), -5, 5)
        np.testing.assert_allclose(batch["values"][b], expected, atol=2e-4)


def test_changing_the_horizon_leaves_the_lookback_unchanged(tmp_path):
    """One asset with exactly one window, stored twice with different horizon values."""
    original = candles("AAA", n=LENGTH)
    changed = original.copy()
    horizon = changed.index[LOOKBACK:]
    changed.loc[horizon, ["open", "high", "low", "close"]] *= 1.08
    changed.loc[horizon, ["volume", "amount"]] *= 5.0
    for directory in ("a", "b"):
        (tmp_path / directory).mkdir()
    first, second = (
        WindowSampler(CandleCorpus(write(tmp_path / d / "m.parquet", frame)), LOOKBACK, HORIZON,
                      2, **FULL, mask_fraction=0.0).batch(0)
        for d, frame in (("a", original), ("b", changed))
    )
    np.testing.assert_array_equal(first["values"][:, :LOOKBACK], second["values"][:, :LOOKBACK])
    np.testing.assert_array_equal(first["mean"], second["mean"])
    np.testing.assert_array_equal(first["std"], second["std"])
    assert not np.array_equal(first["values"][:, LOOKBACK:], second["values"][:, LOOKBACK:])


def assert_same_batch(one, other):
    assert one.keys() == other.keys()
    for key in one:
        np.testing.assert_array_equal(one[key], other[key])


def test_a_fresh_sampler_resumes_any_step_exactly(corpus):
    def make():
        return WindowSampler(corpus, LOOKBACK, HORIZON, 16, **FULL, seed=7, steps_per_block=4,
                             assets_per_block=3, mask_fraction=0.3)

    sampler = make()
    history = [sampler.batch(step) for step in range(12)]
    resumed = make()
    for step in (9, 2, 11, 0):
        assert_same_batch(resumed.batch(step), history[step])
    assert_same_batch(sampler.batch(1), history[1])  # block 0 was evicted and is read again
    assert not np.array_equal(history[0]["values"], history[1]["values"])
    other_seed = WindowSampler(corpus, LOOKBACK, HORIZON, 16, **FULL, seed=8, steps_per_block=4,
                               assets_per_block=3, mask_fraction=0.3)
    assert not np.array_equal(other_seed.batch(0)["values"], history[0]["values"])


def test_ranks_draw_different_windows_from_the_same_block(corpus):
    ranks = [WindowSampler(corpus, LOOKBACK, HORIZON, 16, **FULL, rank=r, world_size=2,
                           assets_per_block=2) for r in (0, 1)]
    first, second = (sampler.batch(5) for sampler in ranks)
    assert not np.array_equal(first["stamps"], second["stamps"])
    assert set(first["asset"]) | set(second["asset"]) <= set(corpus.assets["asset"])
    assert len(set(first["asset"]) | set(second["asset"])) <= 2  # one block of two assets
    with pytest.raises(ValueError, match="rank must be < world_size"):
        WindowSampler(corpus, LOOKBACK, HORIZON, 16, **FULL, rank=2, world_size=2)


def test_about_mask_fraction_of_windows_lose_volume_and_amount(corpus):
    sampler = WindowSampler(corpus, LOOKBACK, HORIZON, 64, **FULL, mask_fraction=0.25)
    found = windows(sampler.batch(step) for step in range(100))
    masked = (found["std"][:, 4:] == 0).all(axis=1)
    assert (found["values"][masked][:, :, 4:] == 0).all()
    assert (found["mean"][masked][:, 4:] == 0).all()
    n, p = len(masked), 0.25
    assert abs(masked.sum() - n * p) < 5 * math.sqrt(n * p * (1 - p))  # 5 standard deviations
    unmasked = WindowSampler(corpus, LOOKBACK, HORIZON, 64, **FULL, mask_fraction=0.0).batch(0)
    assert (unmasked["std"][:, 4:] > 0).all()


def test_market_weights_scale_each_markets_share_of_windows(tmp_path, corpus):
    # Long windows make the markets' window counts differ (113 daily, 172 hourly), so the
    # share tells weight x windows (0.66) from weight alone (0.75) or windows alone (0.40).
    lookback, horizon = 40, 10
    counts = corpus.window_counts(lookback + horizon, time_split=TimeSplit(), split="train")
    daily = counts[corpus.assets["market"].to_numpy() == "daily"].sum()
    weighted = CandleCorpus(tmp_path, weights={"daily": 3.0, "hourly": 1.0})
    sampler = WindowSampler(weighted, lookback, horizon, 64, min_context=lookback,
                            steps_per_block=1)
    share = np.mean(windows(sampler.batch(step) for step in range(40))["market"] == "daily")
    # Over seeds the share has a standard deviation of about 0.015.
    assert share == pytest.approx(3 * daily / (3 * daily + counts.sum() - daily), abs=0.05)
    silent = CandleCorpus(tmp_path, weights={"hourly": 0.0})
    batch = WindowSampler(silent, LOOKBACK, HORIZON, 256, **FULL).batch(0)
    assert set(batch["market"]) == {"daily"}


def test_validation_batches_tile_each_segment_from_its_end(corpus):
    cutoff = pd.Timestamp(CUTOFF)
    calls = [list(validation_batches(corpus, LOOKBACK, HORIZON, 3, **FULL,
                                     time_split=TimeSplit(cutoff=CUTOFF))) for _ in range(2)]
    for one, other in zip(*calls, strict=True):
        assert_same_batch(one, other)
    assert [len(batch["asset"]) for batch in calls[0][:-1]] == [3] * (len(calls[0]) - 1)
    found, locate, ends = windows(calls[0]), Locator(corpus), {}
    for b in range(len(found["asset"])):
        frame, rows = locate(found, b)
        assert frame["timestamp"].iloc[rows[0]] >= cutoff
        ends.setdefault(found["asset"][b], []).append(rows[-1])
    # Validation rows: AAA 54..99 (its gap moved it 20 days on), BBB 74..99, CCC 73..98 (row 30
    # is gone, later rows shift by one). Windows of 16 rows every 4, the last ending at the end.
    assert ends == {"AAA": [71, 75, 79, 83, 87, 91, 95, 99], "BBB": [91, 95, 99],
                    "CCC": [90, 94, 98]}
    assert not (found["std"][:, 4:] == 0).any()  # never masked


def test_max_windows_is_shared_evenly_across_markets(tmp_path, corpus):
    found = windows(validation_batches(corpus, LOOKBACK, HORIZON, 4, **FULL, time_split=EVERYTHING,
                                       max_windows=10))
    assert (found["market"] == "daily").sum() == 5 and (found["market"] == "hourly").sum() == 5
    # With a cutoff, only the daily market has validation windows: it gets the whole budget.
    daily_only = windows(validation_batches(corpus, LOOKBACK, HORIZON, 4, **FULL,
                                            time_split=TimeSplit(cutoff=CUTOFF), max_windows=10))
    assert len(daily_only["asset"]) == 10 and set(daily_only["market"]) == {"daily"}
    everything = windows(validation_batches(corpus, LOOKBACK, HORIZON, 4, **FULL,
                                            time_split=EVERYTHING))
    capped = windows(validation_batches(corpus, LOOKBACK, HORIZON, 4, **FULL,
                                        time_split=EVERYTHING, max_windows=10_000))
    assert_same_batch(capped, everything)


def test_windows_longer_than_any_segment_are_refused(corpus):
    with pytest.raises(ValueError, match="no train windows"):
        WindowSampler(corpus, 140, 20, 4, min_context=140)
    with pytest.raises(ValueError, match="min_context must be <= lookback"):
        WindowSampler(corpus, LOOKBACK, HORIZON, 4, min_context=LOOKBACK + 1)


def test_real_index_file_train_and_validation_windows(cn_index_file: Path):
    path = cn_index_file
    # Daily exchange data pauses up to 10 days for holidays; a factor of 15 keeps those gaps
    # inside segments (the default of 5 would cut at every long holiday).
    corpus = CandleCorpus(path, max_gap_factor=15)
    split = TimeSplit(cutoff="2016-01-01")
    batch = WindowSampler(corpus, 120, 20, 32, min_context=120, time_split=split).batch(0)
    assert batch["values"].shape == (32, 140, 6) and batch["stamps"].shape == (32, 140, 5)
    assert np.isfinite(batch["values"]).all() and np.isfinite(batch["std"]).all()
    validation = next(iter(validation_batches(corpus, 120, 20, 32, min_context=120,
                                              time_split=split)))
    assert validation["values"].shape == (32, 140, 6)
    locate = Locator(corpus)
    for sample, in_validation in ((batch, False), (validation, True)):
        for b in range(0, 32, 4):
            frame, rows = locate(sample, b)
            stamps = frame["timestamp"].iloc[rows]
            if in_validation:
                assert stamps.min() >= pd.Timestamp("2016-01-01")
            else:
                assert stamps.max() < pd.Timestamp("2016-01-01")


def test_each_window_is_normalised_by_its_own_drawn_context(corpus):
    sampler = WindowSampler(corpus, LOOKBACK, HORIZON, 64, min_context=3, mask_fraction=0.0)
    batch, locate = sampler.batch(2), Locator(corpus)
    contexts, lengths = batch["context"], batch["length"]
    assert ((contexts >= 3) & (contexts <= np.minimum(LOOKBACK, lengths - HORIZON))).all()
    assert len(set(contexts.tolist())) > 5  # drawn, not fixed
    for b in range(0, 64, 4):
        frame, rows = locate(batch, b)
        raw = frame[list(FEATURE_COLUMNS)].to_numpy()[rows][:contexts[b]]
        np.testing.assert_allclose(batch["mean"][b], raw.mean(axis=0), rtol=1e-5)
        np.testing.assert_allclose(batch["std"][b], raw.std(axis=0), rtol=1e-3, atol=1e-6)


def test_short_segments_give_shorter_windows_padded_with_their_last_row(corpus):
    # AAA's first segment has 40 rows: windows of 50 rows fit only in its 60-row second one.
    sampler = WindowSampler(corpus, 40, 10, 64, min_context=8, steps_per_block=1)
    found = windows(sampler.batch(step) for step in range(20))
    short = np.flatnonzero(found["length"] < 50)
    assert len(short) and (found["length"] >= 18).all()
    locate = Locator(corpus)
    for b in short[:10]:
        frame, rows = locate(found, b)
        assert len(set(frame["segment"].to_numpy()[rows])) == 1
        n = found["length"][b]
        assert (found["values"][b, n:] == found["values"][b, n - 1]).all()
        assert (found["stamps"][b, n:] == found["stamps"][b, n - 1]).all()


def test_horizon_targets_share_one_context_and_end_horizon_rows_after_it(corpus):
    sampler = WindowSampler(corpus, 40, 10, 64, min_context=8, steps_per_block=1,
                            mask_fraction=0.0, targets="horizon")
    contexts_seen, locate = set(), Locator(corpus)
    for step in range(12):
        batch = sampler.batch(step)
        contexts, lengths = batch["context"], batch["length"]
        longest = contexts.max()
        contexts_seen.add(int(longest))
        # One drawn context; a window too short for it (AAA's 40-row segment) keeps all it has.
        assert (lengths == contexts + 10).all() and (contexts >= 8).all()
        assert batch["values"].shape[1] == lengths.max() == longest + 10
        for b in range(0, 64, 16):  # each window is still normalised by its own context
            frame, rows = locate(batch, b)
            raw = frame[list(FEATURE_COLUMNS)].to_numpy()[rows][:contexts[b]]
            np.testing.assert_allclose(batch["mean"][b], raw.mean(axis=0), rtol=1e-5)
    assert len(contexts_seen) > 5


def test_horizon_targets_validate_the_same_windows_ending_after_the_horizon(corpus):
    def first(targets):
        return next(iter(validation_batches(corpus, LOOKBACK, HORIZON, 1000, min_context=3,
                                            time_split=EVERYTHING, targets=targets)))
    every, horizon = first("all"), first("horizon")
    assert (every["context"] == horizon["context"]).all()
    np.testing.assert_array_equal(every["mean"], horizon["mean"])
    assert (horizon["length"] == np.minimum(every["length"], every["context"] + HORIZON)).all()
    assert (horizon["length"] < every["length"]).any()
    for b in range(len(horizon["asset"])):
        n = horizon["length"][b]
        np.testing.assert_array_equal(horizon["values"][b, :n], every["values"][b, :n])
        assert (horizon["values"][b, n:] == horizon["values"][b, n - 1]).all()


def test_unknown_targets_are_refused(corpus):
    with pytest.raises(ValueError, match="targets must be 'all' or 'horizon', got 'near'"):
        WindowSampler(corpus, LOOKBACK, HORIZON, 8, **FULL, targets="near")
