"""Small Lightning callbacks used by training and the benchmarks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lightning import Callback, Trainer
from lightning.pytorch.callbacks import Timer

from anyquantile.experiment.checkpoints import snapshot_files, snapshot_path, snapshot_step
from anyquantile.model.schedules import WarmupCosineToBudget


class Throughput(Callback):
    """Samples per second of training, two ways:

    - ``samples_per_second``: the whole training path — from the end of one step to the end of the
      next, so loading the batch, the step, logging and checkpointing count; validation does not;
    - ``compute_samples_per_second``: the step alone (forward, backward, optimiser), batch in hand.

    Times are host wall-clock (on a GPU, asynchronous kernels make "the step alone" a launch time).
    The first ``skip_steps`` steps are not timed: they include one-off costs (allocator warm-up,
    first-call dispatch) that would understate the steady rate of a short benchmark. The first step
    has no previous end, so the whole-path rate starts at the second.
    """

    def __init__(self, batch_size: int, skip_steps: int = 0) -> None:
        self.batch_size = batch_size
        self.skip_steps = skip_steps
        self.steps = 0  # every step run, timed or not
        self.timed_steps = 0  # the steps whose whole path ``seconds`` covers
        self.seconds = 0.0  # whole path of the timed steps
        self.compute_seconds = 0.0
        self._compute_steps = 0
        self._step_started: float | None = None
        self._last_end: float | None = None
        self._validation_started: float | None = None
        self._validation_seconds = 0.0  # since the last step's end

    def on_train_batch_start(self, trainer: Trainer, *args: Any) -> None:
        self._step_started = time.perf_counter()

    def on_train_batch_end(self, trainer: Trainer, *args: Any) -> None:
        now = time.perf_counter()
        self.steps += 1
        if self.steps > self.skip_steps:
            if self._step_started is not None:
                self.compute_seconds += now - self._step_started
                self._compute_steps += 1
            if self._last_end is not None:
                self.seconds += now - self._last_end - self._validation_seconds
                self.timed_steps += 1
        self._last_end, self._validation_seconds = now, 0.0

    def on_validation_start(self, trainer: Trainer, *args: Any) -> None:
        self._validation_started = time.perf_counter()

    def on_validation_end(self, trainer: Trainer, *args: Any) -> None:
        if self._validation_started is not None:
            self._validation_seconds += time.perf_counter() - self._validation_started
            self._validation_started = None

    @property
    def samples_per_second(self) -> float:
        return self.timed_steps * self.batch_size / self.seconds if self.seconds else 0.0

    @property
    def compute_samples_per_second(self) -> float:
        return self._compute_steps * self.batch_size / self.compute_seconds if self.compute_seconds else 0.0


class WallClockBudget(Timer):
    """Lightning's ``Timer`` (stop training after ``duration``), except that every call of ``train``
    gets the whole budget: a resumed run does not inherit the time stored in its checkpoint, which
    after a run that ended on its time limit would stop the resumed run at its first step."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass


class AnnealWithBudget(Callback):
    """Keeps a budget-ending schedule (``model.schedules.WarmupCosineToBudget``) on this run's budget.

    When training starts, the schedule gets back the settings it was built with from this run's
    config (on a resume, ``LambdaLR`` has just restored the checkpoint's: its ``max_steps`` and the
    earlier process's clock), and its wall clock starts with the time budget, when there is one.
    """

    def __init__(self, schedule: WarmupCosineToBudget, budget: WallClockBudget | None = None) -> None:
        self.schedule = schedule
        self.budget = budget
        self.settings = dict(vars(schedule))  # as built from the config, before any checkpoint is restored

    def on_train_start(self, trainer: Trainer, *args: Any) -> None:
        vars(self.schedule).update(self.settings)
        remaining = None if self.budget is None else self.budget.time_remaining()  # every call of train has it whole
        if remaining is not None:
            self.schedule.start_clock(remaining)


class Snapshots(Callback):
    """Keeps the ``keep`` latest of the checkpoints taken every ``every_n_steps`` training steps and
    at the end of training (``trainer.snapshots``): the members of a snapshot ensemble of one run.

    The final weights are always the newest member: under a schedule that anneals to the budget's end
    they are the best of the run, and a time budget rarely stops on a multiple of ``every_n_steps``.
    Snapshots need no validation, so a run that tests its final weights keeps them too. A resumed run
    continues the folder's list. Every rank saves (a collective under DDP); rank zero deletes.
    """

    def __init__(self, folder: str | Path, every_n_steps: int, keep: int) -> None:
        self.folder = Path(folder)
        self.every_n_steps = every_n_steps
        self.keep = keep
        self.paths: list[Path] = []  # oldest first

    def on_train_start(self, trainer: Trainer, *args: Any) -> None:
        # Listed once a resume has restored its step: the snapshots up to it continue the list, and any
        # taken after it (a resume from an older checkpoint) belong to a training that is being redone.
        # Every rank filters by step alone, so the lists agree whenever rank zero deletes.
        earlier = snapshot_files(self.folder)
        self.paths = [path for path in earlier if snapshot_step(path) <= trainer.global_step]
        if trainer.is_global_zero:
            for path in set(earlier) - set(self.paths):
                path.unlink(missing_ok=True)

    def on_train_batch_end(self, trainer: Trainer, *args: Any) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._take(trainer)

    def on_train_end(self, trainer: Trainer, *args: Any) -> None:
        if not self.paths or self.paths[-1] != snapshot_path(self.folder, trainer.global_step):
            self._take(trainer)

    def _take(self, trainer: Trainer) -> None:
        if trainer.fast_dev_run:  # one batch is no snapshot
            return
        path = snapshot_path(self.folder, trainer.global_step)
        trainer.save_checkpoint(path)
        self.paths.append(path)
        while len(self.paths) > self.keep:
            oldest = self.paths.pop(0)
            if trainer.is_global_zero:
                oldest.unlink(missing_ok=True)
