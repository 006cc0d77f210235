"""Result tables (CSV and Markdown), plots and the summary of a run directory."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

TASK_ORDER = ("price", "volatility", "generation", "investment")


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_plot(fig, path: Path) -> None:
    """Lay out `fig`, write it to `path` (PNG, 100 dpi) and close it."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    pyplot().close(fig)


def _cell(value: object) -> str:
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "–"
        return f"{value:.4g}"
    return str(value)


def markdown_table(table: pd.DataFrame) -> str:
    """A pipe table of `table` (index included), floats to 4 significant digits, NaN as –."""
    frame = table.reset_index()
    lines = ["| " + " | ".join(str(c) for c in frame.columns) + " |",
             "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def write_task(out: Path, task: str, table: pd.DataFrame, notes: list[str],
               plots: list[str], extra: str = "") -> None:
    """Write `OUT/<task>.csv` and `OUT/<task>.md` (notes, the table, `extra`, the plots)."""
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / f"{task}.csv")
    lines = [f"## {task}", "", *[f"- {note}" for note in notes], "", markdown_table(table), ""]
    if extra:
        lines += [extra, ""]
    lines += [f"![{Path(plot).stem}]({plot})" for plot in plots]
    (out / f"{task}.md").write_text("\n".join(lines) + "\n")


def write_summary(out: Path, command: str) -> Path:
    """Aggregate the task reports found in `out` into `OUT/summary.md`."""
    parts = [f"# Benchmark results: {out.name}", "", f"Command: `{command}`", ""]
    for task in TASK_ORDER:
        path = out / f"{task}.md"
        if path.is_file():
            parts.append(path.read_text())
    summary = out / "summary.md"
    summary.write_text("\n".join(parts))
    return summary


def origin_note(done: int, total: int, assets: int, windows: int) -> str:
    """One line saying how much of the evaluation ran (the budget may stop it early)."""
    stopped = "" if done == total else " (stopped by the time budget)"
    return f"origins evaluated: {done} of {total}{stopped}; assets: {assets}; windows: {windows}"
