"""ONNX export (inference/onnx_model.py) and ``anyquantile export``: onnxruntime forecasts what torch does, at
any window and level count; an ensemble is the mean of its members; the metadata rebuilds the predictor; the
command line writes folders and files and refuses what it cannot do, clearly.

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_onnx.py
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pandas as pd
import pytest
import torch
from onnx import TensorProto, helper

from anyquantile.cli import main as anyquantile_main
from anyquantile.experiment.errors import UsageError
from anyquantile.inference import onnx_model
from anyquantile.inference.levels import OutputLevels
from anyquantile.inference.onnx_model import (
    CALIBRATION_KEY,
    MANIFEST_KEY,
    OnnxNetwork,
    erfinv_onnx,
    export_onnx,
    load_onnx_predictor,
)
from anyquantile.inference.predictor import concat_windows
from anyquantile.inference.saved_model import SavedModel, load_model, open_predictor
from anyquantile.modules.conformal import LevelConformal
from anyquantile.training.train import train

ALIAS = "Onnx"
TOLERANCE = 1e-4  # of the largest forecast: onnxruntime and torch differ by float rounding only


def assert_close(found: np.ndarray, expected: np.ndarray) -> None:
    """``found`` equals ``expected`` within :data:`TOLERANCE` of the largest forecast (MW, in the thousands)."""
    found, expected = np.asarray(found, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert found.shape == expected.shape
    np.testing.assert_allclose(found, expected, rtol=0, atol=TOLERANCE * np.abs(expected).max())


def forecast_values(frame: pd.DataFrame) -> np.ndarray:
    return frame.drop(columns=["unique_id", "ds"]).to_numpy()


def fitted_calibration(horizon: int) -> LevelConformal:
    """A level calibration fitted on made-up forecasts and targets: shifts that differ level by level."""
    generator = torch.Generator().manual_seed(0)
    levels = torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95])
    prediction = 1000 + 100 * torch.randn(64, horizon, 1, generator=generator).expand(-1, -1, len(levels))
    target = 1000 + 150 * torch.randn(64, horizon, generator=generator)
    return LevelConformal(levels).fit(prediction, target, torch.ones(64, horizon, dtype=torch.bool))


@pytest.fixture(scope="module")
def calibrated(saved_model_dir) -> SavedModel:
    """The tiny saved model with a calibration and its own alias."""
    model = load_model(saved_model_dir)
    calibration = fitted_calibration(model.configs[0].dataset.horizon)
    return SavedModel(model.members, model.configs, calibration=calibration, alias=ALIAS)


@pytest.fixture(scope="module")
def calibrated_onnx(calibrated, tmp_path_factory):
    return export_onnx(calibrated, tmp_path_factory.mktemp("onnx") / "model.onnx")


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory, tiny_config_in) -> list[str]:
    """Two really different members: other seeds, and the second feeds q as (q, z(q)) (erfinv in the graph)."""
    folder = tmp_path_factory.mktemp("members")
    normal = ("model.quantile_embedding=normal", "model.quantile_embedding_dim=2")
    configs = [tiny_config_in(folder / "a", "seed=1"), tiny_config_in(folder / "b", "seed=2", *normal)]
    return [train(cfg, echo=False)["checkpoint"] for cfg in configs]


@pytest.fixture(scope="module")
def history_file(history_frame, tmp_path_factory):
    file = tmp_path_factory.mktemp("history") / "history.csv"
    history_frame.to_csv(file, index=False)
    return file


# -- the network ---------------------------------------------------------------------------------------------
def test_erfinv_in_onnx_is_torchs(tmp_path):
    class Erfinv(torch.nn.Module):
        def forward(self, y: torch.Tensor) -> torch.Tensor:
            return torch.special.erfinv(y)

    file = tmp_path / "erfinv.onnx"
    program = torch.onnx.export(
        Erfinv().eval(),
        (torch.rand(5) - 0.5,),
        dynamic_shapes=({0: torch.export.Dim("n")},),
        dynamo=True,
        custom_translation_table={torch.ops.aten.erfinv.default: erfinv_onnx},
        verbose=False,
    )
    program.save(str(file), external_data=False)
    # both branches (|y| <= 0.7 and the tails) and the levels the network clamps to, 1e-6 and 1 - 1e-6
    y = torch.cat([torch.linspace(-0.999, 0.999, 2001), torch.tensor([2e-6 - 1, 1 - 2e-6, 0.0, 0.7, -0.7])])
    found = onnx_model.onnx_session(file).run(None, {"y": y.numpy()})[0]
    np.testing.assert_allclose(found, torch.special.erfinv(y).numpy(), rtol=1e-5, atol=1e-6)


def test_the_graph_forecasts_what_torch_does_at_other_window_and_level_counts(
    calibrated, calibrated_onnx, history_frame
):
    torch_predictor, onnx_predictor = calibrated.predictor(), load_onnx_predictor(calibrated_onnx)
    panel = torch_predictor.panel(history_frame)
    origins = ["2015-03-01 00:00", "2015-03-02 05:00", "2015-03-20 13:00", "2015-04-02 23:00"]
    batch = concat_windows([torch_predictor.prepare(panel, origin=origin) for origin in origins])  # [8, ...]
    assert len(batch) not in (onnx_model.TRACE_WINDOWS, *(size for size, _ in onnx_model.CHECK_SIZES))
    for levels in (torch.tensor([0.5]), torch.linspace(0.01, 0.99, 99), torch.rand(len(batch), 11)):
        with torch.no_grad():
            expected = torch_predictor.network(batch, levels)  # [B, H, Q]
        assert_close(onnx_predictor.network(batch, levels), expected)


@pytest.mark.parametrize(
    "level, quantiles, series, rearrange, calibrated_forecast",
    [
        ([80, 95], None, None, True, False),
        (None, [0.05, 0.37, 0.5, 0.99], None, False, False),
        (None, [0.9], ["synthetic_01"], False, False),  # one window, one level
        (None, list(np.linspace(0.02, 0.98, 13)), None, True, True),
        ([50], None, ["synthetic_00"], False, True),
    ],
)
def test_the_onnx_predictor_forecasts_the_torch_predictors_frames(
    calibrated, calibrated_onnx, history_frame, level, quantiles, series, rearrange, calibrated_forecast
):
    output = OutputLevels.of(ALIAS, level, quantiles)
    frames = [
        predictor.forecast_frame(
            history_frame, output, series=series, calibrated=calibrated_forecast, rearrange=rearrange
        )
        for predictor in (calibrated.predictor(), load_onnx_predictor(calibrated_onnx))
    ]
    pd.testing.assert_frame_equal(frames[0][["unique_id", "ds"]], frames[1][["unique_id", "ds"]])
    assert list(frames[1].columns[2:]) == list(output.columns)
    assert_close(forecast_values(frames[1]), forecast_values(frames[0]))


def test_the_metadata_rebuilds_the_predictor(calibrated, calibrated_onnx):
    predictor, expected = open_predictor(calibrated_onnx), calibrated.predictor()
    assert isinstance(predictor.network, OnnxNetwork)
    assert predictor.alias == ALIAS
    assert predictor.dataset == expected.dataset
    torch.testing.assert_close(predictor.reference, expected.reference)
    torch.testing.assert_close(predictor.calibration.delta, calibrated.calibration.delta)
    torch.testing.assert_close(predictor.calibration.levels, calibrated.calibration.levels)
    assert predictor.calibration.delta.abs().max() > 0
    metadata = {prop.key: prop.value for prop in onnx.load(str(calibrated_onnx)).metadata_props}
    assert json.loads(metadata[MANIFEST_KEY]) == calibrated.manifest()
    assert json.loads(metadata[CALIBRATION_KEY]) == calibrated.calibration.state()


def with_metadata(source, destination, **changes: str | None) -> None:
    """A copy of the ONNX file ``source`` with metadata keys changed (None: dropped), ``_`` for ``.`` in keys."""
    proto = onnx.load(str(source))
    metadata = {prop.key: prop.value for prop in proto.metadata_props}
    for key, value in changes.items():
        metadata.pop(key.replace("_", ".", 1), None)
        if value is not None:
            metadata[key.replace("_", ".", 1)] = value
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, metadata)
    onnx.save(proto, str(destination))


def test_a_model_without_calibration_exports_none_and_refuses_calibrated_forecasts(
    calibrated, calibrated_onnx, tmp_path, history_frame
):
    assert CALIBRATION_KEY not in onnx_model.onnx_metadata(SavedModel(calibrated.members, calibrated.configs))
    with_metadata(calibrated_onnx, tmp_path / "plain.onnx", anyquantile_calibration=None)  # what that export holds
    predictor = load_onnx_predictor(tmp_path / "plain.onnx")
    assert predictor.calibration is None
    with pytest.raises(UsageError, match="no conformal calibration"):
        predictor.forecast_frame(history_frame, OutputLevels.of(ALIAS), calibrated=True)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(anyquantile_graph_version="2"), "in a newer format"),
        (dict(anyquantile_manifest='{"format": "other"}'), "not an anyquantile model .format 'other'"),
        (dict(anyquantile_manifest="{not json"), "anyquantile.manifest is not valid JSON"),
        (dict(anyquantile_config='{"model": {"widht": 8}}'), "unknown config key 'model.widht'"),
        (dict(anyquantile_calibration='{"kind": "interval"}'), "anyquantile.calibration is not a calibration"),
        (dict(anyquantile_config=None), "not an anyquantile export"),
    ],
)
def test_metadata_that_cannot_be_read_is_a_clear_error(calibrated_onnx, tmp_path, changes, message):
    with_metadata(calibrated_onnx, tmp_path / "edited.onnx", **changes)
    with pytest.raises(UsageError, match=message):
        load_onnx_predictor(tmp_path / "edited.onnx")


# -- ensembles -------------------------------------------------------------------------------------------------
def test_an_ensemble_is_one_graph_of_the_members_mean(two_checkpoints, history_frame, tmp_path):
    ensemble = SavedModel.from_checkpoints(two_checkpoints, alias=ALIAS)
    members = [SavedModel([member], [cfg], alias=ALIAS) for member, cfg in zip(ensemble.members, ensemble.configs)]
    output = OutputLevels.of(ALIAS, quantiles=[0.1, 0.5, 0.9])

    def raw(model_or_predictor) -> np.ndarray:
        predictor = model_or_predictor.predictor() if isinstance(model_or_predictor, SavedModel) else model_or_predictor
        return forecast_values(predictor.forecast_frame(history_frame, output, rearrange=False))

    first, second = raw(members[0]), raw(members[1])
    assert np.abs(first - second).max() > 0.01 * np.abs(first).max()  # the members really differ
    mean = raw(ensemble)
    np.testing.assert_allclose(mean, (first + second) / 2, rtol=1e-6)
    onnx_predictor = load_onnx_predictor(export_onnx(ensemble, tmp_path / "ensemble.onnx"))
    assert_close(raw(onnx_predictor), mean)
    assert_close(
        forecast_values(onnx_predictor.forecast_frame(history_frame, OutputLevels.of(ALIAS, level=[90]))),
        forecast_values(ensemble.predictor().forecast_frame(history_frame, OutputLevels.of(ALIAS, level=[90]))),
    )


# -- writing -----------------------------------------------------------------------------------------------------
class FailingProgram:
    """An exported program whose save writes half a file and fails: what a full disk does."""

    class Model:
        metadata_props: dict[str, str] = {}

    model = Model()

    def save(self, destination: str, external_data: bool = True) -> None:
        with open(destination, "wb") as file:
            file.write(b"half a model")
        raise OSError("No space left on device")


def test_a_failed_export_leaves_nothing_and_keeps_the_old_file(calibrated, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_model, "_exported_program", lambda graph, cfg: FailingProgram())
    with pytest.raises(OSError, match="No space"):
        export_onnx(calibrated, tmp_path / "new.onnx")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "old.onnx").write_bytes(b"the old export")
    with pytest.raises(OSError, match="No space"):
        export_onnx(calibrated, tmp_path / "old.onnx", overwrite=True)
    assert [path.name for path in tmp_path.iterdir()] == ["old.onnx"]
    assert (tmp_path / "old.onnx").read_bytes() == b"the old export"


class OtherGraphProgram(FailingProgram):
    """An exported program that saves a graph other than the model's (an exporter's bug)."""

    def save(self, destination: str, external_data: bool = True) -> None:
        not_anyquantile_onnx(destination)


def test_an_export_that_does_not_forecast_like_torch_is_not_written(calibrated, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_model, "_exported_program", lambda graph, cfg: OtherGraphProgram())
    with pytest.raises(RuntimeError, match="cannot run the exported graph"):
        export_onnx(calibrated, tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "name, message",
    [("model", "ending in .onnx"), ("exists.onnx", "exists; export to a new file or pass overwrite=True")],
)
def test_export_onnx_refuses_a_path_it_cannot_write(calibrated, tmp_path, name, message):
    (tmp_path / "exists.onnx").write_bytes(b"")
    with pytest.raises(UsageError, match=message):
        export_onnx(calibrated, tmp_path / name)


# -- the command line ------------------------------------------------------------------------------------------
def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = anyquantile_main([*argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_export_a_folder_then_onnx_and_predict_from_either_alike(two_checkpoints, history_file, tmp_path, capsys):
    folder, file = tmp_path / "duo", tmp_path / "duo.onnx"
    a, b = two_checkpoints
    code, out, _ = run_cli(
        capsys, "export", "--checkpoint", a, "--checkpoint", b, "--out", str(folder), "--alias", "Duo"
    )
    assert code == 0 and out.strip() == f"saved model 'Duo' (2 members) written to {folder}"
    code, out, _ = run_cli(capsys, "export", "--model", str(folder), "--format", "onnx", "--out", str(file))
    assert code == 0 and out.strip() == f"ONNX model 'Duo' (2 members) written to {file}"
    frames = []
    for model in (folder, file):
        forecast = tmp_path / f"{model.name}.csv"
        argv = ["--model", str(model), "--data", str(history_file), "--out", str(forecast), "--level", "80"]
        for extra in ([], ["--no-rearrange"]):
            assert run_cli(capsys, "predict", *argv, *extra)[0] == 0
            frames.append(pd.read_csv(forecast))
    assert list(frames[2].columns) == ["unique_id", "ds", "Duo-median", "Duo-lo-80", "Duo-hi-80"]
    for torch_frame, onnx_frame in zip(frames[:2], frames[2:]):
        pd.testing.assert_frame_equal(torch_frame[["unique_id", "ds"]], onnx_frame[["unique_id", "ds"]])
        assert_close(forecast_values(onnx_frame), forecast_values(torch_frame))


def test_export_checkpoints_straight_to_onnx_over_an_old_file(two_checkpoints, history_frame, tmp_path, capsys):
    file = tmp_path / "solo.onnx"
    file.write_bytes(b"an earlier export")
    argv = ["export", "--checkpoint", two_checkpoints[1], "--format", "onnx", "--alias", "Solo", "--out", str(file)]
    code, out, _ = run_cli(capsys, *argv, "--overwrite")
    assert code == 0 and out.strip() == f"ONNX model 'Solo' (1 member) written to {file}"
    output = OutputLevels.of("Solo", quantiles=[0.2, 0.8])
    expected = SavedModel.from_checkpoints(two_checkpoints[1:]).predictor().forecast_frame(history_frame, output)
    found = open_predictor(file).forecast_frame(history_frame, output)
    assert list(found.columns) == ["unique_id", "ds", "Solo_ql0.2", "Solo_ql0.8"]
    assert_close(forecast_values(found), forecast_values(expected))


def not_anyquantile_onnx(file) -> None:
    """A valid ONNX model of someone else: y = x, no anyquantile metadata."""
    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [value], [])
    graph.output.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, [1]))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(file))


@pytest.mark.parametrize(
    "command, message",
    [
        ("export --model {tmp}/nowhere --format onnx --out {tmp}/m.onnx", "not found: {tmp}/nowhere"),
        ("export --checkpoint {tmp}/missing.ckpt --out {tmp}/m", "not found: {tmp}/missing.ckpt"),
        ("export --model {model} --format onnx --out {tmp}/taken.onnx", "taken.onnx exists; give another --out"),
        ("export --model {model} --format onnx --out {tmp}/taken", "must end in .onnx"),
        ("export --model {model} --out {tmp}/copy", "is a saved model already: export it with --format onnx"),
        ("export --checkpoint {model}/model.json --out {tmp}/taken", "taken exists; give another --out"),
        ("export --checkpoint {model}/model.json --out {tmp}/m.onnx", "which predict reads as an ONNX file"),
        (
            "predict --model {tmp}/other.onnx --data {data} --out {tmp}/f.csv",
            "ONNX model but not an anyquantile export",
        ),
        ("predict --model {tmp}/junk.onnx --data {data} --out {tmp}/f.csv", "cannot be read as an ONNX model"),
        ("predict --model {tmp}/folder.onnx --data {data} --out {tmp}/f.csv", "folder.onnx is a folder"),
    ],
)
def test_the_command_line_refuses_bad_requests_clearly(
    saved_model_dir, history_file, tmp_path, capsys, command, message
):
    (tmp_path / "taken.onnx").write_bytes(b"an earlier export")
    (tmp_path / "taken").mkdir()
    (tmp_path / "folder.onnx").mkdir()
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    not_anyquantile_onnx(tmp_path / "other.onnx")
    names = dict(tmp=tmp_path, model=saved_model_dir, data=history_file)
    code, out, err = run_cli(capsys, *command.format(**names).split())
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message.format(**names) in err and "Traceback" not in err
    assert (tmp_path / "taken.onnx").read_bytes() == b"an earlier export"
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "copy").exists()
