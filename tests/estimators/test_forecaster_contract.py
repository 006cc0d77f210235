"""sktime's conformance suite on KronosForecaster (its offline `get_test_params`)."""

import warnings

from sktime.utils.estimator_checks import check_estimator

from kronos_sk.estimators import KronosForecaster


def test_sktime_check_estimator_passes_every_check():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(KronosForecaster, raise_exceptions=False)
    failed = {name: str(outcome)[:300] for name, outcome in results.items()
              if outcome != "PASSED"}
    assert len(results) > 800
    assert not failed, failed
