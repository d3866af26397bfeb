"""Hyper-parameter search: a 2-trial Optuna sweep (Hydra multirun) on a tiny budget, and its refusals."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from anyquantile.cli import main


def test_a_two_trial_sweep_trains_each_trial_and_tables_them(repo, tmp_path, tiny_overrides):
    out = tmp_path / "runs"
    command = [sys.executable, "-m", "anyquantile.cli", "sweep", "--config", "nbeatsaq-synthetic", "--search"]
    command += ["nbeatsaq", "--trials", "2", *tiny_overrides, f"output_dir={out}"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=600, env=environment)
    assert done.returncode == 0, done.stderr[-3000:]

    (folder,) = (out / "sweeps" / "nbeatsaq-synthetic").iterdir()
    trials = json.loads((folder / "trials.json").read_text())
    assert [trial["trial"] for trial in trials] == [0, 1]
    space = OmegaConf.load(repo / "config" / "search" / "nbeatsaq.yaml").params
    for trial in trials:
        assert set(trial["params"]) == set(space)
        assert trial["params"]["model.width"] == 16 and trial["params"]["model.num_blocks"] == 2  # fixed by overrides
        assert 3e-4 <= trial["params"]["optimizer.lr"] <= 3e-3
        assert trial["params"]["sampler.levels_per_sample"] in (1, 4, 8)
        assert math.isfinite(trial["val_crps"]) and trial["best_step"] in (2, 4)
        # each trial is a run of its own, whose config holds the trial's choices
        run = OmegaConf.load(os.path.join(trial["run_dir"], "config.yaml"))
        assert run.optimizer.lr == trial["params"]["optimizer.lr"]
        assert (
            json.loads(open(os.path.join(trial["run_dir"], "metrics.json")).read())["best_val_crps"]
            == trial["val_crps"]
        )
    assert trials[0]["run_dir"] != trials[1]["run_dir"]
    best = OmegaConf.load(folder / "optimization_results.yaml")
    assert best.best_value == pytest.approx(min(trial["val_crps"] for trial in trials))
    table = (folder / "trials.md").read_text().splitlines()
    assert len(table) == 4 and table[0].startswith("| trial | optimizer.lr") and "**best**" in "".join(table[2:])
    assert "".join(table) in done.stdout.replace("\n", "")  # the table is printed at the end


def test_bad_sweeps_are_refused_before_any_trial(repo, tmp_path, capsys):
    out = f"output_dir={tmp_path / 'runs'}"
    assert main(["sweep", "--config", "nbeatsaq-synthetic", "--search", "nowhere", out]) == 2
    assert "search space not found: nowhere (the shipped ones: nbeatsaq" in capsys.readouterr().err
    args = ["sweep", "--config", "nbeatsaq-synthetic", "--search", "nbeatsaq", out]
    assert main([*args, "trainer.test_checkpoint=last"]) == 2
    assert "objective is the best validation CRPS" in capsys.readouterr().err
    assert main([*args, "model.widht=3"]) == 2
    assert "Did you mean 'model.width'" in capsys.readouterr().err
    assert main([*args, "--trials", "0"]) == 2
    assert "--trials must be >= 1" in capsys.readouterr().err
    # a search space of the user's own, beside their config, with a misspelt key
    configs = tmp_path / "configs"
    shutil.copytree(repo / "config", configs)
    (configs / "search" / "mine.yaml").write_text("params:\n  model.widht: choice(8, 16)\n")
    assert main(["sweep", "--config", str(configs / "nbeatsaq-synthetic.yaml"), "--search", "mine", out]) == 2
    assert "params ['model.widht'] are not keys of the config" in capsys.readouterr().err
    (configs / "search" / "mine.yaml").write_text("params:\n  optimizer.lr: tag(log, interval(-1e-3, 1e-3))\n")
    assert main(["sweep", "--config", str(configs / "nbeatsaq-synthetic.yaml"), "--search", "mine", out]) == 2
    refused = capsys.readouterr().err
    assert (
        "params.optimizer.lr" in refused and "lr must be > 0" in refused and "(a value the search may try)" in refused
    )
    assert not (tmp_path / "runs").exists()  # nothing ran, nothing was written


def test_an_error_in_a_trial_is_the_one_line_error_of_the_command(repo, tmp_path, tiny_overrides):
    """What only a trial finds (here: the data file is missing) ends the sweep with the command's own error."""
    command = [sys.executable, "-m", "anyquantile.cli", "sweep", "--config", "nbeatsaq-synthetic", "--search"]
    command += ["nbeatsaq", "--trials", "2", *tiny_overrides, f"output_dir={tmp_path / 'runs'}"]
    command += ["dataset.source=file", f"dataset.path={tmp_path / 'missing.csv'}"]
    done = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1].startswith("error: ") and "missing.csv" in done.stderr
    assert "Traceback" not in done.stderr
