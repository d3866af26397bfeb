"""Covariate columns of a long-format file, under neuralforecast's names, and what a window reads of them.

Three kinds, as in neuralforecast (``futr_exog_list``, ``hist_exog_list``, ``stat_exog_list``):

- future-known (``futr``): known in advance for the forecast hours (a weather forecast, a planned
  tariff); a window reads them over its history and its horizon, so a forecast needs them for the
  horizon's hours: rows with an empty ``y`` and the covariates filled in;
- historical (``hist``): observed only up to the origin (a measured temperature); a window reads them
  over its history; over its horizon they are zero, so nothing after the origin is ever read;
- static (``stat``): one value per series (a region's area); repeated on every row of the series.

Every hour a window reads must carry a value: a missing one is a :class:`DataValidationError` naming
the series, the covariate and the hour; nothing is filled in. Temporal covariates (future-known and
historical) are standardised per window by the mean and standard deviation of their history hours,
as neuralforecast's temporal scalers do, so their units do not matter; static ones enter as given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from dataset.errors import DataValidationError

if TYPE_CHECKING:  # the panel and windows hold covariates: they import this module
    from dataset.panel import HourlyPanel
    from dataset.windows import WindowIndex, WindowShape

RESERVED_COLUMNS = ("unique_id", "ds", "y")
CONSTANT_HISTORY = 1e-6  # a history standard deviation below this: the covariate is only centred


@dataclass(frozen=True)
class CovariateSpec:
    """Which columns of the file are covariates, of which kind. Channels come in this order: futr, hist, stat."""

    futr: tuple[str, ...] = ()
    hist: tuple[str, ...] = ()
    stat: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = self.names
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"covariate(s) {twice} listed more than once: a column has one kind")
        reserved = sorted(set(names) & set(RESERVED_COLUMNS))
        if reserved:
            raise ValueError(f"{reserved} cannot be a covariate: {list(RESERVED_COLUMNS)} are the series' own columns")

    @property
    def names(self) -> tuple[str, ...]:
        return (*self.futr, *self.hist, *self.stat)

    @property
    def width(self) -> int:
        """K, the covariate channels of a window."""
        return len(self.names)

    @property
    def temporal(self) -> int:
        """The future-known and historical channels, which come first and are standardised per window."""
        return len(self.futr) + len(self.hist)

    def kind(self, channel: int) -> str:
        return "future-known" if channel < len(self.futr) else "historical" if channel < self.temporal else "static"


def covariate_grid(
    columns: dict[str, np.ndarray],
    spec: CovariateSpec,
    row: np.ndarray,
    column: np.ndarray,
    series_ids: Sequence[str],
    num_hours: int,
    source: str,
) -> np.ndarray:
    """The covariates laid out on the panel's grid: ``[S, L, K]`` float32, NaN where the file gives none.

    ``columns``: each covariate's parsed values, one per file row (rows sorted by series, as ``row``
    and ``column``, their grid position). A static covariate must have one value per series, which
    then fills the series' whole row of the grid."""
    grid = np.full((len(series_ids), num_hours, spec.width), np.nan, dtype=np.float32)
    for channel, name in enumerate(spec.names):
        grid[row, column, channel] = columns[name]
    for channel, name in enumerate(spec.stat, start=spec.temporal):
        for index, series in enumerate(series_ids):
            values = columns[name][row == index]
            if np.isnan(values).any() or (values != values[0]).any():
                seen = np.unique(values[np.isfinite(values)])[:3].tolist()
                raise DataValidationError(
                    f"{source}: series '{series}': static covariate '{name}' must have one value, on every row "
                    f"of the series; it has {'an empty value' if np.isnan(values).any() else 'several'} "
                    f"(values {seen})."
                )
            grid[index, :, channel] = values[0]
    return grid


def check_window_covariates(panel: HourlyPanel, windows: WindowIndex, shape: WindowShape) -> None:
    """A DataValidationError when one of ``windows`` reads a covariate hour of ``panel`` without a value:
    a future-known covariate over the history and horizon, a historical one over the history."""
    spec, series, origin = panel.covariate_spec, windows.series, windows.origin  # [N], [N]
    if panel.covariates is None or len(origin) == 0:
        return
    T, horizon, timestamps = shape.history_length, shape.horizon, panel.timestamps
    given = np.isfinite(panel.covariates)  # [S, L, K]
    counts = np.concatenate([np.zeros_like(given[:, :1], dtype=np.int64), np.cumsum(given, axis=1)], axis=1)
    for channel, name in enumerate(spec.names[: spec.temporal]):
        end = origin + (horizon if channel < len(spec.futr) else 0)  # [N]
        seen = counts[series, end, channel] - counts[series, origin - T, channel]  # [N]
        short = np.flatnonzero(seen < end - (origin - T))
        if len(short) == 0:
            continue
        window = short[0]
        s, start = series[window], origin[window] - T
        hour = start + int(np.argmin(given[s, start : end[window], channel]))
        reads = "its history and horizon" if channel < len(spec.futr) else "its history"
        raise DataValidationError(
            f"series '{panel.series_ids[s]}': {spec.kind(channel)} covariate '{name}' has no value at "
            f"{timestamps[hour]}, an hour of {reads} that the window forecasting from {timestamps[origin[window]]} "
            f"reads ({len(short)} window(s) in all). Give every such hour a value"
            + (
                "; to forecast past the data, add the horizon's hours as rows with an empty 'y'."
                if channel < len(spec.futr)
                else "."
            )
        )


def window_covariates(raw: torch.Tensor, spec: CovariateSpec, history_length: int) -> torch.Tensor:
    """What a window reads of its covariates ``raw`` [B, T + H, K]: temporal ones standardised by their history
    hours, historical ones zero over the horizon, static ones as given. [B, T + H, K]"""
    T, temporal = history_length, spec.temporal
    values = raw[..., :temporal]  # [B, T + H, F + Hx]
    history = values[:, :T]  # [B, T, F + Hx]
    mean = history.mean(dim=1, keepdim=True)  # [B, 1, F + Hx]
    std = history.std(dim=1, correction=0, keepdim=True)
    std = torch.where(std < CONSTANT_HISTORY, torch.ones_like(std), std)
    scaled = (values - mean) / std
    after_origin = torch.arange(raw.shape[1], device=raw.device) >= T  # [T + H]
    is_historical = torch.arange(temporal, device=raw.device) >= len(spec.futr)  # [F + Hx]
    scaled = scaled.masked_fill(after_origin[:, None] & is_historical[None, :], 0.0)
    return torch.cat([scaled, raw[..., temporal:]], dim=-1)
