"""Forecast horizons on each series' own calendar: sktime's fh <-> future timestamps.

sktime counts a relative horizon from the cutoff, the last timestamp of the whole panel.
Kronos needs, for every series, the timestamps of the rows it generates after the series'
own last row: a series that ends before the cutoff is forecast through every step of its
calendar up to the cutoff and on to the horizon. The calendar of a datetime index is, in
this order: `freq` when given, the index's own frequency, the one pandas infers, else the
calendar the rows show (trading days, intraday sessions: see `future_index`). Integer and
period indexes count steps in index units and get synthetic wall-clock stamps.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from kronos_sk.data.calendar import describe_calendar, frequency_offset, future_index

# Integer and period indexes get calendar stamps counted from this Monday.
SYNTHETIC_ORIGIN = pd.Timestamp("2000-01-03")
# On a calendar read from the rows, update warns when this many steps or more are missing
# (one missing session is most often a holiday).
CALENDAR_GAP_STEPS = 2


def wall_clock(index: pd.Index, freq: str | pd.DateOffset | None = None) -> pd.DatetimeIndex:
    """Wall-clock timestamps of an index: itself, a period's start, or synthetic stamps
    ``SYNTHETIC_ORIGIN + i * freq`` (default one day) for an integer index."""
    if isinstance(index, pd.DatetimeIndex):
        return index
    if isinstance(index, pd.PeriodIndex):
        return index.to_timestamp()
    step = frequency_offset(freq or "D")
    return pd.DatetimeIndex([SYNTHETIC_ORIGIN + int(i) * step for i in index])


def pandas_freq(index: pd.DatetimeIndex, freq=None):
    """`freq`, else the index's frequency, else the one pandas infers from 3+ rows, else None."""
    if freq is not None:
        return frequency_offset(freq)
    if index.freq is not None:
        return index.freq
    inferred = pd.infer_freq(index) if len(index) >= 3 else None
    return None if inferred is None else to_offset(inferred)


def relative_targets(steps, observed: pd.DatetimeIndex, freq=None, grid: bool = False):
    """The timestamps of relative horizon steps (1 = the next row) after ``observed[-1]``.

    Steps follow `freq`, else the calendar `observed` shows (see `future_index`); a
    ValueError says when no calendar can be read. With `grid`, returns (timestamps, every
    calendar stamp up to the last step).
    """
    steps = np.asarray(steps, dtype=np.int64)
    try:
        stamps = future_index(observed, int(steps.max()), freq)
    except ValueError as error:
        raise ValueError(f"a relative fh needs a calendar and none can be read from y ({error}); "
                         "pass freq= (e.g. '5min', 'B') or the absolute future timestamps"
                         ) from None
    return (stamps[steps - 1], stamps) if grid else stamps[steps - 1]


def series_horizon(targets: pd.Index, original: pd.Index, cutoff,
                   panel_times: pd.Index | None, freq=None, name: str = "y",
                   future: pd.DatetimeIndex | None = None,
                   ) -> tuple[np.ndarray, pd.DatetimeIndex, int]:
    """(steps 1.., wall-clock stamps of steps 1..H, lag) of the fh timestamps for one series.

    `lag` is the number of steps of the series' calendar from its last row to the cutoff.

    Parameters
    ----------
    targets : Index
        The absolute fh (after the cutoff), in the type of the series' index.
    original : Index
        The series' own time index (datetime, integer or period).
    cutoff : object
        The panel's last timestamp (sktime's cutoff).
    panel_times : Index or None
        Every timestamp of the panel, sorted: the sessions a series that ends before the
        cutoff has missed, when its calendar has no pandas frequency (datetime indexes).
    freq : frequency or None
        The forecaster's `freq`.
    name : str
        The series, for messages.
    future : DatetimeIndex or None
        Without a pandas frequency: the calendar's stamps after the cutoff up to the last
        target (a relative fh, see `relative_targets`); None: the targets are the rows that
        follow the cutoff, in order (absolute timestamps, holidays and sessions as given).

    Notes
    -----
    With a pandas frequency the steps count every step of it from the series' last row.
    Without one, the series' missed rows are the panel's timestamps after its last row
    and before the cutoff, then come the `future` rows.
    """
    last = original[-1]
    if isinstance(original, pd.DatetimeIndex):
        targets = pd.DatetimeIndex(targets)
        if targets[0] <= last:
            raise ValueError(f"fh: {targets[0]} is not after the last observation {last} of "
                             f"{name}")
        step = pandas_freq(original, freq)
        if step is not None:
            grid = pd.date_range(last, targets.max(), freq=step)[1:]
            if not targets.isin(grid).all():
                raise ValueError(f"fh: {list(targets[~targets.isin(grid)])} are not on the "
                                 f"{step.freqstr} grid after {last} of {name}")
            return grid.get_indexer(targets) + 1, grid, int((grid <= cutoff).sum())
        missed = pd.DatetimeIndex([], tz=original.tz) if panel_times is None else \
            pd.DatetimeIndex(panel_times[(panel_times > last) & (panel_times <= cutoff)])
        grid = missed.append(targets if future is None else pd.DatetimeIndex(future))
        return grid.get_indexer(targets) + 1, grid, len(missed)
    if isinstance(original, pd.PeriodIndex):
        steps = np.array([(t - last).n for t in targets])
        grid = pd.period_range(last + 1, periods=steps.max(), freq=original.freq)
        lag = (cutoff - last).n
    else:
        steps = np.array([int(t) - int(last) for t in targets])
        grid = pd.Index(np.arange(int(last) + 1, int(last) + steps.max() + 1))
        lag = int(cutoff) - int(last)
    return steps, wall_clock(grid, freq), lag


