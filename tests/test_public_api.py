import subprocess
import sys

import pytest

import kronos_sk


def test_every_public_name_imports_from_the_package():
    from kronos_sk import (KLineTokenizer, KronosForecaster, KronosPipeline,  # noqa: F401
                           PathCalibration, __version__, load_predictor, load_tokenizer,
                           save_checkpoint)
    for name in kronos_sk.__all__:
        assert getattr(kronos_sk, name) is not None
    assert set(kronos_sk.__all__) <= set(dir(kronos_sk))
    assert kronos_sk.KronosForecaster.__module__ == "kronos_sk.estimators.forecaster"


def test_a_missing_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'KronosForcaster'"):
        kronos_sk.KronosForcaster  # noqa: B018


def test_importing_the_package_loads_no_heavy_dependency():
    code = ("import sys, kronos_sk; heavy = [m for m in ('torch', 'sktime', 'pandas') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
