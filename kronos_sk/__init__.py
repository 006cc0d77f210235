"""kronos-sk: Kronos, the foundation model for financial candlesticks, for scikit-learn and
sktime.

The public surface::

    from kronos_sk import (KronosForecaster, KLineTokenizer, KronosPipeline, PathCalibration,
                           LookAheadWarning, load_tokenizer, load_predictor, save_checkpoint,
                           __version__)

- `KronosForecaster`: the sktime forecaster (point, quantile, interval, variance, skpro
  distribution, sampled paths, volatility).
- `KLineTokenizer`: the scikit-learn transformer from candles to coarse/fine token ids.
- `KronosPipeline`: the forecasting procedure from candles to every sampled path.
- `PathCalibration`: conformal spread calibration of sampled paths.
- `LookAheadWarning`: a forecast origin inside the data a checkpoint was trained on.
- `load_tokenizer`, `load_predictor`, `save_checkpoint`: checkpoints in the released layout.

Names are imported on first use, so ``import kronos_sk`` stays cheap (torch, sktime and
pandas load only with the names that need them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kronos_sk._version import __version__

_HOMES = {
    "KronosForecaster": "kronos_sk.estimators.forecaster",
    "KLineTokenizer": "kronos_sk.estimators.tokenizer",
    "KronosPipeline": "kronos_sk.pipeline",
    "PathCalibration": "kronos_sk.calibration",
    "LookAheadWarning": "kronos_sk.lookahead",
    "load_tokenizer": "kronos_sk.checkpoints",
    "load_predictor": "kronos_sk.checkpoints",
    "save_checkpoint": "kronos_sk.checkpoints",
}

__all__ = ["KLineTokenizer", "KronosForecaster", "KronosPipeline", "LookAheadWarning",
           "PathCalibration", "__version__", "load_predictor", "load_tokenizer",
           "save_checkpoint"]

if TYPE_CHECKING:
    from kronos_sk.calibration import PathCalibration
    from kronos_sk.checkpoints import load_predictor, load_tokenizer, save_checkpoint
    from kronos_sk.estimators.forecaster import KronosForecaster
    from kronos_sk.estimators.tokenizer import KLineTokenizer
    from kronos_sk.lookahead import LookAheadWarning
    from kronos_sk.pipeline import KronosPipeline


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'kronos_sk' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
