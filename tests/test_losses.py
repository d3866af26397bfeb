"""The pinball loss (modules/losses.py) against numbers worked out by hand.

The running example: target y = 10, levels q = 0.1 and 0.9, forecasts 8 (too low) and 12 (too high).

    rho_q(y, f) = q * (y - f)        if y >= f
                  (1 - q) * (f - y)  otherwise

    f = 8:  q=0.1 -> 0.1 * 2 = 0.2     q=0.9 -> 0.9 * 2 = 1.8
    f = 12: q=0.1 -> 0.9 * 2 = 1.8     q=0.9 -> 0.1 * 2 = 0.2
"""

from __future__ import annotations

import pytest
import torch

from anyquantile.modules.losses import LossNormalisation, loss_denominator, pinball, pinball_loss, target_denominator
from anyquantile.modules.options import choose
from anyquantile.modules.scaling import WindowScale

LEVELS = torch.tensor([0.1, 0.9], dtype=torch.float64)


def _example():
    """One window, two steps, two levels: step 0 forecasts (8, 12), step 1 forecasts (12, 12).

    Elementwise loss, [1, 2, 2]:
        step 0: q=0.1, f=8 -> 0.2;   q=0.9, f=12 -> 0.2
        step 1: q=0.1, f=12 -> 1.8;  q=0.9, f=12 -> 0.2
    """
    prediction = torch.tensor([[[8.0, 12.0], [12.0, 12.0]]], dtype=torch.float64)  # [B=1, H=2, Q=2]
    target = torch.tensor([[10.0, 10.0]], dtype=torch.float64)  # [1, 2]
    expected = torch.tensor([[[0.2, 0.2], [1.8, 0.2]]], dtype=torch.float64)
    return prediction, target, expected


def test_pinball_hand_values_all_four_cases():
    target = torch.tensor([[10.0]], dtype=torch.float64)
    for f, q, expected in [(8.0, 0.1, 0.2), (8.0, 0.9, 1.8), (12.0, 0.1, 1.8), (12.0, 0.9, 0.2)]:
        prediction = torch.tensor([[[f]]], dtype=torch.float64)
        value = pinball(prediction, target, torch.tensor([q], dtype=torch.float64))
        assert value.shape == (1, 1, 1)
        assert value.item() == pytest.approx(expected, abs=1e-12), (f, q)


