"""The ``anyquantile`` command: one subcommand per step, each with its own --help, clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

import anyquantile
from anyquantile.cli import COMMANDS, main


def test_the_commands_are_the_steps_of_a_models_life():
    assert list(COMMANDS) == ["train", "evaluate", "predict", "serve", "export", "sweep"]


def test_version_usage_and_an_unknown_command(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"anyquantile {anyquantile.__version__}"
    assert main([]) == 2  # no command: the usage, and a failure for scripts
    assert "anyquantile serve" in capsys.readouterr().out
    assert main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "serve", "export"])
def test_each_command_has_its_own_help_under_its_name(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: anyquantile {command}")


def test_the_console_script_runs_a_command(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "anyquantile.cli", "predict", "--model", "nowhere", "--data", "x.csv", "--out", "y.csv"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and done.stderr.strip() == "error: not found: nowhere"
