"""The one scoring path (model/scoring.py): raw forecasts in, the final and the raw forecast's scores out."""

from __future__ import annotations

import pytest
import torch

from anyquantile.model.scoring import ForecastScorer, final_forecast, score_forecasts
from anyquantile.modules.quantile_levels import EvaluationLevels

# Four grid levels (0.125, 0.375, 0.625, 0.875) plus the median and the 50 % interval's ends: 7 levels.
LEVELS = EvaluationLevels(grid_size=4, intervals=(0.5,))


def by_hand():
    """2 windows x 2 steps: 2 of the 4 raw forecasts cross; every target observed but one."""
    prediction = torch.tensor(
        [
            [
                [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],  # monotone
                [1.0, 3.0, 2.0, 4.0, 5.0, 6.0, 7.0],
            ],  # one swap: crosses
            [
                [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0],  # reversed: crosses
                [4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0],
            ],  # flat: ties do not cross
        ],
        dtype=torch.float64,
    )  # [2, 2, 7]
    target = torch.tensor([[4.5, 2.5], [0.0, 9.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True], [True, False]])
    return prediction, target, mask


def test_raw_and_final_crossing_rates_by_hand():
    prediction, target, mask = by_hand()
    scores = score_forecasts(LEVELS, prediction, target, mask)
    assert scores.final["crossing_rate_raw"] == pytest.approx(2 / 4)  # every forecast counts, observed or not
    assert scores.final["crossing_rate_final"] == 0.0  # rearranged: nothing crosses
    assert scores.raw["crossing_rate_raw"] == scores.final["crossing_rate_raw"]
    assert "crossing_rate" not in scores.final and "crossing_rate" not in scores.raw
    unsorted = score_forecasts(LEVELS, prediction, target, mask, rearrange=False)
    assert unsorted.raw is None  # the final forecast is the raw one
    assert unsorted.final["crossing_rate_final"] == unsorted.final["crossing_rate_raw"] == pytest.approx(2 / 4)


def test_the_final_forecast_is_scored_and_the_raw_one_kept():
    prediction, target, mask = by_hand()
    scores = score_forecasts(LEVELS, prediction, target, mask)
    sorted_forecast = prediction.sort(dim=-1).values
    torch.testing.assert_close(final_forecast(prediction, rearrange=True), sorted_forecast)
    assert final_forecast(prediction, rearrange=False) is prediction
    as_sorted = score_forecasts(LEVELS, sorted_forecast, target, mask, rearrange=False)
    as_raw = score_forecasts(LEVELS, prediction, target, mask, rearrange=False)
    for name in ("crps", "coverage_50", "mae", "calibration_error", "observed_targets"):
        assert scores.final[name] == pytest.approx(as_sorted.final[name], rel=1e-12), name
        assert scores.raw[name] == pytest.approx(as_raw.final[name], rel=1e-12), name
    assert scores.final["crps"] < scores.raw["crps"]  # sorting never raises the grid's pinball loss; here it lowers it
    assert scores.final["observed_targets"] == 3


def test_crps_of_the_final_forecast_by_hand():
    """Window 1, step 1 alone: the reversed forecast 7..1, sorted 1..7. The grid levels 0.125, 0.375, 0.625,
    0.875 are positions 0, 2, 4, 6 of the 7 levels (0.25, 0.5, 0.75 are the interval's ends and the median),
    so the grid's forecasts are 1, 3, 5, 7 sorted and 7, 5, 3, 1 raw, all above y = 0."""
    prediction, target, mask = by_hand()
    scores = score_forecasts(LEVELS, prediction[1:, :1], target[1:, :1], mask[1:, :1])
    grid = torch.tensor([0.125, 0.375, 0.625, 0.875], dtype=torch.float64)
    pinball = (1 - grid) * torch.tensor([1.0, 3.0, 5.0, 7.0], dtype=torch.float64)  # y below every forecast
    assert scores.final["crps"] == pytest.approx(float(2 * pinball.mean()), rel=1e-12)
    raw_pinball = (1 - grid) * torch.tensor(
        [7.0, 5.0, 3.0, 1.0], dtype=torch.float64
    )  # the raw forecast at those levels
    assert scores.raw["crps"] == pytest.approx(float(2 * raw_pinball.mean()), rel=1e-12)


def test_batches_add_up_to_one_pass_and_reset_clears():
    prediction, target, mask = by_hand()
    whole = score_forecasts(LEVELS, prediction, target, mask)
    scorer = ForecastScorer(LEVELS, horizon=2)
    assert not scorer.update_called
    returned = scorer.update(prediction[:1], target[:1], mask[:1])
    torch.testing.assert_close(returned, prediction[:1].sort(dim=-1).values)  # the final forecast
    scorer.update(prediction[1:], target[1:], mask[1:])
    parts = scorer.compute()
    assert parts.final == pytest.approx(whole.final, rel=1e-12) and parts.raw == pytest.approx(whole.raw, rel=1e-12)
    assert parts.share_below == pytest.approx(whole.share_below)
    assert scorer.compute() == parts  # computing again gives the same scores
    scorer.reset()
    scorer.update(prediction[1:], target[1:], mask[1:])
    assert scorer.compute().final["crossing_rate_raw"] == pytest.approx(1 / 2)  # window 1 alone


def test_share_below_is_the_final_forecasts_reliability_curve():
    prediction, target, mask = by_hand()
    scores = score_forecasts(LEVELS, prediction, target, mask)
    final = prediction.sort(dim=-1).values
    observed = mask[..., None]
    expected = ((target[..., None] < final) & observed).sum(dim=(0, 1)) / mask.sum()  # [Q]
    assert scores.share_below == pytest.approx(expected.tolist())
    assert len(scores.share_below) == len(LEVELS)
