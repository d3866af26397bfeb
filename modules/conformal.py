"""Split-conformal calibration of quantile forecasts, fitted on one split (val) and applied to another.

Two forms, both fitted on forecasts ``[N, H, Q]`` and observations ``[N, H]`` with a mask:

- :class:`LevelConformal` shifts each level's forecast by a constant so that, on the calibration
  split, the share of targets below it is q: delta_q is the ceil((n + 1) q)-th smallest residual
  y - f_q (n observed targets). On exchangeable data P(y <= f_q + delta_q) is then in
  [q, q + 1 / (n + 1)) (the split-conformal argument of Romano, Patterson and Candès 2019,
  applied level by level).
- :class:`IntervalConformal` is conformalized quantile regression for central intervals: the
  score max(l - y, y - u) and its ceil((n + 1) c)-th smallest value Q widen (or, when Q < 0,
  narrow) the c-interval to [l - Q, u + Q], so that its coverage is at least c.

Both can be fitted per horizon step (``per_step``), as errors grow with the step. Shifting levels
independently can make quantiles cross; rearrange afterwards (``modules.rearrangement``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from anyquantile.modules.options import Choice
from anyquantile.modules.quantile_levels import interpolate_levels


class ConformalKind(Choice):
    """Which split-conformal correction ``evaluate`` fits on val and applies to the split it scores."""

    none = "none"
    level = "level"  # shift every level (LevelConformal), pooled over the horizon
    level_per_step = "level_per_step"  # ... per horizon step
    interval = "interval"  # move the central intervals' ends (IntervalConformal, CQR), pooled
    interval_per_step = "interval_per_step"  # ... per horizon step


def _order_statistic(scores: torch.Tensor, mask: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """The ceil((n + 1) level)-th smallest observed score along dim 0, ``scores`` [N, ...] -> [...].

    Unobserved scores are pushed to +inf so that they sort last; when ceil((n + 1) level) > n the
    guarantee needs an infinite correction, which is returned as inf.
    """
    n = mask.sum(dim=0)  # [...]
    ordered = torch.where(mask, scores, torch.full_like(scores, math.inf)).sort(dim=0).values  # [N, ...]
    rank = torch.ceil((n + 1) * level).long()  # [...], 1-based
    index = (rank - 1).clamp(0, scores.shape[0] - 1)
    value = ordered.gather(0, index.unsqueeze(0)).squeeze(0)
    return torch.where(rank > n, torch.full_like(value, math.inf), value)


def _calibration_mask(mask: torch.Tensor, per_step: bool) -> torch.Tensor:
    """[N, H] -> the mask the order statistics use: per step, or all steps pooled ([N * H, 1])."""
    return mask if per_step else mask.reshape(-1, 1)


class LevelConformal:
    """Per-level additive correction: f_q + delta_q, fitted so that a share q of targets falls below."""

    def __init__(self, levels: torch.Tensor, per_step: bool = False) -> None:
        self.levels = levels.double()  # [Q]
        self.per_step = per_step
        self.delta: torch.Tensor | None = None  # [H or 1, Q]

    def fit(self, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> "LevelConformal":
        """prediction [N, H, Q] at ``levels``; target, mask [N, H]."""
        residual = target.double()[..., None] - prediction.double()  # [N, H, Q]
        keep = _calibration_mask(mask, self.per_step)[..., None].expand(-1, -1, len(self.levels))  # [N', H', Q]
        residual = residual.reshape(keep.shape)
        self.delta = _order_statistic(residual, keep, self.levels)  # [H', Q]
        return self

    def apply(self, prediction: torch.Tensor) -> torch.Tensor:
        if self.delta is None:
            raise RuntimeError("fit the conformal correction before applying it")
        return prediction + self.delta.to(prediction)  # [N, H, Q] + [H or 1, Q]

    def shift_at(self, levels: torch.Tensor) -> torch.Tensor:
        """The correction at any ``levels`` [Q'] -> [H or 1, Q']: linear in the level between the fitted
        levels, the outermost fitted level's beyond them (what a saved model applies at the levels asked)."""
        if self.delta is None:
            raise RuntimeError("fit the conformal correction before applying it")
        return interpolate_levels(self.delta, self.levels, levels.double())

    def state(self) -> dict[str, Any]:
        """The fitted correction as plain data (JSON): what a saved model keeps (``calibration.json``)."""
        if self.delta is None:
            raise RuntimeError("fit the conformal correction before saving it")
        if not bool(torch.isfinite(self.delta).all()):
            raise ValueError(
                "the calibration split is too small for the outermost levels (an infinite correction): "
                "validate on more windows"
            )
        kind = ConformalKind.level_per_step if self.per_step else ConformalKind.level
        return {"kind": kind.value, "levels": self.levels.tolist(), "delta": self.delta.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "LevelConformal":
        """The correction :meth:`state` wrote; a ValueError for anything else."""
        kind = ConformalKind(state["kind"])
        if kind not in (ConformalKind.level, ConformalKind.level_per_step):
            raise ValueError(f"a saved calibration is of kind level or level_per_step, not {kind.value}")
        correction = cls(
            torch.tensor(state["levels"], dtype=torch.float64), per_step=kind == ConformalKind.level_per_step
        )
        levels = correction.levels
        if levels.dim() != 1 or len(levels) < 2:
            raise ValueError("a calibration needs at least two levels")
        if not bool(((levels > 0) & (levels < 1)).all()) or bool((levels.diff() <= 0).any()):
            raise ValueError("levels must be ascending, each inside (0, 1)")
        delta = torch.tensor(state["delta"], dtype=torch.float64)  # [H or 1, Q]
        if delta.dim() != 2 or delta.shape[1] != len(levels):
            raise ValueError(f"delta of shape {tuple(delta.shape)} for {len(levels)} levels")
        if not bool(torch.isfinite(delta).all()):
            raise ValueError("delta must be finite")
        correction.delta = delta
        return correction


class IntervalConformal:
    """Conformalized quantile regression: the c-interval [l, u] becomes [l - Q_c, u + Q_c]."""

    def __init__(self, coverages: tuple[float, ...], per_step: bool = False) -> None:
        for coverage in coverages:
            if not 0.0 < coverage < 1.0:
                raise ValueError(f"interval coverage must be in (0, 1), got {coverage}")
        self.coverages = torch.tensor(coverages, dtype=torch.float64)  # [I]
        self.per_step = per_step
        self.margin: torch.Tensor | None = None  # [H or 1, I]

    def fit(
        self, lower: torch.Tensor, upper: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
    ) -> "IntervalConformal":
        """lower, upper [N, H, I] (interval ends, one per coverage); target, mask [N, H]."""
        y = target.double()[..., None]
        score = torch.maximum(lower.double() - y, y - upper.double())  # [N, H, I]; > 0 outside
        keep = _calibration_mask(mask, self.per_step)[..., None].expand(-1, -1, len(self.coverages))
        self.margin = _order_statistic(score.reshape(keep.shape), keep, self.coverages)  # [H', I]
        return self

    def apply(self, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.margin is None:
            raise RuntimeError("fit the conformal correction before applying it")
        margin = self.margin.to(lower)
        return lower - margin, upper + margin
