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


def interpolate_levels(values: torch.Tensor, grid: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """``values`` ``[..., G]`` at the ascending ``grid`` ``[G]`` read at ``levels`` ``[Q]``: piecewise linear in
    the level, constant beyond the grid's ends. Sorted ``values`` give forecasts monotone in the level."""
    grid, levels = grid.double(), levels.double()
    upper = torch.searchsorted(grid, levels).clamp(1, len(grid) - 1)  # [Q]
    lower = upper - 1
    weight = ((levels - grid[lower]) / (grid[upper] - grid[lower])).clamp(0.0, 1.0).to(values.dtype)  # [Q]
    return values[..., lower] * (1 - weight) + values[..., upper] * weight


def interval_ends(coverage: float) -> tuple[float, float]:
    """Lower and upper level of the central interval with the given coverage."""
    tail = (1.0 - coverage) / 2.0
    return tail, 1.0 - tail


_MASK64 = (1 << 64) - 1


def _mix64(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser on int64 tensors (wrapping arithmetic): a well-spread hash of each value."""
    x = x ^ _logical_shift(x, 30)
    x = x * _signed(0xBF58476D1CE4E5B9)
    x = x ^ _logical_shift(x, 27)
    x = x * _signed(0x94D049BB133111EB)
    return x ^ _logical_shift(x, 31)


def _signed(value: int) -> int:
    """A 64-bit pattern as the int64 that holds it."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _logical_shift(x: torch.Tensor, bits: int) -> torch.Tensor:
    """x >>> bits for int64 tensors (torch's >> is arithmetic: it would copy the sign bit)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def window_seeded_levels(series: torch.Tensor, origin: torch.Tensor, count: int, seed: int = 0) -> torch.Tensor:
    """``count`` levels per window, uniform on (0, 1), fixed by (seed, series, origin) alone, ``[B, count]`` float64.

    The any-quantile paper scores CRPS as 2 x the mean pinball loss over levels drawn uniformly per
    window. Drawing them from a hash of the window's identity (not from a random stream) makes them
    the same whatever the batch, the batch order or the number of DDP ranks.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    key = _mix64(_mix64(series.long() + _signed(0x9E3779B97F4A7C15 * (seed + 1) & _MASK64)) ^ origin.long())  # [B]
    counters = torch.arange(count, dtype=torch.long, device=series.device)  # [count]
    bits = _mix64(key[:, None] + counters[None, :] * _signed(0x9E3779B97F4A7C15))  # [B, count]
    # the top 53 bits as an integer in [0, 2^53), then the midpoint of its cell: never exactly 0 or 1
    return (_logical_shift(bits, 11).double() + 0.5) / float(1 << 53)
