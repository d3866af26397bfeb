"""A training run that kills itself with SIGKILL after a given step, for tests/test_resume.py.

    python tests/killed_run.py STEP CONFIG key=value ...

The process ends as a crash would: no exception, no clean-up, nothing flushed after the kill.
"""

from __future__ import annotations

import os
import signal
import sys

from lightning import Callback

from anyquantile.experiment.config import load_config
from anyquantile.training.train import train


class KillAfterStep(Callback):
    """SIGKILL this process at the end of training step ``step``, after every other callback's work there."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    step, config, *overrides = sys.argv[1:]
    train(load_config(config, overrides), callbacks=[KillAfterStep(int(step))], echo=False)
    sys.exit("the run was not killed: it ended before the step")
