import re

import numpy as np
import pandas as pd
import pytest

from kronos_sk.data import future_index, time_features


@pytest.mark.parametrize(
    "stamp, expected",
    [
        ("2024-03-04 09:35", (35, 9, 0, 4, 3)),  # Monday
        ("2024-02-29 00:00", (0, 0, 3, 29, 2)),  # Thursday, leap day
        ("2023-01-01 13:05", (5, 13, 6, 1, 1)),  # Sunday
        ("2024-12-31 23:59", (59, 23, 1, 31, 12)),  # Tuesday
    ],
)
def test_time_features_of_hand_picked_stamps(stamp, expected):
    features = time_features(pd.DatetimeIndex([stamp]))
    assert features.dtype == np.int64
    assert features.shape == (1, 5)
    assert tuple(features[0]) == expected


def test_time_features_use_local_time_of_a_tz_aware_index():
    utc = pd.DatetimeIndex(["2024-03-04 01:35", "2024-03-03 23:10"], tz="UTC")
    shanghai = utc.tz_convert("Asia/Shanghai")  # UTC+8: Monday 09:35 and Monday 07:10
    assert time_features(shanghai).tolist() == [[35, 9, 0, 4, 3], [10, 7, 0, 4, 3]]
    assert time_features(utc).tolist() == [[35, 1, 0, 4, 3], [10, 23, 6, 3, 3]]


def test_time_features_reject_other_indexes_and_nat():
    with pytest.raises(TypeError, match="DatetimeIndex"):
        time_features(pd.Index([1, 2]))
    with pytest.raises(ValueError, match="position 1 is NaT"):
        time_features(pd.DatetimeIndex(["2024-01-01", None]))


def test_future_index_with_explicit_freq():
    index = pd.DatetimeIndex(["2024-01-05 14:50", "2024-01-05 14:55"])
    expected = pd.DatetimeIndex(["2024-01-05 15:00", "2024-01-05 15:05", "2024-01-05 15:10"])
    pd.testing.assert_index_equal(future_index(index, 3, "5min"), expected, check_exact=True)


def test_future_index_with_business_day_offset_skips_the_weekend():
    index = pd.DatetimeIndex(["2024-01-04", "2024-01-05"])  # Thursday, Friday
    result = future_index(index, 2, pd.offsets.BDay())
    assert result.tolist() == [pd.Timestamp("2024-01-08"), pd.Timestamp("2024-01-09")]


def test_future_index_uses_the_index_freq():
    index = pd.date_range("2024-01-01", periods=3, freq="W-MON")
    result = future_index(index, 2)
    assert result.tolist() == [pd.Timestamp("2024-01-22"), pd.Timestamp("2024-01-29")]


def test_future_index_infers_the_freq_and_keeps_tz_and_unit():
    index = pd.DatetimeIndex(
        ["2024-01-01 00:00", "2024-01-01 00:15", "2024-01-01 00:30"], tz="UTC"
    ).as_unit("us")
    assert index.freq is None
    result = future_index(index, 2)
    expected = pd.DatetimeIndex(["2024-01-01 00:45", "2024-01-01 01:00"], tz="UTC").as_unit("us")
    assert result.tolist() == expected.tolist()
    assert result.dtype == expected.dtype


def test_future_index_of_mostly_regular_stamps_uses_the_most_common_step():
    # Hourly with one two-hour gap: no frequency can be inferred, but 1h covers 4 of 5 steps.
    index = pd.DatetimeIndex(
        ["2024-01-01 09:00", "2024-01-01 10:00", "2024-01-01 11:00", "2024-01-01 13:00",
         "2024-01-01 14:00", "2024-01-01 15:00"]
    )
    assert pd.infer_freq(index) is None
    result = future_index(index, 2)
    assert result.tolist() == [pd.Timestamp("2024-01-01 16:00"), pd.Timestamp("2024-01-01 17:00")]


def test_future_index_of_irregular_stamps_asks_for_freq():
    # Steps of 1, 2, 3 and 4 hours: none covers half of them.
    index = pd.DatetimeIndex(["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 03:00",
                              "2024-01-01 06:00", "2024-01-01 10:00"])
    with pytest.raises(ValueError, match="covers only 1 of 4 steps; pass freq"):
        future_index(index, 2)


def test_future_index_of_one_stamp_needs_freq():
    index = pd.DatetimeIndex(["2024-01-01 09:00"])
    with pytest.raises(ValueError, match="pass freq"):
        future_index(index, 1)
    assert future_index(index, 1, "h").tolist() == [pd.Timestamp("2024-01-01 10:00")]


@pytest.mark.parametrize("horizon", [0, -3, 2.0, True, "4"])
def test_future_index_rejects_a_bad_horizon(horizon):
    index = pd.date_range("2024-01-01", periods=3, freq="D")
    message = f"horizon must be a positive integer, got {horizon!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        future_index(index, horizon)


def test_future_of_trading_days_skips_the_weekend():
    # Weekdays with a holiday (no frequency can be inferred): the future has no weekend.
    index = pd.bdate_range("2024-01-01", "2024-02-02").drop(pd.Timestamp("2024-01-15"))
    assert pd.infer_freq(index) is None
    result = future_index(index, 3)
    assert result.tolist() == [pd.Timestamp("2024-02-05"), pd.Timestamp("2024-02-06"),
                               pd.Timestamp("2024-02-07")]


def test_future_of_real_us_trading_days_has_no_weekend(us_stocks_daily_file):
    frame = pd.read_parquet(us_stocks_daily_file)
    index = pd.DatetimeIndex(frame.loc[frame["asset"] == frame["asset"].iloc[0], "timestamp"])
    result = future_index(index[-300:], 10)
    assert (result.dayofweek < 5).all() and result[0] > index[-1]
    assert len(result) == 10 and result.is_monotonic_increasing


def test_future_of_intraday_sessions_follows_the_observed_sessions(compat_candles):
    # 5-minute A-share bars: 09:35-11:30 and 13:05-15:00, nothing at night or at lunch.
    index = compat_candles.index
    observed = set(index.strftime("%H:%M"))
    result = future_index(index, 60)
    assert set(result.strftime("%H:%M")) <= observed
    assert result[0] == pd.Timestamp("2025-03-19 09:35")  # the history ends at 15:00
    assert "11:30" in set(result.strftime("%H:%M")) and "13:05" in set(result.strftime("%H:%M"))


def test_future_of_a_round_the_clock_series_is_unchanged():
    index = pd.date_range("2024-01-01", periods=24 * 20, freq="h", tz="UTC")
    index = index.delete(100)  # one missing bar: no frequency to infer
    result = future_index(index, 30)
    expected = pd.date_range(index[-1] + pd.Timedelta(hours=1), periods=30, freq="h")
    assert result.tolist() == expected.tolist()
