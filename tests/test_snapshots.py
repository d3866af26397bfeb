"""Snapshot ensembles: one run keeps its K latest checkpoints (every val_every_n_steps steps and its final
weights), and their ensemble averages them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import evaluate as evaluate_cli
from anyquantile.dataset.windows import WindowBatches
from anyquantile.evaluation.ensemble import load_ensemble
from anyquantile.experiment.builders import build_data
from anyquantile.experiment.checkpoints import load_forecaster, read_checkpoint, snapshot_files
from anyquantile.experiment.errors import ConfigError
from anyquantile.training.train import train


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


def test_a_run_without_validation_keeps_its_final_weights_as_the_newest_snapshot(tiny_config):
    # 7 steps, a snapshot every 3: steps 3 and 6, then the final weights at 7 (no multiple of 3)
    overrides = ("trainer.max_steps=7", "trainer.val_every_n_steps=3", "trainer.snapshots=2")
    summary = train(tiny_config(*overrides, "trainer.test_checkpoint=last"))
    assert [read_checkpoint(path)["global_step"] for path in summary["snapshots"]] == [6, 7]
    assert len(list(Path(summary["run_dir"], "checkpoints").glob("snapshot-*.ckpt"))) == 2  # step 3's was deleted
    final = load_forecaster(summary["checkpoint"])[0].state_dict()  # last.ckpt: the tested final weights
    newest = load_forecaster(summary["snapshots"][-1])[0].state_dict()
    assert final.keys() == newest.keys()
    for name, tensor in final.items():
        assert torch.equal(newest[name], tensor), name


def test_a_resumed_run_continues_its_snapshot_list(tiny_config):
    train(tiny_config("trainer.max_steps=4", "trainer.snapshots=2"))  # snapshots at 2 and 4
    resumed = train(tiny_config("trainer.max_steps=7", "trainer.snapshots=2"), resume="last")  # 6, then 7
    assert [read_checkpoint(path)["global_step"] for path in resumed["snapshots"]] == [6, 7]
    assert len(list(Path(resumed["run_dir"], "checkpoints").glob("snapshot-*.ckpt"))) == 2  # 2 and 4 deleted


def test_a_resume_from_an_older_checkpoint_drops_the_snapshots_taken_after_it(tiny_config):
    first = train(tiny_config("trainer.max_steps=8", "trainer.snapshots=3"))  # snapshots at 4, 6, 8
    older = Path(first["snapshots"][0])  # step 4's
    redone = train(tiny_config("trainer.max_steps=8", "trainer.snapshots=3"), resume=str(older))
    assert [read_checkpoint(path)["global_step"] for path in redone["snapshots"]] == [4, 6, 8]  # each once
    on_disk = sorted(p.name for p in Path(redone["run_dir"], "checkpoints").glob("snapshot-*.ckpt"))
    assert on_disk == sorted(Path(path).name for path in redone["snapshots"])


def test_snapshot_files_are_read_by_their_exact_name(tmp_path):
    for name in ("snapshot-step=10.ckpt", "snapshot-step=9.ckpt", "snapshot-step=10-v1.ckpt", "snapshot-step=x.ckpt"):
        (tmp_path / name).touch()
    assert [path.name for path in snapshot_files(tmp_path)] == ["snapshot-step=9.ckpt", "snapshot-step=10.ckpt"]


def test_a_negative_snapshot_count_is_refused(tiny_config):
    with pytest.raises(ConfigError, match="snapshots must be >= 0"):
        tiny_config("trainer.snapshots=-1")


def test_evaluate_scores_a_runs_snapshot_ensemble(tiny_config, tmp_path):
    summary = train(tiny_config("trainer.max_steps=6", "trainer.val_every_n_steps=2", "trainer.snapshots=2"))
    out = tmp_path / "evaluation"
    assert evaluate_cli.main(["--snapshots", summary["run_dir"], "--out", str(out), "--no-dashboard"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["checkpoints"] == summary["snapshots"]
    other = train(tiny_config("trainer.max_steps=6", "trainer.val_every_n_steps=2", "trainer.snapshots=2", "seed=1"))
    both = ["--snapshots", summary["run_dir"], "--snapshots", other["run_dir"], "--out", str(out), "--no-dashboard"]
    assert evaluate_cli.main(both) == 0  # several runs' snapshots form one ensemble
    assert json.loads((out / "metrics.json").read_text())["checkpoints"] == summary["snapshots"] + other["snapshots"]
    assert evaluate_cli.main(["--snapshots", str(tmp_path), "--out", str(out)]) == 2  # a folder without any
    assert evaluate_cli.main(["--out", str(out)]) == 2  # neither --checkpoint nor --snapshots
