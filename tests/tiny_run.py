"""A tiny synthetic run config that trains in seconds, for tests of the training path."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from training.config import load_config

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "config" / "nbeatsaq-synthetic.yaml"

TINY_OVERRIDES = [
    "dataset.synthetic.num_series=2",
    "dataset.synthetic.num_hours=2880",  # 120 days from 2015-01-01
    "dataset.val_start=2015-03-15",
    "dataset.test_start=2015-04-10",
    "dataset.batch_size=64",
    "dataset.eval_batch_size=64",
    "model.num_blocks=2",
    "model.width=16",
    "optimizer.warmup_steps=2",
    "trainer.max_steps=4",
    "trainer.val_every_n_steps=2",
    "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1",
    "evaluation.residual_window=168",
]


def tiny_config(output_dir: Path, *overrides: str) -> DictConfig:
    """The default config shrunk to seconds, writing its runs under ``output_dir``."""
    return load_config(DEFAULT_CONFIG, [*TINY_OVERRIDES, f"output_dir={output_dir}", *overrides])
