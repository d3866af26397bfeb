"""Monotone rearrangement: removes every crossing and never increases the summed pinball loss."""

from __future__ import annotations

import pytest
import torch

from anyquantile.modules.losses import pinball
from anyquantile.modules.rearrangement import rearrange_quantiles


def test_rearrangement_never_increases_the_pinball_loss_and_removes_crossings():
    generator = torch.Generator().manual_seed(0)
    for trial in range(200):  # a property over random forecasts, levels and observations
        Q = int(torch.randint(2, 12, (1,), generator=generator))
        levels = torch.rand(Q, generator=generator, dtype=torch.float64).sort().values.clamp(1e-3, 1 - 1e-3)
        prediction = torch.randn(8, 5, Q, generator=generator, dtype=torch.float64) * 3  # crossing everywhere
        target = torch.randn(8, 5, generator=generator, dtype=torch.float64) * 3
        rearranged = rearrange_quantiles(prediction, levels)
        before = pinball(prediction, target, levels).sum(dim=-1)  # [B, H]: summed over the levels
        after = pinball(rearranged, target, levels).sum(dim=-1)
        assert (after <= before + 1e-12).all(), trial
        assert (rearranged[..., 1:] >= rearranged[..., :-1]).all()


def test_rearrangement_by_hand_and_leaves_monotone_forecasts_alone():
    levels = torch.tensor([0.1, 0.5, 0.9])
    crossed = torch.tensor([[[3.0, 1.0, 2.0]]])
    assert rearrange_quantiles(crossed, levels).tolist() == [[[1.0, 2.0, 3.0]]]
    # y = 2.5: before 0.1*... by hand: rho_0.1(-0.5)=0.45, rho_0.5(1.5)=0.75, rho_0.9(0.5)=0.45 -> 1.65;
    # after: rho_0.1(1.5)=0.15, rho_0.5(0.5)=0.25, rho_0.9(-0.5)=0.05 -> 0.45
    target = torch.tensor([[2.5]])
    assert pinball(crossed, target, levels).sum().item() == pytest.approx(1.65)
    assert pinball(rearrange_quantiles(crossed), target, levels).sum().item() == pytest.approx(0.45)
    monotone = torch.tensor([[[1.0, 1.0, 4.0]]])
    assert torch.equal(rearrange_quantiles(monotone), monotone)


def test_rearrangement_refuses_unsorted_levels():
    with pytest.raises(ValueError, match="ascending"):
        rearrange_quantiles(torch.zeros(1, 1, 3), torch.tensor([0.5, 0.1, 0.9]))


@pytest.mark.parametrize("levels", [[0.1, 0.5, 0.3], [0.1, 0.5, 0.5], [0.2, 0.2]])
def test_rearrangement_refuses_levels_that_fall_or_repeat_anywhere(levels):
    """Strictly ascending: a fall or a repeated level at the end is refused, as one at the start is."""
    with pytest.raises(ValueError, match="ascending"):
        rearrange_quantiles(torch.zeros(1, 1, len(levels)), torch.tensor(levels))
