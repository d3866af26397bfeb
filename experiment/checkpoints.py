"""A checkpoint written by ``train`` read back: its stored config, and the forecaster rebuilt from it.

Every checkpoint carries the resolved run config (``forecast_config``, stored by the forecaster's
``on_save_checkpoint``, choices as plain strings), so a model is rebuilt from the file alone, through
the same schema and checks as a config loaded from YAML. Files are read with ``weights_only=True``:
a checkpoint that carries any other object (which unpickling would run) is refused.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from anyquantile.experiment.builders import build_forecaster
from anyquantile.experiment.config import merge_config
from anyquantile.experiment.errors import UsageError
from anyquantile.model.forecaster import AnyQuantileForecaster

CONFIG_KEY = "forecast_config"
CHECKPOINTS = "checkpoints"  # a run folder's checkpoint folder
SNAPSHOT_PREFIX = "snapshot-step="  # trainer.snapshots: checkpoints/snapshot-step=N.ckpt
_SNAPSHOT_FILE = re.compile(re.escape(SNAPSHOT_PREFIX) + r"(\d+)\.ckpt")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents; a missing file or one that ``train`` did not write is a UsageError."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint not found: {path}")
    try:
        # weights_only: tensors and plain data only, so that loading a file never runs code it carries;
        # mmap: the config is read without loading every tensor into memory first.
        checkpoint: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        raise UsageError(
            f"{path} is refused: it holds objects other than tensors and plain data, and loading it would run "
            f"their code ({str(error).splitlines()[-1] if str(error) else 'unpickling refused'})"
        ) from None
    except Exception as error:  # torch raises RuntimeError, EOFError, ... for what it cannot read
        raise UsageError(f"{path} is not a checkpoint torch can read: {error}") from None
    if not isinstance(checkpoint, dict) or CONFIG_KEY not in checkpoint:
        raise UsageError(f"{path} has no stored config; was it written by anyquantile train?")
    return checkpoint


def snapshot_path(folder: str | Path, step: int) -> Path:
    """Where the snapshot taken at training ``step`` lives in a run's checkpoint ``folder``."""
    return Path(folder, f"{SNAPSHOT_PREFIX}{step}.ckpt")


def snapshot_step(path: str | Path) -> int | None:
    """The training step of a snapshot file's name (``snapshot-step=N.ckpt``); None for any other name."""
    found = _SNAPSHOT_FILE.fullmatch(Path(path).name)
    return int(found.group(1)) if found else None


def snapshot_files(folder: str | Path) -> list[Path]:
    """The snapshot checkpoints in a run's checkpoint ``folder``, oldest first (none: empty)."""
    found = [path for path in Path(folder).glob(f"{SNAPSHOT_PREFIX}*.ckpt") if snapshot_step(path) is not None]
    return sorted(found, key=snapshot_step)


def snapshot_checkpoints(run_dir: str | Path) -> list[str]:
    """A run's snapshot checkpoints (``trainer.snapshots``), oldest first; none is a UsageError."""
    found = snapshot_files(Path(run_dir, CHECKPOINTS))
    if not found:
        raise UsageError(f"no snapshot checkpoints in {Path(run_dir, CHECKPOINTS)}: train with trainer.snapshots=K")
    return [str(path) for path in found]


def stored_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The run config stored in a checkpoint, with ``key=value`` overrides, checked like a loaded config."""
    return merge_config(read_checkpoint(path)[CONFIG_KEY], overrides, source=str(path))


def load_forecaster(path: str | Path) -> tuple[AnyQuantileForecaster, DictConfig]:
    """Rebuild a trained forecaster (in eval mode) and its config from a checkpoint written by ``train``."""
    checkpoint = read_checkpoint(path)
    cfg = merge_config(checkpoint[CONFIG_KEY], source=str(path))
    forecaster = build_forecaster(cfg)
    forecaster.load_state_dict(checkpoint["state_dict"])
    return forecaster.eval(), cfg
