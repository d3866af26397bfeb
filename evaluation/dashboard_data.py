"""What the dashboard shows besides ``metrics.json``, gathered from the model, the data and the run folder.

- :func:`choose_fan_windows` / :func:`fan_windows`: forecasts of chosen (series, origin) windows with
  their recent history, for fan charts;
- :func:`attention_snapshot`: attention maps of one window, mean gate values and locality biases of
  an adaptive-attention model;
- :func:`sampler_history`: the adaptive level sampler's snapshots stored in the checkpoint;
- :func:`training_log`: the TensorBoard scalars of the run the checkpoint came from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from anyquantile.dataset.panel import HourlyPanel
from anyquantile.dataset.windows import WindowBatches
from anyquantile.experiment.errors import UsageError
from anyquantile.modules.quantile_levels import EvaluationLevels, interval_ends

MAX_FAN_CHARTS = 24
TRAINING_TAGS = ("train/loss", "val/crps", "val/coverage_90", "lr-Adam")


@dataclass
class FanWindow:
    """One window's forecast intervals over the horizon and its recent history."""

    series: str
    origin: pd.Timestamp
    crps: float  # of this window, on the grid
    history_time: np.ndarray  # [T'] timestamps
    history: np.ndarray  # [T'] NaN where unobserved
    time: np.ndarray  # [H]
    actual: np.ndarray  # [H] NaN where unobserved
    median: np.ndarray  # [H]
    bands: dict[float, tuple[np.ndarray, np.ndarray]]  # coverage -> (lower [H], upper [H])


@dataclass
class AttentionSnapshot:
    maps: list[np.ndarray]  # per block [N, L, L], one window, rows attend to columns
    gates: list[np.ndarray]  # per block [N, L]: local-head gate alpha, mean over the windows
    betas: list[list[float]]  # per block, the locality bias of each head ([] when off)
    history_tokens: int
    window: str  # which window the maps are of
    gate_windows: int  # how many windows the gate means are over


@dataclass
class TrainingLog:
    folder: str
    curves: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)


