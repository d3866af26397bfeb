"""Split-conformal calibration reaches nominal coverage on exchangeable data."""

from __future__ import annotations

import pytest
import torch

from anyquantile.modules.conformal import IntervalConformal, LevelConformal

LEVELS = torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=torch.float64)
STEP_SCALE = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)  # errors grow with the horizon step


def draw(n: int, generator: torch.Generator):
    """Exchangeable windows: y = mu + s_h * noise (Student-t, 5 df), and a forecaster whose quantiles
    are biased by +0.3 and too narrow (normal quantiles of half the scale, ignoring the step)."""
    mu = torch.randn(n, 1, generator=generator, dtype=torch.float64) * 3
    noise = torch.distributions.StudentT(5.0).sample((n, 3)).double()
    target = mu + STEP_SCALE * noise  # [n, H]
    z = torch.special.ndtri(LEVELS)
    prediction = (mu + 0.3)[..., None] + 0.5 * z * torch.ones(n, 3, 1, dtype=torch.float64)  # [n, H, Q]
    return prediction, target, torch.ones(n, 3, dtype=torch.bool)


def share_below(prediction, target):
    return (target[..., None] <= prediction).double().mean(dim=(0, 1))  # [Q]


@pytest.mark.parametrize("per_step", [False, True])
def test_level_conformal_reaches_each_level(per_step):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    calibration, test = draw(4000, generator), draw(20000, generator)
    before = share_below(test[0], test[1])
    assert (before - LEVELS).abs().max() > 0.15  # badly calibrated to start with
    corrected = LevelConformal(LEVELS, per_step).fit(*calibration).apply(test[0])
    after = share_below(corrected, test[1])
    assert (after - LEVELS).abs().max() < 0.012  # binomial sd on 60,000 targets <= 0.002; n_cal term 0.0001
    if per_step:  # each step on its own is calibrated too
        for h in range(3):
            step = (test[1][:, h, None] <= corrected[:, h]).double().mean(dim=0)
            assert (step - LEVELS).abs().max() < 0.015


def test_pooled_level_correction_leaves_the_steps_miscalibrated():
    torch.manual_seed(1)
    generator = torch.Generator().manual_seed(1)
    calibration, test = draw(4000, generator), draw(20000, generator)
    pooled = LevelConformal(LEVELS).fit(*calibration).apply(test[0])
    first_step = (test[1][:, 0, None] <= pooled[:, 0]).double().mean(dim=0)
    # The pooled 5 % correction is set mostly by the wide steps: for step 1, whose errors are the
    # smallest, it sits far too low and almost no target falls below it (and the 95 % level too high).
    assert first_step[0] < 0.05 - 0.03 and first_step[-1] > 0.95 + 0.03


@pytest.mark.parametrize("per_step", [False, True])
def test_interval_conformal_reaches_nominal_coverage(per_step):
    torch.manual_seed(2)
    generator = torch.Generator().manual_seed(2)
    (cal_pred, cal_y, cal_mask), (test_pred, test_y, _) = draw(4000, generator), draw(20000, generator)

    # the 90 % and 50 % intervals: ends at levels 0.05 / 0.95 and 0.25 / 0.75
    def ends(prediction):
        return prediction[..., [0, 1]], prediction[..., [4, 3]]

    conformal = IntervalConformal((0.9, 0.5), per_step).fit(*ends(cal_pred), cal_y, cal_mask)
    lower, upper = ends(test_pred)
    covered_before = ((test_y[..., None] >= lower) & (test_y[..., None] <= upper)).double().mean(dim=(0, 1))
    assert (covered_before < torch.tensor([0.6, 0.3])).all()
    lower, upper = conformal.apply(lower, upper)
    covered = ((test_y[..., None] >= lower) & (test_y[..., None] <= upper)).double().mean(dim=(0, 1))
    torch.testing.assert_close(covered, torch.tensor([0.9, 0.5], dtype=torch.float64), atol=0.012, rtol=0)


def test_order_statistic_by_hand_and_unobserved_targets_are_ignored():
    # residuals y - f for q = 0.5 at one level, one step: 4 observed values and one masked outlier
    prediction = torch.zeros(5, 1, 1, dtype=torch.float64)
    target = torch.tensor([[4.0], [1.0], [3.0], [2.0], [-100.0]], dtype=torch.float64)
    mask = torch.tensor([[True], [True], [True], [True], [False]])
    conformal = LevelConformal(torch.tensor([0.5])).fit(prediction, target, mask)
    # n = 4: ceil(5 * 0.5) = 3rd smallest of 1, 2, 3, 4
    assert conformal.delta.item() == 3.0
    top = LevelConformal(torch.tensor([0.9])).fit(prediction, target, mask)
    assert top.delta.item() == float("inf")  # ceil(5 * 0.9) = 5 > n: no finite correction guarantees it
    with pytest.raises(RuntimeError, match="fit"):
        LevelConformal(torch.tensor([0.5])).apply(prediction)
    with pytest.raises(ValueError, match="coverage"):
        IntervalConformal((1.0,))


