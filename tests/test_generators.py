"""dataset/generators.py: each generator's statistics match its definition; oracles are calibrated."""

from __future__ import annotations

import numpy as np
import pytest

from anyquantile.dataset.generators import GENERATORS, generate

L = 40_000
LEVELS = np.array([0.05, 0.25, 0.5, 0.75, 0.95])


def autocorrelation(x: np.ndarray, lag: int) -> float:
    x = x - x.mean()
    return float((x[:-lag] * x[lag:]).sum() / (x * x).sum())


def periodogram_peaks(x: np.ndarray, count: int) -> list[float]:
    """The periods of the ``count`` largest periodogram values."""
    power = np.abs(np.fft.rfft(x - x.mean())) ** 2
    frequency = np.fft.rfftfreq(len(x))
    top = np.argsort(power[1:])[::-1][:count] + 1
    return sorted(1 / frequency[top])


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_seeded_finite_and_reproducible(name):
    a, b, c = generate(name, 500, seed=1), generate(name, 500, seed=1), generate(name, 500, seed=2)
    assert a.values.shape == (500,) and np.isfinite(a.values).all()
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)


@pytest.mark.parametrize("name", ["ar1_student_t", "garch", "random_walk"])
def test_oracle_quantiles_are_calibrated(name):
    series = generate(name, L, seed=3)
    quantiles = series.oracle_quantiles(LEVELS)  # [L, Q]
    assert np.isnan(quantiles[0]).all()
    below = (series.values[1:, None] < quantiles[1:]).mean(axis=0)
    np.testing.assert_allclose(below, LEVELS, atol=0.01)  # binomial SE at L = 40,000: <= 0.0025


def test_no_oracle_where_the_distribution_is_not_known():
    with pytest.raises(ValueError, match="no known one-step"):
        generate("pink_noise", 100).oracle_quantiles(LEVELS)


def test_ar1_coefficient_recovered_by_least_squares():
    y = generate("ar1_student_t", L, seed=0, phi=0.7).values
    phi = float(y[:-1] @ y[1:] / (y[:-1] @ y[:-1]))
    assert phi == pytest.approx(0.7, abs=0.02)
    shocks = y[1:] - 0.7 * y[:-1]
    excess_kurtosis = ((shocks - shocks.mean()) ** 4).mean() / shocks.var() ** 2 - 3
    assert excess_kurtosis > 3  # Student-t(3) shocks: heavy tails (a normal gives 0)


def test_garch_volatility_clusters_while_returns_are_uncorrelated():
    series = generate("garch", L, seed=0)
    r = series.values
    assert abs(autocorrelation(r, 1)) < 0.03
    assert autocorrelation(r**2, 1) > 0.1 and autocorrelation(r**2, 5) > 0.05
    assert r.var() == pytest.approx(0.05 / (1 - 0.1 - 0.85), rel=0.15)  # the unconditional variance
    with pytest.raises(ValueError, match="stationary"):
        generate("garch", 10, alpha=0.5, beta=0.6)


def test_jump_frequency_and_diffusion_scale():
    series = generate("jump_diffusion", L, seed=0, jump_probability=0.02, volatility=0.5)
    jumps = series.state["jump"].astype(bool)
    assert jumps.mean() == pytest.approx(0.02, abs=0.004)
    increments = np.diff(series.values, prepend=0.0)
    assert increments[~jumps].std() == pytest.approx(0.5, rel=0.03)
    assert increments[jumps].std() > 4  # N(0, 25) jumps on top


def test_regime_switching_durations_and_means():
    series = generate("regime_switching", L, seed=0, stay_probability=0.98, means=(0.0, 5.0))
    regime = series.state["regime"].astype(int)
    switches = np.flatnonzero(np.diff(regime))
    assert np.diff(switches).mean() == pytest.approx(1 / 0.02, rel=0.2)  # geometric durations, mean 50
    assert series.values[regime == 0].mean() == pytest.approx(0.0, abs=0.05)
    assert series.values[regime == 1].mean() == pytest.approx(5.0, abs=0.05)


def test_trend_breaks_count_and_continuity():
    series = generate("trend_breaks", L, seed=0, break_probability=0.005, noise=0.0)
    breaks = series.state["break"].astype(bool)
    assert breaks[1:].mean() == pytest.approx(0.005, abs=0.0015)
    slope_changes = np.flatnonzero(np.abs(np.diff(np.diff(series.values))) > 1e-9) + 2
    np.testing.assert_array_equal(slope_changes, np.flatnonzero(breaks[1:]) + 1)  # the slope changes exactly at breaks
    assert np.abs(np.diff(series.values)).max() < 1.0  # continuous: no jumps at the breaks


def test_random_walk_increments():
    y = generate("random_walk", L, seed=0, step=2.0).values
    assert np.diff(y).std() == pytest.approx(2.0, rel=0.02)
    assert abs(autocorrelation(np.diff(y), 1)) < 0.03


def test_sinusoid_period_and_outlier_share():
    series = generate("sinusoid_outliers", L, seed=0, period=24.0, slope=0.0, outlier_probability=0.01)
    assert series.state["outlier"].mean() == pytest.approx(0.01, abs=0.002)
    assert periodogram_peaks(series.values, 1) == pytest.approx([24.0], rel=0.01)


def test_multi_seasonal_periodogram_peaks_at_each_period():
    series = generate("multi_seasonal", 24 * 7 * 200, seed=0, periods=(24.0, 168.0, 12.0))
    assert periodogram_peaks(series.values, 3) == pytest.approx([12.0, 24.0, 168.0], rel=0.01)


def test_pink_noise_spectrum_slope_is_minus_one():
    y = generate("pink_noise", 2**16, seed=0).values
    power = np.abs(np.fft.rfft(y)) ** 2
    frequency = np.fft.rfftfreq(len(y))
    keep = (frequency > 1e-3) & (frequency < 0.4)
    slope = np.polyfit(np.log(frequency[keep]), np.log(power[keep]), 1)[0]
    assert slope == pytest.approx(-1.0, abs=0.1)
    assert y.std() == pytest.approx(1.0) and abs(y.mean()) < 1e-9


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="unknown generator"):
        generate("brownian", 10)
    with pytest.raises(ValueError, match="at least 2"):
        generate("garch", 1)
