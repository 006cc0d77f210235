"""Calendar features of timestamps and the timestamps of a forecast horizon."""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset


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
        covers at least half of the steps.

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
    Inference knows nothing of trading calendars: daily stock data with holidays gets a
    one-day step (weekends included) and intraday data gets bars through the night. For
    those, pass ``freq`` (e.g. ``"B"``) or the future timestamps themselves.

    Examples
    --------
    >>> future_index(pd.date_range("2024-01-01", periods=3, freq="h"), 2).tolist()
    [Timestamp('2024-01-01 03:00:00'), Timestamp('2024-01-01 04:00:00')]
    """
    if not isinstance(index, pd.DatetimeIndex):
        raise TypeError(f"future_index needs a DatetimeIndex, got {type(index).__name__}")
    if isinstance(horizon, bool) or not isinstance(horizon, numbers.Integral) or horizon < 1:
        raise ValueError(f"horizon must be a positive int, got {horizon!r}")
    if len(index) == 0:
        raise ValueError("future_index needs at least one timestamp")
    step = to_offset(freq) if freq is not None else _infer_step(index)
    return pd.date_range(index[-1] + step, periods=int(horizon), freq=step, unit=index.unit)


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
