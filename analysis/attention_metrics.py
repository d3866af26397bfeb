"""Numbers that describe an attention map A [..., L_query, L_key] whose rows are distributions.

- ``row_entropy``: entropy of each attending row, divided by log(L_key): 1 = uniform, 0 = one-hot.
- ``row_gini``: Gini coefficient of each row's weights: 0 = uniform, (n - 1) / n = one-hot.
- ``pattern_strengths``: four shares of attention mass in [0, 1]:
  - ``diagonal``: mass within ``band`` positions of the diagonal (local attention);
  - ``horizontal``: each row's largest single weight outside the band, averaged (attending to specific points);
  - ``vertical``: mass on the top ``top_share`` of keys by the attention they receive (positions everyone attends to);
  - ``stripe``: mass at the single lag i - j outside the band that collects most (periodic, striped maps).
- ``dominant_lag``: that lag i - j (positive: attending to the past).
- ``recency``: mass on the last ``last`` keys (the most recent points of a history window).

For a map of one window with rows i (attending) and columns j (attended), as drawn in the heat maps.
"""
from __future__ import annotations

import math

import numpy as np


def row_entropy(attention: np.ndarray) -> np.ndarray:
    """[..., Lq, Lk] -> [..., Lq] normalised entropies (0 log 0 = 0)."""
    p = np.asarray(attention, dtype=np.float64)
    terms = np.where(p > 0, -p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return terms.sum(axis=-1) / math.log(p.shape[-1])


def row_gini(attention: np.ndarray) -> np.ndarray:
    """[..., Lq, Lk] -> [..., Lq]: G = sum_i (2i - n - 1) p_(i) / (n sum p), p sorted ascending, i = 1..n."""
    p = np.sort(np.asarray(attention, dtype=np.float64), axis=-1)
    n = p.shape[-1]
    rank = np.arange(1, n + 1)
    return (p * (2 * rank - n - 1)).sum(axis=-1) / (n * p.sum(axis=-1))


def _lag_mass(a: np.ndarray, band: int) -> tuple[np.ndarray, np.ndarray]:
    """Mass per lag i - j outside the band [Lq + Lk - 1] (index lag + Lk - 1), and the lag matrix [Lq, Lk]."""
    rows, keys = a.shape
    lag = np.arange(rows)[:, None] - np.arange(keys)[None, :]
    local = np.abs(lag) <= band
    return np.bincount((lag + keys - 1)[~local], weights=a[~local], minlength=rows + keys - 1), lag


def dominant_lag(attention: np.ndarray, band: int = 1) -> int:
    """The lag i - j outside the band that collects most mass in one map [Lq, Lk]."""
    a = np.asarray(attention, dtype=np.float64)
    mass, _ = _lag_mass(a, band)
    return int(np.argmax(mass)) - (a.shape[1] - 1)


def recency(attention: np.ndarray, last: int = 10) -> float:
    """Share of the mass of one map [Lq, Lk] (or a stack of them) on the last ``last`` keys."""
    a = np.asarray(attention, dtype=np.float64)
    return float(a[..., -last:].sum() / a.sum())


def pattern_strengths(attention: np.ndarray, band: int = 1, top_share: float = 0.05) -> dict[str, float]:
    """The four pattern shares of one map [Lq, Lk] (see the module docstring)."""
    a = np.asarray(attention, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"expected one map [L_query, L_key], got shape {a.shape}")
    keys = a.shape[1]
    lag_mass, lag = _lag_mass(a, band)  # lag [Lq, Lk], i - j
    local = np.abs(lag) <= band
    total = a.sum()
    outside = np.where(local, 0.0, a)
    received = a.sum(axis=0)  # [Lk]
    top = max(1, math.ceil(top_share * keys))
    return {
        "diagonal": float(a[local].sum() / total),
        "horizontal": float(outside.max(axis=1).sum() / total),
        "vertical": float(np.sort(received)[::-1][:top].sum() / total),
        "stripe": float(lag_mass.max() / total) if lag_mass.size else 0.0,
    }
