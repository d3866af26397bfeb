"""The windows of a production forecast: one per series, from the hour after its last observation (or a
given origin), on a grid extended past the data's end (``inference/predictor.py`` forecasts them)."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import pandas as pd

from anyquantile.dataset.panel import HourlyPanel
from anyquantile.dataset.windows import WindowIndex, WindowShape
from anyquantile.experiment.errors import UsageError


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


def grid_time(when: str | pd.Timestamp) -> pd.Timestamp:
    """``when`` on the data's clock: naive as it is, with an offset converted to UTC (as the loader reads ``ds``);
    a UsageError if it is no time at all."""
    try:
        stamp = pd.Timestamp(when)
    except (TypeError, ValueError):
        raise UsageError(f"origin {when!r} is not a time, e.g. '2017-12-31 00:00'", field="origin") from None
    if pd.isna(stamp):
        raise UsageError(f"origin {when!r} is not a time, e.g. '2017-12-31 00:00'", field="origin")
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo is not None else stamp


def forecast_origins(
    panel: HourlyPanel, shape: WindowShape, series: Sequence[str], origin: str | None, min_observed_history: float
) -> WindowIndex:
    """One window per series: its first target hour is ``origin``, or the hour after the series' last observation."""
    unknown = sorted(set(series) - set(panel.series_ids))
    if unknown:
        raise UsageError(f"unknown series {unknown}; the data has {list(panel.series_ids)}", field="series")
    rows = np.array([panel.series_ids.index(name) for name in series], dtype=np.int64)
    observed = np.isfinite(panel.values[rows])  # [S', L]
    if origin is not None:
        first_hour = grid_time(origin)
        start = panel.hour_index(first_hour)
        if start >= panel.num_hours or panel.timestamps[start] != first_hour:
            raise UsageError(f"origin {origin} is not an hour of the data's grid", field="origin")
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
