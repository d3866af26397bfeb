"""evaluate.py: scores a checkpoint exactly as training's test did, ensembles, forecasts file, conformal, errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import evaluate as evaluate_cli
from anyquantile.evaluation.report import evaluate
from anyquantile.experiment.errors import UsageError
from anyquantile.training.train import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_config_in):
    summary = train(
        tiny_config_in(tmp_path_factory.mktemp("runs"), "trainer.max_steps=20", "trainer.val_every_n_steps=10")
    )
    return summary, summary["checkpoint"]


def test_evaluate_reproduces_the_test_scores_of_training(trained, tmp_path):
    summary, best = trained
    results = evaluate([best], tmp_path)
    assert results["split"] == "test" and results["windows"] == summary["windows"]
    for name in (
        "crps",
        "crps_paper_protocol",
        "coverage_90",
        "calibration_error",
        "crossing_rate_raw",
        "crossing_rate_final",
    ):
        assert results["model"][name] == pytest.approx(summary["model"][name], rel=1e-6), name
    assert results["model_before_rearrangement"]["crps"] == pytest.approx(
        summary["model_before_rearrangement"]["crps"], rel=1e-6
    )
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["model"]["crps"] == results["model"]["crps"]
    # per series: the observed-target-weighted mean of the series' CRPS is the overall CRPS
    per_series = written["per_series"]
    assert len(per_series) == 2
    total = sum(s["crps"] * s["observed_targets"] for s in per_series.values()) / sum(
        s["observed_targets"] for s in per_series.values()
    )
    assert total == pytest.approx(results["model"]["crps"], rel=1e-9)


def test_forecasts_file_holds_each_window_step_and_named_level(trained, tmp_path):
    _, best = trained
    results = evaluate([best], tmp_path)
    frame = pd.read_parquet(tmp_path / "forecasts.parquet")
    assert list(frame.columns) == ["series", "origin", "step", "level", "value", "actual"]
    levels = sorted(frame["level"].unique())
    # median, 0.01 / 0.99, and the ends of the 50/80/90/95 % intervals (0.05 / 0.95 counted once)
    assert levels == pytest.approx([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975, 0.99])
    assert len(frame) == results["windows"] * 48 * len(levels)
    one = frame[(frame.step == 1)].groupby(["series", "origin"])["value"].apply(lambda v: v.is_monotonic_increasing)
    assert one.all()  # rearranged forecasts: non-decreasing in the level
    median = frame[frame.level == 0.5]
    mae = (median["value"] - median["actual"]).abs().mean()  # NaN actuals (unobserved) are skipped
    assert mae == pytest.approx(results["model"]["mae"], rel=1e-4)


@pytest.fixture(scope="module")
def trained_other_seed(tmp_path_factory, tiny_config_in):
    """The same tiny run as ``trained`` with another seed: another member for an ensemble."""
    summary = train(
        tiny_config_in(
            tmp_path_factory.mktemp("runs"), "trainer.max_steps=20", "trainer.val_every_n_steps=10", "seed=1"
        )
    )
    return summary["checkpoint"]


def test_an_ensemble_of_two_models_forecasts_the_mean_of_their_forecasts(trained, trained_other_seed, tmp_path):
    """Each written forecast of the ensemble of two differently seeded models is the mean of the members' (raw
    forecasts: no rearrangement, which would not commute with the mean), and the scores are those of that mean."""
    _, first = trained
    raw = ["evaluation.rearrange=false"]
    runs = {"first": [first], "second": [trained_other_seed], "both": [first, trained_other_seed]}
    results, values = {}, {}
    for name, checkpoints in runs.items():
        results[name] = evaluate(checkpoints, tmp_path / name, overrides=raw, dashboard=False)
        frame = pd.read_parquet(tmp_path / name / "forecasts.parquet")
        values[name] = frame["value"].to_numpy()
        if name == "first":
            keys = frame.drop(columns="value")
        else:
            pd.testing.assert_frame_equal(frame.drop(columns="value"), keys)  # the same windows, steps, levels
    assert np.abs(values["first"] - values["second"]).max() > 1e-3  # two different members
    np.testing.assert_allclose(values["both"], (values["first"] + values["second"]) / 2, rtol=1e-6, atol=1e-4)
    # The quantile loss is convex in the forecast: the mean's CRPS is at most the members' mean CRPS.
    crps = {name: result["model"]["crps"] for name, result in results.items()}
    assert crps["both"] <= (crps["first"] + crps["second"]) / 2 + 1e-9


def test_conformal_is_fitted_on_val_and_reported_before_and_after(trained, tmp_path):
    _, best = trained
    results = evaluate([best], tmp_path, conformal="level")
    conformal = results["conformal"]
    assert conformal["before"]["coverage_90"] == results["model"]["coverage_90"]
    # a 20-step model is far too narrow; the correction from val brings the coverage up
    assert conformal["after"]["coverage_90"] > conformal["before"]["coverage_90"] + 0.3
    with pytest.raises(UsageError, match="fitted on val"):
        evaluate([best], tmp_path, split="val", conformal="level")


def test_cli_errors_are_clear(trained, tmp_path, capsys):
    _, best = trained
    assert evaluate_cli.main(["--checkpoint", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert evaluate_cli.main(["--checkpoint", best, "--out", str(tmp_path), "evaluation.grid_sise=9"]) == 2
    assert "unknown config key 'evaluation.grid_sise'. Did you mean 'evaluation.grid_size'?" in capsys.readouterr().err
    assert evaluate_cli.main(["--checkpoint", best, "--out", str(tmp_path), "model.scaler=median"]) == 2
    assert "bad value 'median' for 'model.scaler'; choose one of max_abs, robust" in capsys.readouterr().err
    assert evaluate_cli.main(["--checkpoint", best, "--out", str(tmp_path / "ok")]) == 0
    assert (tmp_path / "ok" / "forecasts.parquet").is_file()


def test_without_rearrangement_the_raw_forecasts_are_scored_and_written(trained, tmp_path):
    _, best = trained
    rearranged = evaluate([best], tmp_path / "rearranged")
    raw = evaluate([best], tmp_path / "raw", overrides=["evaluation.rearrange=false"])
    assert "model_before_rearrangement" not in raw  # the final forecast is the raw one
    assert raw["model"]["crps"] == pytest.approx(rearranged["model_before_rearrangement"]["crps"], rel=1e-12)
    assert raw["model"]["crossing_rate_final"] == raw["model"]["crossing_rate_raw"] > 0  # a 20-step model crosses
    assert rearranged["model"]["crossing_rate_raw"] == raw["model"]["crossing_rate_raw"]
    assert rearranged["model"]["crossing_rate_final"] == 0
    per_series = raw["per_series"].values()
    total = sum(s["crps"] * s["observed_targets"] for s in per_series) / sum(s["observed_targets"] for s in per_series)
    assert total == pytest.approx(raw["model"]["crps"], rel=1e-9)
