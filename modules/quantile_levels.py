"""Fixed sets of quantile levels used for evaluation, with look-up by level (never by position)."""
from __future__ import annotations

import torch

DEFAULT_INTERVALS = (0.5, 0.8, 0.9, 0.95)


def midpoint_grid(num_levels: int) -> torch.Tensor:
    """The K midpoints (k - 1/2) / K of a uniform partition of (0, 1), ``[K]`` float64.

    The mean pinball loss over this grid is the midpoint rule for the integral over q, so
    2 * mean is a CRPS approximation whose error shrinks as 1/K^2 for smooth quantile curves.
    """
    if num_levels < 1:
        raise ValueError(f"the level grid needs at least one level, got {num_levels}")
    return (torch.arange(num_levels, dtype=torch.float64) + 0.5) / num_levels


class EvaluationLevels:
    """The levels a forecast is evaluated at: a dense CRPS grid plus the median, interval ends and extras.

    ``levels`` is sorted and free of duplicates; ``crps_mask`` marks the grid levels (the
    others are only used for intervals and calibration); ``extra_levels`` (e.g. 0.01 and 0.99) are
    levels whose calibration is reported by name; ``index(q)`` finds a level by value within a tolerance.
    """

    def __init__(
        self,
        grid_size: int = 99,
        intervals: tuple[float, ...] = DEFAULT_INTERVALS,
        extra_levels: tuple[float, ...] = (),
        tolerance: float = 1e-9,
    ):
        for coverage in intervals:
            if not 0.0 < coverage < 1.0:
                raise ValueError(f"interval coverage must be in (0, 1), got {coverage}")
        for level in extra_levels:
            if not 0.0 < level < 1.0:
                raise ValueError(f"calibration levels must be in (0, 1), got {level}")
        self.grid = midpoint_grid(grid_size)
        self.intervals = tuple(float(c) for c in intervals)
        self.extra_levels = tuple(float(q) for q in extra_levels)
        self.tolerance = tolerance
        extra = [0.5, *self.extra_levels] + [end for c in self.intervals for end in interval_ends(c)]
        candidates = torch.cat([self.grid, torch.tensor(extra, dtype=torch.float64)]).sort().values
        keep = torch.ones_like(candidates, dtype=torch.bool)
        keep[1:] = (candidates[1:] - candidates[:-1]) > tolerance
        self.levels = candidates[keep]  # [Q] float64
        distance = (self.levels[:, None] - self.grid[None, :]).abs()  # [Q, K]
        self.crps_mask = distance.min(dim=1).values <= tolerance  # [Q]

    def __len__(self) -> int:
        return len(self.levels)

    def index(self, level: float) -> int:
        """Position of ``level`` in ``levels``; raises if it is not there (within the tolerance)."""
        distance = (self.levels - level).abs()
        position = int(distance.argmin())
        if distance[position] > self.tolerance:
            raise KeyError(f"level {level} is not among the evaluation levels")
        return position


def interval_ends(coverage: float) -> tuple[float, float]:
    """Lower and upper level of the central interval with the given coverage."""
    tail = (1.0 - coverage) / 2.0
    return tail, 1.0 - tail