@pytest.mark.parametrize("kind", ["interval", "interval_per_step", "level", "level_per_step"])
def test_evaluations_conformal_reaches_nominal_coverage_and_cqr_moves_only_interval_ends(kind):
    """evaluation.report.conformal_calibration on the evaluation's own levels, scored by the scoring path."""
    from anyquantile.evaluation.ensemble import SplitForecasts
    from anyquantile.evaluation.report import conformal_calibration
    from anyquantile.model.scoring import score_forecasts
    from anyquantile.modules.quantile_levels import EvaluationLevels

    levels = EvaluationLevels(grid_size=19, intervals=(0.5, 0.9))
    generator = torch.Generator().manual_seed(4)

    def forecasts(n):  # the biased, too-narrow forecaster of draw(), at every evaluation level
        mu = torch.randn(n, 1, generator=generator, dtype=torch.float64) * 3
        target = mu + STEP_SCALE * torch.distributions.StudentT(5.0).sample((n, 3)).double()
        z = torch.special.ndtri(levels.levels)
        return (mu + 0.3)[..., None] + 0.5 * z * torch.ones(n, 3, 1, dtype=torch.float64), target

    (cal_pred, cal_y), (test_pred, test_y) = forecasts(4000), forecasts(20000)
    mask = torch.ones_like(test_y, dtype=torch.bool)
    calibration = SplitForecasts(
        cal_pred, cal_y, torch.ones_like(cal_y, dtype=torch.bool), torch.zeros(len(cal_y)), torch.zeros(len(cal_y))
    )
    calibrated = conformal_calibration(kind, levels, calibration, test_pred)
    before = score_forecasts(levels, test_pred, test_y, mask, rearrange=False).final
    after = score_forecasts(levels, calibrated, test_y, mask, rearrange=False).final
    assert before["coverage_90"] < 0.6 and before["coverage_50"] < 0.3
    assert after["coverage_90"] == pytest.approx(0.9, abs=0.012) and after["coverage_50"] == pytest.approx(
        0.5, abs=0.012
    )
    ends = [levels.index(end) for end in (0.05, 0.25, 0.75, 0.95)]
    others = [i for i in range(len(levels)) if i not in ends]
    moved = (calibrated != test_pred).any(dim=(0, 1))  # [Q]
    if kind.startswith("interval"):
        assert moved[ends].all() and not moved[others].any()
    else:
        assert moved.all()


def test_a_level_correction_reads_at_any_level_and_round_trips_as_plain_data():
    correction = LevelConformal(torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64), per_step=True)
    correction.delta = torch.tensor([[-100.0, 0.0, 100.0], [-10.0, 0.0, 30.0]], dtype=torch.float64)  # [H, Q]
    shift = correction.shift_at(torch.tensor([0.05, 0.3, 0.5, 0.7, 0.95]))  # [H, 5]
    # linear between fitted levels, the outermost one's beyond them
    expected = torch.tensor([[-100.0, -50.0, 0.0, 50.0, 100.0], [-10.0, -5.0, 0.0, 15.0, 30.0]], dtype=torch.float64)
    torch.testing.assert_close(shift, expected)
    restored = LevelConformal.from_state(correction.state())
    assert restored.per_step and torch.equal(restored.delta, correction.delta)
    assert torch.equal(restored.levels, correction.levels)
    correction.delta[0, 0] = float("inf")  # too few targets for the outermost level
    with pytest.raises(ValueError, match="too small"):
        correction.state()
    with pytest.raises(ValueError, match="level or level_per_step"):
        LevelConformal.from_state({"kind": "interval", "levels": [0.5], "delta": [[0.0]]})
    for levels, delta, message in [
        ([0.5, 0.1], [[0.0, 0.0]], "ascending"),
        ([0.0, 0.5], [[0.0, 0.0]], "inside"),
        ([0.1, 0.5], [[0.0, float("nan")]], "finite"),
        ([0.1, 0.5], [[0.0]], "shape"),
        ([0.5], [[1.0]], "at least two levels"),
    ]:
        with pytest.raises(ValueError, match=message):
            LevelConformal.from_state({"kind": "level", "levels": levels, "delta": delta})
