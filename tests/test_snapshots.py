"""Snapshot ensembles: one run keeps its last K validations' weights, and their ensemble averages them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import evaluate as evaluate_cli
from dataset.windows import WindowBatches
from evaluation.ensemble import load_ensemble
from experiment.builders import build_data
from experiment.checkpoints import load_forecaster, read_checkpoint
from experiment.errors import ConfigError
from training.train import train


def test_a_run_keeps_its_last_snapshots_and_their_ensemble_is_the_mean_of_their_forecasts(tiny_config):
    cfg = tiny_config("trainer.max_steps=8", "trainer.val_every_n_steps=2", "trainer.snapshots=3")
    summary = train(cfg)
    snapshots = summary["snapshots"]
    assert [read_checkpoint(path)["global_step"] for path in snapshots] == [4, 6, 8]  # the last three, oldest first
    assert sorted(Path(path).name for path in snapshots) == sorted(
        p.name for p in Path(snapshots[0]).parent.glob("snapshot-*.ckpt")
    )  # the older ones were deleted
    ensemble, _ = load_ensemble(snapshots)
    data = build_data(cfg)
    batch = WindowBatches(data.panel, data.shape, data.splits["test"]).all()
    levels = torch.tensor([0.1, 0.5, 0.9])
    members = [load_forecaster(path)[0].forecast(batch, levels) for path in snapshots]  # 3 x [B, H, 3]
    assert not torch.equal(members[0], members[2])  # the snapshots differ: the mean is no copy of one
    torch.testing.assert_close(ensemble(batch, levels), (members[0] + members[1] + members[2]) / 3)


def test_snapshots_need_validations(tiny_config):
    with pytest.raises(ConfigError, match="trainer.snapshots"):
        tiny_config("trainer.snapshots=2", "trainer.test_checkpoint=last")
    with pytest.raises(ConfigError, match="snapshots must be >= 0"):
        tiny_config("trainer.snapshots=-1")


def test_evaluate_scores_a_runs_snapshot_ensemble(tiny_config, tmp_path):
    summary = train(tiny_config("trainer.max_steps=6", "trainer.val_every_n_steps=2", "trainer.snapshots=2"))
    out = tmp_path / "evaluation"
    assert evaluate_cli.main(["--snapshots", summary["run_dir"], "--out", str(out), "--no-dashboard"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["checkpoints"] == summary["snapshots"]
    assert evaluate_cli.main(["--snapshots", str(tmp_path), "--out", str(out)]) == 2  # a folder without any
    assert evaluate_cli.main(["--out", str(out)]) == 2  # neither --checkpoint nor --snapshots
