"""Fixtures shared by the tests: the repository's config folder and a tiny synthetic run that trains in seconds.

The package is importable as ``anyquantile`` once installed (``make install``: editable); the
repository's own folders (``tests``, ``benchmarks``, ``tools``) are on pytest's path (``pythonpath``).
The tiny run trains in fp32: bf16 autocast is fast only on CPUs with native
bf16 (AVX-512 BF16, AMX) and is emulated, many times slower, elsewhere, so the suite's time must
not depend on it; the tests of bf16 itself use small inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pytest
from omegaconf import DictConfig

from anyquantile.experiment.config import load_config

if TYPE_CHECKING:
    import pandas as pd

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


# The tiny run for the Python API: the split keys come from the frame (Forecaster.fit), not from here.
TINY_API_OVERRIDES = tuple(override for override in TINY_OVERRIDES if not override.startswith("dataset.synthetic")) + (
    "trainer.max_steps=20",
)


@pytest.fixture(scope="session")
def history_frame() -> "pd.DataFrame":
    """Two synthetic series, 120 days hourly, as a long frame (``unique_id, ds, y``)."""
    from anyquantile.dataset.synthetic import SyntheticLoad, SyntheticLoadSpec

    return SyntheticLoad(SyntheticLoadSpec(num_series=2, num_hours=2880)).panel.to_long_frame()


@pytest.fixture(scope="session")
def tiny_api_overrides() -> list[str]:
    return list(TINY_API_OVERRIDES)


@pytest.fixture(scope="session")
def saved_model_dir(tmp_path_factory: pytest.TempPathFactory, history_frame) -> Path:
    """A tiny model fitted on ``history_frame`` (20 steps, seconds) and saved with ``Forecaster.save``."""
    from anyquantile import Forecaster

    root = tmp_path_factory.mktemp("saved-model")
    overrides = [*TINY_API_OVERRIDES, f"output_dir={root / 'runs'}"]
    forecaster = Forecaster("nbeatsaq-synthetic", overrides=overrides, verbose=False).fit(history_frame)
    return forecaster.save(root / "model")


@pytest.fixture(scope="session")
def predict_file() -> Callable[..., "pd.DataFrame"]:
    """``predict_file(checkpoint, data_file, quantiles, **options)``: the production path (``Predictor.forecast_frame``)
    of a checkpoint on a data file, at ``quantiles``; options: h, series, origin, calibrated, rearrange."""
    from anyquantile.dataset.loader import read_frame
    from anyquantile.inference.levels import OutputLevels
    from anyquantile.inference.saved_model import SavedModel

    def predict(checkpoint, data_file, quantiles, **options) -> "pd.DataFrame":
        predictor = SavedModel.from_checkpoints([checkpoint]).predictor()
        output = OutputLevels.of(predictor.alias, quantiles=quantiles)
        return predictor.forecast_frame(read_frame(Path(data_file)), output, **options)

    return predict
