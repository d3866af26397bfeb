"""Forecasts for production: the next H hours after each series' last observation (or a given
origin), at any levels asked, from a trained checkpoint. ``predict.py`` is its command line."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf

from dataset.loader import load_hourly_panel
from dataset.long_format import long_forecast_frame
from dataset.panel import HourlyPanel
from dataset.windows import WindowBatches, WindowIndex, WindowShape
from experiment.builders import with_holidays
from experiment.checkpoints import load_forecaster
from experiment.errors import UsageError


def parse_levels(text: str) -> list[float]:
    """``"0.05,0.5,0.95"`` -> levels, each strictly inside (0, 1)."""
    try:
        levels = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--levels must be numbers separated by commas, got '{text}'") from None
    if not levels:
        raise UsageError("--levels is empty")
    outside = [q for q in levels if not 0.0 < q < 1.0]
    if outside:
        raise UsageError(f"levels must be inside (0, 1); got {outside}")
    return levels


def extend_grid(panel: HourlyPanel, hours: int) -> HourlyPanel:
    """The panel with ``hours`` more (unobserved) hours at the end, so that a window can reach past the data."""
    timestamps = panel.timestamps.append(
        pd.date_range(panel.timestamps[-1] + pd.Timedelta(hours=1), periods=hours, freq="h")
    )
    values = np.concatenate(
        [panel.values, np.full((panel.num_series, hours), np.nan, dtype=panel.values.dtype)], axis=1
    )
    covariates = panel.covariates
    if covariates is not None:  # static ones hold on; the others are unknown there
        later = np.full((panel.num_series, hours, covariates.shape[-1]), np.nan, dtype=covariates.dtype)
        later[..., panel.covariate_spec.temporal :] = covariates[:, -1:, panel.covariate_spec.temporal :]
        covariates = np.concatenate([covariates, later], axis=1)
    return dataclasses.replace(panel, timestamps=timestamps, values=values, covariates=covariates)


def forecast_origins(
    panel: HourlyPanel, shape: WindowShape, series: Sequence[str], origin: str | None, min_observed_history: float
) -> WindowIndex:
    """One window per series: its first target hour is ``origin``, or the hour after the series' last observation."""
    unknown = sorted(set(series) - set(panel.series_ids))
    if unknown:
        raise UsageError(f"unknown series {unknown}; the data has {list(panel.series_ids)}")
    rows = np.array([panel.series_ids.index(name) for name in series], dtype=np.int64)
    observed = np.isfinite(panel.values[rows])  # [S', L]
    if origin is not None:
        start = panel.hour_index(origin)
        if start >= panel.num_hours or panel.timestamps[start] != pd.Timestamp(origin):
            raise UsageError(f"origin {origin} is not an hour of the data's grid")
        origins = np.full(len(rows), start, dtype=np.int64)
    else:
        origins = panel.num_hours - 1 - np.argmax(observed[:, ::-1], axis=1) + 1  # the hour after the last observation
    T = shape.history_length
    for name, row_observed, at in zip(series, observed, origins):
        history = row_observed[max(at - T, 0) : at]
        if at < T or history.mean() < min_observed_history:
            raise UsageError(
                f"series '{name}' has too short a history before {panel.timestamps[min(at, panel.num_hours - 1)]}: "
                f"the model needs {T} hours, at least {min_observed_history:.0%} of them observed "
                f"(it has {int(history.sum())} observed of the {min(at, T)} before)"
            )
    return WindowIndex(series=rows, origin=origins)


def predict(
    checkpoint: str | Path,
    data: str | Path,
    levels: Sequence[float],
    series: Sequence[str] | None = None,
    origin: str | None = None,
) -> pd.DataFrame:
    """Forecasts at ``levels`` for the next H hours of each series: series, origin, timestamp, step, level, value."""
    model, cfg = load_forecaster(checkpoint)
    shape = WindowShape(cfg.dataset.history_length, cfg.dataset.horizon)
    # the holiday countries of training; the file may hold some of its series only (not strict), and a
    # series without a country is a clear error naming it
    dataset = OmegaConf.to_object(cfg.dataset)
    panel = load_hourly_panel(Path(data).expanduser(), min_length=1, covariates=dataset.covariates())
    panel = with_holidays(panel, dataset, strict=False)
    names = list(series) if series else list(panel.series_ids)
    windows = forecast_origins(panel, shape, names, origin, cfg.dataset.min_observed_history)
    extended = extend_grid(panel, shape.horizon)  # the horizon may lie beyond the data
    batch = WindowBatches(extended, shape, windows).all()
    asked = torch.tensor(levels, dtype=torch.float32)
    # Each level is forecast on its own (any-quantile): the 0.9 forecast does not depend on the other levels asked.
    prediction = model.forecast(batch, asked).float().numpy()  # [S', H, Q]
    hours = windows.origin[:, None] + np.arange(shape.horizon)[None, :]  # [S', H]
    frame = long_forecast_frame(
        per_window={"series": np.asarray(names, dtype=object), "origin": extended.timestamps[windows.origin].values},
        per_step={"timestamp": extended.timestamps.values[hours]},
        levels=levels,
        values=prediction,
    )
    return frame[["series", "origin", "timestamp", "step", "level", "value"]]
