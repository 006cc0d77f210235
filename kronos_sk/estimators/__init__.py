"""scikit-learn and sktime faces of Kronos."""

from kronos_sk.estimators.forecaster import KronosForecaster
from kronos_sk.estimators.tokenizer import KLineTokenizer

__all__ = ["KLineTokenizer", "KronosForecaster"]
