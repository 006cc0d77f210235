"""docs/benchmarks.md shows the numbers the benchmark commands wrote, and its commands run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.suite.cli import parser
from benchmarks.suite.config import SHARED_DATA, load_config
from benchmarks.suite.publish import DOCS, publish, published_tables

REPO = Path(__file__).resolve().parents[2]
PAGE = (REPO / "docs" / "benchmarks.md").read_text()


def test_page_shows_tables_of_every_task():
    tables = published_tables(PAGE)
    names = {name for name, _, _ in tables}
    for task in ("price", "volatility", "generation", "investment"):
        assert any(name.endswith(f"/{task}.csv") for name in names), task


@pytest.mark.parametrize("name, shown, rendered", published_tables(PAGE),
                         ids=[name for name, _, _ in published_tables(PAGE)])
def test_published_table_equals_its_csv(name: str, shown: str, rendered: str):
    assert shown == rendered, f"the table of {name} in docs/benchmarks.md is not its CSV"


def test_documented_commands_parse_and_name_existing_configs():
    if not SHARED_DATA.is_dir():  # a config names its data files, which must exist to load
        pytest.skip(f"real data {SHARED_DATA} not available")
    commands = re.findall(r"^python -m benchmarks (.+)$", PAGE, re.M)
    assert commands
    for command in commands:
        args = parser().parse_args(shlex.split(command))
        config = load_config(REPO / args.config)
        assert args.out.name.startswith(config.name)  # e.g. us_daily or us_daily_0.2
        assert (DOCS / args.out.name).is_dir(), f"{args.out.name} results are not published"


def test_plots_in_page_exist():
    plots = re.findall(r"!\[[^\]]*\]\((benchmarks/[^)]+\.png)\)", PAGE)
    assert plots
    for plot in plots:
        assert (REPO / "docs" / plot).is_file(), plot


def test_publish_copies_tables_and_plots(tmp_path: Path):
    run = tmp_path / "results" / "tiny"
    run.mkdir(parents=True)
    pd.DataFrame({"mae": [1.0]}, index=pd.Index(["naive"], name="model")).to_csv(run / "price.csv")
    (run / "price_fan.png").write_bytes(b"\x89PNG")
    (run / "price.md").write_text("not copied")
    copied = publish(run, tmp_path / "docs")
    assert sorted(p.name for p in copied) == ["price.csv", "price_fan.png"]
    assert (tmp_path / "docs" / "tiny" / "price.csv").read_text() == (run / "price.csv").read_text()
    with pytest.raises(FileNotFoundError, match="no benchmark run directory"):
        publish(tmp_path / "missing", tmp_path / "docs")
