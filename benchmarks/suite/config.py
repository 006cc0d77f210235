"""Benchmark configuration: a TOML file naming data, windows, origins, models and seeds.

Layout (every key but `data.files`, `windows.lookback`, `windows.horizon` and one
`[[models]]` table has a default)::

    name = "us_daily"         # default: the file's stem; output goes to results/<name>

    [data]
    files = ["us_stocks_daily_2008_2017.parquet"]  # in ../shared/data, or a path
    assets = 50               # the N assets with the most rows, or a list of names
    freq = "B"                # step of Kronos's future timestamps ("B" daily, "h" hourly)
    periods_per_year = 252    # annualisation of the investment task
    max_abs_log_return = 0.1044  # optional: skip windows with a larger one-row move

    [windows]
    lookback = 90             # context rows
    horizon = 10              # forecast rows
    history = 500             # rows given to baselines that are fitted (and GARCH); >= lookback

    [evaluation]
    start = "2016-01-01"      # the evaluation (validation) period, or last = "30D"
    origins = 20              # evenly spaced origins, or stride = 1 (every row)
    n_samples = 20            # Kronos paths per window
    seeds = [0]               # every model runs once per seed; tables average over seeds

    [price]                   # optional task settings, see each task module
    [generation]
    [investment]

    [[models]]                # one table per model
    name = "kronos-ft"        # label in the tables
    kind = "kronos"           # "kronos" or "baseline" (default)
    model = "path"            # kronos: checkpoint directories; omit for the bundled model
    tokenizer = "path"
    max_context = 512         # kronos: context window in tokens
    max_steps = 200           # kronos: > 0 fine-tunes once on the rows before the period;
                              # baselines: optimizer steps of each fit (iTransformer)
    baseline = "ets"          # baseline: name in `baseline_forecasters` (default: name)
    params = { batch_size = 16 }  # further constructor parameters
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
MODEL_KINDS = ("kronos", "baseline")


@dataclass(frozen=True)
class ModelSpec:
    """One model of a benchmark.

    Parameters
    ----------
    name : str
        Label in the result tables.
    kind : {"kronos", "baseline"}
        A `KronosForecaster` or a forecaster of `baseline_forecasters` (by `baseline`).
    baseline : str or None
        Name in `baseline_forecasters` (defaults to `name`).
    model, tokenizer : str or None
        Kronos checkpoints; None for the bundled model.
    max_context : int
        Kronos context window in tokens.
    max_steps : int
        Kronos: optimizer steps of fine-tuning on the training period (0: zero-shot).
        Trained baselines: optimizer steps of each fit.
    params : dict
        Extra constructor parameters (set with `set_params`).
    """

    name: str
    kind: str
    baseline: str | None = None
    model: str | None = None
    tokenizer: str | None = None
    max_context: int = 512
    max_steps: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def probabilistic(self) -> bool:
        """True for models that sample paths (Kronos)."""
        return self.kind == "kronos"


@dataclass(frozen=True)
class BenchmarkConfig:
    """A parsed benchmark configuration (see the module docstring for the TOML layout)."""

    name: str
    files: tuple[Path, ...]
    assets: int | tuple[str, ...]
    lookback: int
    horizon: int
    models: tuple[ModelSpec, ...]
    freq: str = "B"
    periods_per_year: int = 252
    history: int = 500
    start: str | None = None
    last: str | None = None
    origins: int | None = 20
    stride: int | None = None
    n_samples: int = 20
    seeds: tuple[int, ...] = (0,)
    max_abs_log_return: float | None = None
    price: dict[str, Any] = field(default_factory=dict)
    generation: dict[str, Any] = field(default_factory=dict)
    investment: dict[str, Any] = field(default_factory=dict)


def _resolve_file(name: str, base: Path) -> Path:
    path = Path(name).expanduser()
    if not path.is_absolute():
        path = (SHARED_DATA / path) if (SHARED_DATA / path).exists() else base / path
    if not path.is_file():
        raise FileNotFoundError(f"data file {name!r} not found (looked in {SHARED_DATA} and "
                                f"{base}); see ../shared/data/README.md")
    return path


def _model(table: dict[str, Any]) -> ModelSpec:
    table = dict(table)
    kind = table.pop("kind", "baseline")
    if kind not in MODEL_KINDS:
        raise ValueError(f"model kind must be one of {MODEL_KINDS}, got {kind!r}")
    name = table.pop("name")
    known = {"baseline", "model", "tokenizer", "max_context", "max_steps"}
    spec = {key: table.pop(key) for key in list(table) if key in known}
    params = table.pop("params", {})
    if table:
        raise ValueError(f"model {name!r}: unknown keys {sorted(table)}")
    if kind == "baseline":
        spec.setdefault("baseline", name)
    for key in ("model", "tokenizer"):  # directories relative to the repository root
        if key in spec and (REPO_ROOT / spec[key]).is_dir():
            spec[key] = str(REPO_ROOT / spec[key])
    return ModelSpec(name=name, kind=kind, params=params, **spec)


def load_config(path: str | Path) -> BenchmarkConfig:
    """Read a benchmark TOML file.

    Parameters
    ----------
    path : str or Path
        The configuration file. Relative data files are looked up in ../shared/data first,
        then next to the configuration.

    Returns
    -------
    BenchmarkConfig
    """
    path = Path(path)
    with path.open("rb") as handle:
        raw = tomllib.load(handle)
    data, windows = raw.get("data", {}), raw.get("windows", {})
    evaluation = raw.get("evaluation", {})
    files = data["files"] if isinstance(data["files"], list) else [data["files"]]
    assets = data.get("assets", 10)
    models = tuple(_model(table) for table in raw.get("models", []))
    if not models:
        raise ValueError(f"{path}: no [[models]] given")
    if len({m.name for m in models}) != len(models):
        raise ValueError(f"{path}: model names must be unique")
    lookback, horizon = int(windows["lookback"]), int(windows["horizon"])
    stride = evaluation.get("stride")
    return BenchmarkConfig(
        name=raw.get("name", path.stem),
        files=tuple(_resolve_file(f, path.parent) for f in files),
        assets=tuple(assets) if isinstance(assets, list) else int(assets),
        lookback=lookback, horizon=horizon, models=models,
        freq=data.get("freq", "B"),
        periods_per_year=int(data.get("periods_per_year", 252)),
        history=max(int(windows.get("history", 500)), lookback),
        start=evaluation.get("start"), last=evaluation.get("last"),
        origins=None if stride is not None else int(evaluation.get("origins", 20)),
        stride=None if stride is None else int(stride),
        n_samples=int(evaluation.get("n_samples", 20)),
        seeds=tuple(int(s) for s in evaluation.get("seeds", [0])),
        max_abs_log_return=data.get("max_abs_log_return"),
        price=raw.get("price", {}), generation=raw.get("generation", {}),
        investment=raw.get("investment", {}))
