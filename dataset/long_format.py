"""Quantile forecasts [N, H, L] as a long table: one row per (window, step, level)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd


def long_forecast_frame(
    per_window: dict[str, np.ndarray], per_step: dict[str, np.ndarray], levels: Sequence[float], values: np.ndarray
) -> pd.DataFrame:
    """Columns: ``per_window`` ([N] each, e.g. series, origin), ``step`` (1..H), ``per_step`` ([N, H]
    each, e.g. timestamp, actual), ``level`` and ``value`` (``values`` [N, H, L])."""
    N, H, L = values.shape
    shape = (N, H, L)
    columns = {
        name: np.broadcast_to(np.asarray(column)[:, None, None], shape).ravel() for name, column in per_window.items()
    }
    columns["step"] = np.broadcast_to(np.arange(1, H + 1)[None, :, None], shape).ravel()
    columns.update(
        {name: np.broadcast_to(np.asarray(column)[..., None], shape).ravel() for name, column in per_step.items()}
    )
    columns["level"] = np.broadcast_to(np.asarray(levels)[None, None, :], shape).ravel()
    columns["value"] = values.ravel()
    return pd.DataFrame(columns)
