"""analysis/adaptive_study.py: our adaptive-attention model trained on a generated series, its gates and betas read."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import adaptive_study
from analysis.adaptive_study import hourly_frame, split_dates, study_adaptive
from anyquantile.dataset.generators import generate


def test_hourly_frame_and_split_dates():
    series = generate("random_walk", 48, seed=1)
    frame = hourly_frame(series)
    assert list(frame.columns) == ["unique_id", "ds", "y"] and (frame["unique_id"] == "random_walk").all()
    assert (
        frame["ds"].iloc[0] == pd.Timestamp("2015-01-01")
        and frame["ds"].diff().dropna().eq(pd.Timedelta(hours=1)).all()
    )
    np.testing.assert_array_equal(frame["y"], series.values)
    # 10 days of hours: validation from hour 192 (day 9 00:00), test from hour 216 (day 10)
    assert split_dates(240) == ("2015-01-09", "2015-01-10")


def test_study_adaptive_reads_gates_betas_and_entropy(tmp_path, monkeypatch):
    summary = study_adaptive(generate("garch", 3_000, seed=0), steps=3, folder=tmp_path)
    assert summary["steps"] == 3 and np.isfinite(summary["test_crps"])
    assert "seasonal_naive_168" in summary["seasonal_naive_crps"]
    blocks = len(summary["beta"])
    assert blocks == len(summary["gate_per_head"]) == len(summary["entropy"]) == 2  # the shipped config's 2 blocks
    for block in range(blocks):
        heads = len(summary["beta"][block])
        assert heads == len(summary["gate_per_head"][block]) == len(summary["entropy"][block]) == 4
        assert all(0 <= g <= 1 for g in summary["gate_per_head"][block] + summary["gate_history_vs_future"][block])
        assert all(0 < e <= 1 for e in summary["entropy"][block])
    turbulence = summary["turbulence"]  # GARCH has a hidden volatility: calm vs turbulent windows
    assert len(turbulence["entropy_calm"]) == blocks and len(turbulence["entropy_turbulent"][0]) == 4
    assert (
        all(0 <= g <= 1 for g in turbulence["gate_calm"] + turbulence["gate_turbulent"]) and turbulence["windows"] >= 4
    )
    for name in ("adaptive.json", "adaptive_maps.png", "adaptive_gates.png", "adaptive_training.log", "series.parquet"):
        assert (tmp_path / name).stat().st_size > 0, name
    # The same series and steps again: the saved summary, no training; another series: trained anew.
    monkeypatch.setattr(adaptive_study, "train", lambda *args: pytest.fail("trained again"))
    assert study_adaptive(generate("garch", 3_000, seed=0), steps=3, folder=tmp_path) == summary
    with pytest.raises(pytest.fail.Exception, match="trained again"):
        study_adaptive(generate("garch", 3_000, seed=1), steps=3, folder=tmp_path)
