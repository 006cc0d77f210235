"""The per-origin loop shared by the tasks, under the time budget."""

from __future__ import annotations

from collections.abc import Callable

from .config import BenchmarkConfig
from .data import Panel, Windows, origins, windows_at
from .models import Budget


def over_origins(config: BenchmarkConfig, panel: Panel, budget: Budget,
                 work: Callable[[Windows], None]) -> tuple[int, int]:
    """Call `work` on the windows of every origin, in time order, until the budget is spent.

    Every model runs at an origin before the next origin starts, so a budget stop leaves all
    models evaluated on the same origins.

    Returns
    -------
    (done, total) : tuple of int
        Origins evaluated and origins planned.
    """
    planned = origins(panel, config)
    done = 0
    for origin in planned:
        if budget.exceeded():
            break
        windows = windows_at(panel, origin, config)
        if windows.assets:
            work(windows)
        done += 1
    return done, len(planned)
