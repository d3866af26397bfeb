"""Several trained forecasters as one: their quantile forecasts averaged level by level.

The any-quantile paper averages the forecasts of its 8 seeds this way; one forecaster is an ensemble of one.
Evaluation (``evaluation/ensemble.py``) and production (``inference/``) both forecast through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from anyquantile.dataset.windows import WindowBatch
from anyquantile.model.forecaster import AnyQuantileForecaster


@dataclass
class Ensemble:
    """Trained forecasters whose quantile forecasts are averaged level by level."""

    members: list[AnyQuantileForecaster]

    def __call__(self, batch: WindowBatch, levels: torch.Tensor) -> torch.Tensor:
        """levels [Q] (every window alike) or [B, Q] -> forecasts [B, H, Q] in fp32."""
        forecasts = [member.forecast(batch, levels.float()).float() for member in self.members]
        return torch.stack(forecasts).mean(dim=0)
