"""Numbers that describe an attention map A [..., L_query, L_key] whose rows are distributions.

- ``row_entropy``: entropy of each attending row, divided by log(L_key): 1 = uniform, 0 = one-hot.
- ``row_gini``: Gini coefficient of each row's weights: 0 = uniform, (n - 1) / n = one-hot.
- ``pattern_strengths``: four shares of attention mass in [0, 1]:
  - ``diagonal``: mass within ``band`` positions of the diagonal (local attention);
  - ``horizontal``: each row's largest single weight outside the band, averaged (attending to specific points);
  - ``vertical``: mass on the top ``top_share`` of keys by the attention they receive (positions everyone attends to);
  - ``stripe``: mass at the single lag i - j outside the band that collects most (periodic, striped maps).
- ``recency``: mass on the last ``last`` keys (the most recent points of a history window).
- ``stripe_periodicity``: smooth, periodic stripes (a weight that rises and falls with the lag i - j,
  as attention to the same phase of a cycle gives) put little mass on any single lag, so they are
  measured on the lag profile instead — the mean weight at each lag, detrended — as the period of
  its strongest Fourier component (periods ``min_period`` .. half the lags) and that component's
  share of the profile's variance (0: no periodic structure, 1: a pure cosine in the lag).

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


def recency(attention: np.ndarray, last: int = 10) -> float:
    """Share of the mass of one map [Lq, Lk] (or a stack of them) on the last ``last`` keys."""
    a = np.asarray(attention, dtype=np.float64)
    return float(a[..., -last:].sum() / a.sum())


def stripe_periodicity(attention: np.ndarray, band: int = 1, min_period: int = 4) -> tuple[float, float]:
    """(period in lags, share of the lag profile's variance at that period) of one map [L, L]."""
    a = np.asarray(attention, dtype=np.float64)
    mass, lag = _lag_mass(a, band=-1)  # band -1: every lag counts
    profile = mass / np.bincount(lag.ravel() + a.shape[1] - 1)  # [Lq + Lk - 1] mean weight per lag
    keys = a.shape[1]
    lags = np.arange(len(profile)) - (keys - 1)
    inside = np.abs(lags) <= band
    profile[inside] = profile[~inside].mean()  # the diagonal band is local attention, not a stripe
    profile = profile - np.polyval(np.polyfit(lags, profile, 1), lags)  # no level, no linear trend
    power = np.abs(np.fft.rfft(profile)) ** 2
    periods = len(profile) / np.maximum(np.arange(len(power)), 1)
    allowed = (np.arange(len(power)) > 0) & (periods >= min_period) & (periods <= len(profile) / 2)
    total = power[1:].sum()
    if not allowed.any() or np.abs(profile).max() <= 1e-9 * a.mean():  # flat up to rounding: no stripes
        return float("nan"), 0.0
    best = np.flatnonzero(allowed)[np.argmax(power[allowed])]
    return float(periods[best]), float(power[best] / total)


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
