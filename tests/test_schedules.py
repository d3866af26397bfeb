"""Learning-rate schedules (model/schedules.py), by hand, through LambdaLR and in a run stopped by its budget."""

from __future__ import annotations

import math
import time

import pytest
import torch
from lightning import Callback

from anyquantile.experiment.errors import ConfigError
from anyquantile.model.schedules import InverseSquareRootWarmup, WarmupCosineToBudget
from anyquantile.training.train import train


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


def rates_through_lambda_lr(schedule, steps: int, lr: float = 0.1) -> list[float]:
    """The rate of each of ``steps`` SGD steps under LambdaLR(schedule), and after the last one."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return [*rates, optimizer.param_groups[0]["lr"]]


def test_inverse_square_root_warmup_drives_lambda_lr():
    rates = rates_through_lambda_lr(InverseSquareRootWarmup(10), 40)
    assert rates[0] == pytest.approx(0.01)
    assert rates[9] == pytest.approx(0.1)
    assert rates[39] == pytest.approx(0.05)


@pytest.mark.parametrize("warmup", [0, -3])
def test_inverse_square_root_warmup_rejects_non_positive_warmup(warmup):
    with pytest.raises(ValueError, match="warmup_steps"):
        InverseSquareRootWarmup(warmup)


def test_cosine_to_budget_hand_values():
    schedule = WarmupCosineToBudget(warmup_steps=4, max_steps=100, final_fraction=0.1)
    assert schedule(0) == pytest.approx(1 / 4)  # the ramp: (0 + 1) / 4, below the cosine's 0.998
    assert schedule(3) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.03)))  # the cosine, just below 1
    assert schedule(50) == pytest.approx(0.1 + 0.9 * 0.5)  # half the budget: half-way down, cos(pi / 2) = 0
    assert schedule(100) == pytest.approx(0.1)  # the budget's end: the floor
    assert schedule(150) == pytest.approx(0.1)  # past it (a resumed run with a larger budget): stays there


def test_cosine_to_budget_follows_the_wall_clock_when_it_is_ahead(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    schedule = WarmupCosineToBudget(warmup_steps=1, max_steps=1000, final_fraction=0.0)
    assert schedule(10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.01)))  # no clock yet: the steps
    schedule.start_clock(60.0)
    now[0] = 130.0  # half the time spent, 1 % of the steps
    assert schedule(10) == pytest.approx(0.5)  # cos(pi / 2)
    now[0] = 160.0
    assert schedule(10) == pytest.approx(0.0)  # the time is up: the floor
    now[0] = 103.0  # 5 % of the time, 75 % of the steps: the steps lead
    assert schedule(750) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.75)))
    with pytest.raises(ValueError, match="> 0 seconds"):
        schedule.start_clock(0.0)


def test_cosine_to_budget_decreases_after_the_warm_up_and_lands_on_the_floor_through_lambda_lr():
    rates = rates_through_lambda_lr(WarmupCosineToBudget(10, 40, final_fraction=0.05), 40)
    assert rates[0] == pytest.approx(0.01)
    assert all(later <= earlier for earlier, later in zip(rates[10:], rates[11:], strict=False))
    assert rates[40] == pytest.approx(0.1 * 0.05)  # after the 40th step: the floor


def test_cosine_schedule_state_is_plain_data_a_weights_only_load_accepts(tmp_path):
    """LambdaLR stores a callable schedule's attributes in the checkpoint, which is read with weights_only."""
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosineToBudget(10, 40))
    scheduler.lr_lambdas[0].start_clock(30.0)
    torch.save(scheduler.state_dict(), tmp_path / "scheduler.pt")
    state = torch.load(tmp_path / "scheduler.pt", weights_only=True)
    saved = state["lr_lambdas"][0]
    assert saved["clock_seconds"] == 30.0 and isinstance(saved["clock_end"], float)
    assert {key: saved[key] for key in ("warmup_steps", "max_steps", "final_fraction")} == {
        "warmup_steps": 10,
        "max_steps": 40,
        "final_fraction": 0.01,
    }


@pytest.mark.parametrize(
    ("arguments", "message"), [((0, 10), "warmup_steps"), ((1, 0), "max_steps"), ((1, 10, 1.0), "final_fraction")]
)
def test_cosine_to_budget_rejects_bad_settings(arguments, message):
    with pytest.raises(ValueError, match=message):
        WarmupCosineToBudget(*arguments)


class LastRate(Callback):
    def on_train_end(self, trainer, pl_module):
        self.rate = trainer.optimizers[0].param_groups[0]["lr"]
        self.steps = trainer.global_step


def test_a_run_stopped_by_its_time_budget_ends_at_the_floor_rate(tiny_config):
    """The cosine schedule follows trainer.max_time: the run is stopped by its clock (far before
    max_steps), and its last rate is the floor. Without the wall clock it would still be near lr."""
    cfg = tiny_config(
        "optimizer.schedule=cosine",
        "optimizer.final_lr_fraction=0.05",
        "trainer.max_steps=1000000",
        "trainer.max_time=00:00:00:02",
        "trainer.val_every_n_steps=1000000",
    )
    last = LastRate()
    train(cfg, callbacks=[last])
    assert last.steps < 1_000_000
    assert last.rate == pytest.approx(cfg.optimizer.lr * 0.05)


def test_an_unknown_schedule_is_refused_on_loading_with_the_choices(tiny_config):
    with pytest.raises(ConfigError, match="inverse_sqrt, cosine"):
        tiny_config("optimizer.schedule=linear")


class RatePerStep(Callback):
    def __init__(self) -> None:
        self.rates: dict[int, float] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.rates[trainer.global_step] = trainer.optimizers[0].param_groups[0]["lr"]


def test_a_resumed_cosine_run_follows_its_own_step_budget_not_the_checkpoints(tiny_config):
    """LambdaLR's resume restores the schedule's saved settings (max_steps=4, which would hold the rate
    at the floor); the resumed run anneals over its own max_steps=10 instead."""
    schedule = ("optimizer.schedule=cosine", "optimizer.final_lr_fraction=0.1", "trainer.val_every_n_steps=100")
    train(tiny_config(*schedule, "trainer.max_steps=4"))
    seen = RatePerStep()
    train(tiny_config(*schedule, "trainer.max_steps=10"), resume="last", callbacks=[seen])
    expected = WarmupCosineToBudget(warmup_steps=2, max_steps=10, final_fraction=0.1)
    lr = tiny_config().optimizer.lr
    for step in range(5, 10):  # step 4's rate was set when the first run ended
        assert seen.rates[step] == pytest.approx(lr * expected(step)), step
    assert seen.rates[5] > 2 * lr * 0.1  # well above the floor


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("optimizer.schedule=cosine", "trainer.max_time=00:00:01:00", "trainer.devices=2"), "each process's clock"),
        (("optimizer.final_lr_fraction=0.2",), "applies to optimizer.schedule=cosine only"),
    ],
)
def test_cosine_settings_that_cannot_hold_are_refused_on_loading(tiny_config, overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(*overrides)
