"""Learning-rate schedules, as multipliers of the base rate for ``torch.optim.lr_scheduler.LambdaLR``."""

from __future__ import annotations

import math


class InverseSquareRootWarmup:
    """Linear warm-up over ``warmup_steps``, then decay as 1 / sqrt(step) (Vaswani et al. 2017).

    multiplier(step) = (step + 1) / warmup                 for step < warmup
                       sqrt(warmup / (step + 1))           afterwards
    so the rate peaks at the base rate when warm-up ends and is continuous there.
    """

    def __init__(self, warmup_steps: int) -> None:
        if warmup_steps < 1:
            raise ValueError(f"warmup_steps must be >= 1, got {warmup_steps}")
        self.warmup_steps = warmup_steps

    def __call__(self, step: int) -> float:
        done = step + 1
        if done < self.warmup_steps:
            return done / self.warmup_steps
        return math.sqrt(self.warmup_steps / done)
