"""The network around the backbone (modules/forecast_network.py): scaling in one place, side inputs,
windows independent of each other, its options."""

from __future__ import annotations

import pytest
import torch

from anyquantile.modules.forecast_network import AnyQuantileNetwork, NetworkConfig, context_size
from anyquantile.modules.nbeats import AnyQuantileNBeats, Conditioning, NBeatsConfig

T, H, C = 24, 6, 5  # history, horizon, calendar features
CONDITIONING_MODES = [mode.value for mode in Conditioning]
SCALERS = ["max_abs", "robust"]


def _network(scaler: str, conditioning: str = "film", seed: int = 0) -> AnyQuantileNetwork:
    torch.manual_seed(seed)
    backbone = AnyQuantileNBeats(
        NBeatsConfig(conditioning=conditioning, num_blocks=3, num_layers=2, width=32, dropout=0.2),
        T,
        H,
        context_size=context_size(T, H, C, use_calendar=True, use_history_mask=True),
    )
    return AnyQuantileNetwork(NetworkConfig(scaler=scaler), backbone).eval()


def _inputs(B=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    history = 1000.0 + 200.0 * torch.randn(B, T, generator=g)
    history_mask = torch.rand(B, T, generator=g) > 0.2
    calendar = torch.randn(B, T + H, C, generator=g)
    return history, history_mask, calendar


@pytest.mark.parametrize("factor", [3.7, 1e-3, 250.0])
@pytest.mark.parametrize("conditioning", CONDITIONING_MODES)
def test_max_abs_network_is_scale_equivariant(factor, conditioning):
    network = _network("max_abs", conditioning)
    history, history_mask, calendar = _inputs()
    levels = torch.tensor([[0.05, 0.5, 0.95]]).expand(history.shape[0], -1)
    with torch.no_grad():
        base = network(history, history_mask, calendar, levels)
        scaled = network(factor * history, history_mask, calendar, levels)
    assert base.prediction.shape == (history.shape[0], H, 3)
    torch.testing.assert_close(scaled.scale.scale, factor * base.scale.scale, rtol=1e-6, atol=0)
    torch.testing.assert_close(scaled.prediction, factor * base.prediction, rtol=1e-4, atol=1e-5 * factor)


def test_network_composes_scaler_context_and_backbone():
    # prediction = scale * backbone(history / scale, levels, [calendar at the first forecast hour, mask])
    network = _network("max_abs")
    history, history_mask, calendar = _inputs()
    levels = torch.tensor([[0.3, 0.6]]).expand(history.shape[0], -1)
    with torch.no_grad():
        got = network(history, history_mask, calendar, levels)
        peak = torch.where(history_mask, history.abs(), torch.zeros_like(history)).amax(dim=1, keepdim=True)
        context = torch.cat([calendar[:, T, :], history_mask.float()], dim=-1)
        expected = network.backbone(history / peak, levels, context) * peak[:, :, None]
    torch.testing.assert_close(got.scale.scale, peak)
    torch.testing.assert_close(got.prediction, expected, rtol=1e-5, atol=1e-3)
    assert got.prediction.dtype == torch.float32


def test_robust_network_is_affine_equivariant():
    # the robust scaler centres on the median and divides by the IQR: x -> c x + d maps the forecast the same way
    network = _network("robust")
    history, history_mask, calendar = _inputs()
    levels = torch.tensor([[0.1, 0.9]]).expand(history.shape[0], -1)
    c, d = 2.5, -300.0
    with torch.no_grad():
        base = network(history, history_mask, calendar, levels).prediction
        moved = network(c * history + d, history_mask, calendar, levels).prediction
    torch.testing.assert_close(moved, c * base + d, rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("scaler", SCALERS)
@pytest.mark.parametrize("conditioning", CONDITIONING_MODES)
def test_windows_in_a_batch_do_not_depend_on_each_other(scaler, conditioning):
    network = _network(scaler, conditioning)
    history, history_mask, calendar = _inputs(B=3)
    levels = torch.tensor([[0.1, 0.5, 0.9]]).expand(3, -1)
    changed_history, changed_mask, changed_calendar = history.clone(), history_mask.clone(), calendar.clone()
    changed_history[1] = 1e5 * torch.rand(T)
    changed_mask[1] = ~changed_mask[1]
    changed_calendar[1] = -changed_calendar[1]
    with torch.no_grad():
        before = network(history, history_mask, calendar, levels).prediction
        after = network(changed_history, changed_mask, changed_calendar, levels).prediction
    torch.testing.assert_close(after[0], before[0], rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(after[2], before[2], rtol=1e-6, atol=1e-4)
    assert not torch.allclose(after[1], before[1])  # window 1 itself did change


def test_network_options_are_checked_and_name_the_choices():
    with pytest.raises(ValueError, match="unknown scaler 'minmax'; choose one of max_abs, robust"):
        NetworkConfig(scaler="minmax")
    with pytest.raises(ValueError, match="unknown loss normalisation 'mean'; choose one of window, target, none"):
        NetworkConfig(loss_normalisation="mean")
