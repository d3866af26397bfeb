"""Seasonal naive quantile forecasts on a small hand-made panel, and scoring them as a reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from anyquantile.baselines.seasonal_naive import SeasonalNaive
from anyquantile.dataset.panel import HourlyPanel
from anyquantile.dataset.windows import WindowBatches, WindowShape, split_windows
from anyquantile.evaluation.references import score_reference
from anyquantile.model.metrics import QuantileForecastMetrics
from anyquantile.modules.quantile_levels import EvaluationLevels

LAG = 24
WINDOW = 72  # residual window R
LEVELS = torch.tensor([0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95])
NUM_HOURS = 12 * 24


def make_panel(values: np.ndarray) -> HourlyPanel:
    values = np.asarray(values, dtype=np.float32)
    timestamps = pd.date_range("2022-05-02 00:00", periods=values.shape[1], freq="h")
    return HourlyPanel(tuple(f"s{i}" for i in range(values.shape[0])), timestamps, values)


def profile() -> np.ndarray:
    hour = np.arange(NUM_HOURS) % LAG
    return 50.0 + 10.0 * np.sin(2 * np.pi * hour / LAG) + (hour == 18) * 7.0


@pytest.fixture
def panel() -> HourlyPanel:
    """s0: exactly periodic (residuals all 0); s1: periodic + a constant 3 per day (residuals all 3);
    s2: noisy, with gaps (residuals vary, some missing)."""
    rng = np.random.default_rng(12)
    days = np.arange(NUM_HOURS) // LAG
    noisy = profile() + rng.normal(0.0, 4.0, NUM_HOURS)
    noisy[[40, 41, 100, 150, 151, 152, 200, 230]] = np.nan
    return make_panel(np.stack([profile(), profile() + 3.0 * days, noisy]))


def hand_forecast(values: np.ndarray, s: int, t: int, horizon: int, levels: np.ndarray) -> np.ndarray:
    """The seasonal naive forecast [H, Q] written out with plain loops and numpy."""
    row = values[s].astype(np.float64)
    out = np.empty((horizon, len(levels)))
    for h in range(horizon):
        k = h // LAG + 1  # errors of the same reach as the step: k seasons
        residuals = [
            row[tau] - row[tau - k * LAG] if tau - k * LAG >= 0 and tau >= 0 else np.nan for tau in range(t - WINDOW, t)
        ]
        residuals = np.array(residuals)
        spread = np.nanquantile(residuals, levels) if np.isfinite(residuals).any() else np.zeros(len(levels))
        base_hour = t + h - k * LAG
        assert base_hour < t
        observed = [u for u in range(base_hour + 1) if np.isfinite(row[u])]
        base = row[observed[-1]] if observed else row[np.flatnonzero(np.isfinite(row))[0]]
        out[h] = base + spread
    return out


def test_constant_residuals_give_the_value_seasons_back_plus_their_drift(panel):
    model = SeasonalNaive(panel, lag=LAG, residual_window=WINDOW)
    origins = np.array([100, 131, 200, 250])
    horizon = 30  # beyond one season: steps >= 24 go two seasons back
    for s, offset in ((0, 0.0), (1, 3.0)):
        forecast = model(np.full(len(origins), s), origins, horizon, LEVELS).numpy()
        assert forecast.shape == (len(origins), horizon, len(LEVELS))
        for i, t in enumerate(origins):
            for h in range(horizon):
                back = LAG if h < LAG else 2 * LAG
                expected = panel.values[s, t + h - back] + offset * back / LAG  # +3 a day: +6 two days on
                np.testing.assert_allclose(forecast[i, h], np.full(len(LEVELS), expected), rtol=1e-6)
        median = forecast[..., LEVELS.tolist().index(0.5)]
        np.testing.assert_allclose(
            median[:, :LAG], panel.values[s][origins[:, None] + np.arange(LAG) - LAG] + offset, rtol=1e-6
        )
    # for the periodic series, the value one lag back is the truth: a perfect point forecast
    forecast = model(np.zeros(2, dtype=np.int64), np.array([150, 170]), LAG, LEVELS).numpy()
    truth = panel.values[0][np.array([150, 170])[:, None] + np.arange(LAG)]
    np.testing.assert_allclose(forecast[..., 3], truth, rtol=1e-6)


def test_quantiles_are_nanquantile_of_hand_residuals(panel):
    model = SeasonalNaive(panel, lag=LAG, residual_window=WINDOW, chunk=3)  # several chunks
    origins = np.array([30, 50, 101, 153, 160, 201, 231, 240, NUM_HOURS - 30])  # some with missing base hours
    series = np.full(len(origins), 2)
    horizon = 30
    forecast = model(series, origins, horizon, LEVELS).numpy()
    for i, t in enumerate(origins):
        expected = hand_forecast(panel.values, 2, int(t), horizon, LEVELS.double().numpy())
        np.testing.assert_allclose(forecast[i], expected, rtol=1e-5, atol=1e-4)
    # the quantiles are not all the same: the residual distribution really is used
    steps = np.diff(forecast, axis=-1)
    assert (steps >= 0).all() and (steps > 0).mean() > 0.9  # ties only where few residuals exist
    # same answer in one chunk
    torch.testing.assert_close(
        SeasonalNaive(panel, LAG, WINDOW)(series, origins, horizon, LEVELS), torch.from_numpy(forecast)
    )


def test_missing_base_value_taken_from_last_observed_hour(panel):
    model = SeasonalNaive(panel, lag=LAG, residual_window=WINDOW)
    # origin 176: step 0 goes back to hour 152 (missing, as are 150 and 151) -> hour 149
    t = 176
    assert np.isnan(panel.values[2, 152]) and np.isfinite(panel.values[2, 149])
    forecast = model(np.array([2]), np.array([t]), 1, LEVELS).numpy()
    residuals = panel.values[2, t - WINDOW : t].astype(np.float64) - panel.values[2, t - WINDOW - LAG : t - LAG]
    expected = panel.values[2, 149] + np.nanquantile(residuals, LEVELS.double().numpy())
    np.testing.assert_allclose(forecast[0, 0], expected, rtol=1e-5)


def test_no_usable_residuals_gives_point_forecast(panel):
    values = panel.values.copy()
    values[2, 25:30] = np.nan  # with R = 5 at origin 30 every residual is missing
    model = SeasonalNaive(make_panel(values), lag=LAG, residual_window=5)
    forecast = model(np.array([2]), np.array([30]), 6, LEVELS).numpy()[0]
    assert np.isfinite(forecast).all()
    np.testing.assert_allclose(forecast, np.repeat(values[2, 6:12, None], len(LEVELS), axis=1), rtol=1e-6)


def test_uses_only_hours_before_the_origin(panel):
    rng = np.random.default_rng(0)
    horizon = 30
    series = np.array([0, 1, 2])
    for t in (60, 153, 201, 250):
        origins = np.full(3, t)
        before = SeasonalNaive(panel, LAG, WINDOW)(series, origins, horizon, LEVELS)
        changed = panel.values.copy()
        changed[:, t:] = rng.normal(1e4, 1e3, size=changed[:, t:].shape)
        changed[:, t + 5 : t + 9] = np.nan
        after = SeasonalNaive(make_panel(changed), LAG, WINDOW)(series, origins, horizon, LEVELS)
        torch.testing.assert_close(after, before, rtol=0, atol=0)
        # while a change just before the origin does change it
        changed[:, t - 1] += 1000.0
        moved = SeasonalNaive(make_panel(changed), LAG, WINDOW)(series, origins, horizon, LEVELS)
        assert not torch.equal(moved, before)


def test_rejects_bad_arguments(panel):
    with pytest.raises(ValueError, match="positive"):
        SeasonalNaive(panel, lag=0)
    with pytest.raises(ValueError, match="positive"):
        SeasonalNaive(panel, lag=24, residual_window=0)


def test_no_windows_gives_empty_forecast(panel):
    out = SeasonalNaive(panel, LAG, WINDOW)(np.zeros(0, np.int64), np.zeros(0, np.int64), 5, LEVELS)
    assert out.shape == (0, 5, len(LEVELS))


def test_score_reference_matches_metrics_by_hand(panel):
    shape = WindowShape(history_length=48, horizon=12)
    windows = split_windows(panel, shape, 48, NUM_HOURS, step=5)
    batches = WindowBatches(panel, shape, windows)
    levels = EvaluationLevels(grid_size=19)
    model = SeasonalNaive(panel, LAG, WINDOW)

    scored = score_reference(model, batches, levels, batch_size=7)  # several batches, last one partial

    forecasts = model(windows.series, windows.origin, shape.horizon, levels.levels)
    hours = windows.origin[:, None] + np.arange(shape.horizon)
    raw = panel.values[windows.series[:, None], hours]
    mask = torch.from_numpy(np.isfinite(raw))
    target = torch.from_numpy(np.nan_to_num(raw, nan=0.0))
    assert not mask.all()  # some targets are missing and must be skipped
    metrics = QuantileForecastMetrics(levels, shape.horizon)
    metrics.update(forecasts, target, mask)
    by_hand = {name: float(value) for name, value in metrics.compute().items() if name != "share_below"}
    assert scored.keys() == by_hand.keys() | {"crossing_rate_raw", "crossing_rate_final"}
    assert scored["crossing_rate_raw"] == 0.0  # quantiles of past errors never cross: rearranging changes nothing
    assert scored["crps"] == pytest.approx(by_hand["crps"], rel=1e-9)
    for name in by_hand:
        assert scored[name] == pytest.approx(by_hand[name], rel=1e-9, abs=1e-12), name

    # and the CRPS once more, from the pinball loss written out in numpy
    grid = levels.levels[levels.crps_mask].numpy()
    prediction = forecasts.double().numpy()[..., levels.crps_mask.numpy()]
    error = np.nan_to_num(raw.astype(np.float64))[..., None] - prediction
    pinball = np.maximum(grid * error, (grid - 1) * error)  # [N, H, K]
    observed = np.isfinite(raw)
    crps = (2 * pinball.mean(axis=-1))[observed].mean()
    assert scored["crps"] == pytest.approx(crps, rel=1e-6)  # the metric keeps its levels in float32
    assert scored["observed_targets"] == observed.sum()
