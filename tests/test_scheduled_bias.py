"""A scheduled locality bias beta moves through a real training loop: the forecaster's ``on_train_batch_start``
sets every block's beta to bias_start + (bias_end - bias_start) * step / bias_schedule_steps (clamped at the end)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning import Callback

from anyquantile.experiment.config import load_config
from anyquantile.training.train import train

CONFIG = Path(__file__).resolve().parents[1] / "config" / "nbeatsaq-adaptive-attention-synthetic.yaml"
START, END, SCHEDULE_STEPS, MAX_STEPS = 2.0, 0.5, 4, 6


class RecordBeta(Callback):
    """Each training step's global step (at batch start) and every block's beta as that step's forward used it
    (at batch end: after the model's own ``on_train_batch_start``, which runs after the callbacks')."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.betas: list[list[torch.Tensor]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.steps.append(trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.betas.append([block.attention.beta.detach().clone() for block in pl_module.network.blocks])


def test_scheduled_beta_follows_its_schedule_step_by_step_in_training(tmp_path, tiny_overrides):
    cfg = load_config(
        CONFIG,
        [
            *tiny_overrides,
            f"output_dir={tmp_path / 'runs'}",
            "sampler.levels_per_sample=4",
            "model.attention.d_model=16",
            "model.attention.num_heads=2",
            "model.attention.num_blocks=2",
            "model.attention.bias=scheduled",
            f"model.attention.bias_start={START}",
            f"model.attention.bias_end={END}",
            f"model.attention.bias_schedule_steps={SCHEDULE_STEPS}",
            f"trainer.max_steps={MAX_STEPS}",
            "trainer.val_every_n_steps=3",
        ],
    )
    record = RecordBeta()
    train(cfg, callbacks=[record], echo=False)

    assert record.steps == list(range(MAX_STEPS))
    assert len(record.betas) == MAX_STEPS and all(len(blocks) == 2 for blocks in record.betas)
    expected = [2.0, 1.625, 1.25, 0.875, 0.5, 0.5]  # 2 + (0.5 - 2) * min(step / 4, 1), step 0 .. 5
    for step, blocks in zip(record.steps, record.betas):
        progress = min(step / SCHEDULE_STEPS, 1.0)
        assert START + (END - START) * progress == pytest.approx(expected[step])
        for beta in blocks:
            assert beta.shape == (2,)  # one beta per head
            torch.testing.assert_close(beta, torch.full((2,), expected[step]), msg=f"step {step}")
