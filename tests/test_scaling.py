"""Per-window scaling (modules/scaling.py): the scalers by hand, masks, flat windows, apply and undo."""

from __future__ import annotations

import pytest
import torch

from anyquantile.modules.scaling import MaxAbsScaler, RobustScaler, WindowScale, build_scaler

H = 6


def test_max_abs_scaler_ignores_masked_values():
    history = torch.tensor([[1.0, -4.0, 2.0, 1e6], [3.0, -1e6, 0.5, 2.0]])
    mask = torch.tensor([[True, True, True, False], [True, False, True, True]])
    scale = MaxAbsScaler()(history, mask)
    torch.testing.assert_close(scale.scale, torch.tensor([[4.0], [3.0]]))
    torch.testing.assert_close(scale.loc, torch.zeros(2, 1))


def test_max_abs_scaler_all_zero_or_unobserved_window_gets_scale_one():
    history = torch.tensor([[0.0, 0.0, 0.0], [5.0, 7.0, 0.0], [0.0, 0.0, 2.0]])
    mask = torch.tensor([[True, True, True], [False, False, True], [True, True, True]])
    scale = MaxAbsScaler()(history, mask)
    torch.testing.assert_close(scale.scale, torch.tensor([[1.0], [1.0], [2.0]]))
    assert torch.isfinite(scale.apply(history)).all()


def test_robust_scaler_median_and_iqr_by_hand():
    # window 0: 1..9 observed -> linear-interpolated quantiles at positions 2, 4, 6 of the sorted values:
    #   q25 = 3, median = 5, q75 = 7 -> loc 5, scale 4; the masked 1000 does not count
    # window 1: 2, 4, 10, 20 observed -> positions 0.75, 1.5, 2.25: q25 = 3.5, median 7, q75 = 12.5 -> scale 9
    history = torch.tensor(
        [
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 1000.0],
            [20.0, 4.0, -50.0, 10.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    mask = torch.tensor([[True] * 9 + [False], [True, True, False, True, True] + [False] * 5])
    scale = RobustScaler()(history, mask)
    torch.testing.assert_close(scale.loc, torch.tensor([[5.0], [7.0]]))
    torch.testing.assert_close(scale.scale, torch.tensor([[4.0], [9.0]]))


def test_robust_scaler_flat_and_unobserved_windows():
    history = torch.tensor([[-5.0, -5.0, -5.0], [0.2, 0.2, 0.2], [1.0, 2.0, 3.0]])
    mask = torch.tensor([[True, True, True], [True, True, True], [False, False, False]])
    scale = RobustScaler()(history, mask)
    # flat: scale by max(|median|, 1); nothing observed: loc 0, scale 1
    torch.testing.assert_close(scale.loc, torch.tensor([[-5.0], [0.2], [0.0]]))
    torch.testing.assert_close(scale.scale, torch.tensor([[5.0], [1.0], [1.0]]))


def test_robust_scaler_custom_range():
    history = torch.arange(1.0, 10.0)[None]  # 1..9
    scale = RobustScaler(lower=0.0, upper=1.0)(history, torch.ones(1, 9, dtype=torch.bool))
    torch.testing.assert_close(scale.scale, torch.tensor([[8.0]]))


@pytest.mark.parametrize("scaler", [MaxAbsScaler, RobustScaler])
def test_window_scale_undo_inverts_apply(scaler):
    g = torch.Generator().manual_seed(1)
    history = 1000.0 + 200.0 * torch.randn(5, 24, generator=g, dtype=torch.float64)
    history_mask = torch.rand(5, 24, generator=g) > 0.2
    scale = scaler()(history, history_mask)
    torch.testing.assert_close(scale.undo(scale.apply(history)), history, rtol=1e-12, atol=1e-9)
    forecast = torch.randn(5, H, 3, dtype=torch.float64)  # any trailing shape
    torch.testing.assert_close(scale.undo(scale.apply(forecast)), forecast, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(scale.apply(scale.undo(forecast)), forecast, rtol=1e-12, atol=1e-9)


def test_window_scale_by_hand():
    scale = WindowScale(loc=torch.tensor([[1.0], [-2.0]]), scale=torch.tensor([[2.0], [4.0]]))
    values = torch.tensor([[[3.0]], [[2.0]]])  # [2, 1, 1]
    torch.testing.assert_close(scale.apply(values), torch.tensor([[[1.0]], [[1.0]]]))
    torch.testing.assert_close(scale.undo(values), torch.tensor([[[7.0]], [[6.0]]]))


def test_build_scaler():
    assert isinstance(build_scaler("max_abs"), MaxAbsScaler)
    assert isinstance(build_scaler("robust"), RobustScaler)


def test_unknown_scaler_raises():
    with pytest.raises(ValueError, match="unknown scaler 'minmax'; choose one of max_abs, robust"):
        build_scaler("minmax")


@pytest.mark.parametrize("lower, upper", [(0.75, 0.25), (0.5, 0.5), (-0.1, 0.5), (0.2, 1.1)])
def test_robust_scaler_rejects_bad_range(lower, upper):
    with pytest.raises(ValueError, match="lower < upper"):
        RobustScaler(lower, upper)
