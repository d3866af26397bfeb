"""training/callbacks.py: Throughput's two rates on a scripted clock."""

from __future__ import annotations

import pytest

from anyquantile.training import callbacks
from anyquantile.training.callbacks import Throughput


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_throughput_counts_loading_but_not_validation(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(callbacks.time, "perf_counter", clock)
    meter = Throughput(batch_size=10, skip_steps=1)
    # Each step: 1 s loading the batch, 2 s of compute; validation of 5 s after the 3rd step.
    for step in range(1, 5):
        clock.now += 1.0
        meter.on_train_batch_start(None)
        clock.now += 2.0
        meter.on_train_batch_end(None)
        if step == 3:
            meter.on_validation_start(None)
            clock.now += 5.0
            meter.on_validation_end(None)
    assert meter.steps == 4 and meter.timed_steps == 3
    # compute: steps 2..4 timed, 2 s each; whole path: steps 2..4, 3 s each (validation left out)
    assert meter.compute_seconds == pytest.approx(6.0) and meter.compute_samples_per_second == pytest.approx(5.0)
    assert meter.seconds == pytest.approx(9.0) and meter.samples_per_second == pytest.approx(30 / 9)


def test_throughput_without_timed_steps_is_zero():
    meter = Throughput(batch_size=10, skip_steps=5)
    assert meter.samples_per_second == 0.0 and meter.compute_samples_per_second == 0.0
