"""Refit: choose how long to train on validation, then train that long on everything before the test.

A run validated on the months after its training data never trains on the most recent ones, the
season just before the period to forecast. ``refit`` runs two trainings:

1. ``cfg`` as it is: validation on ``[val_start, test_start)`` picks the best checkpoint, whose step
   count is the training length (with ``trainer.test_checkpoint=last``, as the MHL CPU configs, whose
   schedule anneals to the budget's end: every step the budget allowed);
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
from omegaconf import DictConfig, OmegaConf

from anyquantile.experiment.builders import build_data
from anyquantile.experiment.config import merge_config
from anyquantile.experiment.errors import UsageError
from anyquantile.experiment.schema import TestCheckpoint
from anyquantile.training.train import train


def refit_overrides(cfg: DictConfig, steps: int) -> list[str]:
    """The overrides of the second training: all the data before the test, ``steps`` steps, final weights."""
    end = cfg.dataset.test_start
    if end is None:  # the hour after the data's last: every hour trains
        end = str(build_data(cfg).panel.timestamps[-1] + pd.Timedelta(hours=1))
    return [
        f"name={cfg.name}-refit",
        f"dataset.train_end={end}",
        f"trainer.max_steps={steps}",
        "trainer.max_time=null",
        "trainer.test_checkpoint=last",
    ]


def refit(cfg: DictConfig, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Train ``cfg``, then refit it on train + val for the first run's step count; the refit's summary,
    with ``first_run``: its folder, the step count, what chose it (``validation``, or ``budget``: all the
    steps it ran) and the scores it was tested with (test split, or val without one). A config that
    already trains on the validation months is refused before training."""
    if OmegaConf.to_object(cfg.dataset).split_boundaries().refits:
        raise UsageError(
            f"--refit: this config already trains on the validation months (dataset.train_end="
            f"{cfg.dataset.train_end}); the first run must train before dataset.val_start"
        )
    chosen = train(cfg, callbacks=callbacks)
    steps = max(int(chosen["best_step"]), 1)
    summary = train(merge_config(cfg, refit_overrides(cfg, steps), source="refit"), callbacks=callbacks)
    summary["first_run"] = {
        "run_dir": chosen["run_dir"],
        "steps": steps,
        "chosen_by": "validation" if cfg.trainer.test_checkpoint == TestCheckpoint.best else "budget",
        "split": chosen["split"],
        "model": chosen["model"],
    }
    return summary