def test_pinball_is_zero_at_the_target_and_nonnegative():
    target = torch.tensor([[10.0, -3.0]], dtype=torch.float64)
    prediction = target[..., None].expand(1, 2, 2).clone()
    assert torch.equal(pinball(prediction, target, LEVELS), torch.zeros(1, 2, 2, dtype=torch.float64))
    noisy = prediction + torch.randn(1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert (pinball(noisy, target, LEVELS) > 0).all()


def test_pinball_elementwise_shape_and_values():
    prediction, target, expected = _example()
    value = pinball(prediction, target, LEVELS)
    assert value.shape == (1, 2, 2)
    torch.testing.assert_close(value, expected, rtol=0, atol=1e-12)


def test_pinball_per_sample_levels_match_shared_levels():
    prediction, target, expected = _example()
    prediction = torch.cat([prediction, prediction.flip(-1)])  # window 1: the same forecasts, levels swapped
    target = torch.cat([target, target])
    levels = torch.tensor([[0.1, 0.9], [0.9, 0.1]], dtype=torch.float64)  # [B, Q]
    value = pinball(prediction, target, levels)
    torch.testing.assert_close(value[0], expected[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(value[1], expected[0].flip(-1), rtol=0, atol=1e-12)


def test_pinball_loss_is_the_plain_mean():
    prediction, target, _ = _example()
    # (0.2 + 0.2 + 1.8 + 0.2) / 4 = 0.6
    assert pinball_loss(prediction, target, LEVELS).item() == pytest.approx(0.6, abs=1e-12)


def test_masked_elements_do_not_count():
    prediction, target, _ = _example()
    mask = torch.tensor([[True, False]])  # only step 0: (0.2 + 0.2) / 2
    assert pinball_loss(prediction, target, LEVELS, mask=mask).item() == pytest.approx(0.2, abs=1e-12)
    mask = torch.tensor([[False, True]])  # only step 1: (1.8 + 0.2) / 2
    assert pinball_loss(prediction, target, LEVELS, mask=mask).item() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_target_under_false_mask_does_not_leak(bad):
    prediction, target, _ = _example()
    prediction = prediction.clone().requires_grad_(True)
    target = target.clone()
    target[0, 1] = bad
    mask = torch.tensor([[True, False]])
    loss = pinball_loss(prediction, target, LEVELS, mask=mask)
    assert loss.item() == pytest.approx(0.2, abs=1e-12)
    loss.backward()
    assert torch.isfinite(prediction.grad).all()
    # d loss / d f = (1{y < f} - q) / (number of counted elements) at the observed step, 0 at the masked one
    expected_grad = torch.tensor([[[-0.1 / 2, 0.1 / 2], [0.0, 0.0]]], dtype=torch.float64)
    torch.testing.assert_close(prediction.grad, expected_grad, rtol=0, atol=1e-12)


def test_non_finite_target_under_zero_weight_does_not_leak():
    prediction, target, _ = _example()
    target = target.clone()
    target[0, 1] = float("nan")
    weights = torch.tensor([[[1.0], [0.0]]], dtype=torch.float64)  # [B, H, 1]: step 1 weighs nothing
    assert pinball_loss(prediction, target, LEVELS, weights=weights).item() == pytest.approx(0.2, abs=1e-12)


def test_all_masked_gives_zero_not_nan():
    prediction, target, _ = _example()
    loss = pinball_loss(prediction, target, LEVELS, mask=torch.zeros(1, 2, dtype=torch.bool))
    assert loss.item() == 0.0


def test_weights_give_the_weighted_mean():
    prediction, target, _ = _example()
    level_weights = torch.tensor([[[1.0, 3.0]]], dtype=torch.float64)  # [B, 1, Q]
    # q=0.1 column (0.2, 1.8) weighs 1, q=0.9 column (0.2, 0.2) weighs 3:
    # (1 * (0.2 + 1.8) + 3 * (0.2 + 0.2)) / (2 * 1 + 2 * 3) = 3.2 / 8 = 0.4
    assert pinball_loss(prediction, target, LEVELS, weights=level_weights).item() == pytest.approx(0.4, abs=1e-12)
    step_weights = torch.tensor([[[3.0], [1.0]]], dtype=torch.float64)  # [B, H, 1]
    # (3 * (0.2 + 0.2) + 1 * (1.8 + 0.2)) / (3 * 2 + 1 * 2) = 3.2 / 8 = 0.4
    assert pinball_loss(prediction, target, LEVELS, weights=step_weights).item() == pytest.approx(0.4, abs=1e-12)
    step_weights = torch.tensor([[[1.0], [3.0]]], dtype=torch.float64)
    # (1 * 0.4 + 3 * 2.0) / 8 = 0.8
    assert pinball_loss(prediction, target, LEVELS, weights=step_weights).item() == pytest.approx(0.8, abs=1e-12)


def test_weights_and_mask_combine():
    prediction, target, _ = _example()
    level_weights = torch.tensor([[[1.0, 3.0]]], dtype=torch.float64)
    mask = torch.tensor([[False, True]])
    # step 1 only: (1 * 1.8 + 3 * 0.2) / (1 + 3) = 2.4 / 4 = 0.6
    loss = pinball_loss(prediction, target, LEVELS, mask=mask, weights=level_weights)
    assert loss.item() == pytest.approx(0.6, abs=1e-12)


def test_denominator_divides_each_error():
    prediction, target, _ = _example()
    denominator = torch.tensor([[[2.0], [4.0]]], dtype=torch.float64)  # [B, H, 1]
    # step 0: 0.2/2, 0.2/2 = 0.1, 0.1; step 1: 1.8/4, 0.2/4 = 0.45, 0.05 -> mean 0.7 / 4 = 0.175
    loss = pinball_loss(prediction, target, LEVELS, denominator=denominator)
    assert loss.item() == pytest.approx(0.175, abs=1e-12)
    scalar = pinball_loss(prediction, target, LEVELS, denominator=torch.tensor(10.0, dtype=torch.float64))
    assert scalar.item() == pytest.approx(0.06, abs=1e-12)


def test_target_denominator_is_max_abs_target_and_one():
    target = torch.tensor([[10.0, 0.5, -3.0, 0.0, -0.2]])
    denominator = target_denominator(target)
    assert denominator.shape == (1, 5, 1)
    torch.testing.assert_close(denominator[..., 0], torch.tensor([[10.0, 1.0, 3.0, 1.0, 1.0]]), rtol=0, atol=0)


def test_target_denominator_in_the_loss():
    prediction = torch.tensor([[[8.0, 12.0], [0.0, 1.0]]], dtype=torch.float64)
    target = torch.tensor([[10.0, 0.5]], dtype=torch.float64)
    # step 0 (y=10, divide by 10): 0.02, 0.02; step 1 (y=0.5, divide by 1):
    # q=0.1, f=0 -> 0.1 * 0.5 = 0.05; q=0.9, f=1 -> 0.1 * 0.5 = 0.05 -> mean 0.14 / 4 = 0.035
    loss = pinball_loss(prediction, target, LEVELS, denominator=target_denominator(target))
    assert loss.item() == pytest.approx(0.035, abs=1e-12)


def test_each_normalisation_divides_by_its_own_denominator():
    scale = WindowScale(loc=torch.zeros(2, 1), scale=torch.tensor([[4.0], [10.0]]))  # [B, 1]
    target = torch.tensor([[0.5, -3.0], [20.0, -0.2]])  # [B, H]
    window = loss_denominator(LossNormalisation.window, scale, target)
    assert window.shape == (2, 1, 1) and window.flatten().tolist() == [4.0, 10.0]
    per_target = loss_denominator(LossNormalisation.target, scale, target)
    assert per_target.shape == (2, 2, 1) and per_target.flatten().tolist() == [1.0, 3.0, 20.0, 1.0]  # max(|y|, 1)
    assert loss_denominator(LossNormalisation.none, scale, target) is None


def test_the_normalisations_are_named_as_the_configs_write_them():
    """model.loss_normalisation=window|target|none in the YAML configs: the names are part of the config's API."""
    assert [choose(LossNormalisation, name, "loss normalisation").value for name in ("window", "target", "none")] == [
        "window",
        "target",
        "none",
    ]
    assert [member.value for member in LossNormalisation] == ["window", "target", "none"]
