"""Forecast windows: where they start, which split they belong to, and gathering them in batches.

A window is a pair (series s, origin t). Its history is hours [t - T, t) and its target hours
[t, t + H). A window belongs to a split when its whole target lies inside the split; its history
may reach back into earlier splits (that is the past, which a forecaster is allowed to see), but
no target ever overlaps an earlier split, so no split is scored on hours another split trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset

from anyquantile.dataset.calendar import CALENDAR_FEATURES, calendar_features
from anyquantile.dataset.covariates import check_window_covariates, window_covariates
from anyquantile.dataset.panel import HourlyPanel
from anyquantile.dataset.public_holidays import HOLIDAY_FEATURES, series_holiday_features


@dataclass(frozen=True)
class WindowShape:
    history_length: int  # T
    horizon: int  # H

    def __post_init__(self) -> None:
        if self.history_length < 1 or self.horizon < 1:
            raise ValueError(f"history_length and horizon must be positive, got {self}")

    @property
    def length(self) -> int:
        return self.history_length + self.horizon


@dataclass(frozen=True)
class WindowIndex:
    """The windows of one split: parallel arrays of series rows and origin hours."""

    series: np.ndarray  # [N] int64 row in the panel
    origin: np.ndarray  # [N] int64 grid index of the first target hour

    def __len__(self) -> int:
        return len(self.origin)


def split_windows(
    panel: HourlyPanel,
    shape: WindowShape,
    start: int,
    end: int,
    step: int,
    min_observed_history: float = 0.5,
) -> WindowIndex:
    """Windows whose target lies in grid hours [start, end), origins every ``step`` hours from ``start``.

    A window is kept only when at least ``min_observed_history`` of its history is observed and
    at least one target hour is observed: a target that is entirely missing cannot be scored, and
    a history that is mostly missing carries no information a forecast could honestly use.
    """
    if step < 1:
        raise ValueError(f"window step must be >= 1, got {step}")
    if not 0.0 < min_observed_history <= 1.0:
        raise ValueError(f"min_observed_history must be in (0, 1], got {min_observed_history}")
    first = start
    if first < shape.history_length:  # the history must fit on the grid; keep the step's phase
        first += -(-(shape.history_length - first) // step) * step
    origins = np.arange(first, end - shape.horizon + 1, step, dtype=np.int64)
    if len(origins) == 0:
        return WindowIndex(np.zeros(0, np.int64), np.zeros(0, np.int64))

    # Prefix sums of the observation mask count observed hours in any range in O(1).
    observed = np.isfinite(panel.values)
    counts = np.concatenate([np.zeros((panel.num_series, 1), np.int64), np.cumsum(observed, axis=1)], axis=1)
    history_seen = counts[:, origins] - counts[:, origins - shape.history_length]  # [S, N]
    target_seen = counts[:, origins + shape.horizon] - counts[:, origins]  # [S, N]
    needed = np.ceil(min_observed_history * shape.history_length - 1e-9)  # 0.55 * 100 is 55.000000000000007
    keep = (history_seen >= needed) & (target_seen > 0)
    series, which = np.nonzero(keep)
    return WindowIndex(series=series.astype(np.int64), origin=origins[which])


def fill_from_past(values: np.ndarray) -> np.ndarray:
    """Forward-fill each row, then back-fill its leading gap, for use as model *input* only.

    Forward filling copies only past hours. The back-fill touches only hours before a series'
    first observation; any window that contains such an hour must also contain that first
    observation (windows need observed history), so no value from after the origin leaks in.
    """
    filled = values.copy()
    S, L = filled.shape
    hours = np.broadcast_to(np.arange(L), (S, L))
    last_seen = np.maximum.accumulate(np.where(np.isfinite(filled), hours, -1), axis=1)  # [S, L]
    rows = np.arange(S)[:, None]
    filled = np.where(last_seen >= 0, filled[rows, np.maximum(last_seen, 0)], np.nan)
    first_seen = np.argmax(np.isfinite(values), axis=1)  # [S]
    leading = ~np.isfinite(filled)
    return np.where(leading, values[np.arange(S), first_seen][:, None], filled).astype(np.float32)


@dataclass
class WindowBatch:
    """A batch of B windows as tensors: what every model, metric and forecaster reads.

    Not frozen: Lightning moves a batch to the device by replacing its tensors.
    """

    history: torch.Tensor  # [B, T] input values, missing hours filled from the past (see ``fill_from_past``)
    history_mask: torch.Tensor  # [B, T] True where the history hour was observed
    target: torch.Tensor  # [B, H] observed values, 0 where missing (never scored: see ``target_mask``)
    target_mask: torch.Tensor  # [B, H] True where the target hour was observed
    # [B, T + H, C] calendar features of every hour of the window, then the series' holiday features and
    # its covariates (the last K channels, dataset/covariates.py), when the data has them
    calendar: torch.Tensor
    series: torch.Tensor  # [B] the panel row of each window
    origin: torch.Tensor  # [B] the grid hour of each window's first target hour

    def __len__(self) -> int:
        return len(self.series)


def calendar_width(holidays: bool, covariates: int = 0) -> int:
    """C, the width of a window's calendar: the shared calendar features, the series' holiday features and
    its ``covariates`` (K channels)."""
    return len(CALENDAR_FEATURES) + (len(HOLIDAY_FEATURES) if holidays else 0) + covariates


class WindowBatches(Dataset):
    """Gathers whole batches of windows by index from contiguous tensors (no per-window Python).

    ``dataset[indices]`` with a 1-D tensor of window indices returns a :class:`WindowBatch`. A window that
    reads a covariate hour without a value is a DataValidationError here, before any batch is gathered.
    """

    def __init__(self, panel: HourlyPanel, shape: WindowShape, windows: WindowIndex) -> None:
        check_window_covariates(panel, shape, windows)
        self.shape = shape
        self.covariate_spec = panel.covariate_spec
        self.windows = windows
        self._series = torch.from_numpy(windows.series)
        self._origin = torch.from_numpy(windows.origin)
        self._observed = torch.from_numpy(np.isfinite(panel.values))  # [S, L]
        self._filled = torch.from_numpy(fill_from_past(panel.values))  # [S, L]
        self._raw = torch.from_numpy(np.nan_to_num(panel.values, nan=0.0))  # [S, L]
        self._calendar = torch.from_numpy(calendar_features(panel.timestamps))  # [L, C]
        self._holidays = (  # [S, L, K] per series, or None
            None
            if panel.holiday_countries is None
            else torch.from_numpy(series_holiday_features(panel.timestamps, panel.holiday_countries))
        )
        self._covariates = (  # [S, L, K]; checked above: every hour a window reads has a value
            None if panel.covariates is None else torch.from_numpy(np.nan_to_num(panel.covariates, nan=0.0))
        )
        self._offsets = torch.arange(-shape.history_length, shape.horizon)  # [T + H]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, indices: torch.Tensor) -> WindowBatch:
        T = self.shape.history_length
        indices = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        series, origin = self._series[indices], self._origin[indices]  # [B], [B]
        hours = origin[:, None] + self._offsets  # [B, T + H]
        rows = series[:, None]  # [B, 1]
        calendar = self._calendar[hours]  # [B, T + H, C]
        if self._holidays is not None:
            calendar = torch.cat([calendar, self._holidays[rows, hours]], dim=-1)  # [B, T + H, C + 4]
        if self._covariates is not None:
            covariates = window_covariates(self._covariates[rows, hours], self.covariate_spec, T)  # [B, T + H, K]
            calendar = torch.cat([calendar, covariates], dim=-1)  # [B, T + H, C + K]
        return WindowBatch(
            history=self._filled[rows, hours[:, :T]],  # [B, T]
            history_mask=self._observed[rows, hours[:, :T]],  # [B, T]
            target=self._raw[rows, hours[:, T:]],  # [B, H]
            target_mask=self._observed[rows, hours[:, T:]],  # [B, H]
            calendar=calendar,
            series=series,
            origin=origin,
        )

    def all(self) -> WindowBatch:
        """Every window of the split as one batch, in order."""
        return self[torch.arange(len(self))]

    def batches(self, batch_size: int) -> Iterator[WindowBatch]:
        """The windows in order, ``batch_size`` at a time."""
        for start in range(0, len(self), batch_size):
            yield self[torch.arange(start, min(start + batch_size, len(self)))]
