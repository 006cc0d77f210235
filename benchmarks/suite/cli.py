"""Command line: ``python -m benchmarks TASK --config FILE [--budget-minutes N] [--out DIR]``."""

from __future__ import annotations

import argparse
import shlex
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from .config import REPO_ROOT, BenchmarkConfig, load_config
from .data import Panel, load_panel
from .generation import run_generation
from .investment import run_investment
from .models import Budget
from .price import run_price
from .report import write_summary
from .volatility import run_volatility

TASKS: dict[str, Callable[[BenchmarkConfig, Panel, Path, Budget], pd.DataFrame]] = {
    "price": run_price,
    "volatility": run_volatility,
    "generation": run_generation,
    "investment": run_investment,
}


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m benchmarks``."""
    parse = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Kronos benchmark suite: forecasting, volatility, generation and "
                    "investment tasks on real candles, against the baselines.")
    parse.add_argument("task", choices=[*TASKS, "all"])
    parse.add_argument("--config", required=True, type=Path, help="a TOML file, see "
                       "benchmarks/configs/")
    parse.add_argument("--budget-minutes", type=float, default=None,
                       help="stop adding origins once this much time has passed (per task)")
    parse.add_argument("--out", type=Path, default=None,
                       help="output directory (default results/<config name>)")
    return parse


def main(argv: Sequence[str] | None = None) -> int:
    """Run one task or all of them; print the tables and the path of the summary."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    # sktime announces a future change of a config default on every baseline it builds.
    warnings.filterwarnings("ignore", message="The default of config ``remember_data")
    config = load_config(args.config)
    out = args.out or REPO_ROOT / "results" / config.name
    panel = load_panel(config)
    for task in (list(TASKS) if args.task == "all" else [args.task]):
        table = TASKS[task](config, panel, out, Budget(args.budget_minutes))
        print(f"== {task}\n{table.to_string(float_format=lambda v: f'{v:.4g}')}\n")
    summary = write_summary(out, "python -m benchmarks " + shlex.join(argv))
    print(f"wrote {summary}")
    return 0
