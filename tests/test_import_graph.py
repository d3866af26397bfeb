"""The package import graph (tools/import_graph.py): imports point down the layers, no cycle, no Lightning in
modules/."""

from __future__ import annotations

from pathlib import Path

from tools.import_graph import LAYERS, Import, cycles, imports, package_edges, violations


def test_the_projects_imports_point_down_the_layers():
    found = imports()
    assert len(found) > 100  # it did read the project
    assert violations(found) == []
    assert cycles(package_edges(found)) == []


def test_every_package_of_the_repository_has_a_layer(repo):
    packages = {path.parent.name for path in Path(repo).glob("*/__init__.py")}
    assert packages <= set(LAYERS), packages - set(LAYERS)


def test_a_cycle_and_an_upward_import_are_reported():
    found = [
        Import("training/train.py", "training", "evaluation", 3),  # same layer
        Import("evaluation/report.py", "evaluation", "training", 5),
        Import("model/forecaster.py", "model", "experiment", 7),  # upward
        Import("dataset/windows.py", "dataset", "torch", 9),  # not a project package: fine
    ]
    problems = violations(found)
    assert problems == [
        "training/train.py:3: training imports evaluation, the same layer as itself",
        "evaluation/report.py:5: evaluation imports training, the same layer as itself",
        "model/forecaster.py:7: model imports experiment, a higher layer than itself",
    ]
    assert cycles(package_edges(found)) == [["evaluation", "training", "evaluation"]]


def test_lightning_in_modules_is_reported(tmp_path):
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "net.py").write_text(
        "import torch\n\n\ndef f():\n    from lightning import LightningModule\n"
    )
    found = imports(tmp_path)
    assert violations(found) == ["modules/net.py:5: modules must not import lightning"]


def test_a_bare_import_of_an_installed_package_is_reported(tmp_path):
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "run.py").write_text(
        "from model.forecaster import AnyQuantileForecaster\nfrom anyquantile.model import metrics\n"
    )
    problems = violations(imports(tmp_path))
    assert problems == [
        "benchmarks/run.py:1: import anyquantile.model.forecaster, not model.forecaster (installed, it is not there)"
    ]
