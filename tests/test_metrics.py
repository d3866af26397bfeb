"""QuantileForecastMetrics and CrossingRate (model/metrics.py) and EvaluationLevels (modules/quantile_levels.py).

CRPS is checked against closed forms from ``properscoring``; the interval, median and crossing
metrics against small examples worked out by hand. How the scoring path combines them (raw and
final forecasts) is tests/test_scoring.py's.
"""

from __future__ import annotations

import math

import numpy as np
import properscoring as ps
import pytest
import scipy.stats as st
import torch

from anyquantile.model.metrics import CrossingRate, QuantileForecastMetrics, headline
from anyquantile.modules.quantile_levels import DEFAULT_INTERVALS, EvaluationLevels, interval_ends, midpoint_grid


def _compute(levels: EvaluationLevels, prediction, target, mask=None) -> dict[str, float]:
    prediction = torch.as_tensor(prediction, dtype=torch.float64)
    target = torch.as_tensor(target, dtype=torch.float64)
    if mask is None:
        mask = torch.ones(target.shape, dtype=torch.bool)
    metric = QuantileForecastMetrics(levels, horizon=target.shape[1])
    metric.update(prediction, target, mask)
    return {name: float(value) for name, value in metric.compute().items() if name != "share_below"}


def _crossing(prediction) -> float:
    metric = CrossingRate()
    metric.update(torch.as_tensor(prediction, dtype=torch.float64))
    return float(metric.compute())


