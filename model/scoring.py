"""The one scoring path: raw forecasts on the evaluation levels in, the final and the raw forecast's scores out.

*Raw* is what a network or a reference forecaster returns. The *final* forecast is what is reported
and written: the raw one sorted along the level grid (monotone rearrangement, ``modules.rearrangement``)
when rearrangement is on (``evaluation.rearrange``, the default), else the raw one itself. Lightning's
val/test steps, ``evaluate``, the benchmark and the reference forecasters all score through
:class:`ForecastScorer` (or :func:`score_forecasts`, its one-batch form):

- ``final``: every metric of ``model/metrics.py`` of the final forecast, and both crossing rates —
  ``crossing_rate_raw``: the share of (window, step) forecasts whose raw quantiles decrease somewhere
  along the levels; ``crossing_rate_final``: the same of the final forecast (0 after rearrangement);
- ``raw``: the metrics of the raw forecast (and ``crossing_rate_raw``), kept when rearrangement is on
  (otherwise the final forecast is the raw one and ``raw`` is None);
- ``share_below``: the reliability curve of the final forecast, the share of observed targets below
  each level's forecast [Q].

Every state is a sum reduced across DDP ranks, so scores of a split shared by several processes
equal those of one process.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from anyquantile.model.metrics import CrossingRate, QuantileForecastMetrics
from anyquantile.modules.quantile_levels import EvaluationLevels
from anyquantile.modules.rearrangement import rearrange_quantiles


def final_forecast(prediction: torch.Tensor, rearrange: bool) -> torch.Tensor:
    """The forecast ``[..., Q]`` that is reported: sorted along the levels when ``rearrange``, else as it is."""
    return rearrange_quantiles(prediction) if rearrange else prediction


@dataclass(frozen=True)
class ForecastScores:
    final: dict[str, float]  # the final forecast's metrics, crossing_rate_raw and crossing_rate_final
    raw: dict[str, float] | None  # the raw forecast's metrics, when it differs from the final one
    share_below: list[float]  # [Q] the final forecast's reliability curve


class ForecastScorer(nn.Module):
    """Accumulates the scores of raw forecasts ``[B, H, Q]`` at ``levels`` over batches (and DDP ranks)."""

    def __init__(self, levels: EvaluationLevels, horizon: int, rearrange: bool = True) -> None:
        super().__init__()
        self.rearrange = rearrange
        self.final_metrics = QuantileForecastMetrics(levels, horizon)
        self.raw_metrics = QuantileForecastMetrics(levels, horizon) if rearrange else None
        self.final_crossing, self.raw_crossing = CrossingRate(), CrossingRate()

    def update(self, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Score raw ``prediction`` [B, H, Q] against ``target`` [B, H] where ``mask`` [B, H] is True; returns the
        final forecast."""
        final = final_forecast(prediction, self.rearrange)
        self.final_metrics.update(final, target, mask)
        self.final_crossing.update(final)
        self.raw_crossing.update(prediction)
        if self.raw_metrics is not None:
            self.raw_metrics.update(prediction, target, mask)
        return final

    @property
    def update_called(self) -> bool:
        return self.final_metrics.update_called

    def compute(self) -> ForecastScores:
        crossing_raw = float(self.raw_crossing.compute())
        final = dict(self.final_metrics.compute())  # a copy: torchmetrics caches the dict it returns
        share_below = final.pop("share_below").tolist()
        scores = {
            **_floats(final),
            "crossing_rate_raw": crossing_raw,
            "crossing_rate_final": float(self.final_crossing.compute()),
        }
        raw = None
        if self.raw_metrics is not None:
            raw_metrics = dict(self.raw_metrics.compute())
            raw_metrics.pop("share_below")
            raw = {**_floats(raw_metrics), "crossing_rate_raw": crossing_raw}
        return ForecastScores(final=scores, raw=raw, share_below=share_below)

    def reset(self) -> None:
        for metric in (self.final_metrics, self.raw_metrics, self.final_crossing, self.raw_crossing):
            if metric is not None:
                metric.reset()


def score_forecasts(
    levels: EvaluationLevels, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, rearrange: bool = True
) -> ForecastScores:
    """The scores of raw forecasts ``prediction`` [N, H, Q] at ``levels`` against ``target``, ``mask`` [N, H]."""
    scorer = ForecastScorer(levels, prediction.shape[1], rearrange)
    scorer.update(prediction, target, mask)
    return scorer.compute()


def _floats(results: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: float(value) for name, value in results.items()}