def choose_fan_windows(
    panel: HourlyPanel,
    series: np.ndarray,
    origin: np.ndarray,
    per_series_score: dict[str, float],
    wanted_series: Sequence[str] = (),
    wanted_origins: Sequence[str] = (),
) -> list[int]:
    """Indices (into the split's windows, ``series`` / ``origin`` [N]) of the windows to draw.

    Default series: the best, median and worst by ``per_series_score`` (lower is better; the
    evaluation passes the scale-free nCRPS, so that the largest series is not always the worst);
    default origin: each series' last window.
    """
    if not wanted_series:
        ranked = sorted(per_series_score, key=per_series_score.get)
        wanted_series = list(dict.fromkeys([ranked[0], ranked[len(ranked) // 2], ranked[-1]]))
    rows = []
    for name in wanted_series:
        if name not in per_series_score:
            known = ", ".join(sorted(per_series_score))
            raise UsageError(f"--fan-series: no windows of series '{name}' in this split; it has {known}")
        rows.append(panel.series_ids.index(name))
    chosen = []
    for row in rows:
        own = np.flatnonzero(series == row)
        if not wanted_origins:
            chosen.append(int(own[np.argmax(origin[own])]))
            continue
        for when in wanted_origins:
            hour = panel.hour_index(when)
            match = own[origin[own] == hour]
            if not len(match):
                first, last = panel.timestamps[origin[own].min()], panel.timestamps[origin[own].max()]
                raise UsageError(
                    f"--fan-origins: no window of '{panel.series_ids[row]}' starts its forecast at {when}; "
                    f"this split's origins run from {first} to {last} (every window stride apart)"
                )
            chosen.append(int(match[0]))
    if len(chosen) > MAX_FAN_CHARTS:
        raise UsageError(f"{len(chosen)} fan charts asked for; at most {MAX_FAN_CHARTS}")
    return chosen


def fan_windows(
    panel: HourlyPanel,
    windows: WindowBatches,
    indices: Sequence[int],
    levels: EvaluationLevels,
    forecasts: torch.Tensor,
    window_crps: Sequence[float],
    history_hours: int,
) -> list[FanWindow]:
    """Fan-chart data of the windows ``indices``: ``forecasts`` [N, H, Q] at ``levels``; ``window_crps``, one per
    index."""
    H = windows.shape.horizon
    result = []
    for index, crps in zip(indices, window_crps):
        row, start = int(windows.windows.series[index]), int(windows.windows.origin[index])
        past = slice(max(start - history_hours, 0), start)
        forecast = forecasts[index].numpy()  # [H, Q]
        bands = {c: tuple(forecast[:, levels.index(end)] for end in interval_ends(c)) for c in levels.intervals}
        result.append(
            FanWindow(
                series=panel.series_ids[row],
                origin=panel.timestamps[start],
                crps=float(crps),
                history_time=panel.timestamps[past].to_numpy(),
                history=panel.values[row, past],
                time=panel.timestamps[start : start + H].to_numpy(),
                actual=panel.values[row, start : start + H],
                median=forecast[:, levels.index(0.5)],
                bands=bands,
            )
        )
    return result


def spread_indices(total: int, count: int) -> np.ndarray:
    """Up to ``count`` distinct indices of ``range(total)`` spread evenly from the first to the last."""
    return np.unique(np.linspace(0, total - 1, min(count, total)).round().astype(int))


@torch.no_grad()
def attention_snapshot(
    model: Any, windows: WindowBatches, map_window: int, label: str, gate_windows: int = 256
) -> AttentionSnapshot | None:
    """Attention of an adaptive-attention ``model`` at the median: maps of window ``map_window`` (named
    ``label``), gates averaged over ``gate_windows`` windows spread evenly over the split. None for
    models without attention (or without attention blocks)."""
    if not hasattr(model, "attention_maps") or not len(model.network.blocks):
        return None
    spread = spread_indices(len(windows), gate_windows)
    indices = torch.from_numpy(np.concatenate([[map_window], spread]))
    batch = windows[indices]
    median = torch.full((len(indices), 1), 0.5)
    analysis = model.attention_maps(batch, median)
    network = model.network
    maps, gates, betas = [], [], []
    for weights, gate, block in zip(analysis["attention"], analysis["gates"], network.blocks):
        B, N, L, _ = weights.shape
        maps.append(weights[0].float().numpy())  # [N, L, L]
        gates.append(gate.float().expand(B, N, L, 1)[1:, ..., 0].mean(dim=0).numpy())  # [N, L]
        beta = getattr(block.attention, "beta", None)
        betas.append([] if beta is None else beta.detach().float().tolist())
    return AttentionSnapshot(
        maps=maps,
        gates=gates,
        betas=betas,
        history_tokens=windows.shape.history_length // network.patch,
        window=label,
        gate_windows=len(spread),
    )


def sampler_history(model: Any) -> list[dict[str, Any]]:
    """The adaptive level sampler's snapshots (one per training epoch end); [] for samplers that learn nothing."""
    return list(getattr(model.level_sampler, "history", []))


def training_log(checkpoint: str | Path) -> TrainingLog | None:
    """Scalars of the training run a checkpoint belongs to (``<run>/tensorboard`` beside ``<run>/checkpoints``)."""
    folder = Path(checkpoint).parent.parent / "tensorboard"
    if not folder.is_dir():
        return None
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logging.getLogger("tensorboard").setLevel(logging.ERROR)
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    log = TrainingLog(folder=str(folder))
    available = set(events.Tags().get("scalars", []))
    for tag in TRAINING_TAGS:
        if tag in available:
            points = events.Scalars(tag)
            log.curves[tag] = ([p.step for p in points], [p.value for p in points])
    return log
