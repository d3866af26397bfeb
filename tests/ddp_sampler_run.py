"""A 2-process CPU DDP (gloo) training run with the adaptive sampler; each rank saves its sampler state
at the end of training. Run by tests/test_training.py as ``python tests/ddp_sampler_run.py OUT_DIR``;
Lightning starts rank 1 by running the same command again."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from lightning import Callback

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_run import tiny_config  # noqa: E402
from training.train import train  # noqa: E402


class SaveSamplerState(Callback):
    """Each rank writes its sampler's state when training ends (before the test loads a checkpoint)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir

    def on_train_end(self, trainer, pl_module) -> None:
        torch.save(pl_module.level_sampler.state_dict(), self.out_dir / f"rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    out = Path(sys.argv[1])
    cfg = tiny_config(
        out / "runs", "sampler=adaptive", "sampler.levels_per_sample=4", "trainer.devices=2",
        "trainer.num_threads=1", "trainer.max_steps=6", "trainer.val_every_n_steps=3",
    )
    train(cfg, callbacks=[SaveSamplerState(out)])
