"""The documentation site builds with `mkdocs build --strict`.

Strict mode turns every warning into a failure: a broken link or anchor in docs/, an
unresolved cross-reference (``[text][kronos_sk.x]``) and an object that mkdocstrings cannot
find all fail this test.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_strict(tmp_path):
    site = tmp_path / "site"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--clean",
         "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    estimators = (site / "api" / "estimators" / "index.html").read_text()
    assert "KronosForecaster" in estimators
    assert "predict_quantiles" in estimators
    for page in ("index.html", "quickstart/index.html", "user-guide/index.html",
                 "released-checkpoints/index.html", "api/cli/index.html"):
        assert (site / page).is_file(), page
