"""A saved model as one ONNX file, and the :class:`Predictor` that serves it with onnxruntime (no torch weights).

    anyquantile export --model DIR --format onnx --out model.onnx
    anyquantile predict --model model.onnx --data history.csv --out forecast.csv

The graph is the network of every member, averaged as ``model.ensemble.Ensemble`` averages them (one member:
its network alone), in fp32:

    history [B, T] f32, history_mask [B, T] bool, calendar [B, T + H, C] f32, levels [B, Q] f32
        -> forecast [B, H, Q] f32 in data units

with the window count B and the level count Q free (dynamic axes). What a :class:`Predictor` needs besides
the network travels in the model's ``metadata_props``: the manifest of the saved model (alias, member count,
versions), member 0's resolved config (window shape, holidays, covariates, the evaluation level grid) and
the conformal calibration when there is one. The rest of the forecast path (reference grid, calibration,
rearrangement, frames) is the Predictor's, the same code as for the torch weights.

torch's dynamo exporter writes the graph. ONNX has no inverse error function, which the ``normal`` quantile
embedding uses (z(q) = sqrt(2) erfinv(2q - 1)), and neither exporter translates it; :func:`erfinv_onnx`
gives it to the exporter as torch computes it on the CPU: a rational first guess and two Newton steps.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from anyquantile.dataset.windows import WindowBatch, calendar_width
from anyquantile.experiment.builders import build_evaluation_levels
from anyquantile.experiment.config import config_to_dict, merge_config
from anyquantile.experiment.errors import ConfigError, UsageError
from anyquantile.inference.predictor import Predictor
from anyquantile.inference.saved_model import DEFAULT_ALIAS, FORMAT, FORMAT_VERSION, SavedModel, calibration_of
from anyquantile.modules.conformal import LevelConformal

INPUT_NAMES = ("history", "history_mask", "calendar", "levels")
OUTPUT_NAME = "forecast"
OPSET = 20  # onnxruntime >= 1.17 runs it; pinned so that a newer torch writes the same kind of file
GRAPH_VERSION = 1  # the inputs and output above; a reader refuses a newer one
# metadata_props keys
MANIFEST_KEY = "anyquantile.manifest"
CONFIG_KEY = "anyquantile.config"
CALIBRATION_KEY = "anyquantile.calibration"
GRAPH_VERSION_KEY = "anyquantile.graph_version"
# The shapes the graph is traced at: neither 0 nor 1 (torch.export fixes axes of those sizes) and unlike T, H
# and C, so that no axis is mistaken for another. The export is checked at other sizes.
TRACE_WINDOWS, TRACE_LEVELS = 3, 5
CHECK_SIZES = ((1, 7), (4, 1))  # (windows, levels): one window and one level are the edge cases of serving
CHECK_TOLERANCE = 1e-4  # of the largest forecast: the graph and torch differ by float rounding only


class EnsembleGraph(nn.Module):
    """The members' networks as one module of the four input tensors: their forecasts averaged, in fp32."""

    def __init__(self, networks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.networks = nn.ModuleList(networks)

    def forward(
        self, history: torch.Tensor, history_mask: torch.Tensor, calendar: torch.Tensor, levels: torch.Tensor
    ) -> torch.Tensor:
        # As Ensemble averages AnyQuantileForecaster.forecast: each member's prediction in fp32, then the mean.
        forecasts = [network(history, history_mask, calendar, levels).prediction.float() for network in self.networks]
        return torch.stack(forecasts).mean(dim=0)  # [B, H, Q]


def graph_of(model: SavedModel) -> EnsembleGraph:
    """The graph module of ``model``'s members: copies on the CPU in fp32 and eval mode (the model is untouched)."""
    networks = [copy.deepcopy(member.network).cpu().float().eval() for member in model.members]
    return EnsembleGraph(networks).eval()


def example_inputs(cfg: DictConfig, windows: int, levels: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Inputs of the shapes a model of ``cfg`` reads: ``windows`` windows, ``levels`` levels each."""
    T, H = cfg.dataset.history_length, cfg.dataset.horizon
    spec = OmegaConf.to_object(cfg.dataset).covariates()
    C = calendar_width(cfg.dataset.holidays, len(spec.futr) + len(spec.hist) + len(spec.stat))
    generator = torch.Generator().manual_seed(seed)
    history = 100 + 50 * torch.rand(windows, T, generator=generator)  # [B, T]
    history_mask = torch.rand(windows, T, generator=generator) > 0.1  # [B, T], a few hours missing
    calendar = torch.rand(windows, T + H, C, generator=generator)  # [B, T + H, C]
    levels_asked = 0.01 + 0.98 * torch.rand(windows, levels, generator=generator)  # [B, Q]
    return history, history_mask, calendar, levels_asked


# -- the inverse error function in ONNX ---------------------------------------------------------------------
# torch's calc_erfinv (ATen/native/Math.h): a rational approximation inside |y| <= 0.7 and one in the tails
_ERFINV_CENTRAL_NUMERATOR = (0.886226899, -1.645349621, 0.914624893, -0.140543331)
_ERFINV_CENTRAL_DENOMINATOR = (1.0, -2.118377725, 1.442710462, -0.329097515, 0.012229801)
_ERFINV_TAIL_NUMERATOR = (-1.970840454, -1.624906493, 3.429567803, 1.641345311)
_ERFINV_TAIL_DENOMINATOR = (1.0, 3.543889200, 1.637067800)
_ERFINV_CENTRAL_RANGE = 0.7


def _constant_like(value: float, like: Any) -> Any:
    from onnxscript import opset18 as op

    return op.CastLike(op.Constant(value_float=value), like)


def _polynomial(x: Any, coefficients: Sequence[float]) -> Any:
    """sum_k coefficients[k] x^k, by Horner's rule."""
    from onnxscript import opset18 as op

    result = _constant_like(coefficients[-1], x)
    for coefficient in reversed(coefficients[:-1]):
        result = op.Add(op.Mul(result, x), _constant_like(coefficient, x))
    return result


def erfinv_onnx(y: Any) -> Any:
    """``aten.erfinv`` in ONNX ops, as torch computes it on the CPU: the rational first guess, then two Newton
    steps on erf(x) = y, which bring it to float precision. Defined on (-1, 1); the network clamps q first."""
    from onnxscript import opset18 as op

    one = _constant_like(1.0, y)
    y_abs = op.Abs(y)
    y_squared = op.Mul(y, y)
    central = op.Div(
        op.Mul(y, _polynomial(y_squared, _ERFINV_CENTRAL_NUMERATOR)),
        _polynomial(y_squared, _ERFINV_CENTRAL_DENOMINATOR),
    )
    t = op.Sqrt(op.Neg(op.Log(op.Div(op.Sub(one, y_abs), _constant_like(2.0, y)))))
    tail = op.Div(op.Mul(op.Sign(y), _polynomial(t, _ERFINV_TAIL_NUMERATOR)), _polynomial(t, _ERFINV_TAIL_DENOMINATOR))
    x = op.Where(op.LessOrEqual(y_abs, _constant_like(_ERFINV_CENTRAL_RANGE, y)), central, tail)
    erf_slope = _constant_like(2.0 / math.sqrt(math.pi), y)  # d erf(x) / dx = 2 / sqrt(pi) exp(-x^2)
    for _ in range(2):
        x = op.Sub(x, op.Div(op.Sub(op.Erf(x), y), op.Mul(erf_slope, op.Exp(op.Neg(op.Mul(x, x))))))
    return x


# -- export ---------------------------------------------------------------------------------------------------
def onnx_metadata(model: SavedModel) -> dict[str, str]:
    """What :func:`load_onnx_predictor` rebuilds the Predictor from, as the strings ONNX metadata holds."""
    metadata = {
        GRAPH_VERSION_KEY: str(GRAPH_VERSION),
        MANIFEST_KEY: json.dumps(model.manifest()),
        CONFIG_KEY: json.dumps(config_to_dict(model.configs[0])),
    }
    if model.calibration is not None:
        metadata[CALIBRATION_KEY] = json.dumps(model.calibration.state())
    return metadata


def export_onnx(model: SavedModel, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``model`` (one member or an ensemble) to the ONNX file ``path`` (see the module's doc).

    The file is written beside its destination, checked with onnxruntime against torch at a window and level
    count other than the traced ones, and renamed into place: a failed export leaves nothing half-written.
    An existing file needs ``overwrite``.
    """
    path = Path(path)
    if path.suffix != ".onnx":
        raise UsageError(f"an ONNX export is a file ending in .onnx, got '{path.name}'")
    if path.is_dir():
        raise UsageError(f"{path} is a folder: export the ONNX model to a file")
    if path.exists() and not overwrite:
        raise UsageError(f"{path} exists; export to a new file or pass overwrite=True (--overwrite)")
    graph = graph_of(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.exporting-{os.getpid()}")
    try:
        program = _exported_program(graph, model.configs[0])
        program.model.metadata_props.update(onnx_metadata(model))
        program.save(str(staging), external_data=False)  # one file: the weights inside, not beside it
        _check_export(staging, graph, model.configs[0])
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    return path


def _exported_program(graph: EnsembleGraph, cfg: DictConfig) -> Any:
    """The dynamo exporter's program of ``graph``, the window and level axes dynamic."""
    windows, levels = torch.export.Dim("batch"), torch.export.Dim("levels")
    # fp32 as Ensemble forecasts: an autocast around the caller would otherwise be traced into the graph
    with torch.no_grad(), torch.autocast("cpu", enabled=False), _quiet_exporter():
        return torch.onnx.export(
            graph,
            example_inputs(cfg, TRACE_WINDOWS, TRACE_LEVELS),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_shapes={
                "history": {0: windows},
                "history_mask": {0: windows},
                "calendar": {0: windows},
                "levels": {0: windows, 1: levels},
            },
            opset_version=OPSET,
            dynamo=True,
            custom_translation_table={torch.ops.aten.erfinv.default: erfinv_onnx},
            verbose=False,
        )


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter without its notes that concern no user: torchvision's ops it skips, its own deprecations,
    that the four inputs' batch axes share one name."""
    registry = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registry.level
    registry.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r".*shares the same shape constraints.*", category=UserWarning)
            yield
    finally:
        registry.setLevel(level)


def _check_export(file: Path, graph: EnsembleGraph, cfg: DictConfig) -> None:
    """onnxruntime on ``file`` forecasts what torch does at each of :data:`CHECK_SIZES` (window and level counts
    the graph was not traced at); a RuntimeError if not."""
    try:
        session = onnx_session(file)
    except UsageError as error:  # our own file: a failure of the exporter, not of the user
        raise RuntimeError(str(error)) from None
    for windows, levels in CHECK_SIZES:
        inputs = example_inputs(cfg, windows, levels, seed=1)
        with torch.no_grad(), torch.autocast("cpu", enabled=False):
            expected = graph(*inputs).numpy()  # [B, H, Q]
        try:
            found = session.run([OUTPUT_NAME], dict(zip(INPUT_NAMES, (x.numpy() for x in inputs))))[0]
        except Exception as error:  # onnxruntime's errors derive from Exception only
            raise RuntimeError(f"onnxruntime cannot run the exported graph: {error}") from None
        difference = float(np.abs(found - expected).max()) if found.shape == expected.shape else math.inf
        if not difference <= CHECK_TOLERANCE * max(1.0, float(np.abs(expected).max())):
            raise RuntimeError(
                f"the exported graph does not forecast what the model does ({windows} windows, {levels} levels: "
                f"shape {found.shape} against {expected.shape}, largest difference {difference:.3g}); nothing is "
                "written"
            )


# -- serving ----------------------------------------------------------------------------------------------------
def onnx_session(path: str | Path, threads: int | None = None) -> Any:
    """An onnxruntime session of ``path`` on the CPU; ``threads``: its intra-op threads (None: onnxruntime's)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    # No spin-waiting after a run: the torch work between runs (sorting, interpolating) needs the same cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's errors (InvalidProtobuf, Fail, ...) derive from Exception only
        raise UsageError(f"{path} cannot be read as an ONNX model: {error}") from None


class OnnxNetwork:
    """An onnxruntime session as a :data:`inference.predictor.Network`: ``(batch, levels [Q] or [B, Q])`` ->
    forecasts ``[B, H, Q]`` fp32 in data units."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def __call__(self, batch: WindowBatch, levels: torch.Tensor) -> torch.Tensor:
        B = len(batch)
        asked = levels.detach().cpu().float().numpy()
        if asked.ndim == 1:  # one row of levels for every window: the graph takes one row per window
            asked = np.broadcast_to(asked, (B, asked.shape[0]))
        inputs = {
            "history": _array(batch.history, np.float32),  # [B, T]
            "history_mask": _array(batch.history_mask, np.bool_),  # [B, T]
            "calendar": _array(batch.calendar, np.float32),  # [B, T + H, C]
            "levels": np.ascontiguousarray(asked, dtype=np.float32),  # [B, Q]
        }
        (forecast,) = self.session.run([OUTPUT_NAME], inputs)
        return torch.from_numpy(forecast)  # [B, H, Q]


def _array(tensor: torch.Tensor, dtype: type) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=dtype)


def load_onnx_predictor(path: str | Path, threads: int | None = None) -> Predictor:
    """The Predictor of an ONNX file written by :func:`export_onnx`; any other file is a UsageError."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a folder: an ONNX export is one file (a saved model folder's name ends otherwise)")
    if not path.is_file():
        raise UsageError(f"not found: {path} (export one with anyquantile export --format onnx)")
    session = onnx_session(path, threads)
    metadata = session.get_modelmeta().custom_metadata_map
    manifest, cfg, calibration = read_onnx_metadata(metadata, path)
    names = tuple(value.name for value in session.get_inputs())
    if sorted(names) != sorted(INPUT_NAMES):
        raise UsageError(f"{path}: the graph's inputs are {list(names)}, not anyquantile's {list(INPUT_NAMES)}")
    return Predictor(
        network=OnnxNetwork(session),
        dataset=OmegaConf.to_object(cfg.dataset),
        evaluation_levels=build_evaluation_levels(cfg),
        calibration=calibration,
        alias=str(manifest.get("alias", DEFAULT_ALIAS)),
    )


def read_onnx_metadata(
    metadata: dict[str, str], path: str | Path
) -> tuple[dict[str, Any], DictConfig, LevelConformal | None]:
    """(manifest, member 0's config, calibration or None) from an export's ``metadata_props``."""
    if MANIFEST_KEY not in metadata or CONFIG_KEY not in metadata:
        raise UsageError(
            f"{path} is an ONNX model but not an anyquantile export (its metadata lacks {MANIFEST_KEY} or "
            f"{CONFIG_KEY}); export one with anyquantile export --format onnx"
        )
    manifest = _json(metadata, MANIFEST_KEY, path)
    written_as = manifest.get("format") if isinstance(manifest, dict) else None
    if written_as != FORMAT:
        raise UsageError(f"{path} is not an anyquantile model (format {written_as!r} in {MANIFEST_KEY})")
    newest = {"graph_version": GRAPH_VERSION, "format_version": FORMAT_VERSION}
    found = {"graph_version": metadata.get(GRAPH_VERSION_KEY, 0), "format_version": manifest.get("format_version", 0)}
    if any(not str(found[key]).isdigit() or int(found[key]) > newest[key] for key in newest):
        raise UsageError(
            f"{path} was exported by anyquantile {manifest.get('anyquantile_version')} in a newer format ({found}); "
            f"this anyquantile reads up to {newest}"
        )
    try:
        cfg = merge_config(_json(metadata, CONFIG_KEY, path), source=f"{path} ({CONFIG_KEY})")
    except ConfigError as error:
        raise UsageError(str(error)) from None
    calibration = None
    if CALIBRATION_KEY in metadata:
        calibration = calibration_of(_json(metadata, CALIBRATION_KEY, path), f"{path}: {CALIBRATION_KEY}")
    return manifest, cfg, calibration


def _json(metadata: dict[str, str], key: str, path: str | Path) -> Any:
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError as error:
        raise UsageError(f"{path}: the metadata {key} is not valid JSON: {error}") from None
