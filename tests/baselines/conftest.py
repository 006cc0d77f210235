"""One torch thread per test here: the baselines' tests share the CPU with other jobs."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread_here(one_torch_thread):
    """Every baseline test runs on one torch thread (tests/conftest.py)."""
