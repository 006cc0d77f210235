"""End-to-end runs of the benchmark commands on tiny configurations."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.suite.cli import REMEMBER_DATA_NOTICE, _hide_remember_data_notice, main
from benchmarks.suite.config import load_config
from benchmarks.suite.data import load_panel
from benchmarks.suite.models import Budget
from benchmarks.suite.runner import over_origins

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "kronos-compat"
FINE_TUNED = f"""
[[models]]
name = "kronos-ft"
kind = "kronos"
model = "{FIXTURES / 'model'}"
tokenizer = "{FIXTURES / 'tokenizer'}"
max_context = 128
max_steps = 2
params = {{ batch_size = 4 }}
"""
EXPECTED = {
    "price": (["mae_norm", "mse_norm"],  # ICs of the constant naive forecast are undefined
              ["price_fan_kronos.png", "price_calibration.png"]),
    "volatility": (["mae", "r2"], ["volatility_scatter.png"]),
    "generation": (["discriminative", "predictive"],
                   ["generation_returns.png", "generation_volatility.png"]),
    "investment": (["ann_return", "ann_excess", "information_ratio"],
                   ["investment_cumulative.png"]),
}


@pytest.fixture(scope="module")
def all_run(tmp_path_factory, synthetic_candles, write_config) -> Path:
    """`python -m benchmarks all` on synthetic candles (one run shared by the tests)."""
    folder = tmp_path_factory.mktemp("suite")
    data = synthetic_candles(folder / "candles.parquet")
    config = write_config(folder / "tiny.toml", data, extra=FINE_TUNED)
    out = folder / "out"
    assert main(["all", "--config", str(config), "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("task", list(EXPECTED))
def test_all_writes_every_task(all_run: Path, task: str):
    columns, plots = EXPECTED[task]
    table = pd.read_csv(all_run / f"{task}.csv", index_col=0)
    # The real windows scored against themselves have no discriminative score.
    table = table.drop(index="real (reference)", errors="ignore")
    assert np.isfinite(table[columns].to_numpy()).all()
    markdown = (all_run / f"{task}.md").read_text()
    assert "origins evaluated: 2 of 2" in markdown
    for plot in plots:
        assert (all_run / plot).stat().st_size > 0
        assert f"({plot})" in markdown
    assert f"## {task}" in (all_run / "summary.md").read_text()


def test_model_rows(all_run: Path):
    price = pd.read_csv(all_run / "price.csv", index_col=0)
    assert list(price.index) == ["kronos", "naive-last", "itransformer", "kronos-ft"]
    # Only Kronos samples paths; its coverages are fractions.
    assert price.loc["kronos", ["crps", "pinball"]].gt(0).all()
    assert price.loc["kronos", "coverage_50":"coverage_90"].between(0, 1).all()
    assert price.loc["naive-last", ["crps", "coverage_90", "price_ic"]].isna().all()
    assert np.isfinite(price.loc[["kronos", "itransformer"],
                                 ["price_ic", "return_rank_ic", "cs_rank_ic"]]).all(axis=None)
    check = pd.read_csv(all_run / "price_sktime.csv", index_col=[0, 1])
    assert list(check.index) == [("kronos", "S0"), ("kronos-ft", "S0")]
    assert check["folds"].iloc[0] >= 2 and 0 <= check["coverage_90"].iloc[0] <= 1
    assert "sktime `evaluate`" in (all_run / "price.md").read_text()
    volatility = pd.read_csv(all_run / "volatility.csv", index_col=0)
    assert list(volatility.index) == ["kronos", "kronos-ft", "garch", "naive-rv"]
    generation = pd.read_csv(all_run / "generation.csv", index_col=0)
    assert list(generation.index) == ["kronos", "kronos-ft", "gbm", "garch", "bootstrap",
                                      "real (reference)"]
    investment = pd.read_csv(all_run / "investment.csv", index_col=0)
    assert list(investment.index) == ["kronos", "naive-last", "itransformer", "kronos-ft"]


def test_two_tasks_on_real_indices(tmp_path: Path, cn_index_file: Path, write_config):
    config = write_config(tmp_path / "cn.toml", cn_index_file,
                          assets=["sh000001", "sh000300", "sz399001"])
    out = tmp_path / "out"
    assert main(["price", "volatility", "--config", str(config), "--out", str(out)]) == 0
    table = pd.read_csv(out / "price.csv", index_col=0)
    assert table["windows"].eq(6).all()
    assert np.isfinite(table.loc["kronos", ["price_ic", "mae_norm", "crps"]]).all()
    assert np.isfinite(pd.read_csv(out / "volatility.csv", index_col=0)["mae"]).all()
    assert not (out / "generation.csv").exists()
    summary = (out / "summary.md").read_text()
    assert "## price" in summary and "## volatility" in summary


def test_models_option_runs_only_the_named_models(tmp_path: Path, cn_index_file: Path,
                                                  write_config):
    config = write_config(tmp_path / "cn.toml", cn_index_file,
                          assets=["sh000001", "sh000300", "sz399001"])
    out = tmp_path / "out"
    assert main(["price", "--config", str(config), "--out", str(out),
                 "--models", "kronos", "naive-last"]) == 0
    assert list(pd.read_csv(out / "price.csv", index_col=0).index) == ["kronos", "naive-last"]
    with pytest.raises(SystemExit, match=r"--models: \['kronos-9'\] not in"):
        main(["price", "--config", str(config), "--models", "kronos-9"])


def test_origins_option_replaces_the_configs_origins(tmp_path: Path, cn_index_file: Path,
                                                     write_config, capsys):
    config = write_config(tmp_path / "cn.toml", cn_index_file,
                          assets=["sh000001", "sh000300", "sz399001"])  # 2 origins
    out = tmp_path / "out"
    assert main(["price", "--config", str(config), "--out", str(out),
                 "--models", "naive-last", "--origins", "5"]) == 0
    assert pd.read_csv(out / "price.csv", index_col=0).loc["naive-last", "windows"] == 5 * 3
    assert "origins evaluated: 5 of 5" in (out / "price.md").read_text()
    with pytest.raises(SystemExit):
        main(["price", "--config", str(config), "--origins", "0"])
    assert "--origins: expected a positive integer, got 0" in capsys.readouterr().err


def test_seeds_and_samples_options_replace_the_configs(tmp_path: Path, cn_index_file: Path,
                                                       write_config):
    config = write_config(tmp_path / "cn.toml", cn_index_file,
                          assets=["sh000001", "sh000300", "sz399001"])
    out = tmp_path / "out"
    assert main(["price", "--config", str(config), "--out", str(out), "--models", "kronos",
                 "--seeds", "3", "--samples", "2"]) == 0
    assert "samples 2, seeds [3]" in (out / "price.md").read_text()
    again = tmp_path / "again"
    assert main(["price", "--config", str(config), "--out", str(again), "--models", "kronos",
                 "--seeds", "4", "--samples", "2"]) == 0
    first, other = (pd.read_csv(d / "price.csv", index_col=0).loc["kronos"] for d in (out, again))
    assert first["crps"] != other["crps"]  # another seed draws other paths


def test_budget_stops_adding_origins(tmp_path: Path, synthetic_candles, write_config):
    config = load_config(write_config(tmp_path / "tiny.toml",
                                      synthetic_candles(tmp_path / "candles.parquet")))
    panel = load_panel(config)
    budget = Budget(None)
    seen = []

    def work(windows):
        seen.append(windows.origin)
        budget.minutes = 0.0  # spent after the first origin

    assert over_origins(config, panel, budget, work) == (1, 2)
    assert len(seen) == 1


def test_config_rejects_unknown_model_keys(tmp_path: Path, synthetic_candles,
                                           write_config):
    data = synthetic_candles(tmp_path / "candles.parquet")
    path = write_config(tmp_path / "bad.toml", data,
                        extra='[[models]]\nname = "ets"\nmax_step = 3\n')
    with pytest.raises(ValueError, match="unknown keys"):
        load_config(path)


def test_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "benchmarks", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "TASK [TASK ...]" in result.stdout
    assert "price, volatility, generation," in result.stdout


def test_remember_data_notice_is_hidden_and_others_shown():
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        _hide_remember_data_notice()
        _hide_remember_data_notice()  # a second call adds no second wrapper
        warnings.warn(REMEMBER_DATA_NOTICE + " will change", FutureWarning)
        warnings.warn("another notice", FutureWarning)
    assert [str(w.message) for w in shown] == ["another notice"]
