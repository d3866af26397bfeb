"""``pip install .`` installs one namespace, ``anyquantile``, with its configs, its console script and the pinned
dependencies, and it imports from outside the repository."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

# Build a copy of the sources, so that the build's own files (build/, *.egg-info) never land in the checkout.
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "runs", "results", "build", "*.egg-info", "__pycache__", "lightning_logs", "evaluation-out"
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory, repo) -> Path:
    root = tmp_path_factory.mktemp("install")
    source, target = root / "source", root / "site"
    shutil.copytree(repo, source, ignore=NOT_SOURCES)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run([*command, "--target", str(target), str(source)], check=True, timeout=600)
    return target


def run_outside(target: Path, code: str, cwd: Path) -> str:
    """``code`` run by a fresh interpreter in ``cwd`` (not the repository) that finds ``target`` first."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_only_the_anyquantile_namespace_lands_in_site_packages(installed):
    names = {path.name for path in installed.iterdir()}
    assert "anyquantile" in names
    generic = {
        "model",
        "modules",
        "dataset",
        "training",
        "evaluation",
        "experiment",
        "inference",
        "baselines",
        "config",
    }
    assert not names & generic
    assert not names & {"tests", "benchmarks", "analysis", "tools"}
    package = installed / "anyquantile"
    assert {"model", "modules", "dataset", "training", "config", "cli"} <= {path.name for path in package.iterdir()}
    assert (package / "config" / "nbeatsaq-synthetic.yaml").is_file()
    assert (package / "config" / "trainer" / "cpu.yaml").is_file()
    assert (installed / "bin" / "anyquantile").is_file()  # the console script


def test_it_imports_from_outside_the_repository_and_finds_its_configs(installed, tmp_path):
    out = run_outside(
        installed,
        "import anyquantile, anyquantile.modules.attention as attention\n"
        "from anyquantile.experiment.config import load_config, shipped_configs\n"
        "print(anyquantile.__file__); print(attention.__file__)\n"
        "print(load_config('nbeatsaq-adaptive-attention-synthetic').name); print(len(shipped_configs()))\n"
        "print(anyquantile.Forecaster.__module__)",
        cwd=tmp_path,
    )
    package_file, attention_file, name, count, api = out.split()
    assert Path(package_file).is_relative_to(installed) and Path(attention_file).is_relative_to(installed)
    assert name == "nbeatsaq-adaptive-attention-synthetic" and int(count) >= 7
    assert api == "anyquantile.api"


def test_every_module_of_the_installed_package_imports(installed, tmp_path):
    out = run_outside(
        installed,
        "import importlib, pkgutil, anyquantile\n"
        "names = [m.name for m in pkgutil.walk_packages(anyquantile.__path__, 'anyquantile.')\n"
        "         if not m.name.startswith('anyquantile.config') and not m.name.endswith('__main__')]\n"
        "for name in names:\n"
        "    module = importlib.import_module(name)\n"
        "    assert module.__file__.startswith(anyquantile.__path__[0]), name\n"
        "print(len(names))",
        cwd=tmp_path,
    )
    assert int(out) >= 60  # every module, serving, ONNX and the command lines included


def test_the_dependencies_are_the_pinned_requirements(installed, repo):
    (info,) = installed.glob("anyquantile-*.dist-info")
    metadata = Parser().parsestr((info / "METADATA").read_text())
    required = [line.split(";")[0].strip() for line in metadata.get_all("Requires-Dist")]
    assert "torch==2.13.0" in required
    listed = [
        line.split("#")[0].strip()
        for line in (repo / "requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    # as requirements, not strings: the metadata orders a range's bounds its own way ('<1.4,>=1.3')
    assert Counter(map(Requirement, required)) == Counter(map(Requirement, listed))
