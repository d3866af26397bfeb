"""Lightning data module over window batches: shuffled index batches in, gathered tensors out."""

from __future__ import annotations

import warnings
from typing import Callable, Iterator

import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Sampler

from anyquantile.dataset.panel import HourlyPanel
from anyquantile.dataset.windows import WindowBatches, WindowIndex, WindowShape


class IndexBatchSampler(Sampler[torch.Tensor]):
    """Yields 1-D tensors of window indices, one per batch, so that a batch is one gather.

    Shuffling is seeded per (seed, epoch), so a run is reproducible. In training, given ``steps_taken``
    (the trainer's optimiser steps, one per batch of this rank), each pass reads it when it starts and
    takes its place from it alone: epoch s // len(self), after the s % len(self) batches that epoch has
    already given. The order is then a function of (seed, step): a run resumed at step s, even one that
    stopped at its ``max_steps`` in mid-epoch and goes on with a larger one, trains exactly the batches
    the run left alone would have trained (the epoch Lightning counts, ``set_epoch``, is not used then).

    Under DDP, in training (shuffled) each rank takes every ``world_size``-th batch and every rank gets
    the same number of batches (the few left over are dropped for that epoch), so that no rank waits at
    a gradient all-reduce that the others never reach. In evaluation each rank takes one contiguous
    share of the windows, so every window is scored exactly once and no rank is left without a batch
    while there are at least ``world_size`` windows.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        steps_taken: Callable[[], int] | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.num_items, self.batch_size, self.shuffle = num_items, batch_size, shuffle
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.steps_taken = steps_taken
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rank_batches(self, epoch: int) -> list[torch.Tensor]:
        if not self.shuffle:
            share = torch.arange(self.num_items).tensor_split(self.world_size)[self.rank]
            return list(share.split(self.batch_size)) if len(share) else []
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        batches = torch.randperm(self.num_items, generator=generator).split(self.batch_size)
        return list(batches[self.rank :: self.world_size][: len(self)])

    def __iter__(self) -> Iterator[torch.Tensor]:
        # read when the pass starts (its first batch is asked for), not when the iterator is made
        if self.steps_taken is None or not self.shuffle or len(self) == 0:
            yield from self._rank_batches(self.epoch)
            return
        epoch, done = divmod(self.steps_taken(), len(self))
        yield from self._rank_batches(epoch)[done:]

    def __len__(self) -> int:
        if self.shuffle:
            return -(-self.num_items // self.batch_size) // self.world_size
        share = len(range(self.num_items)[self.rank :: self.world_size])  # the size of this rank's tensor_split share
        return -(-share // self.batch_size)


class TrainLoader(DataLoader):
    """The training loader, with the state Lightning keeps in checkpoints (``state_dict`` and
    ``load_state_dict``; a loader without them is "not resumable" to Lightning).

    The position itself needs no state: the sampler continues at the trainer's restored step
    (``IndexBatchSampler``'s ``steps_taken``). What is kept is the layout the position is counted in, so that
    a resume on other data, batch size, seed or number of ranks is told that its batches are not
    those the interrupted run would have trained on.
    """

    sampler: IndexBatchSampler

    def state_dict(self) -> dict[str, int]:
        sampler = self.sampler
        return {
            "batches_per_epoch": len(sampler),
            "windows": sampler.num_items,
            "batch_size": sampler.batch_size,
            "seed": sampler.seed,
            "world_size": sampler.world_size,
        }

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        current = self.state_dict()
        changed = [
            f"{key} {value} -> {current.get(key)}" for key, value in state_dict.items() if current.get(key) != value
        ]
        if changed:
            warnings.warn(
                f"resuming with another batch layout ({', '.join(changed)}): training continues, on other batches "
                "than the interrupted run would have seen",
                stacklevel=2,
            )


class WindowDataModule(LightningDataModule):
    """Serves the windows of each split in batches of gathered tensors (see ``WindowBatches``)."""

    def __init__(
        self,
        panel: HourlyPanel,
        shape: WindowShape,
        splits: dict[str, WindowIndex],
        batch_size: int,
        eval_batch_size: int,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.shape = shape
        self.datasets = {name: WindowBatches(panel, shape, windows) for name, windows in splits.items()}
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.seed, self.num_workers = seed, num_workers

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        rank, world_size = 0, 1
        if self.trainer is not None:
            rank, world_size = self.trainer.global_rank, self.trainer.world_size
        # training batches follow the trainer's step (restored on resume before the loaders run)
        steps = (lambda: self.trainer.global_step) if shuffle and self.trainer is not None else None
        sampler = IndexBatchSampler(len(self.datasets[split]), batch_size, shuffle, self.seed, rank, world_size, steps)
        # batch_size=None: each item the sampler yields is already a whole batch of indices.
        return (TrainLoader if shuffle else DataLoader)(
            self.datasets[split],
            sampler=sampler,
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            # Every pass of a loader draws its workers' base seed from this generator; without one it
            # would draw from torch's global generator, and a resumed run, which starts its first pass
            # before the random states are restored, would be one draw off the run left alone.
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test" if "test" in self.datasets else "val", self.eval_batch_size, shuffle=False)
