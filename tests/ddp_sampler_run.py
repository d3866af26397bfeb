"""A 2-process CPU DDP (gloo) training run with the adaptive sampler, for tests/test_training.py.

    PYTHONPATH=REPO python tests/ddp_sampler_run.py OUT_DIR key=value ...
    PYTHONPATH=REPO torchrun --standalone --nproc_per_node=2 tests/ddp_sampler_run.py OUT_DIR key=value ...

Lightning starts rank 1 by running the same command again; torchrun starts both. Each rank saves its sampler state when
training ends, the windows of every training batch it drew and its thread count (``rank<r>.pt``),
and after ``train`` returns whether a process group is still alive (``rank<r>-group-alive.txt``) and the
run folder it trained in (``rank<r>-run-dir.txt``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from lightning import Callback

from anyquantile.experiment.config import load_config
from anyquantile.training.train import train

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config" / "nbeatsaq-synthetic.yaml"


class RecordRank(Callback):
    """Each rank writes its sampler's state when training ends (before the test loads a checkpoint),
    and which windows (series, origin) each of its training batches held."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.windows: list[torch.Tensor] = []
        self.epochs: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.windows.append(torch.stack([batch.series, batch.origin], dim=1))  # [B, 2]
        self.epochs.append(trainer.current_epoch)

    def on_train_end(self, trainer, pl_module) -> None:
        training = trainer.datamodule.datasets["train"].windows
        record = {
            "sampler": pl_module.level_sampler.state_dict(),
            "windows": self.windows,  # each batch's (series, origin) pairs
            "epochs": self.epochs,  # each batch's epoch
            "all_windows": torch.from_numpy(np.stack([training.series, training.origin], axis=1)),  # [N, 2]
            "threads": torch.get_num_threads(),
            "rank": trainer.global_rank,
        }
        torch.save(record, self.out_dir / f"rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    out = Path(sys.argv[1])
    cfg = load_config(DEFAULT_CONFIG, [*sys.argv[2:], f"output_dir={out / 'runs'}"])
    summary = train(cfg, callbacks=[RecordRank(out)])
    rank = os.environ.get("LOCAL_RANK", "0")  # Lightning sets it in the processes it starts, torchrun in all
    (out / f"rank{rank}-group-alive.txt").write_text(str(dist.is_initialized()))
    (out / f"rank{rank}-run-dir.txt").write_text(summary["run_dir"])
