"""The synthetic load data set: reproducible, AR(1) noise as specified, and a calibrated oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm

from anyquantile.dataset.synthetic import SyntheticLoad, SyntheticLoadSpec
from anyquantile.dataset.windows import WindowShape, split_windows


@pytest.fixture(scope="module")
def default() -> SyntheticLoad:
    return SyntheticLoad()  # the default spec: 6 series, 3 years of hours


@pytest.fixture(scope="module")
def small() -> SyntheticLoad:
    return SyntheticLoad(SyntheticLoadSpec(num_series=3, num_hours=2000, seed=4))


def test_default_spec_shape(default):
    spec = SyntheticLoadSpec()
    panel = default.panel
    assert panel.values.shape == (spec.num_series, spec.num_hours)
    assert panel.values.dtype == np.float32
    assert panel.series_ids == tuple(f"synthetic_{s:02d}" for s in range(spec.num_series))
    assert panel.timestamps[0] == np.datetime64("2015-01-01T00:00")
    assert (panel.timestamps[1:] - panel.timestamps[:-1] == np.timedelta64(1, "h")).all()
    missing = ~np.isfinite(panel.values)
    assert missing.any(axis=1).all()  # every series has gaps
    assert missing.sum(axis=1).max() <= spec.gaps_per_series * 72
    observed = panel.values[~missing]
    assert (observed > 0).all()  # loads are positive
    assert ((0.85 <= default.phi) & (default.phi <= 0.97)).all()
    assert (default.spread > 0).all()


def test_same_seed_same_panel(small):
    again = SyntheticLoad(SyntheticLoadSpec(num_series=3, num_hours=2000, seed=4))
    np.testing.assert_array_equal(again.panel.values, small.panel.values)  # NaN at the same places too
    np.testing.assert_array_equal(again.phi, small.phi)
    assert again.panel.timestamps.equals(small.panel.timestamps)


def test_different_seed_different_panel(small):
    other = SyntheticLoad(SyntheticLoadSpec(num_series=3, num_hours=2000, seed=5))
    assert other.panel.values.shape == small.panel.values.shape
    both = np.isfinite(other.panel.values) & np.isfinite(small.panel.values)
    assert not np.allclose(other.panel.values[both], small.panel.values[both])
    assert not np.array_equal(other.phi, small.phi)


def test_no_gaps_when_asked():
    load = SyntheticLoad(SyntheticLoadSpec(num_series=2, num_hours=500, gaps_per_series=0))
    assert np.isfinite(load.panel.values).all()


def test_invalid_spec():
    with pytest.raises(ValueError, match="num_series and num_hours must be >= 1 and gaps_per_series >= 0, got 0, "):
        SyntheticLoadSpec(num_series=0)
    with pytest.raises(ValueError, match="gaps_per_series >= 0, got 6, 26280, -1"):
        SyntheticLoadSpec(gaps_per_series=-1)
    with pytest.raises(ValueError, match="start='someday' is not a date"):
        SyntheticLoadSpec(start="someday")


def test_noise_is_ar1_with_phi(default):
    noise = (default.panel.values.astype(np.float64) - default.mean) / default.spread  # [S, L]
    for s in range(default.panel.num_series):
        previous, current = noise[s, :-1], noise[s, 1:]
        pairs = np.isfinite(previous) & np.isfinite(current)
        assert pairs.sum() > 0.99 * len(previous)
        x, y = previous[pairs], current[pairs]
        phi_hat = (x * y).sum() / (x * x).sum()  # least squares of y = phi * x
        assert abs(phi_hat - default.phi[s]) < 0.01, (s, phi_hat, default.phi[s])
        # unit marginal variance and the innovation scale sqrt(1 - phi^2)
        assert abs(np.nanvar(noise[s]) - 1.0) < 0.1
        residual = y - default.phi[s] * x
        assert abs(residual.std() - np.sqrt(1 - default.phi[s] ** 2)) < 0.02


def test_oracle_central_90_interval_covers_90_percent(default):
    panel = default.panel
    shape = WindowShape(history_length=24, horizon=24)
    windows = split_windows(panel, shape, 0, panel.num_hours, step=1, min_observed_history=0.5)
    assert len(windows) > 100_000
    levels = torch.tensor([0.05, 0.95], dtype=torch.float64)
    quantiles = default.oracle_quantiles(windows.series, windows.origin, shape.horizon, levels).numpy()
    assert quantiles.shape == (len(windows), shape.horizon, 2)
    hours = windows.origin[:, None] + np.arange(shape.horizon)
    target = panel.values[windows.series[:, None], hours]
    observed = np.isfinite(target)
    inside = (target >= quantiles[..., 0]) & (target <= quantiles[..., 1])
    coverage = inside[observed].mean()
    assert abs(coverage - 0.9) <= 0.01, coverage
    # each tail alone holds about 5 %
    below = (target < quantiles[..., 0])[observed].mean()
    assert abs(below - 0.05) <= 0.01, below
    # at the first step of the horizon too (the least smoothed case)
    first_step = inside[:, 0][observed[:, 0]].mean()
    assert abs(first_step - 0.9) <= 0.01, first_step


def test_oracle_median_by_hand(default):
    panel = default.panel
    values = panel.values
    s, horizon = 3, 6
    observed = np.isfinite(values[s])
    # an origin whose last history hour is observed (and not the first hour)
    origin = int(np.flatnonzero(observed[1000:])[0]) + 1001
    assert observed[origin - 1]
    levels = torch.tensor([0.25, 0.5, 0.75])
    quantiles = default.oracle_quantiles(np.array([s]), np.array([origin]), horizon, levels).numpy()[0]  # [H, 3]
    mean, std = default.oracle_mean_std(np.array([s]), np.array([origin]), horizon)
    phi = default.phi[s]
    e = (float(values[s, origin - 1]) - default.mean[s, origin - 1]) / default.spread[s, origin - 1]
    for h in range(horizon):
        t = origin + h
        expected_median = default.mean[s, t] + default.spread[s, t] * phi ** (h + 1) * e
        expected_std = default.spread[s, t] * np.sqrt(1 - phi ** (2 * (h + 1)))
        assert quantiles[h, 1] == pytest.approx(expected_median, rel=1e-6)
        assert mean[0, h] == pytest.approx(expected_median, rel=1e-9)
        assert std[0, h] == pytest.approx(expected_std, rel=1e-9)
        z = norm.ppf(0.75)
        assert quantiles[h, 2] == pytest.approx(expected_median + z * expected_std, rel=1e-6)
        assert quantiles[h, 0] == pytest.approx(expected_median - z * expected_std, rel=1e-6)


def test_oracle_after_a_gap_uses_the_last_observed_hour(default):
    panel = default.panel
    s = 0
    missing = np.flatnonzero(~np.isfinite(panel.values[s]))
    assert len(missing) > 0
    gap_start = int(missing[0])
    gap_end = gap_start + int(np.argmax(np.isfinite(panel.values[s, gap_start:])))  # first observed after
    origin = gap_end  # the history ends in the gap
    tau = gap_start - 1  # last observed hour before the origin
    assert np.isfinite(panel.values[s, tau]) and not np.isfinite(panel.values[s, origin - 1])
    mean, std = default.oracle_mean_std(np.array([s]), np.array([origin]), 3)
    phi = default.phi[s]
    e = (float(panel.values[s, tau]) - default.mean[s, tau]) / default.spread[s, tau]
    for h in range(3):
        k = origin + h - tau
        t = origin + h
        assert mean[0, h] == pytest.approx(default.mean[s, t] + default.spread[s, t] * phi**k * e, rel=1e-9)
        assert std[0, h] == pytest.approx(default.spread[s, t] * np.sqrt(1 - phi ** (2 * k)), rel=1e-9)


def test_oracle_uses_only_the_past(small):
    """Changing the values at and after the origin leaves the oracle's answer unchanged."""
    series, origins = np.array([0, 1, 2]), np.array([500, 777, 1500])
    levels = torch.tensor([0.1, 0.5, 0.9])
    before = small.oracle_quantiles(series, origins, 12, levels)
    original = small.panel.values.copy()
    try:
        for s, t in zip(series, origins):
            small.panel.values[s, t:] = 1e9
        after = small.oracle_quantiles(series, origins, 12, levels)
    finally:
        small.panel.values[:] = original
    torch.testing.assert_close(after, before, rtol=0, atol=0)


def test_oracle_refuses_a_window_without_past():
    load = SyntheticLoad(SyntheticLoadSpec(num_series=1, num_hours=100, gaps_per_series=0))
    load.panel.values[0, :10] = np.nan
    with pytest.raises(ValueError, match="no observation before"):
        load.oracle_mean_std(np.array([0]), np.array([5]), 2)