def _random_forecast(levels: EvaluationLevels, B: int, H: int, seed: int = 0):
    """Monotone (in q) Gaussian-shaped forecasts with random centre and spread, and targets near them."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(100.0, 20.0, size=(B, H, 1))
    sigma = rng.uniform(1.0, 10.0, size=(B, H, 1))
    prediction = st.norm.ppf(levels.levels.numpy()[None, None, :], mu, sigma)
    target = rng.normal(mu[..., 0], 1.5 * sigma[..., 0])
    target[0, 0] = 0.0  # a zero target, skipped by MAPE
    return torch.from_numpy(prediction), torch.from_numpy(target)


# --------------------------------------------------------------------------------------------
# CRPS against closed forms


GAUSSIAN_CASES = [(0.0, 0.0, 1.0), (2.5, 0.0, 1.0), (-1.0, 0.3, 2.0), (10.0, 0.0, 1.0), (105.0, 100.0, 7.0)]


@pytest.mark.parametrize("y, mu, sigma", GAUSSIAN_CASES)
@pytest.mark.parametrize("grid_size, rel", [(999, 1e-4), (99, 1e-3)])
def test_crps_of_gaussian_quantiles_matches_closed_form(y, mu, sigma, grid_size, rel):
    # The midpoint rule over K levels; measured errors are <= 2e-5 (K = 999) and <= 3e-4 (K = 99)
    # relative for these cases, so 1e-4 and 1e-3 are tight yet safe (the brief asks ~1e-3 and ~1 %).
    levels = EvaluationLevels(grid_size=grid_size)
    prediction = st.norm.ppf(levels.levels.numpy(), mu, sigma)[None, None, :]  # [1, 1, Q]
    result = _compute(levels, prediction, [[y]])
    exact = ps.crps_gaussian(y, mu, sigma)
    assert result["crps"] == pytest.approx(exact, rel=rel)
    assert result["crps_step_1"] == pytest.approx(exact, rel=rel)


def test_crps_hand_value_on_a_four_level_grid():
    # grid (0.125, 0.375, 0.625, 0.875); the forecast at those levels is (7, 9, 11, 13), y = 10:
    # pinball 0.125*3, 0.375*1, (1-0.625)*1, (1-0.875)*3 = 0.375 each -> CRPS = 2 * 0.375 = 0.75.
    levels = EvaluationLevels(grid_size=4, intervals=(0.5,))
    assert levels.levels.tolist() == [0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875]
    prediction = [[[7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0]]]
    result = _compute(levels, prediction, [[10.0]])
    assert result["crps"] == pytest.approx(0.75, abs=1e-12)
    # non-grid levels (0.25, 0.5, 0.75) do not enter the CRPS: changing them changes nothing
    prediction[0][0][1], prediction[0][0][3], prediction[0][0][5] = -100.0, 500.0, 1e6
    assert _compute(levels, prediction, [[10.0]])["crps"] == pytest.approx(0.75, abs=1e-12)


def _ensemble_quantiles(members: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """The quantile function of the empirical distribution (inverse CDF): x_(ceil(q M)), members [N, M]."""
    ordered = np.sort(members, axis=-1)
    M = members.shape[-1]
    index = np.clip(np.ceil(levels * M).astype(int) - 1, 0, M - 1)
    return ordered[:, index]  # [N, Q]


def test_crps_of_ensemble_quantiles_is_exact_when_members_divide_the_grid():
    # The pinball loss rho_q(y, f) is linear in q for fixed f. With M = 11 members and K = 99 = 9 * 11
    # grid levels, each constant piece [(j-1)/M, j/M] of the empirical quantile function is exactly
    # 9 grid cells, and the midpoint rule is exact for a linear function on each cell: the grid CRPS
    # equals the ensemble CRPS up to rounding (the metric keeps its levels in float32, ~1e-8).
    rng = np.random.default_rng(1)
    N, M = 40, 11
    members = rng.normal(50.0, 10.0, size=(N, M))
    target = rng.normal(50.0, 15.0, size=N)
    levels = EvaluationLevels(grid_size=99)
    prediction = _ensemble_quantiles(members, levels.levels.numpy())[None]  # [1, N, Q]: one window, N steps
    result = _compute(levels, prediction, target[None])
    expected = ps.crps_ensemble(target, members)  # [N]
    got = np.array([result[f"crps_step_{h + 1}"] for h in range(N)])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)
    assert result["crps"] == pytest.approx(expected.mean(), rel=1e-6)


def test_crps_of_ensemble_quantiles_within_midpoint_bound():
    # With M = 50 members the jumps of the quantile function fall inside grid cells. On a cell of
    # width 1/K the integrand differs from the (exactly integrated) linear function at the cell's
    # centre by at most |F^-1(q) - F^-1(q_k)| (pinball is 1-Lipschitz in f), so the whole error is
    # at most (1/K) * (x_max - x_min), i.e. 2 * (x_max - x_min) / K after the factor 2 of the CRPS.
    rng = np.random.default_rng(2)
    N, M, K = 30, 50, 99
    members = rng.normal(0.0, 3.0, size=(N, M))
    target = rng.normal(0.0, 4.0, size=N)
    levels = EvaluationLevels(grid_size=K)
    prediction = _ensemble_quantiles(members, levels.levels.numpy())[None]
    result = _compute(levels, prediction, target[None])
    expected = ps.crps_ensemble(target, members)
    got = np.array([result[f"crps_step_{h + 1}"] for h in range(N)])
    bound = 2 * (members.max(axis=1) - members.min(axis=1)) / K
    assert (np.abs(got - expected) <= bound + 1e-9).all()
    # and the bound is not vacuous here: it is a fraction of the CRPS itself
    assert (bound < 0.5 * expected).mean() > 0.5


# --------------------------------------------------------------------------------------------
# Intervals, median errors, crossing rate by hand


def _hand_example():
    """Levels (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875); forecast m + w * (-3, ..., 3).

    So the 50 % interval is [m - 2w, m + 2w] and the 75 % interval [m - 3w, m + 3w] (its ends
    0.125 and 0.875 are also grid levels: each is kept once).

    window 0: m = 10, w = 1 at every step; y = 10, 12.5, 7
    window 1: m = 1, 5, -4; w = 0.5, 2, 1;   y = 0, 4, -10
    """
    levels = EvaluationLevels(grid_size=4, intervals=(0.5, 0.75))
    offsets = torch.arange(-3.0, 4.0, dtype=torch.float64)  # [7]
    m = torch.tensor([[10.0, 10.0, 10.0], [1.0, 5.0, -4.0]], dtype=torch.float64)
    w = torch.tensor([[1.0, 1.0, 1.0], [0.5, 2.0, 1.0]], dtype=torch.float64)
    prediction = m[..., None] + w[..., None] * offsets  # [2, 3, 7]
    target = torch.tensor([[10.0, 12.5, 7.0], [0.0, 4.0, -10.0]], dtype=torch.float64)
    return levels, prediction, target


def test_hand_example_levels():
    levels, prediction, _ = _hand_example()
    assert len(levels) == 7 and prediction.shape == (2, 3, 7)
    assert levels.crps_mask.tolist() == [True, False, True, False, True, False, True]


def test_coverage_and_width_by_hand():
    levels, prediction, target = _hand_example()
    result = _compute(levels, prediction, target)
    # 50 %: w0 [8, 12]: 10 in, 12.5 out, 7 out; w1 [0, 2]: 0 in (end included), [1, 9]: 4 in, [-6, -2]: -10 out
    assert result["coverage_50"] == pytest.approx(3 / 6, abs=1e-12)
    # 75 %: w0 [7, 13]: all in (7 is the end); w1 [-0.5, 2.5] in, [-1, 11] in, [-7, -1] out
    assert result["coverage_75"] == pytest.approx(5 / 6, abs=1e-12)
    # widths 4w and 6w: (4 * 3 + 4 * 3.5) / 6 and (6 * 3 + 6 * 3.5) / 6
    assert result["width_50"] == pytest.approx(26 / 6, abs=1e-12)
    assert result["width_75"] == pytest.approx(39 / 6, abs=1e-12)
    assert result["observed_targets"] == 6


def test_median_errors_by_hand():
    levels, prediction, target = _hand_example()
    result = _compute(levels, prediction, target)
    # |y - m|: w0: 0, 2.5, 3; w1: 1, 1, 6
    assert result["mae"] == pytest.approx(13.5 / 6, abs=1e-12)
    # APE (y = 0 skipped): 0, 2.5/12.5, 3/7, 1/4, 6/10 over 5 targets
    assert result["mape"] == pytest.approx(100 * (0 + 0.2 + 3 / 7 + 0.25 + 0.6) / 5, rel=1e-12)
    # sMAPE 2|y - m| / (|y| + |m|): 0, 5/22.5, 6/17, 2/1, 2/9, 12/14 over 6
    expected = 100 * (0 + 5 / 22.5 + 6 / 17 + 2.0 + 2 / 9 + 12 / 14) / 6
    assert result["smape"] == pytest.approx(expected, rel=1e-12)
    assert _crossing(prediction) == 0.0


def test_smape_skips_target_and_median_both_zero():
    levels = EvaluationLevels(grid_size=4, intervals=(0.5,))
    offsets = torch.arange(-3.0, 4.0, dtype=torch.float64)
    prediction = torch.stack([0.0 + offsets, 4.0 + offsets])[None]  # [1, 2, 7]: medians 0 and 4
    result = _compute(levels, prediction, [[0.0, 2.0]])
    assert result["smape"] == pytest.approx(100 * 2 * 2 / 6, rel=1e-12)  # only the second step counts
    assert result["mape"] == pytest.approx(100 * 2 / 2, rel=1e-12)
    assert result["mae"] == pytest.approx(1.0, abs=1e-12)  # (0 + 2) / 2: MAE counts both


def test_crossing_rate_by_hand():
    prediction = torch.tensor(
        [
            [
                [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],  # monotone
                [1.0, 3.0, 2.0, 4.0, 5.0, 6.0, 7.0],  # one swap: crossed
                [4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0],  # flat: ties are not crossings
                [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 5.9],  # last level dips: crossed
            ],
            [
                [7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0],  # reversed: crossed
                [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0],  # monotone with ties
                [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
                [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            ],
        ],
        dtype=torch.float64,
    )
    assert _crossing(prediction) == pytest.approx(3 / 8, abs=1e-12)
    metric = CrossingRate()  # two batches add up as one
    metric.update(prediction[:1])
    metric.update(prediction[1:])
    assert float(metric.compute()) == pytest.approx(3 / 8, abs=1e-12)


# --------------------------------------------------------------------------------------------
# Masks, per-step CRPS, batching

TARGET_METRICS = (
    "crps",
    "ncrps",
    "mae",
    "mape",
    "smape",
    "coverage_50",
    "coverage_80",
    "coverage_90",
    "coverage_95",
    "width_50",
    "width_80",
    "width_90",
    "width_95",
    "observed_targets",
)


def test_masked_targets_are_excluded_from_every_metric():
    levels = EvaluationLevels()
    B, H = 6, 5
    prediction, target = _random_forecast(levels, B, H)
    mask = torch.from_numpy(np.random.default_rng(3).random((B, H)) < 0.6)
    mask[0, 0] = True
    assert 0 < mask.sum() < B * H
    observed = _compute(levels, prediction[mask][:, None, :], target[mask][:, None])  # observed only, H = 1

    # poison the unobserved targets and forecasts: nothing may change
    poisoned_target = torch.where(mask, target, torch.full_like(target, float("nan")))
    poisoned_prediction = torch.where(mask[..., None], prediction, 1e3 * prediction + 1e9)  # wide, far off
    poisoned_target[~mask & (torch.arange(H) % 2 == 0)] = float("inf")
    masked = _compute(levels, poisoned_prediction, poisoned_target, mask)
    for name in TARGET_METRICS:
        assert math.isfinite(masked[name]), name
        assert masked[name] == pytest.approx(observed[name], rel=1e-12, abs=1e-12), name
    assert masked["observed_targets"] == int(mask.sum())


def test_crossing_rate_counts_every_forecast_not_only_observed_ones():
    # documented: the share of (window, step) forecasts; it takes no targets and no mask
    good = torch.arange(7.0, dtype=torch.float64)
    prediction = torch.stack([good, good.flip(0)])[None]  # [1, 2, 7]: step 1 crossed
    assert _crossing(prediction) == pytest.approx(0.5)


def test_per_step_crps_matches_each_step_alone():
    levels = EvaluationLevels()
    B, H = 7, 4
    prediction, target = _random_forecast(levels, B, H, seed=4)
    mask = torch.from_numpy(np.random.default_rng(5).random((B, H)) < 0.7)
    mask[:, 0] = True
    mask[:, 2] = False
    mask[0, 2] = True  # step 3 has a single observed target
    result = _compute(levels, prediction, target, mask)
    step_crps = []
    for h in range(H):
        alone = _compute(levels, prediction[:, h : h + 1], target[:, h : h + 1], mask[:, h : h + 1])
        assert result[f"crps_step_{h + 1}"] == pytest.approx(alone["crps"], rel=1e-12), h
        step_crps.append(alone["crps"])
    # the overall CRPS weighs steps by their number of observed targets
    counts = mask.sum(dim=0).double().numpy()
    assert result["crps"] == pytest.approx(float(np.dot(step_crps, counts) / counts.sum()), rel=1e-12)


def test_two_batches_equal_one_batch():
    levels = EvaluationLevels()
    B, H = 9, 3
    prediction, target = _random_forecast(levels, B, H, seed=6)
    prediction[2, 1, 10], prediction[2, 1, 11] = prediction[2, 1, 11] + 1, prediction[2, 1, 10]  # a crossing
    mask = torch.from_numpy(np.random.default_rng(7).random((B, H)) < 0.8)
    whole = QuantileForecastMetrics(levels, H)
    whole.update(prediction, target, mask)
    split = QuantileForecastMetrics(levels, H)
    split.update(prediction[:4], target[:4], mask[:4])
    split.update(prediction[4:], target[4:], mask[4:])
    expected, got = whole.compute(), split.compute()
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-12, atol=1e-12, msg=name)


def test_reset_clears_the_sums():
    levels = EvaluationLevels()
    prediction, target = _random_forecast(levels, 3, 2, seed=8)
    metric = QuantileForecastMetrics(levels, 2)
    metric.update(prediction * 10, target, torch.ones(3, 2, dtype=torch.bool))
    metric.reset()
    metric.update(prediction, target, torch.ones(3, 2, dtype=torch.bool))
    fresh = _compute(levels, prediction, target)
    assert float(metric.compute()["crps"]) == pytest.approx(fresh["crps"], rel=1e-12)


def test_wrong_number_of_levels_raises():
    levels = EvaluationLevels()
    metric = QuantileForecastMetrics(levels, 2)
    with pytest.raises(ValueError, match="levels"):
        metric.update(torch.zeros(1, 2, len(levels) - 1), torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool))


def test_headline_drops_per_step_crps_and_gives_floats():
    levels = EvaluationLevels()
    prediction, target = _random_forecast(levels, 2, 3, seed=9)
    metric = QuantileForecastMetrics(levels, 3)
    metric.update(prediction, target, torch.ones(2, 3, dtype=torch.bool))
    scalars = headline(metric.compute())
    assert "crps" in scalars and not any(name.startswith("crps_step_") for name in scalars)
    assert all(isinstance(value, float) for value in scalars.values())


# --------------------------------------------------------------------------------------------
# EvaluationLevels


def test_default_levels_grid_median_and_interval_ends():
    levels = EvaluationLevels()
    values = levels.levels
    assert values.dtype == torch.float64
    grid = (torch.arange(99, dtype=torch.float64) + 0.5) / 99
    ends = [end for c in DEFAULT_INTERVALS for end in interval_ends(c)]
    # 0.5 is itself a grid midpoint (k = 50); none of the 8 interval ends is one
    assert len(levels) == 99 + 8
    assert (values[1:] > values[:-1]).all()  # sorted, no duplicates
    for q in list(grid.tolist()) + [0.5] + ends:
        assert (values - q).abs().min() < 1e-12, q
    assert sorted(ends) == pytest.approx([0.025, 0.05, 0.1, 0.25, 0.75, 0.9, 0.95, 0.975])


def test_index_finds_levels_by_value():
    levels = EvaluationLevels()
    assert (1 - 0.9) / 2 != 0.05  # the interval end is not the float 0.05 ...
    position = levels.index(0.05)  # ... but is found by value
    assert levels.levels[position].item() == pytest.approx(0.05, abs=1e-12)
    assert levels.index(interval_ends(0.9)[0]) == position
    assert levels.levels[levels.index(0.5)].item() == 0.5
    assert levels.levels[levels.index(0.975)].item() == pytest.approx(0.975, abs=1e-12)
    for q in (0.3, 0.0, 1.0, 0.05 + 1e-6):
        with pytest.raises(KeyError):
            levels.index(q)


def test_crps_mask_marks_exactly_the_grid():
    levels = EvaluationLevels()
    assert int(levels.crps_mask.sum()) == 99
    torch.testing.assert_close(levels.levels[levels.crps_mask], midpoint_grid(99), rtol=0, atol=1e-15)
    ends = {round(end, 12) for c in DEFAULT_INTERVALS for end in interval_ends(c)}
    assert {round(q, 12) for q in levels.levels[~levels.crps_mask].tolist()} == ends


def test_custom_levels_and_bad_arguments():
    levels = EvaluationLevels(grid_size=10, intervals=(0.8,))
    # grid 0.05, 0.15, ..., 0.95; extras 0.5 (not a midpoint of 10), 0.1 and 0.9
    assert len(levels) == 13
    assert int(levels.crps_mask.sum()) == 10
    with pytest.raises(ValueError):
        EvaluationLevels(grid_size=0)
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="coverage"):
            EvaluationLevels(intervals=(bad,))


def test_share_below_and_calibration_error_by_hand():
    levels = EvaluationLevels(grid_size=4, intervals=(0.5,), extra_levels=(0.1,))
    # levels 0.1, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875 forecast as 0, 10, ..., 70 at every step
    assert levels.levels.tolist() == [0.1, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875]
    prediction = (10.0 * torch.arange(8.0))[None, None, :].expand(1, 5, 8)
    target = torch.tensor([[-1.0, 15.0, 25.0, 100.0, -100.0]])
    mask = torch.tensor([[True, True, True, True, False]])  # the -100 is not observed
    result = _compute(levels, prediction, target, mask)
    assert result["below_0.1"] == pytest.approx(0.25)  # only -1 is below 0
    # grid levels: share below 10, 30, 50, 70 = 1/4, 3/4, 3/4, 3/4 against 0.125, 0.375, 0.625, 0.875
    assert result["calibration_error"] == pytest.approx((0.125 + 0.375 + 0.125 + 0.125) / 4)
    # every level: targets -1, 15, 25, 100 below 0, 10, 20, ..., 70
    metric = QuantileForecastMetrics(levels, horizon=5)
    metric.update(prediction, target, mask)
    share_below = metric.compute()["share_below"]
    assert share_below.tolist() == pytest.approx([0.25, 0.25, 0.5, 0.75, 0.75, 0.75, 0.75, 0.75])
    assert "share_below" not in headline(metric.compute())  # a vector: not a headline number


def test_normalised_crps_by_hand():
    # the four-level grid example at two steps: y = 10 (CRPS 0.75) and y = -20 against the same
    # forecast (7, 9, 11, 13) at (0.125, 0.375, 0.625, 0.875), all above y: pinball (1 - q)(f - y);
    # nCRPS = summed CRPS / summed |y| = (0.75 + crps_2) / (10 + 20).
    levels = EvaluationLevels(grid_size=4, intervals=(0.5,))
    prediction = torch.tensor([7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0], dtype=torch.float64).expand(1, 2, 7)
    result = _compute(levels, prediction, [[10.0, -20.0]])
    crps_2 = 2 * (0.875 * 27 + 0.625 * 29 + 0.375 * 31 + 0.125 * 33) / 4
    assert result["crps"] == pytest.approx((0.75 + crps_2) / 2, rel=1e-12)
    assert result["ncrps"] == pytest.approx((0.75 + crps_2) / 30, rel=1e-12)


def test_calibration_of_the_true_gaussian_quantiles_is_near_zero():
    levels = EvaluationLevels(grid_size=99, extra_levels=(0.01, 0.05, 0.95, 0.99))
    rng = np.random.default_rng(3)
    target = torch.from_numpy(rng.normal(size=(4000, 5)))
    prediction = torch.from_numpy(st.norm.ppf(levels.levels.numpy()))[None, None, :].expand(4000, 5, -1)
    result = _compute(levels, prediction, target)
    for q in (0.01, 0.05, 0.95, 0.99):  # 20,000 targets: binomial sd <= 0.0035
        assert result[f"below_{q:g}"] == pytest.approx(q, abs=0.015)
    assert result["calibration_error"] < 0.01
    wide = _compute(levels, 2 * prediction, target)  # too wide: the tails are over-covered
    assert wide["below_0.01"] < 0.001 and wide["below_0.99"] > 0.999 - 0.001
    assert wide["calibration_error"] > 0.05


def test_calibration_levels_must_be_inside_the_unit_interval():
    with pytest.raises(ValueError, match="calibration levels"):
        EvaluationLevels(extra_levels=(1.0,))


# --------------------------------------------------------------------------------------------
# The any-quantile paper's protocol: levels drawn per window


def test_window_seeded_levels_are_uniform_and_fixed_by_the_window_alone():
    from anyquantile.modules.quantile_levels import window_seeded_levels

    series = torch.arange(400).repeat_interleave(25)
    origin = torch.arange(25).repeat(400) * 24
    levels = window_seeded_levels(series, origin, 100)  # [10000, 100]
    assert levels.shape == (10_000, 100) and ((levels > 0) & (levels < 1)).all()
    assert levels.mean().item() == pytest.approx(0.5, abs=0.002)  # sd of the mean ~ 0.0003
    assert levels.var().item() == pytest.approx(1 / 12, abs=0.001)
    counts = torch.histc(levels.float(), bins=10, min=0, max=1) / levels.numel()
    assert (counts - 0.1).abs().max() < 0.002
    # the same window gets the same levels in any batch, in any order; another seed, other levels
    subset = torch.tensor([7, 3, 9_999])
    torch.testing.assert_close(window_seeded_levels(series[subset], origin[subset], 100), levels[subset])
    assert not torch.equal(window_seeded_levels(series[:3], origin[:3], 100, seed=1), levels[:3])
    assert not torch.equal(levels[0], levels[1])
    with pytest.raises(ValueError, match="count"):
        window_seeded_levels(series[:1], origin[:1], 0)


def test_paper_protocol_crps_matches_grid_crps_and_the_closed_form_on_gaussians():
    from anyquantile.model.metrics import RandomLevelCRPS
    from anyquantile.modules.quantile_levels import window_seeded_levels

    rng = np.random.default_rng(7)
    B, H = 3000, 2
    mu, sigma = rng.normal(0, 5, size=(B, 1)), rng.uniform(0.5, 3, size=(B, 1))
    target = torch.from_numpy(rng.normal(mu, 1.3 * sigma, size=(B, H)))
    levels = window_seeded_levels(torch.arange(B), torch.zeros(B, dtype=torch.long), 100)  # [B, 100]
    random_forecast = torch.from_numpy(st.norm.ppf(levels.numpy(), mu, sigma))[:, None, :].expand(B, H, 100)
    paper = RandomLevelCRPS(horizon=H)
    paper.update(random_forecast, target, torch.ones(B, H, dtype=torch.bool), levels)
    paper_crps = float(paper.compute()["crps_paper_protocol"])

    grid = EvaluationLevels(grid_size=99)
    grid_forecast = torch.from_numpy(st.norm.ppf(grid.levels.numpy()[None, :], mu, sigma))[:, None, :].expand(B, H, -1)
    grid_crps = _compute(grid, grid_forecast, target)["crps"]
    exact = ps.crps_gaussian(target.numpy(), mu, sigma).mean()
    assert grid_crps == pytest.approx(exact, rel=0.01)  # the midpoint rule's tail error, K = 99
    assert paper_crps == pytest.approx(exact, rel=0.01)  # Monte-Carlo error ~ 0.3 % here
    assert paper_crps == pytest.approx(grid_crps, rel=0.015)


def test_winkler_score_by_hand():
    levels = EvaluationLevels(grid_size=4, intervals=(0.5,))
    # levels 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875: the 50 % interval is [f(0.25), f(0.75)] = [10, 50]
    prediction = torch.tensor([0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0])[None, None, :].expand(1, 3, 7)
    result = _compute(levels, prediction, [[30.0, 4.0, 56.0]])
    # width 40 each; outside by 0, 6 (below) and 6 (above), times 2 / alpha = 4
    assert result["winkler_50"] == pytest.approx(40 + (0 + 4 * 6 + 4 * 6) / 3)


def test_pit_shares_by_hand_and_flat_for_calibrated_gaussians():
    levels = EvaluationLevels(grid_size=4, intervals=(0.5,))
    prediction = torch.tensor([0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0])[None, None, :].expand(1, 4, 7)
    # grid forecasts (levels 0.125, 0.375, 0.625, 0.875) are 0, 20, 40, 60: k below = 0, 1, 3, 4
    result = _compute(levels, prediction, [[-5.0, 5.0, 45.0, 99.0]])
    shares = [result[f"pit_{i}"] for i in range(1, 11)]
    # PIT k / 4 = 0, 0.25, 0.75, 1 -> tenths 1, 3, 8 and 10 (1 is put in the last)
    assert shares == pytest.approx([0.25, 0, 0.25, 0, 0, 0, 0, 0.25, 0, 0.25])
    assert "pit_1" not in headline(result) and "winkler_50" in headline(result)

    gaussian = EvaluationLevels(grid_size=99)
    rng = np.random.default_rng(4)
    target = torch.from_numpy(rng.normal(size=(5000, 4)))
    forecast = torch.from_numpy(st.norm.ppf(gaussian.levels.numpy()))[None, None, :].expand(5000, 4, -1)
    calibrated = _compute(gaussian, forecast, target)
    assert max(abs(calibrated[f"pit_{i}"] - 0.1) for i in range(1, 11)) < 0.01  # sd ~ 0.002
    narrow = _compute(gaussian, 0.5 * forecast, target)  # too narrow: U-shaped PIT
    assert narrow["pit_1"] > 0.2 and narrow["pit_10"] > 0.2 and narrow["pit_5"] < 0.06


def test_the_level_grid_is_not_saved_with_the_metric_so_a_checkpoint_loads_under_another_grid():
    """The grid is the evaluation's setting, not model state: a checkpoint scored with evaluation.grid_size=199
    loads into a forecaster built with the default 99 (the metric's state dict holds no levels)."""
    coarse, fine = EvaluationLevels(grid_size=9), EvaluationLevels(grid_size=19)
    saved = QuantileForecastMetrics(coarse, horizon=4).state_dict()
    assert not {"levels", "crps_mask"} & set(saved)
    QuantileForecastMetrics(fine, horizon=4).load_state_dict(saved)  # strict: no missing or unexpected keys


def test_ties_count_as_the_definitions_say_and_a_masked_step_adds_nothing_to_the_winkler_score():
    """Forecasts -3..3 at the 7 levels of the hand example (50 % interval [-2, 2], grid forecasts -3, -1, 1, 3).
    A target on the interval's upper end is inside it (closed); a target equal to a forecast is not below
    it ("strictly below"); the PIT counts the grid forecasts strictly below the target."""
    levels = EvaluationLevels(grid_size=4, intervals=(0.5, 0.75))
    forecast = torch.arange(-3.0, 4.0, dtype=torch.float64)  # [7]

    def scores(targets, mask=None):
        target = torch.tensor([targets], dtype=torch.float64)  # [1, H]
        prediction = forecast.expand(1, len(targets), 7)
        mask = torch.ones_like(target, dtype=torch.bool) if mask is None else torch.tensor([mask])
        metric = QuantileForecastMetrics(levels, horizon=len(targets))
        metric.update(prediction, target, mask)
        return metric.compute()

    on_the_end = scores([2.0])
    assert float(on_the_end["coverage_50"]) == 1.0
    assert on_the_end["share_below"].tolist() == [0, 0, 0, 0, 0, 0, 1]  # only 3 > 2; the forecast 2 is not
    pit = [f"pit_{i}" for i in range(1, 11)]
    assert [float(scores([1.0])[name]) for name in pit] == [float(scores([0.5])[name]) for name in pit]  # k = 2
    # a step that is not observed weighs 0: the Winkler score is the observed step's alone (inside: the width, 4)
    assert float(scores([2.0, 50.0], mask=[True, False])["winkler_50"]) == 4.0
