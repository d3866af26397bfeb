"""Seeded generators of series with known, contrasting character, for the attention-map study.

Nine processes in four families (``GENERATORS``; every parameter is a documented default of its
function and can be changed through ``generate(name, length, seed, **params)``):

- stochastic / volatile: ``ar1_student_t``, ``garch``, ``jump_diffusion``;
- non-stationary / structural: ``regime_switching``, ``trend_breaks``, ``random_walk``;
- periodic: ``sinusoid_outliers``, ``multi_seasonal``;
- long memory: ``pink_noise`` (1/f).

Each returns a :class:`GeneratedSeries`: the values, the hidden state the tests and the study read
(jump times, regimes, break points, outliers, volatility), and, where the one-step conditional
distribution is known (AR(1), GARCH(1,1), random walk), ``oracle_quantiles(levels)``: the q-quantile
of y_t given everything before t, [L, Q] (NaN at t = 0).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import stats


@dataclass
class GeneratedSeries:
    name: str
    values: np.ndarray  # [L] float64
    state: dict[str, np.ndarray] = field(default_factory=dict)  # hidden state, [L] each
    oracle: Callable[[np.ndarray], np.ndarray] | None = None  # levels [Q] -> one-step quantiles [L, Q]

    def fingerprint(self) -> str:
        """A short hash of the values: the same series, the same fingerprint (keys the study's saved results)."""
        return hashlib.sha1(np.ascontiguousarray(self.values).tobytes()).hexdigest()[:16]

    def oracle_quantiles(self, levels) -> np.ndarray:
        if self.oracle is None:
            raise ValueError(f"{self.name} has no known one-step conditional distribution")
        return self.oracle(np.asarray(levels, dtype=np.float64))


def _one_step(centre: np.ndarray, scale: np.ndarray, ppf: Callable[[np.ndarray], np.ndarray]):
    """Oracle of y_t = centre_t + scale_t * e_t (centre, scale known before t; e_t with quantile function ``ppf``)."""

    def quantiles(levels: np.ndarray) -> np.ndarray:
        result = centre[:, None] + scale[:, None] * ppf(levels)[None, :]  # [L, Q]
        result[0] = np.nan  # nothing is known before the first value
        return result

    return quantiles


def ar1_student_t(
    length: int, rng: np.random.Generator, phi: float = 0.8, scale: float = 1.0, dof: float = 3.0
) -> GeneratedSeries:
    """y_t = phi y_(t-1) + scale * e_t, e_t ~ Student-t(dof): heavy-tailed shocks around a mean-reverting level."""
    shocks = scale * rng.standard_t(dof, size=length)
    values = np.empty(length)
    values[0] = shocks[0]
    for t in range(1, length):
        values[t] = phi * values[t - 1] + shocks[t]
    centre = np.concatenate([[0.0], phi * values[:-1]])
    return GeneratedSeries(
        "ar1_student_t",
        values,
        {"shock": shocks},
        _one_step(centre, np.full(length, scale), lambda q: stats.t.ppf(q, dof)),
    )


def garch(
    length: int, rng: np.random.Generator, omega: float = 0.05, alpha: float = 0.1, beta: float = 0.85
) -> GeneratedSeries:
    """GARCH(1,1) returns: r_t = sigma_t z_t, sigma_t^2 = omega + alpha r_(t-1)^2 + beta sigma_(t-1)^2, z_t ~ N(0, 1).
    Calm and turbulent periods alternate (volatility clustering); sigma_t is known one step ahead."""
    if alpha + beta >= 1:
        raise ValueError(f"alpha + beta must be < 1 for a stationary GARCH, got {alpha + beta}")
    z = rng.standard_normal(length)
    variance = np.empty(length)
    values = np.empty(length)
    variance[0] = omega / (1 - alpha - beta)  # the unconditional variance
    values[0] = np.sqrt(variance[0]) * z[0]
    for t in range(1, length):
        variance[t] = omega + alpha * values[t - 1] ** 2 + beta * variance[t - 1]
        values[t] = np.sqrt(variance[t]) * z[t]
    sigma = np.sqrt(variance)
    return GeneratedSeries("garch", values, {"volatility": sigma}, _one_step(np.zeros(length), sigma, stats.norm.ppf))


def jump_diffusion(
    length: int,
    rng: np.random.Generator,
    drift: float = 0.0,
    volatility: float = 0.5,
    jump_probability: float = 0.02,
    jump_scale: float = 5.0,
) -> GeneratedSeries:
    """Cumulated increments drift + volatility * N(0, 1), plus with probability ``jump_probability`` a jump
    N(0, jump_scale^2)."""
    jumps = rng.random(length) < jump_probability
    increments = drift + volatility * rng.standard_normal(length) + jumps * jump_scale * rng.standard_normal(length)
    return GeneratedSeries("jump_diffusion", np.cumsum(increments), {"jump": jumps.astype(np.float64)})


def regime_switching(
    length: int,
    rng: np.random.Generator,
    means: tuple[float, float] = (0.0, 5.0),
    stay_probability: float = 0.98,
    noise: float = 1.0,
) -> GeneratedSeries:
    """A two-state Markov chain (each step stays with ``stay_probability``) switching the mean; N(0, noise^2)
    around it."""
    regime = np.empty(length, dtype=np.int64)
    regime[0] = rng.integers(2)
    switches = rng.random(length) > stay_probability
    for t in range(1, length):
        regime[t] = 1 - regime[t - 1] if switches[t] else regime[t - 1]
    values = np.asarray(means)[regime] + noise * rng.standard_normal(length)
    return GeneratedSeries("regime_switching", values, {"regime": regime.astype(np.float64)})


def trend_breaks(
    length: int,
    rng: np.random.Generator,
    break_probability: float = 0.005,
    slope_scale: float = 0.1,
    noise: float = 1.0,
) -> GeneratedSeries:
    """A piecewise-linear trend whose slope is redrawn N(0, slope_scale^2) at breaks (each step with
    ``break_probability``), continuous at the breaks, plus N(0, noise^2)."""
    breaks = rng.random(length) < break_probability
    breaks[0] = True
    segment = np.cumsum(breaks) - 1
    slopes = slope_scale * rng.standard_normal(segment[-1] + 1)
    trend = np.cumsum(slopes[segment])
    return GeneratedSeries(
        "trend_breaks",
        trend + noise * rng.standard_normal(length),
        {"break": breaks.astype(np.float64), "slope": slopes[segment]},
    )


def random_walk(length: int, rng: np.random.Generator, step: float = 1.0) -> GeneratedSeries:
    """y_t = y_(t-1) + step * N(0, 1): the best forecast of the next value is the last one."""
    values = np.cumsum(step * rng.standard_normal(length))
    centre = np.concatenate([[0.0], values[:-1]])
    return GeneratedSeries("random_walk", values, {}, _one_step(centre, np.full(length, step), stats.norm.ppf))


def sinusoid_outliers(
    length: int,
    rng: np.random.Generator,
    period: float = 24.0,
    amplitude: float = 3.0,
    slope: float = 0.01,
    noise: float = 0.5,
    outlier_probability: float = 0.01,
    outlier_size: float = 8.0,
) -> GeneratedSeries:
    """amplitude * sin(2 pi t / period) + slope * t + N(0, noise^2), and sparse outliers of +-outlier_size."""
    t = np.arange(length)
    outliers = rng.random(length) < outlier_probability
    signs = rng.choice([-1.0, 1.0], size=length)
    values = amplitude * np.sin(2 * np.pi * t / period) + slope * t + noise * rng.standard_normal(length)
    return GeneratedSeries(
        "sinusoid_outliers", values + outliers * signs * outlier_size, {"outlier": outliers.astype(np.float64)}
    )


def multi_seasonal(
    length: int,
    rng: np.random.Generator,
    periods: tuple[float, ...] = (24.0, 168.0, 12.0),
    amplitudes: tuple[float, ...] = (3.0, 2.0, 1.0),
    noise: float = 0.5,
) -> GeneratedSeries:
    """A sum of sinusoids of several periods (daily, weekly, half-daily by default) with random phases, plus noise."""
    if len(periods) != len(amplitudes):
        raise ValueError("give one amplitude per period")
    t = np.arange(length)
    phases = rng.uniform(0, 2 * np.pi, size=len(periods))
    values = sum(a * np.sin(2 * np.pi * t / p + phase) for p, a, phase in zip(periods, amplitudes, phases))
    return GeneratedSeries("multi_seasonal", values + noise * rng.standard_normal(length))


def pink_noise(length: int, rng: np.random.Generator, exponent: float = 1.0) -> GeneratedSeries:
    """Long-memory noise with power spectrum proportional to 1 / f^exponent (1/f by default), made by
    shaping white noise in the frequency domain; scaled to unit variance."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    frequency = np.fft.rfftfreq(length)
    frequency[0] = frequency[1]  # no infinite gain at frequency 0
    values = np.fft.irfft(spectrum / frequency ** (exponent / 2), n=length)
    return GeneratedSeries("pink_noise", (values - values.mean()) / values.std())


GENERATORS: dict[str, Callable[..., GeneratedSeries]] = {
    "ar1_student_t": ar1_student_t,
    "garch": garch,
    "jump_diffusion": jump_diffusion,
    "regime_switching": regime_switching,
    "trend_breaks": trend_breaks,
    "random_walk": random_walk,
    "sinusoid_outliers": sinusoid_outliers,
    "multi_seasonal": multi_seasonal,
    "pink_noise": pink_noise,
}

# The family of each generator, and whether its process is stationary (mean-reverting, or periodic
# around a fixed level) rather than wandering or trending.
FAMILIES: dict[str, str] = {
    "ar1_student_t": "stochastic",
    "garch": "stochastic",
    "jump_diffusion": "stochastic",
    "regime_switching": "structural",
    "trend_breaks": "structural",
    "random_walk": "structural",
    "sinusoid_outliers": "periodic",
    "multi_seasonal": "periodic",
    "pink_noise": "long memory",
}
STATIONARY = frozenset({"ar1_student_t", "garch", "regime_switching", "multi_seasonal", "pink_noise"})


def generate(name: str, length: int, seed: int = 0, **params) -> GeneratedSeries:
    """The series ``name`` of ``length`` values from ``seed`` (same seed, same series), with ``params`` changed."""
    if name not in GENERATORS:
        raise ValueError(f"unknown generator '{name}'; choose one of {sorted(GENERATORS)}")
    if length < 2:
        raise ValueError(f"length must be at least 2, got {length}")
    return GENERATORS[name](length, np.random.default_rng(seed), **params)
