"""A saved model: a folder that holds everything production needs, and nothing that runs code when read.

    DIR/model.json                    format, format version, anyquantile version, alias, member count
    DIR/member-0/config.yaml          the member's resolved run config (the schema checks it on load)
    DIR/member-0/weights.safetensors  its weights: tensors only, read without pickle
    DIR/member-1/...                  further members: an ensemble averages their quantile forecasts
    DIR/calibration.json              optional: the conformal calibration ``anyquantile evaluate`` fitted on val

A folder is written beside its destination and renamed into place, so a failed save leaves nothing
half-written; an existing folder is replaced only when asked.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from anyquantile.experiment.builders import build_evaluation_levels, build_forecaster
from anyquantile.experiment.checkpoints import load_forecaster
from anyquantile.experiment.config import config_to_dict, merge_config
from anyquantile.experiment.errors import ConfigError, UsageError
from anyquantile.experiment.files import write_text_atomic
from anyquantile.inference.predictor import Predictor
from anyquantile.model.ensemble import Ensemble
from anyquantile.model.forecaster import AnyQuantileForecaster
from anyquantile.modules.conformal import LevelConformal

MODEL_FILE = "model.json"
CALIBRATION_FILE = "calibration.json"
FORMAT = "anyquantile-model"
FORMAT_VERSION = 1
DEFAULT_ALIAS = "AnyQuantile"


@dataclass
class SavedModel:
    """Trained members (one, or an ensemble), their configs, the calibration and the forecast columns' alias."""

    members: list[AnyQuantileForecaster]
    configs: list[DictConfig]
    calibration: LevelConformal | None = None
    alias: str = DEFAULT_ALIAS

    def __post_init__(self) -> None:
        if not self.members or len(self.members) != len(self.configs):
            raise UsageError("a model needs at least one member, each with its config")
        first = _window_settings(self.configs[0])
        for index, cfg in enumerate(self.configs[1:], start=1):
            if _window_settings(cfg) != first:
                raise UsageError(
                    f"ensemble member {index} reads other windows than member 0 (history, horizon, holidays or "
                    f"covariates differ): {_window_settings(cfg)} against {first}"
                )

    @classmethod
    def from_checkpoints(cls, checkpoints: Sequence[str | Path], alias: str = DEFAULT_ALIAS) -> "SavedModel":
        """The members trained into checkpoints by ``anyquantile train`` (several: an ensemble)."""
        if not checkpoints:
            raise UsageError("give at least one checkpoint")
        loaded = [load_forecaster(path) for path in checkpoints]
        return cls([model for model, _ in loaded], [cfg for _, cfg in loaded], alias=alias)

    def predictor(self) -> Predictor:
        cfg = self.configs[0]
        return Predictor(
            network=Ensemble(self.members),
            dataset=OmegaConf.to_object(cfg.dataset),
            evaluation_levels=build_evaluation_levels(cfg),
            calibration=self.calibration,
            alias=self.alias,
        )

    def manifest(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "anyquantile_version": version("anyquantile"),
            "alias": self.alias,
            "members": len(self.members),
        }


def _window_settings(cfg: DictConfig) -> tuple:
    """What a member's windows are made of: two members of an ensemble must agree on all of it."""
    data = cfg.dataset
    return (
        data.history_length,
        data.horizon,
        data.holidays,
        tuple(sorted(data.holiday_countries.items())),
        tuple(data.futr_exog_list),
        tuple(data.hist_exog_list),
        tuple(data.stat_exog_list),
    )


