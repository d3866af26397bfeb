"""analysis/attention_study.py --quick of one generator writes every listed file."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from analysis import attention_study
from anyquantile.dataset.generators import generate


def test_quick_study_of_one_generator_writes_every_file(tmp_path, capsys, monkeypatch):
    assert attention_study.main(["--generators", "garch", "--quick", "--out", str(tmp_path)]) == 0
    folder = tmp_path / "garch"
    expected = {
        "training_curves.png",
        "attention_summary.png",
        "entropy_analysis.png",
        "attention_metrics.json",
        "summary.json",
        "reference_model.pt",
    }
    expected |= {f"attention_L{l}_H{h}_S{s}.png" for l in (1, 2) for h in (1, 2, 3, 4) for s in (1, 2)}
    assert {p.name for p in folder.iterdir()} == expected
    for name in expected:
        assert (folder / name).stat().st_size > 0, name
    metrics = json.loads((folder / "attention_metrics.json").read_text())
    assert len(metrics) == 8 and all(0 <= m["entropy"] <= 1 and 0 <= m["diagonal"] <= 1 for m in metrics)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["held_out_mse"] > 0 and summary["held_out_windows"] == 64 and 1 <= summary["kept_step"] <= 150
    questions = summary[
        "questions"
    ]  # GARCH answers the spike and the turbulence questions, layer by layer, head by head
    assert len(questions["spike_lift"]) == 2 and len(questions["spike_lift"][0]) == 4 and questions["spike_windows"] > 0
    assert all(0 < e <= 1 for layer in questions["entropy_calm"] + questions["entropy_turbulent"] for e in layer)
    assert "post_change_lift" not in questions  # no regime changes in a GARCH
    report = (tmp_path / "comparison.md").read_text()
    assert (
        report.count("| garch | stochastic |") == 2 and (tmp_path / "comparison.png").is_file()
    )  # means table and stripes table
    assert "Is attention more concentrated in turbulent periods? (garch)" in report

    # A second run with the same settings reads the saved model instead of training again.
    monkeypatch.setattr(attention_study, "train_reference", lambda *args: pytest.fail("trained again"))
    assert attention_study.main(["--generators", "garch", "--quick", "--out", str(tmp_path)]) == 0
    assert json.loads((folder / "summary.json").read_text())["held_out_mse"] == summary["held_out_mse"]
    # ... and trains again when a training setting changed (here the number of steps).
    with pytest.raises(pytest.fail.Exception, match="trained again"):
        attention_study.study("garch", replace(attention_study.QUICK, steps=151), tmp_path)


def test_questions_of_a_changing_series_are_asked():
    settings = attention_study.StudySettings(length=2_500, steps=2, held_out_windows=40)
    series = generate("regime_switching", settings.length, seed=0)
    model, _, held = attention_study.train_reference(series.values, settings)
    for window, start in zip(held.windows, held.starts):  # each held-out window is the series from its start
        np.testing.assert_array_equal(window.numpy(), series.values[start : start + 120].astype(np.float32))
    attention, squared_error = attention_study.attention_of(model, held.windows)
    questions = attention_study.ask_questions(
        series, held, attention, squared_error, attention_study.row_focus(attention)
    )
    assert set(questions) == {"post_change_lift", "error_after_change"}  # no spikes, no volatility
    assert set(questions["error_after_change"]) == {"1-5", "6-20", "21-50", "51-99", "none"}
    windows = sum(int(questions["post_change_lift"][0][f"{b} windows"]) for b in ("1-5", "6-20", "21-50", "51-99"))
    assert 0 < windows <= 40


def test_unknown_generator_is_refused(tmp_path, capsys):
    assert attention_study.main(["--generators", "brownian", "--out", str(tmp_path)]) == 2
    assert "unknown generator" in capsys.readouterr().err
