"""Seasonal naive quantile forecasts: last season's value plus quantiles of past seasonal errors."""
from __future__ import annotations

import numpy as np
import torch

from dataset.panel import HourlyPanel
from dataset.windows import fill_from_past


class SeasonalNaive:
    """y_hat[t + h](q) = y[t + h - k * lag] + Quantile_q{ y[tau] - y[tau - lag] : t - R <= tau < t },

    with k the smallest whole number of seasons that reaches back before the origin t, and R the
    residual window (hours). Only hours before the origin are used. Missing residuals are skipped;
    a missing base value is taken from the last observed hour before it.
    """

    def __init__(self, panel: HourlyPanel, lag: int = 168, residual_window: int = 28 * 24, chunk: int = 2048):
        if lag < 1 or residual_window < 1:
            raise ValueError(f"lag and residual_window must be positive, got {lag}, {residual_window}")
        self.lag, self.residual_window, self.chunk = lag, residual_window, chunk
        self.filled = torch.from_numpy(fill_from_past(panel.values))  # [S, L]
        values = torch.from_numpy(panel.values)
        residual = torch.full_like(values, float("nan"))
        residual[:, lag:] = values[:, lag:] - values[:, :-lag]
        self.residual = residual  # [S, L], NaN where either hour is missing

    def __call__(self, series: np.ndarray, origin: np.ndarray, horizon: int, levels: torch.Tensor) -> torch.Tensor:
        """Quantile forecasts ``[N, H, Q]`` for windows (series [N], origin [N]) at ``levels`` [Q]."""
        levels = torch.as_tensor(levels, dtype=torch.float32)
        parts = [
            self._forecast(torch.as_tensor(series[i : i + self.chunk]), torch.as_tensor(origin[i : i + self.chunk]), horizon, levels)
            for i in range(0, len(origin), self.chunk)
        ]
        return torch.cat(parts) if parts else torch.zeros(0, horizon, len(levels))

    def _forecast(self, series: torch.Tensor, origin: torch.Tensor, horizon: int, levels: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(horizon)
        seasons_back = steps // self.lag + 1  # [H]
        base_hours = origin[:, None] + steps - seasons_back * self.lag  # [N, H], all before the origin
        base = self.filled[series[:, None], base_hours.clamp_min(0)]  # [N, H]
        past = origin[:, None] - self.residual_window + torch.arange(self.residual_window)  # [N, R]
        errors = self.residual[series[:, None], past.clamp_min(0)]  # [N, R]
        errors = torch.where(past >= 0, errors, torch.full_like(errors, float("nan")))
        spread = torch.nanquantile(errors, levels, dim=1).T  # [N, Q]
        spread = torch.nan_to_num(spread, nan=0.0)  # no usable past errors: a point forecast
        return base[:, :, None] + spread[:, None, :]  # [N, H, Q]
