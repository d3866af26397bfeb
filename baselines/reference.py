"""What a reference forecaster is: windows in, quantile forecasts out.

Seasonal naive, the neuralforecast baselines and the synthetic data's oracle all have this form, so
that they forecast the model's very windows and are scored by the model's own scoring path
(``model/scoring.py``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

# (series [N] panel rows, origin [N] grid hours of the first target, horizon H, levels [Q]) -> forecasts [N, H, Q]
ReferenceForecaster = Callable[[np.ndarray, np.ndarray, int, torch.Tensor], torch.Tensor]
