"""Seasonal naive quantile forecasts: last season's value plus quantiles of past seasonal errors."""

from __future__ import annotations

import numpy as np
import torch

from anyquantile.dataset.panel import HourlyPanel
from anyquantile.dataset.windows import fill_from_past


class SeasonalNaive:
    """y_hat[t + h](q) = y[t + h - k * lag] + Quantile_q{ y[tau] - y[tau - k * lag] : t - R <= tau < t },

    with k the smallest whole number of seasons that reaches back before the origin t (k = 1 for
    h < lag, 2 for lag <= h < 2 lag, ...), so each step's spread comes from errors of the same
    reach, and R the residual window (hours). Only hours before the origin are used. Missing
    residuals are skipped; a missing base value is taken from the last observed hour before it.
    """

    def __init__(self, panel: HourlyPanel, lag: int = 168, residual_window: int = 28 * 24, chunk: int = 2048):
        if lag < 1 or residual_window < 1:
            raise ValueError(f"lag and residual_window must be positive, got {lag}, {residual_window}")
        self.lag, self.residual_window, self.chunk = lag, residual_window, chunk
        self.filled = torch.from_numpy(fill_from_past(panel.values))  # [S, L]
        self.values = torch.from_numpy(panel.values)  # [S, L], NaN where missing

    def __call__(self, series: np.ndarray, origin: np.ndarray, horizon: int, levels: torch.Tensor) -> torch.Tensor:
        """Quantile forecasts ``[N, H, Q]`` for windows (series [N], origin [N]) at ``levels`` [Q]."""
        levels = torch.as_tensor(levels, dtype=torch.float32)
        parts = [
            self._forecast(
                torch.as_tensor(series[i : i + self.chunk]),
                torch.as_tensor(origin[i : i + self.chunk]),
                horizon,
                levels,
            )
            for i in range(0, len(origin), self.chunk)
        ]
        return torch.cat(parts) if parts else torch.zeros(0, horizon, len(levels))

    def _forecast(self, series: torch.Tensor, origin: torch.Tensor, horizon: int, levels: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(horizon)
        seasons_back = steps // self.lag + 1  # [H]
        base_hours = origin[:, None] + steps - seasons_back * self.lag  # [N, H], all before the origin
        base = self.filled[series[:, None], base_hours.clamp_min(0)]  # [N, H]
        past = origin[:, None] - self.residual_window + torch.arange(self.residual_window)  # [N, R]
        rows = series[:, None]
        spread = torch.zeros(len(origin), horizon, len(levels))  # [N, H, Q]
        for k in seasons_back.unique().tolist():
            earlier = past - k * self.lag  # [N, R]
            errors = (
                self.values[rows, past.clamp_min(0)] - self.values[rows, earlier.clamp_min(0)]
            )  # [N, R], NaN if missing
            errors = torch.where(earlier >= 0, errors, torch.full_like(errors, float("nan")))
            quantiles = torch.nan_to_num(
                torch.nanquantile(errors, levels, dim=1).T, nan=0.0
            )  # [N, Q]; none usable: a point
            spread[:, seasons_back == k] = quantiles[:, None, :]
        return base[:, :, None] + spread  # [N, H, Q]
