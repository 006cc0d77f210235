"""The Kronos benchmark suite: the paper's tasks on real markets, against the baselines.

Run with ``python -m benchmarks TASK --config benchmarks/configs/NAME.toml``; see
`benchmarks.suite.cli` for the options, `benchmarks.suite.config` for the configuration
files and the task modules (`price`, `volatility`, `generation`, `investment`) for what
each computes.
"""
