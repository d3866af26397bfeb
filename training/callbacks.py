"""Small Lightning callbacks used by training and the benchmarks."""
from __future__ import annotations

import time
from typing import Any

from lightning import Callback, Trainer
from lightning.pytorch.callbacks import Timer


class Throughput(Callback):
    """Wall-clock time and samples per second of training steps (validation excluded).

    The first ``skip_steps`` steps are not timed: they include one-off costs (allocator warm-up,
    first-call dispatch) that would understate the steady rate of a short benchmark.
    """

    def __init__(self, batch_size: int, skip_steps: int = 0) -> None:
        self.batch_size = batch_size
        self.skip_steps = skip_steps
        self.seconds = 0.0
        self.steps = 0  # every step run, timed or not
        self._timed_steps = 0
        self._started: float | None = None

    def on_train_batch_start(self, trainer: Trainer, *args: Any) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer: Trainer, *args: Any) -> None:
        self.steps += 1
        if self._started is not None and self.steps > self.skip_steps:
            self.seconds += time.perf_counter() - self._started
            self._timed_steps += 1

    @property
    def samples_per_second(self) -> float:
        return self._timed_steps * self.batch_size / self.seconds if self.seconds else 0.0


class WallClockBudget(Timer):
    """Lightning's ``Timer`` (stop training after ``duration``), except that every call of ``train``
    gets the whole budget: a resumed run does not inherit the time stored in its checkpoint, which
    after a run that ended on its time limit would stop the resumed run at its first step."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass
