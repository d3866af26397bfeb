"""Learning-rate schedules (model/schedules.py), by hand and through LambdaLR."""

from __future__ import annotations

import math

import pytest
import torch

from model.schedules import InverseSquareRootWarmup


def test_inverse_square_root_warmup_hand_values():
    schedule = InverseSquareRootWarmup(warmup_steps=4)
    assert schedule(0) == pytest.approx(1 / 4)  # (0 + 1) / 4
    assert schedule(1) == pytest.approx(2 / 4)
    assert schedule(3) == pytest.approx(1.0)  # warmup - 1: the peak
    assert schedule(15) == pytest.approx(0.5)  # 4 * warmup - 1: sqrt(4 / 16)
    assert schedule(99) == pytest.approx(math.sqrt(4 / 100))
    values = [schedule(step) for step in range(50)]
    assert max(values) == 1.0 and values.index(1.0) == 3


def test_inverse_square_root_warmup_of_one_step_starts_at_the_peak():
    schedule = InverseSquareRootWarmup(warmup_steps=1)
    assert schedule(0) == 1.0
    assert schedule(3) == pytest.approx(0.5)


def test_inverse_square_root_warmup_drives_lambda_lr():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, InverseSquareRootWarmup(10))
    rates = []
    for _ in range(40):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == pytest.approx(0.01)
    assert rates[9] == pytest.approx(0.1)
    assert rates[39] == pytest.approx(0.05)


@pytest.mark.parametrize("warmup", [0, -3])
def test_inverse_square_root_warmup_rejects_non_positive_warmup(warmup):
    with pytest.raises(ValueError, match="warmup_steps"):
        InverseSquareRootWarmup(warmup)
