"""fh <-> per-series future timestamps: kronos_sk.data.horizon."""

import numpy as np
import pandas as pd
import pytest

from kronos_sk.data.horizon import (first_gap, padded, read_calendar, relative_targets,
                                    series_horizon, wall_clock, warn_lagging)


@pytest.fixture(scope="module")
def trading_days(us_stocks_daily_file) -> pd.DatetimeIndex:
    """Real NYSE sessions of 2015 (holidays missing, no pandas frequency)."""
    frame = pd.read_parquet(us_stocks_daily_file, columns=["asset", "timestamp"])
    days = frame.loc[frame["asset"] == "AAPL", "timestamp"]
    return pd.DatetimeIndex(days[(days >= "2015-01-01") & (days < "2016-01-01")].to_numpy())


def test_relative_steps_on_trading_days_skip_weekends(trading_days):
    history = trading_days[trading_days <= "2015-07-02"]  # a Thursday; July 3 is a holiday
    assert history.freq is None and pd.infer_freq(history) is None
    targets = relative_targets([1, 2, 3], history)
    # The holiday ahead is not known (a weekday), the weekend is.
    assert list(targets) == list(pd.to_datetime(["2015-07-03", "2015-07-06", "2015-07-07"]))
    assert read_calendar(history) == "every day on Mon-Fri (observed)"


def test_no_calendar_to_read_is_named():
    stamps = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.cumsum(np.arange(1, 40)), "min")
    with pytest.raises(ValueError, match="relative fh needs a calendar.*pass freq="):
        relative_targets([1], pd.DatetimeIndex(stamps))
    assert read_calendar(pd.DatetimeIndex(stamps)).startswith("irregular")


def test_a_lagging_series_counts_the_sessions_it_missed(trading_days):
    # Series A stops 5 sessions before the panel's cutoff; its first fh target is the
    # panel's next session, which is A's 6th step, not its 1st.
    panel = trading_days[:120]
    a = panel[:-5]
    targets = relative_targets([1, 2], panel)
    steps, grid, lag = series_horizon(targets, a, panel[-1], panel, name="y['A']")
    assert lag == 5 and list(steps) == [6, 7]
    assert list(grid) == list(panel[-5:]) + list(targets)
    # The series that reaches the cutoff gets steps 1 and 2.
    steps, grid, lag = series_horizon(targets, panel, panel[-1], panel)
    assert lag == 0 and list(steps) == [1, 2] and list(grid) == list(targets)


def test_with_a_frequency_every_step_is_counted():
    index = pd.date_range("2024-01-01", periods=10, freq="h")
    targets = pd.date_range("2024-01-01 15:00", periods=2, freq="h")
    steps, grid, lag = series_horizon(targets, index[:5], index[-1], None, freq="h")
    assert lag == 5 and list(steps) == [11, 12] and len(grid) == 12
    with pytest.raises(ValueError, match="not on the h grid"):
        series_horizon(pd.DatetimeIndex(["2024-01-01 15:30"]), index, index[-1], None, "h")


def test_integer_and_period_indexes_count_index_units():
    steps, grid, lag = series_horizon(pd.Index([13, 15]), pd.RangeIndex(0, 10), 12, None)
    assert list(steps) == [4, 6] and lag == 3
    assert list(grid) == list(wall_clock(pd.Index(range(10, 16))))
    months = pd.period_range("2020-01", periods=12, freq="M")
    steps, grid, lag = series_horizon(pd.PeriodIndex(["2021-02"], freq="M"), months,
                                      months[-1], None)
    assert list(steps) == [2] and lag == 0 and grid[-1] == pd.Timestamp("2021-02-01")


def test_lag_beyond_the_horizon_warns_with_the_series_and_the_lag():
    with pytest.warns(UserWarning, match=r"y\['A'\] ends 30 steps .* 32 steps for a horizon of 2"):
        warn_lagging("y['A']", 30, np.array([31, 32]))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_lagging("y['A']", 2, np.array([3, 4, 5]))  # lag 2 < horizon 3: quiet


def test_first_gap_names_the_first_missing_step(trading_days):
    hours = pd.date_range("2024-01-01", periods=150, freq="h")
    later = pd.date_range(hours[-1] + pd.Timedelta(hours=11), periods=10, freq="h")
    assert first_gap(hours, later) == (hours[-1] + pd.Timedelta(hours=1), 10, True)
    assert first_gap(hours, hours[-5:]) == (None, 0, True)  # resent rows only
    assert first_gap(hours, later[:0].append(hours[-1:] + pd.Timedelta(hours=1)))[0] is None
    assert first_gap(pd.RangeIndex(0, 150), pd.Index(range(160, 170))) == (150, 10, True)
    # Sessions without a pandas frequency: missing sessions are counted, not refused.
    assert first_gap(trading_days[:100], trading_days[105:110]) == (trading_days[100], 5, False)


def test_padded_repeats_the_last_step():
    grid = pd.DatetimeIndex(["2024-01-01", "2024-01-03"])
    assert list(padded(grid, 4)) == list(pd.to_datetime(
        ["2024-01-01", "2024-01-03", "2024-01-05", "2024-01-07"]))
    assert list(padded(grid, 1)) == [pd.Timestamp("2024-01-01")]
