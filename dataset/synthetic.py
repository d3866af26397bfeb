"""An embedded synthetic load data set whose conditional distribution is known exactly.

Each series s is

    y[s, t] = mean[s, t] + spread[s, t] * e[s, t],
    e[s, t] = phi[s] * e[s, t-1] + sqrt(1 - phi[s]^2) * eps[s, t],   eps ~ N(0, 1) i.i.d.,

with a deterministic load-like mean (daily double peak, weekend dip, winter high; scales from a
few hundred to tens of thousands), a deterministic spread that changes with the hour of day and
the season, and stationary AR(1) noise (e ~ N(0, 1) at every hour). Because mean and spread are
deterministic, the noise at the last observed hour tau before an origin is known exactly, and by
the Markov property

    y[s, t + h] | past  ~  N(mean[s, t+h] + spread[s, t+h] * phi^k * e[s, tau],
                             spread[s, t+h]^2 * (1 - phi^(2k))),   k = t + h - tau,

which is the oracle: the best possible quantile forecast for any window (``oracle_quantiles``).
A few gaps (NaN) are cut into the series so that the missing-value paths get exercised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy.special import ndtri

from anyquantile.dataset.panel import HourlyPanel


@dataclass
class SyntheticLoadSpec:
    """Size and seed of the synthetic data set, ``dataset.synthetic.*`` (the rest is drawn from the seed)."""

    num_series: int = 6
    start: str = "2015-01-01"
    num_hours: int = 3 * 365 * 24
    seed: int = 0
    gaps_per_series: int = 2  # blocks of 1..72 missing hours cut into each series

    def __post_init__(self) -> None:
        if self.num_series < 1 or self.num_hours < 1 or self.gaps_per_series < 0:
            raise ValueError(
                f"num_series and num_hours must be >= 1 and gaps_per_series >= 0, got {self.num_series}, "
                f"{self.num_hours}, {self.gaps_per_series}"
            )
        try:
            pd.Timestamp(self.start)
        except ValueError:
            raise ValueError(f"start={self.start!r} is not a date") from None


class SyntheticLoad:
    """Generates the series of a ``SyntheticLoadSpec`` and answers oracle quantiles for its windows."""

    def __init__(self, spec: SyntheticLoadSpec | None = None) -> None:
        self.spec = spec = spec or SyntheticLoadSpec()
        rng = np.random.default_rng(spec.seed)
        S, L = spec.num_series, spec.num_hours
        timestamps = pd.date_range(spec.start, periods=L, freq="h")
        hour = timestamps.hour.to_numpy()[None, :]  # [1, L]
        weekend = (timestamps.dayofweek.to_numpy() >= 5)[None, :]  # [1, L]
        season = np.cos(2 * np.pi * (timestamps.dayofyear.to_numpy() - 15) / 365.25)[None, :]  # +1 mid-January

        scale = np.exp(rng.uniform(np.log(300.0), np.log(60_000.0), size=(S, 1)))
        daily_amplitude = rng.uniform(0.10, 0.25, size=(S, 1))
        evening_peak = rng.uniform(17.0, 20.0, size=(S, 1))
        weekend_dip = rng.uniform(0.05, 0.20, size=(S, 1))
        winter_high = rng.uniform(0.05, 0.25, size=(S, 1))
        daily = 0.6 * np.cos(2 * np.pi * (hour - evening_peak) / 24) + 0.4 * np.cos(
            4 * np.pi * (hour - evening_peak + 9) / 24
        )
        self.mean = scale * (1 + daily_amplitude * daily) * (1 - weekend_dip * weekend) * (1 + winter_high * season)

        noise_level = rng.uniform(0.02, 0.06, size=(S, 1))
        day_spread = rng.uniform(0.2, 0.6, size=(S, 1))  # spread is larger in the working day
        season_spread = rng.uniform(0.0, 0.4, size=(S, 1))
        daytime = np.cos(2 * np.pi * (hour - 14) / 24)
        self.spread = scale * noise_level * (1 + day_spread * daytime) * (1 + season_spread * season)

        self.phi = rng.uniform(0.85, 0.97, size=S)  # [S]
        self.noise = _stationary_ar1(self.phi, rng.standard_normal((S, L)))  # [S, L]
        values = self.mean + self.spread * self.noise
        for s in range(S):
            for _ in range(spec.gaps_per_series):
                length = int(rng.integers(1, 73))
                begin = int(rng.integers(0, L - length))
                values[s, begin : begin + length] = np.nan
        series_ids = tuple(f"synthetic_{s:02d}" for s in range(S))
        self.panel = HourlyPanel(series_ids=series_ids, timestamps=timestamps, values=values.astype(np.float32))

    def oracle_mean_std(self, series: np.ndarray, origin: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of y[s, t + h] given all observations before t, each [N, H]."""
        series, origin = np.asarray(series), np.asarray(origin)
        last = _last_observed_before(self.panel.values, series, origin)  # [N]
        if (last < 0).any():
            raise ValueError("oracle asked for a window with no observation before its origin")
        noise_at_last = (self.panel.values[series, last] - self.mean[series, last]) / self.spread[series, last]
        hours = origin[:, None] + np.arange(horizon)  # [N, H]
        lag = hours - last[:, None]  # [N, H], >= 1
        decay = self.phi[series][:, None] ** lag  # [N, H]
        rows = series[:, None]
        mean = self.mean[rows, hours] + self.spread[rows, hours] * decay * noise_at_last[:, None]
        std = self.spread[rows, hours] * np.sqrt(1 - decay**2)
        return mean, std

    def oracle_quantiles(
        self, series: np.ndarray, origin: np.ndarray, horizon: int, levels: torch.Tensor
    ) -> torch.Tensor:
        """Exact quantiles of the conditional distribution, ``[N, H, Q]`` for levels ``[Q]``."""
        mean, std = self.oracle_mean_std(series, origin, horizon)  # [N, H]
        z = ndtri(np.asarray(levels, dtype=np.float64))  # [Q]
        return torch.from_numpy(mean[..., None] + std[..., None] * z).float()  # [N, H, Q]


def _stationary_ar1(phi: np.ndarray, shocks: np.ndarray) -> np.ndarray:
    """AR(1) paths with unit marginal variance from standard normal shocks ``[S, L]``."""
    noise = np.empty_like(shocks)
    noise[:, 0] = shocks[:, 0]
    innovation_scale = np.sqrt(1 - phi**2)
    for t in range(1, shocks.shape[1]):
        noise[:, t] = phi * noise[:, t - 1] + innovation_scale * shocks[:, t]
    return noise


def _last_observed_before(values: np.ndarray, series: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Index of the last observed hour strictly before each origin (-1 if none)."""
    S, L = values.shape
    last_seen = np.maximum.accumulate(np.where(np.isfinite(values), np.arange(L), -1), axis=1)  # [S, L]
    return last_seen[series, origin - 1]
