"""Baselines for the Kronos benchmarks, independent of the Kronos modules.

- `ITransformerForecaster`: a compact iTransformer trained per dataset (sktime forecaster).
- `baseline_forecasters`: the comparison set of sktime forecasters (naive, ETS, ARIMA,
  DLinear, iTransformer, GARCH).
- `GBMGenerator`, `GARCHGenerator`, `BlockBootstrapGenerator`: synthetic K-line path
  generators for the generation benchmark.

ETS, ARIMA and GARCH need the `baselines` extra: ``pip install "kronos-sk[baselines]"``.
"""

from kronos_sk.baselines.generators import (BlockBootstrapGenerator, GARCHGenerator,
                                            GBMGenerator)
from kronos_sk.baselines.itransformer import ITransformerForecaster
from kronos_sk.baselines.sktime_baselines import baseline_forecasters

__all__ = ["BlockBootstrapGenerator", "GARCHGenerator", "GBMGenerator",
           "ITransformerForecaster", "baseline_forecasters"]
