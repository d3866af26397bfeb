"""Loading a file never runs code it carries: a checkpoint with a pickled call, a saved model whose weights
are a pickle or whose config has a Python tag, are refused by every command with a clear message, no
traceback, nothing written, and the payload never runs."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from anyquantile import Forecaster
from anyquantile.cli import main
from anyquantile.experiment.errors import ConfigError, UsageError
from anyquantile.training.train import train


class RunsCode:
    """Unpickling this object runs ``touch marker``: what a hostile file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, tiny_config_in, saved_model_dir, history_frame):
    """A hostile checkpoint, run config and saved-model folders, the marker their payloads would create, data."""
    root = tmp_path_factory.mktemp("hostile")
    marker = root / "payload-ran"
    summary = train(tiny_config_in(root / "runs"), echo=False)
    checkpoint = torch.load(Path(summary["run_dir"]) / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["forecast_config"]["note"] = RunsCode(marker)
    torch.save(checkpoint, root / "hostile.ckpt")

    pickled_weights = root / "pickled-weights"
    shutil.copytree(saved_model_dir, pickled_weights)
    (pickled_weights / "member-0" / "weights.safetensors").write_bytes(pickle.dumps({"weight": RunsCode(marker)}))

    tagged_config = root / "tagged-config"
    shutil.copytree(saved_model_dir, tagged_config)
    config = tagged_config / "member-0" / "config.yaml"
    config.write_text(config.read_text() + f"note: !!python/object/apply:os.system ['touch {marker}']\n")

    tagged_run_config = root / "hostile.yaml"
    tagged_run_config.write_text(
        f"defaults:\n  - experiment_schema\nname: !!python/object/apply:os.system ['touch {marker}']\n"
    )

    data = root / "history.csv"
    history_frame.to_csv(data, index=False)
    return {
        "checkpoint": root / "hostile.ckpt",
        "models": [pickled_weights, tagged_config],
        "config": tagged_run_config,
        "marker": marker,
        "data": data,
    }


def commands(hostile, out: Path) -> list[list[str]]:
    checkpoint, data = str(hostile["checkpoint"]), str(hostile["data"])
    tiny = ["dataset.synthetic.num_series=2", "dataset.synthetic.num_hours=2880", f"output_dir={out / 'runs'}"]
    found = [
        ["train", "--config", "nbeatsaq-synthetic", "--resume", checkpoint, *tiny],
        ["train", "--config", str(hostile["config"]), *tiny],
        ["evaluate", "--checkpoint", checkpoint, "--out", str(out / "evaluation")],
        ["predict", "--checkpoint", checkpoint, "--data", data, "--out", str(out / "forecast.csv")],
        ["export", "--checkpoint", checkpoint, "--out", str(out / "exported")],
    ]
    for model in hostile["models"]:
        found += [
            ["evaluate", "--model", str(model), "--out", str(out / "evaluation")],
            ["predict", "--model", str(model), "--data", data, "--out", str(out / "forecast.csv")],
            ["export", "--model", str(model), "--format", "onnx", "--out", str(out / "model.onnx")],
            ["serve", "--model", str(model), "--port", "0"],
        ]
    return found


def test_every_command_refuses_a_file_carrying_code_without_running_it(hostile, tmp_path, capsys):
    for command in commands(hostile, tmp_path):
        assert main(command) == 2, command
        printed = capsys.readouterr()
        assert printed.err.startswith("error: "), (command, printed.err[-2000:])
        assert "Traceback" not in printed.err + printed.out, command
        assert not hostile["marker"].exists(), command  # the payload never ran
    written = [path.name for path in tmp_path.iterdir()]
    assert "evaluation" not in written and "forecast.csv" not in written and "exported" not in written
    assert "model.onnx" not in written


def test_the_refusal_says_why(hostile, capsys):
    assert main(["evaluate", "--checkpoint", str(hostile["checkpoint"])]) == 2
    assert "holds objects other than tensors and plain data, and loading it would run their code" in (
        capsys.readouterr().err
    )
    pickled_weights, tagged_config = hostile["models"]
    assert main(["predict", "--model", str(pickled_weights), "--data", str(hostile["data"]), "--out", "x.csv"]) == 2
    assert "weights.safetensors cannot be read" in capsys.readouterr().err
    assert main(["predict", "--model", str(tagged_config), "--data", str(hostile["data"]), "--out", "x.csv"]) == 2
    assert "config.yaml" in capsys.readouterr().err


def test_the_python_api_refuses_them_too(hostile):
    with pytest.raises(UsageError, match="is refused"):
        Forecaster.from_checkpoints([hostile["checkpoint"]])
    for model in hostile["models"]:
        with pytest.raises(UsageError, match="cannot be read|not a config anyquantile wrote"):
            Forecaster.load(model)
    with pytest.raises(ConfigError, match="not a YAML config this library reads"):
        Forecaster(str(hostile["config"]))
    assert not hostile["marker"].exists()
