"""The `>>>` examples in the docstrings of kronos_sk.baselines run as written."""

import doctest
import warnings

import pytest

from kronos_sk.baselines import generators, itransformer, sktime_baselines


@pytest.mark.parametrize("module", [itransformer, generators, sktime_baselines],
                         ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
