"""Scores of quantile forecasts, accumulated as sums so that they add up correctly across batches and ranks.

All states are sums (``dist_reduce_fx="sum"``): under DDP each rank adds its windows and the
sums are added across ranks before ``compute``, so the result equals a single-process run.
"""

from __future__ import annotations

from typing import Callable

import torch
from torchmetrics import Metric

from anyquantile.dataset.windows import WindowBatch
from anyquantile.modules.losses import pinball
from anyquantile.modules.quantile_levels import EvaluationLevels, interval_ends, window_seeded_levels

PIT_BINS = 10
PER_BIN_PREFIXES = ("crps_step_", "pit_", "share_below")  # vector-like results, kept out of the headline scalars


class QuantileForecastMetrics(Metric):
    """CRPS, interval coverage and width, median errors and crossing rate of ``[B, H, Q]`` forecasts.

    - ``crps``: 2 x mean pinball loss over the dense grid levels (the midpoint rule for the CRPS
      integral), over observed targets; ``crps_step_<h>`` per horizon step.
    - ``coverage_<c>`` / ``width_<c>``: share of observed targets inside the central c-interval
      [q_(1-c)/2, q_(1+c)/2] (ends found by level), and the interval's mean width.
    - ``mae``, ``mape`` (%; targets equal to 0 skipped), ``smape`` (%) of the median (found by level).
    - ``winkler_<c>``: the interval score of the central c-interval, width + (2 / alpha) x the distance
      by which the target falls outside it (alpha = 1 - c), averaged over observed targets.
    - ``pit_<i>``, i = 1..10: share of observed targets whose PIT value (estimated as k / K, k the
      number of grid forecasts below the target) falls in the i-th tenth of [0, 1]; flat when calibrated.
    - ``below_<q>``: share of observed targets strictly below the q forecast, for each of the levels'
      ``extra_levels`` (a calibrated forecast gives q); ``calibration_error``: the mean over the grid
      levels of |share below - q|; ``share_below``: the share below every level's forecast, [Q] (the
      reliability curve; vector-like, as ``crps_step_<h>`` and ``pit_<i>``, so not a headline).

    How often the quantiles cross is :class:`CrossingRate`'s: whether that is of the raw or of the
    rearranged forecast is the scoring path's to say (``model/scoring.py``).
    """

    full_state_update = False

    def __init__(self, levels: EvaluationLevels, horizon: int) -> None:
        super().__init__()
        self.intervals = levels.intervals
        self.register_buffer("levels", levels.levels.float(), persistent=False)  # [Q]
        self.register_buffer("crps_mask", levels.crps_mask, persistent=False)  # [Q]
        self.median_index = levels.index(0.5)
        self.reported_levels = {q: levels.index(q) for q in levels.extra_levels}
        self.interval_index = [tuple(levels.index(end) for end in interval_ends(c)) for c in self.intervals]
        I = len(self.intervals)
        self.add_state("crps_sum", torch.zeros(horizon, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("observed", torch.zeros(horizon, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("below", torch.zeros(len(levels), dtype=torch.float64), dist_reduce_fx="sum")  # [Q]
        self.add_state("covered", torch.zeros(I, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("width_sum", torch.zeros(I, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("winkler_sum", torch.zeros(I, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("pit_counts", torch.zeros(PIT_BINS, dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("abs_target_sum", "abs_error_sum", "ape_sum", "ape_count", "smape_sum", "smape_count"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        """prediction [B, H, Q] at ``levels``; target [B, H]; mask [B, H], True where observed."""
        if prediction.shape[-1] != len(self.levels):
            raise ValueError(
                f"expected {len(self.levels)} levels on the last axis, got shape {tuple(prediction.shape)}"
            )
        prediction, target = prediction.double(), target.double()
        target = torch.where(mask, target, torch.zeros_like(target))  # unobserved targets never reach a sum
        weight = mask.double()  # [B, H]

        grid_loss = pinball(prediction[..., self.crps_mask], target, self.levels[self.crps_mask].double())  # [B, H, K]
        self.crps_sum += (2 * grid_loss.mean(dim=-1) * weight).sum(dim=0)
        self.observed += weight.sum(dim=0)
        self.abs_target_sum += (target.abs() * weight).sum()
        self.below += ((target[..., None] < prediction).double() * weight[..., None]).sum(dim=(0, 1))

        for i, (low, high) in enumerate(self.interval_index):
            lower, upper = prediction[..., low], prediction[..., high]  # [B, H]
            inside = (target >= lower) & (target <= upper)
            self.covered[i] += (inside.double() * weight).sum()
            self.width_sum[i] += ((upper - lower) * weight).sum()
            outside = (lower - target).clamp_min(0) + (target - upper).clamp_min(0)
            alpha = 1 - self.intervals[i]
            self.winkler_sum[i] += ((upper - lower + 2 / alpha * outside) * weight).sum()

        grid_below = (prediction[..., self.crps_mask] < target[..., None]).double().sum(dim=-1)  # [B, H]: k
        pit_bin = (PIT_BINS * grid_below / int(self.crps_mask.sum())).long().clamp_max(PIT_BINS - 1)
        self.pit_counts += torch.zeros_like(self.pit_counts).index_add_(0, pit_bin.flatten(), weight.flatten())

        median = prediction[..., self.median_index]  # [B, H]
        abs_error = (target - median).abs()
        self.abs_error_sum += (abs_error * weight).sum()
        nonzero = weight * (target != 0).double()
        self.ape_sum += (abs_error / target.abs().clamp_min(1e-12) * nonzero).sum()
        self.ape_count += nonzero.sum()
        magnitude = target.abs() + median.abs()
        defined = weight * (magnitude > 0).double()
        self.smape_sum += (2 * abs_error / magnitude.clamp_min(1e-12) * defined).sum()
        self.smape_count += defined.sum()

    def compute(self) -> dict[str, torch.Tensor]:
        observed = self.observed.sum()
        results = {
            "crps": self.crps_sum.sum() / observed,
            "ncrps": self.crps_sum.sum() / self.abs_target_sum,
            "mae": self.abs_error_sum / observed,
            "mape": 100 * self.ape_sum / self.ape_count,
            "smape": 100 * self.smape_sum / self.smape_count,
            "observed_targets": observed,
        }
        for i, coverage in enumerate(self.intervals):
            name = f"{round(100 * coverage):d}"
            results[f"coverage_{name}"] = self.covered[i] / observed
            results[f"width_{name}"] = self.width_sum[i] / observed
            results[f"winkler_{name}"] = self.winkler_sum[i] / observed
        for i, count in enumerate(self.pit_counts):
            results[f"pit_{i + 1}"] = count / observed
        share_below = self.below / observed  # [Q]: observed targets strictly below each level's forecast
        grid_levels = self.levels[self.crps_mask].double()
        results["calibration_error"] = (share_below[self.crps_mask] - grid_levels).abs().mean()
        for q, index in self.reported_levels.items():
            results[f"below_{q:g}"] = share_below[index]
        for h, (total, count) in enumerate(zip(self.crps_sum, self.observed)):
            results[f"crps_step_{h + 1}"] = total / count
        results["share_below"] = share_below
        return results


class CrossingRate(Metric):
    """The share of (window, step) forecasts ``[B, H, Q]`` whose quantiles decrease somewhere along the levels
    (observed target or not: crossing is a property of the forecast alone)."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("crossed", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("forecasts", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, prediction: torch.Tensor) -> None:
        decreasing = (prediction[..., 1:] < prediction[..., :-1]).any(dim=-1)  # [B, H]
        self.crossed += decreasing.double().sum()
        self.forecasts += decreasing.numel()

    def compute(self) -> torch.Tensor:
        return self.crossed / self.forecasts


def headline(results: dict[str, torch.Tensor]) -> dict[str, float]:
    """The scalar metrics, without the per-step CRPS, the PIT shares and the reliability curve, as plain floats
    (for logs and the progress bar)."""
    return {name: float(value) for name, value in results.items() if not name.startswith(PER_BIN_PREFIXES)}


class RandomLevelCRPS(Metric):
    """CRPS by the any-quantile paper's protocol: 2 x the mean pinball loss over levels drawn uniformly
    per window (``modules.quantile_levels.window_seeded_levels``), averaged over observed targets.

    An unbiased Monte-Carlo estimate of the CRPS integral, where the grid CRPS is the midpoint rule;
    on well-behaved forecasts the two agree within the Monte-Carlo error.
    """

    full_state_update = False

    def __init__(self, horizon: int) -> None:
        super().__init__()
        self.add_state("loss_sum", torch.zeros(horizon, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("observed", torch.zeros(horizon, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, levels: torch.Tensor) -> None:
        """prediction [B, H, Q] at ``levels`` [B, Q] (each window its own); target, mask [B, H]."""
        target = torch.where(mask, target.double(), torch.zeros_like(target, dtype=torch.float64))
        weight = mask.double()  # [B, H]
        crps = 2 * pinball(prediction.double(), target, levels.double()).mean(dim=-1)  # [B, H]
        self.loss_sum += (crps * weight).sum(dim=0)
        self.observed += weight.sum(dim=0)

    def update_batch(
        self, forecast: Callable[[WindowBatch, torch.Tensor], torch.Tensor], batch: WindowBatch, count: int
    ) -> None:
        """Draw ``count`` levels for each window of ``batch`` and score ``forecast(batch, levels [B, count])``,
        ``[B, H, count]``."""
        levels = window_seeded_levels(batch.series, batch.origin, count).float()  # [B, count]
        self.update(forecast(batch, levels), batch.target, batch.target_mask, levels)

    def compute(self) -> dict[str, torch.Tensor]:
        return {"crps_paper_protocol": self.loss_sum.sum() / self.observed.sum()}
