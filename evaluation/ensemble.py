"""Trained checkpoints as one forecaster (``model.ensemble.Ensemble``), and their forecasts of a whole split.

Several checkpoints form an ensemble whose quantile forecasts are averaged level by level; one checkpoint is
an ensemble of one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from anyquantile.dataset.windows import WindowBatch, WindowBatches
from anyquantile.experiment.checkpoints import load_forecaster
from anyquantile.experiment.config import merge_config
from anyquantile.experiment.errors import UsageError
from anyquantile.model.ensemble import Ensemble


def load_ensemble(checkpoints: Sequence[str | Path], overrides: Sequence[str] = ()) -> tuple[Ensemble, DictConfig]:
    """The checkpoints' forecasters and the first one's config with ``key=value`` overrides applied."""
    if not checkpoints:
        raise UsageError("give at least one --checkpoint")
    members, configs = [], []
    for path in checkpoints:
        model, cfg = load_forecaster(path)
        members.append(model)
        configs.append(cfg)
    first = configs[0]
    for path, cfg in zip(checkpoints[1:], configs[1:]):
        if (cfg.dataset.history_length, cfg.dataset.horizon) != (first.dataset.history_length, first.dataset.horizon):
            raise UsageError(
                f"{path} forecasts windows of another shape than {checkpoints[0]}; an ensemble needs one shape"
            )
    return Ensemble(members), merge_config(first, list(overrides), source=f"{checkpoints[0]} with overrides")


def batches(windows: WindowBatches, batch_size: int, description: str) -> Iterator[WindowBatch]:
    """The split's windows in order, with a progress bar."""
    total = math.ceil(len(windows) / batch_size)
    yield from tqdm(windows.batches(batch_size), total=total, desc=description, unit="batch", leave=False)


@dataclass(frozen=True)
class SplitForecasts:
    """A split's forecasts and what they are scored against, window by window."""

    prediction: torch.Tensor  # [N, H, Q] raw, at the levels asked
    target: torch.Tensor  # [N, H]
    mask: torch.Tensor  # [N, H], True where observed
    series: torch.Tensor  # [N] panel rows
    origin: torch.Tensor  # [N] grid hours


def forecast_split(
    ensemble: Ensemble, windows: WindowBatches, levels: torch.Tensor, batch_size: int, name: str
) -> SplitForecasts:
    """All forecasts of a split at ``levels`` [Q]."""
    parts = [
        (ensemble(batch, levels), batch.target, batch.target_mask, batch.series, batch.origin)
        for batch in batches(windows, batch_size, f"forecasting {name}")
    ]
    return SplitForecasts(*(torch.cat(column) for column in zip(*parts)))
