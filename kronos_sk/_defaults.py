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
