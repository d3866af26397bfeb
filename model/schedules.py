"""Learning-rate schedules, as multipliers of the base rate for ``torch.optim.lr_scheduler.LambdaLR``."""

from __future__ import annotations

import math
import time

from anyquantile.modules.options import Choice


class Schedule(Choice):
    """``optimizer.schedule``: what the rate does after its linear warm-up."""

    inverse_sqrt = "inverse_sqrt"  # decay as 1 / sqrt(step), never reaching zero (Vaswani et al. 2017)
    cosine = "cosine"  # cosine decay that reaches its floor exactly when the training budget is spent


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


class WarmupCosineToBudget:
    """Linear warm-up, then a cosine decay that reaches ``final_fraction`` when the budget runs out.

    multiplier(step) = min((step + 1) / warmup,  f + (1 - f) * (1 + cos(pi * p)) / 2)
    p = max(step / max_steps, share of the wall-clock budget spent), clipped to [0, 1]

    The wall clock counts once :meth:`start_clock` was called (``training.callbacks.AnnealWithBudget``
    calls it when training starts under ``trainer.max_time``) and is read when the rate is computed,
    so the rate of the step the time limit stops is the floor. Whichever budget runs out first, the
    run ends annealed, instead of at the rate of an inverse-square-root schedule that never anneals.
    The minimum of the ramp and the cosine makes the warm-up's end continuous. Every attribute is
    plain data: ``LambdaLR`` stores them in checkpoints, which are read with ``weights_only``.
    """

    def __init__(self, warmup_steps: int, max_steps: int, final_fraction: float = 0.01) -> None:
        if warmup_steps < 1 or max_steps < 1:
            raise ValueError(f"warmup_steps and max_steps must be >= 1, got {warmup_steps}, {max_steps}")
        if not 0.0 <= final_fraction < 1.0:
            raise ValueError(f"final_fraction must be in [0, 1), got {final_fraction}")
        self.warmup_steps = warmup_steps
        self.max_steps = max_steps
        self.final_fraction = final_fraction
        self.clock_seconds: float | None = None  # the wall-clock budget, once started
        self.clock_end: float | None = None  # time.monotonic() when it runs out

    def start_clock(self, seconds: float) -> None:
        """Decay along the wall clock too, from now: ``seconds`` of budget are left."""
        if seconds <= 0:
            raise ValueError(f"a wall-clock budget must be > 0 seconds, got {seconds}")
        self.clock_seconds, self.clock_end = seconds, time.monotonic() + seconds

    def progress(self, step: int) -> float:
        """The share of the budget spent after ``step`` steps, in [0, 1]: the steps' or the clock's, the larger."""
        spent = step / self.max_steps
        if self.clock_end is not None and self.clock_seconds is not None:
            spent = max(spent, 1.0 - (self.clock_end - time.monotonic()) / self.clock_seconds)
        return min(max(spent, 0.0), 1.0)

    def __call__(self, step: int) -> float:
        ramp = (step + 1) / self.warmup_steps
        cosine = 0.5 * (1.0 + math.cos(math.pi * self.progress(step)))
        return min(ramp, self.final_fraction + (1.0 - self.final_fraction) * cosine)
