"""The Python examples in docs/ run as written (from the repository root)."""

import os
import re
import warnings
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "docs" / page).read_text(), re.S)


def test_user_guide_examples_run(monkeypatch):
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for block in python_blocks("user-guide.md"):
            exec(compile(block, "docs/user-guide.md", "exec"), namespace)
    assert namespace["paths"].shape[0] == 50 * 12
    assert namespace["ids"].shape == (len(namespace["candles"]), 2)
    assert 0 <= namespace["accuracy"] <= 1 and namespace["folds"].shape == (3,)
    assert len(namespace["backtest"]) == 2 and namespace["backtest"].notna().all().all()
    assert namespace["parallel"]["test_PinballLoss"].equals(namespace["serial"]["test_PinballLoss"])
    assert namespace["on_dask"]["test_PinballLoss"].equals(namespace["serial"]["test_PinballLoss"])
    # The pickled forecaster holds its context, not the 140 KB of fixture weights.
    assert len(namespace["blob"]) < 100_000


def test_readme_python_example_names_real_api():
    text = (ROOT / "README.md").read_text()
    block = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    for name in re.findall(r"from (kronos_sk[\w.]*) import (\w+)", block):
        module = __import__(name[0], fromlist=[name[1]])
        assert hasattr(module, name[1]), name
    assert os.path.exists(ROOT / "tests" / "fixtures" / "kronos-compat" / "candles.csv")
