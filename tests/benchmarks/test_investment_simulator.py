"""The investment simulator against a 3-asset, 3-day example computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmarks.suite.investment import simulate

DATES = pd.to_datetime(["2016-01-04", "2016-01-05", "2016-01-06"])


def example():
    """Top 1 of A, B, C; turnover cap 0.5; 10 bps of traded weight.

    Day 1: A is bought outright (no cap on the first build): weights (1, 0, 0), traded 1,
    cost 0.001, gross 0.10, benchmark 0.
    Day 2: the book is still (1, 0, 0) after the drift; the target B needs turnover
    0.5 * (1 + 1) = 1 > 0.5, so half the trade is done: (0.5, 0.5, 0), traded 1, cost 0.001,
    gross 0.5 * 0.2 = 0.10, benchmark 0.2 / 3.
    Day 3: drifted book (0.5 / 1.1, 0.5 * 1.2 / 1.1, 0) = (5/11, 6/11, 0); the target B needs
    turnover 5/11 <= 0.5, so it is reached: (0, 1, 0), traded 10/11, cost 0.001 * 10/11,
    gross 0.10, benchmark (-0.1 + 0.1 + 0.3) / 3 = 0.1.
    """
    signals = pd.DataFrame([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 3.0, 2.0]],
                           index=DATES, columns=["A", "B", "C"])
    returns = pd.DataFrame([[0.1, 0.0, -0.1], [0.0, 0.2, 0.0], [-0.1, 0.1, 0.3]],
                           index=DATES, columns=["A", "B", "C"])
    return simulate(signals, returns, top_k=1, max_turnover=0.5, cost_bps=10)


def test_weights_turnover_and_costs():
    simulation = example()
    np.testing.assert_allclose(simulation.weights.to_numpy(),
                               [[1, 0, 0], [0.5, 0.5, 0], [0, 1, 0]], atol=1e-12)
    periods = simulation.periods
    np.testing.assert_allclose(periods["turnover"], [0.5, 0.5, 5 / 11])
    np.testing.assert_allclose(periods["cost"], [0.001, 0.001, 0.001 * 10 / 11])
    np.testing.assert_allclose(periods["portfolio"],
                               [0.099, 0.099, 0.1 - 0.001 * 10 / 11])
    np.testing.assert_allclose(periods["benchmark"], [0.0, 0.2 / 3, 0.1])
    np.testing.assert_allclose(periods["excess"],
                               [0.099, 0.099 - 0.2 / 3, -0.001 * 10 / 11])


def test_annualized_scores():
    excess = np.array([0.099, 0.099 - 0.2 / 3, -0.001 * 10 / 11])
    scores = example().scores(periods_per_year=252)
    assert scores["ann_excess"] == pytest.approx(excess.mean() * 252)
    assert scores["information_ratio"] == pytest.approx(
        excess.mean() / excess.std(ddof=1) * np.sqrt(252))
    assert scores["total_cost"] == pytest.approx(0.002 + 0.001 * 10 / 11)


def test_missing_signal_leaves_the_universe():
    signals = pd.DataFrame([[np.nan, 1.0, 2.0]], index=DATES[:1], columns=["A", "B", "C"])
    returns = pd.DataFrame([[0.5, 0.1, 0.3]], index=DATES[:1], columns=["A", "B", "C"])
    simulation = simulate(signals, returns, top_k=1, max_turnover=1.0, cost_bps=0)
    np.testing.assert_allclose(simulation.weights.to_numpy(), [[0, 0, 1]])
    assert simulation.periods["benchmark"].iloc[0] == pytest.approx(0.2)
