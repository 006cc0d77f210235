"""Copy the tables and plots of benchmark runs into the documentation.

``python -m benchmarks.suite.publish results/us_daily results/cn_daily ...`` copies every
``*.csv`` and ``*.png`` of each run directory to ``docs/benchmarks/<run name>/``.
``docs/benchmarks.md`` shows those tables: each is preceded by a marker
``<!-- table: RUN/TASK.csv -->`` and must equal `markdown_table` of that file (tested), so
the published numbers are the ones the commands wrote.
"""

from __future__ import annotations

import argparse
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .config import REPO_ROOT
from .report import markdown_table

DOCS = REPO_ROOT / "docs" / "benchmarks"
TABLE_MARKER = re.compile(r"<!-- table: (\S+\.csv) -->\n\n((?:\|.*\n)+)")


def publish(run: Path, docs: Path = DOCS) -> list[Path]:
    """Copy the CSV tables and PNG plots of one run directory to ``docs/<run name>/``."""
    if not run.is_dir():
        raise FileNotFoundError(f"no benchmark run directory {run}")
    files = sorted([*run.glob("*.csv"), *run.glob("*.png")])
    if not files:
        raise FileNotFoundError(f"{run} holds no tables or plots; run python -m benchmarks first")
    target = docs / run.name
    target.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(path, target / path.name)) for path in files]


def published_tables(page: str, docs: Path = DOCS) -> list[tuple[str, str, str]]:
    """(marker path, table in the page, table rendered from the CSV) for every marked table."""
    return [(name, shown.rstrip("\n"), markdown_table(pd.read_csv(docs / name, index_col=0)))
            for name, shown in TABLE_MARKER.findall(page)]


def main(argv: Sequence[str] | None = None) -> int:
    """Publish the named run directories."""
    parse = argparse.ArgumentParser(prog="python -m benchmarks.suite.publish",
                                    description=__doc__.splitlines()[0])
    parse.add_argument("runs", nargs="+", type=Path, help="run directories (the --out of a run)")
    args = parse.parse_args(argv)
    for run in args.runs:
        for path in publish(run):
            print(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
