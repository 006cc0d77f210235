"""Command line: ``python -m benchmarks TASK [TASK ...] --config FILE [--budget-minutes N]
[--out DIR] [--models NAME ...] [--origins N]``."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from kronos_sk._sktime_notices import REMEMBER_DATA_NOTICE
from kronos_sk.cli import positive_int

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


def _hide_remember_data_notice() -> None:
    """Drop sktime's notice of a changing config default, printed for every baseline built.

    A warnings filter does not hold: sktime's horizon handling prepends a "default" filter
    for FutureWarning whenever it runs, so the notice is dropped where it is shown instead.
    """
    show = warnings.showwarning
    if getattr(show, "hides_remember_data", False):
        return

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if not str(message).startswith(REMEMBER_DATA_NOTICE):
            show(message, category, filename, lineno, file, line)

    showwarning.hides_remember_data = True
    warnings.showwarning = showwarning


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m benchmarks``."""
    parse = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Kronos benchmark suite: forecasting, volatility, generation and "
                    "investment tasks on real candles, against the baselines.")
    parse.add_argument("tasks", nargs="+", choices=[*TASKS, "all"], metavar="TASK",
                       help=f"one or more of {', '.join(TASKS)}, or all; tasks of one run share "
                            "the fine-tuned models")
    parse.add_argument("--config", required=True, type=Path, help="a TOML file, see "
                       "benchmarks/configs/")
    parse.add_argument("--budget-minutes", type=float, default=None,
                       help="stop adding origins once this much time has passed (per task)")
    parse.add_argument("--out", type=Path, default=None,
                       help="output directory (default results/<config name>)")
    parse.add_argument("--models", nargs="+", default=None, metavar="NAME",
                       help="run only these models of the config (default: all)")
    parse.add_argument("--origins", type=positive_int, default=None, metavar="N",
                       help="N evenly spaced origins over the config's period instead of its "
                            "own origins or stride: more dates tighten per-date means such "
                            "as the cross-sectional RankIC")
    parse.add_argument("--seeds", nargs="+", type=int, default=None, metavar="SEED",
                       help="run every model once per one of these seeds instead of the "
                            "config's (tables average over seeds)")
    parse.add_argument("--samples", type=positive_int, default=None, metavar="N",
                       help="N Kronos paths per window instead of the config's n_samples")
    return parse


def main(argv: Sequence[str] | None = None) -> int:
    """Run the named tasks (or all); print the tables and the path of the summary."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    _hide_remember_data_notice()
    config = load_config(args.config)
    if args.models:
        unknown = sorted(set(args.models) - {m.name for m in config.models})
        if unknown:
            raise SystemExit(f"--models: {unknown} not in {args.config}; it has "
                             f"{[m.name for m in config.models]}")
        config = dataclasses.replace(
            config, models=tuple(m for m in config.models if m.name in args.models))
    if args.origins:
        config = dataclasses.replace(config, origins=args.origins, stride=None)
    if args.seeds:
        config = dataclasses.replace(config, seeds=tuple(args.seeds))
    if args.samples:
        config = dataclasses.replace(config, n_samples=args.samples)
    out = args.out or REPO_ROOT / "results" / config.name
    panel = load_panel(config)
    tasks = list(TASKS) if "all" in args.tasks else list(dict.fromkeys(args.tasks))
    for task in tasks:
        table = TASKS[task](config, panel, out, Budget(args.budget_minutes))
        print(f"== {task}\n{table.to_string(float_format=lambda v: f'{v:.4g}')}\n")
    summary = write_summary(out, "python -m benchmarks " + shlex.join(argv))
    print(f"wrote {summary}")
    return 0
