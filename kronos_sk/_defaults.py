"""The defaults every face shares (estimators, pipeline, command line), each defined once.

Torch-free, so that the command line can build its parser without importing torch.
`kronos_sk.generation` and `kronos_sk.runtime` re-export them.
"""

#: Paths per series: enough for quantiles and intervals, still cheap on a CPU.
DEFAULT_N_SAMPLES = 20
#: No nucleus cut: paths sample the model's whole (temperature-scaled) distribution.
DEFAULT_TOP_P = 1.0
#: As in the reference and sktime: CUDA, then MPS, then the CPU.
DEFAULT_DEVICE = "auto"

#: Optimiser steps per trained network when an estimator trains.
DEFAULT_MAX_STEPS = 100
#: Training windows per optimiser step.
DEFAULT_BATCH_SIZE = 16
#: Peak learning rate by fit strategy: fine-tuning takes small steps so that the released
#: checkpoint keeps what it learned; a new network needs larger ones.
DEFAULT_LEARNING_RATES = {"fine-tune": 1e-4, "from-scratch": 1e-3}


def learning_rate_for(fit_strategy: str, learning_rate: float | None) -> float:
    """`learning_rate`, or the default of the fit strategy when it is None (pre-training a
    loaded checkpoint counts as fine-tuning)."""
    if learning_rate is not None:
        return learning_rate
    return DEFAULT_LEARNING_RATES.get(fit_strategy, DEFAULT_LEARNING_RATES["fine-tune"])
