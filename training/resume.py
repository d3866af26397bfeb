"""Exact resume: what a checkpoint must hold, beyond weights and optimiser, for a killed run to go on
as if it had never stopped, and how checkpoints reach the disk.

A run resumed with ``--resume`` from a checkpoint taken at step s trains the same steps, on the same
batches, with the same random draws, as the run left alone (CPU, same thread count: bit-identical
weights, optimiser and sampler state). That takes, besides what Lightning restores (weights,
optimiser, schedule, step and epoch counters, the level sampler's buffers):

- the batch order's position: :class:`~anyquantile.dataset.datamodule.IndexBatchSampler` takes each
  pass's place from the trainer's step, its order being a function of (seed, step) alone;
- every random generator (:class:`RandomStates`): torch's (CPU and the rank's GPU), numpy's and Python's,
  of every rank; they drive the training levels, dropout and anything a user's code draws;
- a recent resume point (:class:`ResumePoint`): ``last.ckpt`` every ``trainer.checkpoint_every_n_steps``;
- checkpoints written atomically (:class:`AtomicCheckpointIO`): a kill mid-write leaves the previous one.

Not exact: a run on a wall-clock budget (``trainer.max_time``) stops and anneals by the clock.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from lightning import Callback, Trainer
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from anyquantile.experiment.files import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic and durable (``experiment.files.atomic_path``)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        with atomic_path(path) as staging:
            super().save_checkpoint(checkpoint, staging, storage_options)


class RandomStates(Callback):
    """Keeps every random generator's state in the checkpoint, per rank, and restores it on resume.

    ``seed_everything`` at start-up makes a fresh run reproducible, but a resumed run would draw from
    the seed's start again rather than from where the interrupted run stood. The states are taken when
    a checkpoint is saved (under DDP every rank's, gathered: ranks may have drawn differently) and put
    back when training starts, just before the first resumed step. A resume with another number of
    ranks takes rank 0's states, with a warning: it cannot continue the same draws.
    """

    def __init__(self) -> None:
        self._to_restore: list[dict[str, Any]] | None = None
        self._world_size = 1

    def setup(self, trainer: Trainer, pl_module: Any, stage: str) -> None:
        self._world_size = trainer.world_size

    def state_dict(self) -> dict[str, Any]:
        own = random_states()
        if self._world_size > 1:  # the trainer's ranks (a process group of other work is not asked)
            ranks: list[Any] = [None] * self._world_size
            dist.all_gather_object(ranks, own)  # a collective: every rank saves a checkpoint (Lightning's rule)
            return {"ranks": ranks}
        return {"ranks": [own]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._to_restore = list(state_dict["ranks"])

    def on_train_start(self, trainer: Trainer, *args: Any) -> None:
        if self._to_restore is None:
            return
        ranks, self._to_restore = self._to_restore, None
        if len(ranks) != trainer.world_size:
            warnings.warn(
                f"the checkpoint holds the random states of {len(ranks)} rank(s), this run has "
                f"{trainer.world_size}: every rank continues from rank 0's, so the resumed run's draws differ",
                stacklevel=2,
            )
            ranks = [ranks[0]] * trainer.world_size
        set_random_states(ranks[trainer.global_rank])


class ResumePoint(Checkpoint):
    """Saves ``last.ckpt`` every ``every_n_steps`` training steps: where ``--resume last`` continues after
    a crash. Every rank takes part (saving is a collective under DDP); rank 0 writes.

    A step followed by a validation (``validates_every_n_steps``: when the run validates) is saved after
    it, once ``ModelCheckpoint`` has taken the score (both are ``Checkpoint`` callbacks, which Lightning
    runs last, in the order given): Lightning resumes such a checkpoint after the validation, as it does
    its own. Saved at the step's end instead, the resumed run would skip that validation (Lightning counts
    it done) and choose its best checkpoint without it. The last step is left to the final save.
    """

    def __init__(self, path: str | Path, every_n_steps: int, validates_every_n_steps: int | None = None) -> None:
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self.validates_every_n_steps = validates_every_n_steps
        self._after_validation: int | None = None  # the step whose save waits for its validation

    def on_train_batch_end(self, trainer: Trainer, *args: Any) -> None:
        step = trainer.global_step
        if self._after_validation is not None and self._after_validation < step:  # the validation never came
            warnings.warn(
                f"no validation ran after step {self._after_validation}: its resume point is saved a step later",
                stacklevel=2,
            )
            self._after_validation = None
            trainer.save_checkpoint(self.path)
        last = 0 < trainer.max_steps <= step  # the final save (``train``, when fit ends) writes this one
        if trainer.fast_dev_run or step % self.every_n_steps or last:
            return
        if self.validates_every_n_steps and step % self.validates_every_n_steps == 0:
            self._after_validation = step
        else:
            trainer.save_checkpoint(self.path)

    def on_validation_end(self, trainer: Trainer, *args: Any) -> None:
        if not trainer.sanity_checking and self._after_validation == trainer.global_step:
            self._after_validation = None
            trainer.save_checkpoint(self.path)


def random_states() -> dict[str, Any]:
    """This process's random generators, as tensors and plain data (what ``weights_only`` loading reads)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()  # this rank's device: a resume may see fewer GPUs
    return states


def set_random_states(states: dict[str, Any]) -> None:
    """Put back what :func:`random_states` took."""
    torch.set_rng_state(states["torch"])
    numpy = states["numpy"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state((numpy["kind"], keys, numpy["position"], numpy["has_gauss"], numpy["gauss"]))
    random.setstate(_as_tuples(states["python"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


def _as_tuples(value: Any) -> Any:
    """``random.setstate`` wants the tuples ``getstate`` gave; a checkpoint may hand them back as lists."""
    return tuple(_as_tuples(item) for item in value) if isinstance(value, (list, tuple)) else value
