"""Which levels a forecast is asked at, the columns they are returned in, and the reference grid that makes
the returned quantiles monotone without tying one level's answer to the others asked.

Column names follow neuralforecast, so that its users' code and ``utilsforecast.evaluation`` read our frames:
``level=[80, 90]`` gives ``<alias>-median, <alias>-lo-90, <alias>-lo-80, <alias>-hi-80, <alias>-hi-90`` (the
central 80 % interval is [q 0.10, q 0.90]); ``quantiles=[0.37]`` gives ``<alias>_ql0.37``; neither gives the
median as the point forecast ``<alias>``.

**Monotone output, independent per level.** Sorting the forecasts of the levels asked (the monotone
rearrangement, ``modules.rearrangement``) would make the 0.9 forecast depend on which other levels were asked.
Instead the network forecasts a fixed reference grid (the evaluation levels plus a few far-tail ones beyond
them); the evaluation levels are sorted among themselves, each tail is sorted and kept beyond them
(``Predictor.rearrange``), and each asked level is read off that grid by linear interpolation in the level.
On an evaluation level this is exactly the rearranged forecast that evaluation scores; between grid levels
it is monotone in the level; below the lowest reference level (1e-4) and above the highest it is constant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from anyquantile.experiment.errors import UsageError
from anyquantile.modules.quantile_levels import EvaluationLevels

# Far-tail levels added to the evaluation grid (whose outermost levels are 1 / (2K), 0.005 for K = 99).
TAIL_LEVELS = (1e-4, 1e-3, 2e-3, 1 - 2e-3, 1 - 1e-3, 1 - 1e-4)


@dataclass(frozen=True)
class OutputLevels:
    """The quantile levels of a request and the column each one is returned in, in column order."""

    columns: tuple[str, ...]
    levels: tuple[float, ...]  # [Q], the quantile level of each column

    @classmethod
    def of(
        cls, alias: str, level: Sequence[float] | None = None, quantiles: Sequence[float] | None = None
    ) -> "OutputLevels":
        """The columns of ``level`` (central interval coverages in %, neuralforecast's ``level``) or
        ``quantiles`` (levels in (0, 1)); neither: the median as the point forecast. A UsageError for both
        or for a value outside its range."""
        if level is not None and quantiles is not None:
            raise UsageError("give level (interval coverages in %) or quantiles (levels in (0, 1)), not both")
        if quantiles is not None:
            values = _numbers(quantiles, "quantiles")
            outside = [q for q in values if not 0.0 < q < 1.0]
            if outside:
                raise UsageError(f"quantiles must be inside (0, 1), got {outside}")
            unique = list(dict.fromkeys(values))
            return cls(tuple(f"{alias}_ql{q}" for q in unique), tuple(unique))
        if level is not None:
            values = _numbers(level, "level")
            outside = [value for value in values if not 0.0 < value < 100.0]
            if outside:
                raise UsageError(f"level must be inside (0, 100) (a coverage in %), got {outside}")
            ordered = sorted(set(values))
            columns, levels = [f"{alias}-median"], [0.5]
            for value in reversed(ordered):  # lower ends, widest interval first: ascending levels
                columns.append(f"{alias}-lo-{_level_name(value)}")
                levels.append((100.0 - value) / 200.0)  # exact for whole percentages: 0.05, not 0.0499...
            for value in ordered:
                columns.append(f"{alias}-hi-{_level_name(value)}")
                levels.append((100.0 + value) / 200.0)
            return cls(tuple(columns), tuple(levels))
        return cls((alias,), (0.5,))


def _numbers(values: Sequence[float], name: str) -> list[float]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise UsageError(f"{name} must be a list of numbers, got {values!r}")
    try:
        numbers = [float(value) for value in values]
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a list of numbers, got {list(values)!r}") from None
    if not numbers:
        raise UsageError(f"{name} is empty")
    if not all(math.isfinite(value) for value in numbers):
        raise UsageError(f"{name} must be finite numbers, got {numbers}")
    return numbers


def _level_name(value: float) -> str:
    """80 -> '80', 99.5 -> '99.5': the names neuralforecast and utilsforecast give interval columns."""
    return str(int(value)) if float(value).is_integer() else str(value)


def reference_levels(evaluation: EvaluationLevels) -> torch.Tensor:
    """The fixed grid ``[G]`` (float64, ascending) that production forecasts are sorted on: the evaluation
    levels and the :data:`TAIL_LEVELS` beyond them."""
    tails = torch.tensor(TAIL_LEVELS, dtype=torch.float64)
    outside = tails[(tails < evaluation.levels.min()) | (tails > evaluation.levels.max())]
    return torch.unique(torch.cat([evaluation.levels, outside]))  # sorted
