"""Scoring reference forecasters (seasonal naive, the synthetic oracle) on the model's own windows."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from omegaconf import DictConfig

from baselines.seasonal_naive import SeasonalNaive
from dataset.windows import WindowBatches
from model.metrics import QuantileForecastMetrics
from modules.quantile_levels import EvaluationLevels

if TYPE_CHECKING:  # builders imports this module's ReferenceForecaster
    from training.builders import ForecastData

# (series [N], origin [N], horizon, levels [Q]) -> quantile forecasts [N, H, Q]
ReferenceForecaster = Callable[[np.ndarray, np.ndarray, int, torch.Tensor], torch.Tensor]


def score_reference(
    forecaster: ReferenceForecaster, windows: WindowBatches, levels: EvaluationLevels, batch_size: int = 1024
) -> dict[str, float]:
    """The same metrics the model gets, on exactly the same windows and observed targets."""
    metrics = QuantileForecastMetrics(levels, windows.shape.horizon)
    for start in range(0, len(windows), batch_size):
        batch = windows[torch.arange(start, min(start + batch_size, len(windows)))]
        prediction = forecaster(batch["series"].numpy(), batch["origin"].numpy(), windows.shape.horizon, levels.levels)
        metrics.update(prediction, batch["target"], batch["target_mask"])
    return {name: float(value) for name, value in metrics.compute().items()}


def reference_scores(
    cfg: DictConfig, data: ForecastData, windows: WindowBatches, levels: EvaluationLevels
) -> dict[str, dict[str, float]]:
    """Seasonal naive (and, on synthetic data, the oracle) scored on the very windows and levels the model was."""
    forecasters: dict[str, ReferenceForecaster] = {
        f"seasonal_naive_{lag}": SeasonalNaive(data.panel, lag, cfg.evaluation.residual_window)
        for lag in cfg.evaluation.seasonal_naive_lags
    }
    if data.oracle is not None:
        forecasters["oracle"] = data.oracle
    return {name: score_reference(forecaster, windows, levels) for name, forecaster in forecasters.items()}
