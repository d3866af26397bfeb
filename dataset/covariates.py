"""Covariate columns of a long-format file, under neuralforecast's names, and what a window reads of them.

Three kinds, as in neuralforecast (``futr_exog_list``, ``hist_exog_list``, ``stat_exog_list``):

- future-known (``futr``): known in advance for the forecast hours (a weather forecast, a planned
  tariff); a window reads them over its history and its horizon, so a forecast needs them for the
  horizon's hours: rows with an empty ``y`` and the covariates filled in;
- historical (``hist``): observed only up to the origin (a measured temperature); a window reads them
  over its history; over its horizon they are zero, so nothing after the origin is ever read;
- static (``stat``): one value per series (a region's area); repeated on every row of the series.

Every hour a window reads must carry a value; nothing is filled in. A training or evaluation window
that reads a missing one is skipped (``dataset/splits.py`` warns how many); a forecast that would is
a :class:`DataValidationError` naming the series, the covariate and the hour. Temporal covariates (future-known and
historical) are standardised per window by the mean and standard deviation of their history hours,
as neuralforecast's temporal scalers do, so their units do not matter; static ones enter as given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from anyquantile.dataset.errors import DataValidationError

if TYPE_CHECKING:  # the panel and windows hold covariates: they import this module
    from anyquantile.dataset.panel import HourlyPanel
    from anyquantile.dataset.windows import WindowIndex, WindowShape

RESERVED_COLUMNS = ("unique_id", "ds", "y")
CONSTANT_HISTORY = 1e-6  # a history standard deviation below this share of its largest size: only centred


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

    ``columns``: each covariate's parsed values, one per file row; ``row`` and ``column``: each file row's
    place on the grid, the rows sorted by series. A static covariate must have one value per series,
    which then fills the series' whole row of the grid."""
    grid = np.full((len(series_ids), num_hours, spec.width), np.nan, dtype=np.float32)
    for channel, name in enumerate(spec.names):
        grid[row, column, channel] = columns[name]
    bounds = np.searchsorted(row, np.arange(len(series_ids) + 1))  # series s: file rows bounds[s]..bounds[s + 1]
    for channel, name in enumerate(spec.stat, start=spec.temporal):
        for index, series in enumerate(series_ids):
            values = columns[name][bounds[index] : bounds[index + 1]]
            if np.isnan(values).any() or (values != values[0]).any():
                seen = np.unique(values[np.isfinite(values)])[:3].tolist()
                raise DataValidationError(
                    f"{source}: series '{series}': static covariate '{name}' must have one value, on every row "
                    f"of the series; it has {'an empty value' if np.isnan(values).any() else 'several'} "
                    f"(values {seen})."
                )
            grid[index, :, channel] = values[0]
    return grid


def covariate_gaps(panel: HourlyPanel, shape: WindowShape, series: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """[N, F + Hx]: True where window (``series``, ``origin`` [N]) reads an hour of that temporal covariate that has
    no value: a future-known covariate over its history and horizon, a historical one over its history."""
    spec, T = panel.covariate_spec, shape.history_length
    if panel.covariates is None:
        return np.zeros((len(origin), 0), dtype=bool)
    given = np.isfinite(panel.covariates[..., : spec.temporal])  # [S, L, F + Hx]
    counts = np.concatenate([np.zeros_like(given[:, :1], dtype=np.int64), np.cumsum(given, axis=1)], axis=1)
    after_origin = np.where(np.arange(spec.temporal) < len(spec.futr), shape.horizon, 0)  # [F + Hx] hours read
    start, end = (origin - T)[:, None], origin[:, None] + after_origin[None, :]  # [N, 1], [N, F + Hx]
    rows, channels = series[:, None], np.arange(spec.temporal)[None, :]
    seen = counts[rows, end, channels] - counts[rows, start, channels]  # [N, F + Hx]
    return seen < end - start


def check_window_covariates(panel: HourlyPanel, shape: WindowShape, windows: WindowIndex) -> None:
    """A DataValidationError naming the series, covariate and hour when one of ``windows`` reads a covariate hour
    of ``panel`` that has no value (:func:`covariate_gaps`)."""
    gaps = covariate_gaps(panel, shape, windows.series, windows.origin)  # [N, F + Hx]
    if not gaps.any():
        return
    spec, timestamps = panel.covariate_spec, panel.timestamps
    window, channel = (int(i[0]) for i in np.nonzero(gaps))
    s, origin = windows.series[window], windows.origin[window]
    futr = channel < len(spec.futr)
    start, end = origin - shape.history_length, origin + (shape.horizon if futr else 0)
    hour = start + int(np.argmin(np.isfinite(panel.covariates[s, start:end, channel])))
    raise DataValidationError(
        f"series '{panel.series_ids[s]}': {spec.kind(channel)} covariate '{spec.names[channel]}' has no value at "
        f"{timestamps[hour]}, an hour of {'its history and horizon' if futr else 'its history'} that the window "
        f"forecasting from {timestamps[origin]} reads ({int(gaps.any(axis=1).sum())} window(s) in all). Give every "
        "such hour a value"
        + ("; to forecast past the data, add the horizon's hours as rows with an empty 'y'." if futr else ".")
    )


def window_covariates(raw: torch.Tensor, spec: CovariateSpec, history_length: int) -> torch.Tensor:
    """What a window reads of its covariates ``raw`` [B, T + H, K]: temporal ones standardised by their history
    hours, historical ones zero over the horizon, static ones as given. [B, T + H, K]"""
    T, temporal = history_length, spec.temporal
    values = raw[..., :temporal]  # [B, T + H, F + Hx]
    history = values[:, :T]  # [B, T, F + Hx]
    mean = history.mean(dim=1, keepdim=True)  # [B, 1, F + Hx]
    std = history.std(dim=1, correction=0, keepdim=True)  # [B, 1, F + Hx]
    # constant over the history (relative to its size, so units do not matter): only centred
    constant = std <= CONSTANT_HISTORY * history.abs().amax(dim=1, keepdim=True)
    std = torch.where(constant, torch.ones_like(std), std)
    scaled = (values - mean) / std  # [B, T + H, F + Hx]
    after_origin = torch.arange(raw.shape[1], device=raw.device) >= T  # [T + H]
    is_historical = torch.arange(temporal, device=raw.device) >= len(spec.futr)  # [F + Hx]
    scaled = scaled.masked_fill(after_origin[:, None] & is_historical[None, :], 0.0)
    return torch.cat([scaled, raw[..., temporal:]], dim=-1)