def save_model(model: SavedModel, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``model`` to the folder ``path`` (see the module's doc); an existing folder needs ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise UsageError(f"{path} exists; save to a new folder or pass overwrite=True (--overwrite)")
    if path.exists() and not (path / MODEL_FILE).is_file():
        raise UsageError(f"{path} exists and is not a saved model: it is not replaced")
    path.parent.mkdir(parents=True, exist_ok=True)
    # unique names beside the destination: a leftover of a killed save can never be taken for this one's
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.saving-"))
    replaced = staging.with_name(staging.name.replace(".saving-", ".replaced-"))
    moved = False
    try:
        for index, (member, cfg) in enumerate(zip(model.members, model.configs)):
            folder = staging / f"member-{index}"
            folder.mkdir()
            (folder / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(config_to_dict(cfg))))
            weights = {name: tensor.detach().cpu().contiguous() for name, tensor in member.state_dict().items()}
            save_file(weights, str(folder / "weights.safetensors"))
        if model.calibration is not None:
            (staging / CALIBRATION_FILE).write_text(json.dumps(model.calibration.state(), indent=1))
        (staging / MODEL_FILE).write_text(json.dumps(model.manifest(), indent=2))
        if path.exists():  # the old model moves aside until the new one is in place: a crash keeps one of them
            path.rename(replaced)
            moved = True
        staging.rename(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if moved and not path.exists():
            replaced.rename(path)  # the new model did not land: the old one comes back
        shutil.rmtree(replaced, ignore_errors=True)
    return path


def load_model(path: str | Path) -> SavedModel:
    """Read a folder written by :func:`save_model`; anything else is a UsageError that says what is wrong."""
    path = Path(path)
    manifest_file = path / MODEL_FILE
    if not manifest_file.is_file():
        raise UsageError(f"{path} is not a saved model (no {MODEL_FILE}); save one with Forecaster.save or export")
    try:
        manifest = json.loads(manifest_file.read_text())
    except json.JSONDecodeError as error:
        raise UsageError(f"{manifest_file} is not valid JSON: {error}") from None
    if manifest.get("format") != FORMAT:
        raise UsageError(f"{manifest_file} is not an anyquantile model (format {manifest.get('format')!r})")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise UsageError(
            f"{path} was saved in format version {manifest['format_version']} by anyquantile "
            f"{manifest.get('anyquantile_version')}; this anyquantile ({version('anyquantile')}) reads up to "
            f"version {FORMAT_VERSION}"
        )
    members, configs = [], []
    for index in range(int(manifest["members"])):
        folder = path / f"member-{index}"
        cfg = _read_config(folder / "config.yaml")
        forecaster = build_forecaster(cfg)
        try:
            weights = load_file(str(folder / "weights.safetensors"))
        except (OSError, SafetensorError) as error:
            raise UsageError(f"{folder / 'weights.safetensors'} cannot be read: {error}") from None
        try:
            forecaster.load_state_dict(weights)
        except RuntimeError as error:
            raise UsageError(f"{folder}: the weights do not fit the model of its config.yaml: {error}") from None
        members.append(forecaster.eval())
        configs.append(cfg)
    calibration = read_calibration(path)
    return SavedModel(members, configs, calibration, alias=str(manifest.get("alias", DEFAULT_ALIAS)))


def _read_config(file: Path) -> DictConfig:
    if not file.is_file():
        raise UsageError(f"{file} is missing: the saved model is incomplete")
    try:
        # OmegaConf reads YAML with a safe loader: a tag that would build a Python object is an error
        return merge_config(OmegaConf.to_container(OmegaConf.load(file)), source=str(file))
    except ConfigError as error:
        raise UsageError(str(error)) from None
    except yaml.YAMLError as error:
        raise UsageError(f"{file} is not a config anyquantile wrote: {error}") from None


def read_calibration(path: str | Path) -> LevelConformal | None:
    """The calibration saved with the model at ``path``, or None."""
    file = Path(path) / CALIBRATION_FILE
    if not file.is_file():
        return None
    try:
        state = json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise UsageError(f"{file} is not a calibration anyquantile wrote: {error}") from None
    return calibration_of(state, str(file))


def calibration_of(state: Any, source: str) -> LevelConformal:
    """The calibration a saved model keeps (``LevelConformal.state()``); anything else is a UsageError."""
    try:
        return LevelConformal.from_state(state)
    except (KeyError, TypeError, ValueError) as error:
        raise UsageError(f"{source} is not a calibration anyquantile wrote: {error}") from None


def write_calibration(path: str | Path, calibration: LevelConformal) -> Path:
    """Save ``calibration`` with the model at ``path`` (replacing one there), atomically."""
    path = Path(path)
    if not (path / MODEL_FILE).is_file():
        raise UsageError(f"{path} is not a saved model (no {MODEL_FILE})")
    return write_text_atomic(path / CALIBRATION_FILE, json.dumps(calibration.state(), indent=1))


def open_predictor(path: str | Path) -> Predictor:
    """The predictor of a saved model folder, or of an exported ``.onnx`` file (run by onnxruntime)."""
    path = Path(path)
    if path.suffix == ".onnx":
        from anyquantile.inference.onnx_model import load_onnx_predictor  # onnxruntime loads only for ONNX

        return load_onnx_predictor(path)
    return load_model(path).predictor()
