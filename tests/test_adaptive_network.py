"""The adaptive-attention network and its forecaster: any-quantile property, gradients, read-outs, configs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from anyquantile.dataset.windows import WindowBatch
from anyquantile.experiment.builders import build_forecaster, build_network
from anyquantile.experiment.config import load_config
from anyquantile.experiment.errors import ConfigError
from anyquantile.model.forecaster import AnyQuantileForecasterAdaptiveAttention
from anyquantile.modules.adaptive_network import CrossStepRefinement
from anyquantile.training.train import train

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
SMALL = [
    "model.num_blocks=2",
    "model.width=16",
    "model.attention.d_model=16",
    "model.attention.num_heads=2",
    "model.attention.num_blocks=1",
    "model.attention.window=6",
    "model.attention.conv_kernels=[3,5]",
    "model.attention.dropout=0.0",
]


def small_network(*overrides: str):
    cfg = load_config(CONFIG_DIR / "nbeatsaq-adaptive-attention-synthetic.yaml", [*SMALL, *overrides])
    torch.manual_seed(0)
    return build_network(cfg).eval(), cfg


def windows(history: torch.Tensor, mask: torch.Tensor, calendar: torch.Tensor) -> WindowBatch:
    """A batch of those inputs (no targets: for forecasting only)."""
    B, H = len(history), calendar.shape[1] - history.shape[1]
    return WindowBatch(
        history,
        mask,
        torch.zeros(B, H),
        torch.zeros(B, H, dtype=torch.bool),
        calendar,
        series=torch.arange(B),
        origin=torch.zeros(B, dtype=torch.long),
    )


def batch(size: int = 3, T: int = 168, H: int = 48, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    history = 100 + 10 * torch.rand(size, T, generator=generator)
    mask = torch.rand(size, T, generator=generator) > 0.1
    calendar = torch.rand(size, T + H, 7, generator=generator) * 2 - 1
    return history, mask, calendar


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["model.attention.temporal_weights=sinusoidal", "model.attention.gate=token", "model.attention.fft_features=8"],
    ],
)
def test_forecast_for_a_level_does_not_depend_on_the_other_levels(extra):
    network, _ = small_network(*extra)
    history, mask, calendar = batch()
    with torch.no_grad():
        alone = network(history, mask, calendar, torch.tensor([[0.9]] * 3)).prediction
        together = network(history, mask, calendar, torch.tensor([[0.1, 0.9, 0.5]] * 3)).prediction
    assert together.shape == (3, 48, 3)
    torch.testing.assert_close(alone[..., 0], together[..., 1], atol=1e-4, rtol=1e-5)
    assert not torch.allclose(together[..., 0], together[..., 1])  # the level matters


def test_work_that_does_not_depend_on_the_level_runs_once_per_window():
    network, _ = small_network()
    history, mask, calendar = batch()
    seen = {}

    def record(name):
        return lambda module, inputs, output: seen.setdefault(name, []).append(inputs[0].shape[0])

    network.backbone.register_forward_hook(record("backbone"))
    network.blocks[0].register_forward_hook(record("attention block"))
    with torch.no_grad():
        network(history, mask, calendar, torch.rand(3, 7))  # 7 levels per window
    assert seen == {"backbone": [3], "attention block": [3]}  # 3 windows, each encoded once


def test_cross_step_refinement_starts_as_the_identity_and_reads_only_each_levels_own_path():
    torch.manual_seed(0)
    refinement = CrossStepRefinement(d_model=8, horizon=12, patch_length=4)
    forecast, states = torch.randn(2, 12, 3), torch.randn(2, 3, 8)
    torch.testing.assert_close(refinement(forecast, states), forecast)  # zero-initialised output layer
    torch.nn.init.normal_(refinement.out.weight)
    refined = refinement(forecast, states)
    changed = forecast.clone()
    changed[:, :, 0] += 5.0  # another path for level 0 only
    refined_changed = refinement(changed, states)
    assert not torch.allclose(refined_changed[..., 0], refined[..., 0])
    torch.testing.assert_close(refined_changed[..., 1:], refined[..., 1:])


def test_windows_do_not_affect_each_other():
    network, _ = small_network()
    history, mask, calendar = batch()
    levels = torch.tensor([[0.5]] * 3)
    with torch.no_grad():
        before = network(history, mask, calendar, levels).prediction
        history[1] += 50
        after = network(history, mask, calendar, levels).prediction
    torch.testing.assert_close(before[[0, 2]], after[[0, 2]], atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize(
    "extra",
    [[], ["model.attention.temporal_weights=linear", "model.attention.gate=step", "model.attention.fft_features=4"]],
)
def test_every_parameter_receives_a_gradient(extra):
    network, _ = small_network(*extra)
    network.train()
    with torch.no_grad():  # the zero-initialised cross-step output would block gradients to its inner layers
        network.cross_step.out.weight.normal_(0, 0.1)
    history, mask, calendar = batch()
    network(history, mask, calendar, torch.rand(3, 2)).prediction.pow(2).mean().backward()
    for name, p in network.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_attention_maps_and_gates_are_read_out_from_the_same_model():
    cfg = load_config(CONFIG_DIR / "nbeatsaq-adaptive-attention-synthetic.yaml", [*SMALL, "model.attention.gate=token"])
    model = build_forecaster(cfg).eval()
    assert isinstance(model, AnyQuantileForecasterAdaptiveAttention)
    history, mask, calendar = batch()
    analysis = model.attention_maps(windows(history, mask, calendar), torch.tensor([[0.5]] * 3))
    (weights,), (gate,) = analysis["attention"], analysis["gates"]
    P = cfg.model.attention.patch_length
    L = (168 + 48) // P  # one token per patch of hours
    assert weights.shape == (3, 2, L, L)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2, L))
    assert gate.shape == (3, 1, L, 1) and ((gate >= 0) & (gate <= 1)).all()

    mask[0, 2 * P : 3 * P] = False  # patch 2 of window 0 now has no observed hour: zero weight as a key
    patch_seen = mask.reshape(3, 168 // P, P).any(dim=-1)  # [3, T/P]
    analysis = model.attention_maps(windows(history, mask, calendar), torch.tensor([[0.5]] * 3))
    (weights,) = analysis["attention"]
    assert (weights[0, :, :, 2] == 0).all() and (weights[0, :, :, 3] > 0).any()
    history_weights = weights[:, :, :, : patch_seen.shape[1]]
    assert (history_weights[~patch_seen[:, None, None, :].expand_as(history_weights)] == 0).all()


def test_scheduled_bias_follows_the_training_step():
    network, _ = small_network("model.attention.bias=scheduled", "model.attention.bias_schedule_steps=10")
    attention = network.blocks[0].attention
    network.set_training_step(5)
    torch.testing.assert_close(attention.beta, torch.full_like(attention.beta, 1.0))  # halfway from 2 to 0


def test_adaptive_architecture_needs_out_conditioning():
    with pytest.raises(ConfigError, match="conditioning=out"):
        load_config(CONFIG_DIR / "nbeatsaq-adaptive-attention-synthetic.yaml", ["model.conditioning=film"])


@pytest.mark.parametrize(
    "name",
    [
        "nbeatsaq-adaptive-attention-synthetic",
        "nbeatsaq-adaptive-attention-mhl-cpu",
        "nbeatsaq-adaptive-attention-mhlv",
    ],
)
def test_adaptive_configs_compose(name):
    cfg = load_config(CONFIG_DIR / f"{name}.yaml", ["dataset.path=data.csv"])
    assert cfg.name == name and cfg.model.architecture == "adaptive_attention"


def test_the_readout_config_is_the_attention_config_without_its_blocks_as_the_benchmark_measured_it():
    # benchmarks.contenders' adaptive_attention_no_hata: the attention config with model.attention.num_blocks=0
    readout = OmegaConf.to_container(load_config(CONFIG_DIR / "nbeatsaq-readout-mhl-cpu.yaml", ["dataset.path=x"]))
    measured = OmegaConf.to_container(
        load_config(
            CONFIG_DIR / "nbeatsaq-adaptive-attention-mhl-cpu.yaml", ["dataset.path=x", "model.attention.num_blocks=0"]
        )
    )
    assert readout.pop("name") == "nbeatsaq-readout-mhl-cpu"
    measured.pop("name")
    assert readout == measured


def test_fast_dev_run_of_the_adaptive_model(tmp_path, tiny_overrides):
    cfg = load_config(
        CONFIG_DIR / "nbeatsaq-adaptive-attention-synthetic.yaml",
        [*tiny_overrides, *SMALL, f"output_dir={tmp_path}", "trainer.precision=bf16-mixed"],
    )
    summary = train(cfg, fast_dev_run=True)
    assert summary["global_step"] == 1 and math.isfinite(summary["model"]["crps"])


def test_patch_length_must_divide_history_and_horizon():
    with pytest.raises(
        ConfigError, match=r"model.attention.patch_length \(5\) must divide dataset.history_length \(168\)"
    ):
        load_config(CONFIG_DIR / "nbeatsaq-adaptive-attention-synthetic.yaml", ["model.attention.patch_length=5"])


def test_backbone_residual_tokens_read_what_the_backbone_left_unexplained(monkeypatch):
    """With backbone_residual, the tokens carry the stack's residual: replacing it changes the forecast,
    and without the option the residual is never asked for."""
    network, _ = small_network("model.attention.backbone_residual=true")
    P = network.patch
    assert network.embed_token.in_features == 3 * P + 7
    history, mask, calendar = batch()
    levels = torch.tensor([[0.1, 0.5, 0.9]]).expand(len(history), 3)
    with torch.no_grad():
        forecast = network(history, mask, calendar, levels).prediction
        true_pass = network.backbone.residual_and_forecast
        monkeypatch.setattr(
            network.backbone, "residual_and_forecast", lambda *a: (torch.zeros_like(true_pass(*a)[0]), true_pass(*a)[1])
        )
        without_residual = network(history, mask, calendar, levels).prediction
    assert not torch.allclose(forecast, without_residual)
    plain, _ = small_network()
    assert plain.embed_token.in_features == 2 * P + 7
    monkeypatch.setattr(plain.backbone, "residual_and_forecast", None)  # a call would fail
    with torch.no_grad():
        plain(history, mask, calendar, levels)
