"""Calendar features of timestamps and the timestamps of a forecast horizon."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from kronos_sk._params import check_positive_int

# History needed before its calendar is trusted: two weeks show which weekdays trade (one
# holiday does not remove a weekday), two days show an intraday session's times.
WEEKDAY_HISTORY = pd.Timedelta(days=14)
SESSION_HISTORY = pd.Timedelta(days=2)
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def time_features(index: pd.DatetimeIndex) -> np.ndarray:
    """Calendar features of each timestamp, as the model's time embedding expects them.

    Parameters
    ----------
    index : DatetimeIndex
        Timestamps; a tz-aware index is read in its own local wall-clock time.

    Returns
    -------
    ndarray of shape (T, 5), int64
        Columns minute (0-59), hour (0-23), weekday (Monday = 0), day of month (1-31) and
        month (1-12).

    Examples
    --------
    >>> time_features(pd.DatetimeIndex(["2024-03-04 09:35"])).tolist()
    [[35, 9, 0, 4, 3]]
    """
    if not isinstance(index, pd.DatetimeIndex):
        raise TypeError(f"time_features needs a DatetimeIndex, got {type(index).__name__}")
    if index.hasnans:
        position = int(index.isna().argmax())
        raise ValueError(f"time_features: timestamp at position {position} is NaT")
    return np.column_stack(
        [index.minute, index.hour, index.dayofweek, index.day, index.month]
    ).astype(np.int64)


def future_index(
    index: pd.DatetimeIndex,
    horizon: int,
    freq: str | pd.DateOffset | pd.Timedelta | None = None,
) -> pd.DatetimeIndex:
    """The `horizon` timestamps that follow the last one of `index`.

    Parameters
    ----------
    index : DatetimeIndex
        Timestamps of the context, sorted.
    horizon : int
        Number of future timestamps, at least 1.
    freq : str, DateOffset, Timedelta or None, default=None
        Step between timestamps. None means ``index.freq``, else ``pd.infer_freq(index)``,
        else the most common positive step between consecutive timestamps, provided it
        covers at least half of the steps; the future rows then follow the observed
        calendar (see Notes).

    Returns
    -------
    DatetimeIndex of length `horizon`
        In the time zone and resolution of `index`.

    Raises
    ------
    ValueError
        If `horizon` is not a positive int, or no step can be inferred.

    Notes
    -----
    Without `freq` and ``index.freq``, the future follows the calendar of the history:
    a step of at most a day skips the weekdays that two weeks or more of history never
    show (daily stock data gets no weekend rows), and an intraday step that divides a day
    keeps only the times of day that two days or more of history show (sessions, lunch
    breaks, no bars at night). Holidays ahead are not known; pass the future timestamps
    themselves for those.

    Examples
    --------
    >>> future_index(pd.date_range("2024-01-01", periods=3, freq="h"), 2).tolist()
    [Timestamp('2024-01-01 03:00:00'), Timestamp('2024-01-01 04:00:00')]
    """
    if not isinstance(index, pd.DatetimeIndex):
        raise TypeError(f"future_index needs a DatetimeIndex, got {type(index).__name__}")
    check_positive_int(horizon, "horizon")
    if len(index) == 0:
        raise ValueError("future_index needs at least one timestamp")
    if freq is not None or index.freq is not None:
        step = frequency_offset(freq) if freq is not None else index.freq
        return pd.date_range(index[-1] + step, periods=int(horizon), freq=step, unit=index.unit)
    return _observed_calendar(index, int(horizon), _infer_step(index))


def frequency_offset(freq: str | pd.DateOffset | pd.Timedelta) -> pd.DateOffset:
    """The pandas offset of a user's `freq`, or a one-line error naming it."""
    try:
        offset = to_offset(freq)
    except (TypeError, ValueError):
        offset = None
    if offset is None or offset.n < 1:
        raise ValueError(f"freq {freq!r} is not a pandas frequency of a positive step; use "
                         "one such as '5min', 'h', 'D' or 'B'")
    return offset


