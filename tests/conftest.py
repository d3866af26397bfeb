"""Fixtures shared by the tests: the repository's config folder and a tiny synthetic run that trains in seconds.

The project's packages are importable because ``pyproject.toml`` puts the repository on pytest's
path (``pythonpath``). The tiny run trains in fp32: bf16 autocast is fast only on CPUs with native
bf16 (AVX-512 BF16, AMX) and is emulated, many times slower, elsewhere, so the suite's time must
not depend on it; the tests of bf16 itself use small inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
from omegaconf import DictConfig

from experiment.config import load_config

REPO = Path(__file__).resolve().parents[1]

TINY_OVERRIDES = (
    "dataset.synthetic.num_series=2",
    "dataset.synthetic.num_hours=2880",  # 120 days from 2015-01-01
    "dataset.val_start=2015-03-15",
    "dataset.test_start=2015-04-10",
    "dataset.batch_size=64",
    "dataset.eval_batch_size=64",
    "model.num_blocks=2",
    "model.width=16",
    "optimizer.warmup_steps=2",
    "trainer.precision=32-true",
    "trainer.max_steps=4",
    "trainer.val_every_n_steps=2",
    "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=1",
    "evaluation.residual_window=168",
)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def config_dir() -> Path:
    return REPO / "config"


@pytest.fixture(scope="session")
def default_config(config_dir: Path) -> Path:
    """The default config, ``make demo``'s."""
    return config_dir / "nbeatsaq-synthetic.yaml"


@pytest.fixture(scope="session")
def tiny_overrides() -> list[str]:
    """Overrides that shrink the default config (or any synthetic config) to a run of seconds."""
    return list(TINY_OVERRIDES)


@pytest.fixture(scope="session")
def tiny_config_in(default_config: Path) -> Callable[..., DictConfig]:
    """``tiny_config_in(output_dir, *overrides)``: the tiny run writing its runs under ``output_dir``."""

    def make(output_dir: Path, *overrides: str) -> DictConfig:
        return load_config(default_config, [*TINY_OVERRIDES, f"output_dir={output_dir}", *overrides])

    return make


@pytest.fixture
def tiny_config(tmp_path: Path, tiny_config_in: Callable[..., DictConfig]) -> Callable[..., DictConfig]:
    """``tiny_config(*overrides)``: the tiny run writing its runs under this test's ``tmp_path / "runs"``."""
    return lambda *overrides: tiny_config_in(tmp_path / "runs", *overrides)