def plan_series(targets: pd.Index, indexes: list[pd.Index], names: list[str], cutoff,
                panel_times: pd.Index, freq=None, future: pd.DatetimeIndex | None = None,
                ) -> tuple[np.ndarray, list[pd.DatetimeIndex]]:
    """`series_horizon` for every series of a panel: (steps (n_series, len(targets)), the
    stamps of each series' steps 1..H); warns about series that lag far behind."""
    steps, grids = [], []
    for index, name in zip(indexes, names):
        series_steps, grid, lag = series_horizon(targets, index, cutoff, panel_times, freq,
                                                 name, future)
        warn_lagging(name, lag, series_steps)
        steps.append(series_steps)
        grids.append(grid)
    return np.stack(steps), grids


def warn_lagging(name: str, lag: int, steps: np.ndarray) -> None:
    """Warn when a series ends more steps before the cutoff than the horizon reaches past it:
    those steps are generated too, and cost more than the forecast asked for."""
    horizon = int(steps.max()) - lag
    if lag > horizon:
        warnings.warn(f"{name} ends {lag} steps of its calendar before the cutoff: its "
                      f"forecast generates {int(steps.max())} steps for a horizon of "
                      f"{horizon}; fit it alone to forecast from its own end",
                      UserWarning, stacklevel=6)


def first_gap(original: pd.Index, new: pd.Index, freq=None) -> tuple[object, int, bool]:
    """The first step missing between a series' last row and the rows sent to `update`.

    Returns (first missing step or None, how many steps are missing, whether the calendar
    has fixed steps). Fixed steps are a pandas frequency, integer and period indexes; for
    a calendar read from the rows (trading days, sessions) a missing step may be a
    holiday, so the caller only warns.
    """
    new = new[new > original[-1]]
    if not len(new):
        return None, 0, True
    last, first = original[-1], new.min()
    if isinstance(original, pd.DatetimeIndex):
        step = pandas_freq(original, freq)
        if step is None:
            try:
                grid = future_index(original, 8)
                while grid[-1] < first and len(grid) < 100_000:
                    grid = future_index(original, 2 * len(grid))
            except ValueError:  # no calendar to read: nothing is known to be missing
                return None, 0, False
            missing = grid[grid < first]
            return (missing[0] if len(missing) else None), len(missing), False
        grid = pd.date_range(last, first, freq=step)[1:]
    elif isinstance(original, pd.PeriodIndex):
        grid = pd.period_range(last + 1, first, freq=original.freq)
    else:
        grid = pd.Index(np.arange(int(last) + 1, int(first) + 1))
    missing = grid[grid < first]
    return (missing[0] if len(missing) else None), len(missing), True


def read_calendar(original: pd.Index, freq=None) -> str:
    """What the calendar of a series is, in words (the forecaster's `calendar_`)."""
    if not isinstance(original, pd.DatetimeIndex):
        kind = "period" if isinstance(original, pd.PeriodIndex) else "integer"
        return f"{kind} steps, stamped from {SYNTHETIC_ORIGIN.date()} every {freq or 'D'}"
    if freq is not None:
        return f"freq={frequency_offset(freq).freqstr} (given)"
    step = pandas_freq(original)
    if step is not None:
        return f"freq={step.freqstr} (of the index)"
    try:
        return describe_calendar(original)
    except ValueError:
        return "irregular: none can be read (absolute fh timestamps are the next rows)"


def padded(grid: pd.DatetimeIndex, length: int) -> pd.DatetimeIndex:
    """A grid cut or padded to `length` stamps by repeating its last step (the padded rows
    of a batch are generated and not used)."""
    if len(grid) >= length:
        return grid[:length]
    step = grid[-1] - grid[-2] if len(grid) > 1 else pd.Timedelta(days=1)
    return grid.append(pd.DatetimeIndex([grid[-1] + step * k
                                         for k in range(1, length - len(grid) + 1)]))


def without_freq(index: pd.Index) -> pd.Index:
    """The index without its `freq` (outputs carry plain timestamps, as sktime's do)."""
    if isinstance(index, (pd.DatetimeIndex, pd.TimedeltaIndex)) and index.freq is not None:
        return type(index)(index, freq=None)
    return index
