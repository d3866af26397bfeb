"""analysis/attention_metrics.py on hand-made maps with known values."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.attention_metrics import pattern_strengths, recency, row_entropy, row_gini, stripe_periodicity

L = 10


def uniform() -> np.ndarray:
    return np.full((L, L), 1 / L)


def diagonal() -> np.ndarray:
    return np.eye(L)


def column(c: int = 5) -> np.ndarray:
    a = np.zeros((L, L))
    a[:, c] = 1.0
    return a


def striped(lag: int = 3) -> np.ndarray:
    """Row i attends to i - lag (rows before the lag to themselves): a stripe parallel to the diagonal."""
    a = np.zeros((L, L))
    for i in range(L):
        a[i, i - lag if i >= lag else i] = 1.0
    return a


def test_entropy_and_gini_of_uniform_one_hot_and_in_between():
    np.testing.assert_allclose(row_entropy(uniform()), 1.0)
    np.testing.assert_allclose(row_gini(uniform()), 0.0, atol=1e-12)
    np.testing.assert_allclose(row_entropy(diagonal()), 0.0)
    np.testing.assert_allclose(row_gini(column()), (L - 1) / L)
    half = np.zeros((1, 4))
    half[0, :2] = 0.5  # two of four keys: entropy log 2 / log 4 = 0.5; Gini (2*3-5)*0.5 + (2*4-5)*0.5 over 4 = 0.5
    assert row_entropy(half)[0] == pytest.approx(0.5)
    assert row_gini(half)[0] == pytest.approx(0.5)
    batch = np.stack([uniform(), diagonal()])  # [2, L, L]: works over leading axes
    assert row_entropy(batch).shape == (2, L) and row_entropy(batch)[1].max() == 0


def test_pattern_strengths_by_hand():
    # uniform: 28 of the 100 cells lie within 1 of the diagonal; the fullest lag outside the band is
    # +-2 (8 cells of 0.1 each, of a total mass of 10)
    assert pattern_strengths(uniform()) == pytest.approx(
        {"diagonal": 28 / 100, "horizontal": 1 / L, "vertical": 1 / L, "stripe": 8 / 100}
    )
    assert pattern_strengths(diagonal()) == pytest.approx(
        {"diagonal": 1.0, "horizontal": 0.0, "vertical": 0.1, "stripe": 0.0}
    )
    # rows 4, 5, 6 reach column 5 within the band; the other 7 rows attend outside it, each at its own lag
    assert pattern_strengths(column()) == pytest.approx(
        {"diagonal": 0.3, "horizontal": 0.7, "vertical": 1.0, "stripe": 0.1}
    )
    # 7 rows at lag 3; column 0 receives from rows 0 and 3
    assert pattern_strengths(striped()) == pytest.approx(
        {"diagonal": 0.3, "horizontal": 0.7, "vertical": 0.2, "stripe": 0.7}
    )


def test_each_detector_ranks_its_own_pattern_first():
    maps = {"diagonal": diagonal(), "column": column(), "striped": striped(), "uniform": uniform()}
    scores = {name: pattern_strengths(a) for name, a in maps.items()}
    best = {
        pattern: max(scores, key=lambda name: scores[name][pattern]) for pattern in ("diagonal", "vertical", "stripe")
    }
    assert best == {"diagonal": "diagonal", "vertical": "column", "stripe": "striped"}
    with pytest.raises(ValueError, match="one map"):
        pattern_strengths(np.stack([uniform(), uniform()]))


def test_recency_by_hand():
    np.testing.assert_allclose(recency(uniform(), last=2), 0.2)
    np.testing.assert_allclose(recency(column(L - 1), last=1), 1.0)
    np.testing.assert_allclose(recency(column(0), last=3), 0.0)


def test_stripe_periodicity_finds_the_period_of_smooth_stripes():
    n = 96
    lag = np.arange(n)[:, None] - np.arange(n)[None, :]
    striped_map = 1 + 0.8 * np.cos(2 * np.pi * lag / 12)  # attention to the same phase of a 12-step cycle
    striped_map /= striped_map.sum(axis=1, keepdims=True)
    period, share = stripe_periodicity(striped_map)
    assert period == pytest.approx(12, rel=0.05) and share > 0.8
    _, uniform_share = stripe_periodicity(np.full((n, n), 1 / n))
    assert uniform_share == 0.0
    recent = np.tile(np.linspace(0.5, 1.5, n), (n, 1))  # more weight on later keys, no cycle
    recent /= recent.sum(axis=1, keepdims=True)
    assert stripe_periodicity(recent)[1] < 0.5
