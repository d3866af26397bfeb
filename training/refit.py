"""Refit: choose how long to train on validation, then train that long on everything before the test.

A run validated on the months after its training data never trains on the most recent ones, the
season just before the period to forecast. ``refit`` runs two trainings:

1. ``cfg`` as it is: validation on ``[val_start, test_start)`` picks the best checkpoint, whose step
   count is the training length;
2. the same config from fresh weights on the training *and* validation months
   (``dataset.train_end`` = ``test_start``, or the data's end without a test split), for exactly
   that many steps, no time limit and no validation (``trainer.test_checkpoint=last``); its final
   weights are tested.

This is neuralforecast's ``val_size`` then refit, and the way to forecast a new period: the refit's
``checkpoints/last.ckpt`` is the model to deploy (``predict.py``). Without a test split the refit's
scores are of the validation months it trained on (``in_sample`` in its summary): no honest test.
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
from lightning import Callback
from omegaconf import DictConfig

from experiment.builders import build_data
from experiment.config import merge_config
from experiment.errors import UsageError
from experiment.schema import TestCheckpoint
from training.train import train


def refit_overrides(cfg: DictConfig, steps: int) -> list[str]:
    """The overrides of the second training: all the data before the test, ``steps`` steps, final weights."""
    end = cfg.dataset.test_start
    if end is None:  # the hour after the data's last: every hour trains
        end = str(build_data(cfg).panel.timestamps[-1] + pd.Timedelta(hours=1))
    return [
        f"name={cfg.name}-refit",
        "trainer.snapshots=0",  # snapshots are taken at validations, and the refit runs none
        f"dataset.train_end={end}",
        f"trainer.max_steps={steps}",
        "trainer.max_time=null",
        "trainer.test_checkpoint=last",
    ]


def refit(cfg: DictConfig, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Train ``cfg``, then refit it on train + val for its best step count; the refit's summary, with
    ``chosen_on_val``: the first run's folder, its best step and the scores it was tested with (on the
    test split, or val without one). A config whose validation chooses nothing is refused before training."""
    if cfg.trainer.test_checkpoint != TestCheckpoint.best:
        raise UsageError(
            "--refit takes its step count from validation: the config must choose its checkpoint on val "
            "(trainer.test_checkpoint=best, dataset.train_end unset)"
        )
    chosen = train(cfg, callbacks=callbacks)
    steps = max(int(chosen["best_step"]), 1)
    summary = train(merge_config(cfg, refit_overrides(cfg, steps), source="refit"), callbacks=callbacks)
    summary["chosen_on_val"] = {
        "run_dir": chosen["run_dir"],
        "best_step": steps,
        "split": chosen["split"],
        "model": chosen["model"],
    }
    return summary
