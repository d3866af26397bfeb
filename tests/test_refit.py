"""Refit (training/refit.py): the step count chosen on val, then train + val windows only, and its checks."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from lightning import Callback

from anyquantile.dataset.splits import SplitBoundaries
from anyquantile.evaluation.report import evaluate
from anyquantile.experiment.builders import build_data
from anyquantile.experiment.errors import ConfigError, UsageError
from anyquantile.training.refit import refit
from anyquantile.training.train import train


class SeenWindows(Callback):
    """The (series, origin) of every training window, and whether a validation ran, per training."""

    def __init__(self) -> None:
        self.runs: list[dict] = []

    def on_fit_start(self, trainer, pl_module) -> None:
        split = trainer.datamodule.datasets["train"].windows  # the training split's windows
        self.runs.append({"origins": [], "validations": 0, "last_split_origin": int(split.origin.max())})

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.runs[-1]["origins"] += batch.origin.tolist()

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.runs[-1]["validations"] += 1


def test_refit_trains_on_train_and_val_windows_for_the_chosen_steps_and_never_on_a_test_target(tiny_config):
    cfg = tiny_config("trainer.max_steps=6", "trainer.val_every_n_steps=2", "dataset.batch_size=512")
    seen = SeenWindows()
    summary = refit(cfg, callbacks=[seen])
    panel = build_data(cfg).panel
    val_start, test_start = panel.hour_index(cfg.dataset.val_start), panel.hour_index(cfg.dataset.test_start)
    H = cfg.dataset.horizon
    chosen, refitted = seen.runs
    assert chosen["last_split_origin"] + H == val_start  # the first training: train targets only
    assert chosen["validations"] == 3
    # the refit: windows whose targets lie in the validation months, none reaching the test's first hour
    assert max(refitted["origins"]) + H <= test_start and refitted["last_split_origin"] + H == test_start
    assert max(refitted["origins"]) + H > val_start
    assert refitted["validations"] == 0
    assert summary["first_run"]["chosen_by"] == "validation"
    best_step = summary["first_run"]["steps"]
    assert best_step in (2, 4, 6)
    assert len(refitted["origins"]) == best_step * 512  # exactly the chosen number of steps
    assert summary["global_step"] == best_step and summary["split"] == "test" and not summary["in_sample"]
    assert Path(summary["checkpoint"]).name == "last.ckpt" and Path(summary["checkpoint"]).is_file()
    assert "/nbeatsaq-synthetic-refit/" in summary["run_dir"]


def test_refit_without_a_test_split_trains_on_every_hour_and_says_its_scores_are_in_sample(tiny_config):
    cfg = tiny_config("dataset.test_start=null", "trainer.max_steps=2", "trainer.val_every_n_steps=2")
    seen = SeenWindows()
    summary = refit(cfg, callbacks=[seen])
    panel = build_data(cfg).panel
    assert seen.runs[1]["last_split_origin"] + cfg.dataset.horizon == panel.num_hours  # the data's last window
    assert summary["split"] == "val" and summary["in_sample"]


def test_validation_cannot_choose_a_checkpoint_of_a_run_that_trains_on_its_months(tiny_config):
    with pytest.raises(ConfigError, match="trainer.test_checkpoint=last"):
        tiny_config("dataset.train_end=2015-04-01")
    tiny_config("dataset.train_end=2015-04-01", "trainer.test_checkpoint=last")  # the refit's settings load


@pytest.mark.parametrize(
    ("train_end", "message"),
    [("2015-04-20", "after test_start"), ("2014-12-01", "not after train_start"), ("soon", "not a date")],
)
def test_a_train_end_past_the_test_start_or_before_the_start_is_refused(tiny_config, train_end, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config("dataset.train_start=2015-01-02", f"dataset.train_end={train_end}", "trainer.test_checkpoint=last")


def test_train_end_moves_only_the_training_split():
    panel_hours = pd.date_range("2020-01-01", periods=24 * 40, freq="h")

    class Grid:
        timestamps = panel_hours
        num_hours = len(panel_hours)

        def hour_index(self, when):
            return int(panel_hours.searchsorted(pd.Timestamp(when)))

    grid = Grid()
    plain = SplitBoundaries(val_start="2020-01-20", test_start="2020-01-30").hour_ranges(grid)
    refits = SplitBoundaries(val_start="2020-01-20", test_start="2020-01-30", train_end="2020-01-30")
    assert refits.refits and not SplitBoundaries(val_start="2020-01-20").refits
    assert plain["train"] == (0, 19 * 24)
    assert refits.hour_ranges(grid) == {**plain, "train": (0, 29 * 24)}


def test_the_final_weights_are_tested_without_validating_when_asked(tiny_config):
    seen = SeenWindows()
    summary = train(tiny_config("trainer.test_checkpoint=last"), callbacks=[seen])
    assert seen.runs[0]["validations"] == 0
    assert Path(summary["checkpoint"]).name == "last.ckpt" and summary["best_step"] == summary["global_step"] == 4


def test_a_first_run_testing_its_final_weights_gives_the_refit_all_its_steps(tiny_config):
    seen = SeenWindows()
    summary = refit(tiny_config("trainer.test_checkpoint=last", "trainer.max_steps=3"), callbacks=[seen])
    assert summary["first_run"]["chosen_by"] == "budget" and summary["first_run"]["steps"] == 3
    assert summary["global_step"] == 3 and [run["validations"] for run in seen.runs] == [0, 0]


def test_refit_of_a_config_that_already_trains_on_val_is_refused(tiny_config):
    with pytest.raises(UsageError, match="already trains on the validation months"):
        refit(tiny_config("dataset.train_end=2015-04-01", "trainer.test_checkpoint=last"))


def test_a_refit_model_gets_no_conformal_correction_fitted_on_its_own_training_months(tiny_config, tmp_path):
    summary = train(tiny_config("dataset.train_end=2015-04-10", "trainer.test_checkpoint=last"))
    with pytest.raises(UsageError, match="in-sample"):
        evaluate([summary["checkpoint"]], tmp_path / "out", conformal="level", dashboard=False)
    results = evaluate([summary["checkpoint"]], tmp_path / "out", split="val", dashboard=False)
    assert results["in_sample"]  # val scores of a model that trained on val


def test_a_refit_keeps_its_own_snapshots(tiny_config):
    # the first run's 3 steps are all the refit's (final weights tested): snapshots at 2, then its final step 3
    summary = refit(tiny_config("trainer.snapshots=2", "trainer.test_checkpoint=last", "trainer.max_steps=3"))
    assert Path(summary["checkpoint"]).name == "last.ckpt" and summary["global_step"] == 3
    assert summary["snapshots"] == [
        str(Path(summary["run_dir"], "checkpoints", f"snapshot-step={step}.ckpt")) for step in (2, 3)
    ]