def _observed_calendar(index: pd.DatetimeIndex, horizon: int,
                       step: pd.DateOffset | pd.Timedelta) -> pd.DatetimeIndex:
    """`horizon` steps after ``index[-1]`` on the weekdays and times of day `index` shows."""
    span, weekdays, times = _observed_pattern(index, step)
    found = pd.DatetimeIndex([], tz=index.tz).as_unit(index.unit)
    last = index[-1]
    while len(found) < horizon:
        # Enough candidates for a week of steps at least: every observed weekday and time
        # of day comes round within a week, since the grid starts on an observed row.
        size = max(4 * horizon, int(pd.Timedelta(days=8) / span) if span is not None else 0)
        candidates = pd.date_range(last + step, periods=size, freq=step, unit=index.unit)
        keep = np.ones(len(candidates), dtype=bool)
        if weekdays is not None:
            keep &= np.isin(candidates.dayofweek, list(weekdays))
        if times is not None:
            keep &= np.isin(_time_of_day(candidates), list(times))
        found = found.append(candidates[keep])
        last = candidates[-1]
    return found[:horizon]


def _observed_pattern(index: pd.DatetimeIndex, step: pd.DateOffset | pd.Timedelta):
    """(step as a Timedelta or None, weekdays kept or None, times of day kept or None)."""
    try:
        span = pd.Timedelta(step)
    except (TypeError, ValueError):  # a calendar offset (month, business day): as it is
        return None, None, None
    history = index[-1] - index[0]
    day = pd.Timedelta(days=1)
    weekdays = set(index.dayofweek) if span <= day and history >= WEEKDAY_HISTORY else None
    times = set(_time_of_day(index)) if span < day and day % span == pd.Timedelta(0) and \
        history >= SESSION_HISTORY else None
    return span, weekdays, times


def describe_calendar(index: pd.DatetimeIndex) -> str:
    """The calendar `future_index` follows after `index` without a frequency, in words.

    Examples
    --------
    >>> describe_calendar(pd.bdate_range("2024-01-01", periods=30).delete(10))
    'every day on Mon-Fri (observed)'
    """
    step = _infer_step(index)
    span, weekdays, times = _observed_pattern(index, step)
    text = "every day" if span == pd.Timedelta(days=1) else f"every {to_offset(step).freqstr}"
    if weekdays is not None and len(weekdays) < 7:
        names = [DAY_NAMES[d] for d in sorted(weekdays)]
        consecutive = sorted(weekdays) == list(range(min(weekdays), max(weekdays) + 1))
        text += f" on {names[0]}-{names[-1]}" if consecutive and len(names) > 2 else \
            f" on {', '.join(names)}"
    if times is not None and len(times) < pd.Timedelta(days=1) / span:
        clock = pd.to_timedelta(sorted(times), unit=index.unit)
        text += f", {len(times)} times of day from {_clock(clock[0])} to {_clock(clock[-1])}"
    return text + " (observed)"


def _clock(offset: pd.Timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _time_of_day(index: pd.DatetimeIndex) -> np.ndarray:
    """Time since local midnight of each timestamp, in ticks of the index's unit."""
    return (index - index.normalize()).asi8


def _infer_step(index: pd.DatetimeIndex) -> pd.DateOffset | pd.Timedelta:
    if index.freq is not None:
        return index.freq
    if len(index) >= 3:
        inferred = pd.infer_freq(index)
        if inferred is not None:
            return to_offset(inferred)
    steps = np.diff(index.asi8)
    positive = steps[steps > 0]
    if len(positive) == 0:
        raise ValueError(
            f"cannot infer the step from {len(index)} timestamp(s); "
            "pass freq or the future timestamps themselves"
        )
    values, counts = np.unique(positive, return_counts=True)
    best = int(counts.argmax())
    step = pd.Timedelta(int(values[best]), unit=index.unit)
    if counts[best] < 0.5 * len(steps):
        raise ValueError(
            f"cannot infer a frequency: the most common step ({step}) covers only "
            f"{counts[best]} of {len(steps)} steps; pass freq or the future timestamps themselves"
        )
    return step
