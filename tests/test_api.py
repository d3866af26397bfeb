"""``anyquantile.Forecaster``: fit / predict / save / load / cross_validation on a small frame, neuralforecast's
column names, utilsforecast's metrics equal ours, ensembles, the saved calibration, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from utilsforecast.losses import coverage, mqloss

from anyquantile import Forecaster
from anyquantile.cli import evaluate as evaluate_cli
from anyquantile.dataset.errors import DataValidationError
from anyquantile.experiment.errors import ConfigError, UsageError
from anyquantile.model.metrics import QuantileForecastMetrics
from anyquantile.modules.quantile_levels import EvaluationLevels, midpoint_grid
from anyquantile.training.train import train


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, history_frame, tiny_api_overrides):
    runs = tmp_path_factory.mktemp("api") / "runs"
    return Forecaster("nbeatsaq-synthetic", overrides=[*tiny_api_overrides, f"output_dir={runs}"], verbose=False).fit(
        history_frame
    )


def forecast_values(frame: pd.DataFrame) -> np.ndarray:
    return frame.drop(columns=["unique_id", "ds"]).to_numpy()


def test_predict_returns_neuralforecasts_columns_from_the_hour_after_each_series_end(fitted, history_frame):
    frame = fitted.predict(level=[80, 95])
    assert list(frame.columns) == [
        "unique_id",
        "ds",
        "AnyQuantile-median",
        "AnyQuantile-lo-95",
        "AnyQuantile-lo-80",
        "AnyQuantile-hi-80",
        "AnyQuantile-hi-95",
    ]
    assert len(frame) == 2 * 48
    for name, rows in frame.groupby("unique_id"):
        last = history_frame[history_frame.unique_id == name].ds.max()
        assert rows.ds.iloc[0] == last + pd.Timedelta(hours=1)
        assert (rows.ds.diff().dropna() == pd.Timedelta(hours=1)).all()
    assert (np.diff(forecast_values(frame), axis=1)[:, 1:] >= 0).all()  # lo-95 <= lo-80 <= hi-80 <= hi-95
    point = fitted.predict(h=12)
    assert list(point.columns) == ["unique_id", "ds", "AnyQuantile"] and len(point) == 2 * 12
    np.testing.assert_array_equal(point["AnyQuantile"], frame.groupby("unique_id").head(12)["AnyQuantile-median"])
    quantiles = fitted.predict(df=history_frame, quantiles=[0.37])
    assert list(quantiles.columns) == ["unique_id", "ds", "AnyQuantile_ql0.37"]


def test_fit_trains_on_the_frame_with_its_own_split_dates_and_reports_them(fitted, history_frame):
    summary = fitted.fit_summary
    assert summary["global_step"] == 20
    assert summary["split"] == "val" and summary["in_sample"]  # val_size=None: every hour trains
    stored = fitted.model.configs[0].dataset
    assert stored.source == "frame" and stored.path is None
    assert pd.Timestamp(stored.val_start) == history_frame.ds.max() + pd.Timedelta(hours=1) - pd.Timedelta(hours=48)


def test_save_then_load_forecasts_the_same_numbers(fitted, history_frame, tmp_path):
    folder = fitted.save(tmp_path / "model")
    assert sorted(path.name for path in folder.iterdir()) == ["member-0", "model.json"]
    assert sorted(path.name for path in (folder / "member-0").iterdir()) == ["config.yaml", "weights.safetensors"]
    manifest = json.loads((folder / "model.json").read_text())
    assert manifest["format"] == "anyquantile-model" and manifest["members"] == 1 and manifest["alias"] == "AnyQuantile"
    loaded = Forecaster.load(folder)
    expected = fitted.predict(level=[80])
    pd.testing.assert_frame_equal(loaded.predict(df=history_frame, level=[80]), expected)
    with pytest.raises(UsageError, match="exists"):
        fitted.save(folder)
    fitted.save(folder, overwrite=True)
    with pytest.raises(UsageError, match="pass df"):
        loaded.predict()  # a loaded model keeps no training frame


def test_a_damaged_or_foreign_folder_is_refused_clearly(fitted, tmp_path):
    folder = fitted.save(tmp_path / "model")
    with pytest.raises(UsageError, match="not a saved model"):
        Forecaster.load(tmp_path)
    manifest = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(UsageError, match="format version 99"):
        Forecaster.load(folder)
    (folder / "model.json").write_text(json.dumps(manifest))
    (folder / "member-0" / "weights.safetensors").write_bytes(b"not weights")
    with pytest.raises(UsageError, match="cannot be read"):
        Forecaster.load(folder)


def test_utilsforecast_metrics_on_our_frames_equal_ours(history_frame, tiny_api_overrides, tmp_path):
    validated = Forecaster(
        "nbeatsaq-synthetic", overrides=[*tiny_api_overrides, f"output_dir={tmp_path}"], verbose=False
    )
    grid = midpoint_grid(9).tolist()
    frame = validated.cross_validation(history_frame, n_windows=2, step_size=24, quantiles=grid)
    first_cutoff = history_frame.ds.max() - pd.Timedelta(hours=48 + 24)
    # the fit saw the hours up to the first cutoff and no later: its data ends there (val_size=None: all trained)
    assert pd.Timestamp(validated.model.configs[0].dataset.train_end) == first_cutoff + pd.Timedelta(hours=1)
    intervals = validated.cross_validation(history_frame, n_windows=2, step_size=24, level=[80])
    assert list(intervals.columns) == [
        "unique_id",
        "ds",
        "cutoff",
        "AnyQuantile-median",
        "AnyQuantile-lo-80",
        "AnyQuantile-hi-80",
        "y",
    ]
    assert len(frame) == 2 * 2 * 48 and frame.y.notna().all()
    assert sorted(frame.cutoff.unique()) == [first_cutoff, history_frame.ds.max() - pd.Timedelta(hours=48)]
    columns = [f"AnyQuantile_ql{q}" for q in grid]
    theirs_mq = mqloss(frame, models={"AnyQuantile": columns}, quantiles=np.array(grid))["AnyQuantile"].mean()
    theirs_cov = coverage(intervals, models=["AnyQuantile"], level=80)["AnyQuantile"].mean()

    def ours(frame: pd.DataFrame, levels: EvaluationLevels, columns: list[str]) -> dict[str, torch.Tensor]:
        metrics = QuantileForecastMetrics(levels, horizon=48)
        prediction = torch.tensor(frame[columns].to_numpy()).reshape(-1, 48, len(columns))  # [B, H, Q]
        target = torch.tensor(frame.y.to_numpy()).reshape(-1, 48)  # [B, H]
        metrics.update(prediction, target, torch.ones_like(target, dtype=torch.bool))
        return metrics.compute()

    crps = ours(frame, EvaluationLevels(grid_size=9, intervals=()), columns)["crps"]
    interval_levels = EvaluationLevels(grid_size=1, intervals=(0.8,))  # levels 0.1, 0.5, 0.9
    interval_columns = ["AnyQuantile-lo-80", "AnyQuantile-median", "AnyQuantile-hi-80"]
    covered = ours(intervals, interval_levels, interval_columns)["coverage_80"]
    # CRPS is twice the mean pinball loss (y is float32 in the frame: float rounding only)
    assert float(crps) == pytest.approx(2 * theirs_mq, rel=1e-6)
    assert float(covered) == pytest.approx(theirs_cov, rel=1e-12)
    assert 0.0 < theirs_cov < 1.0  # neither all nor none: the comparison has something to compare


def test_an_ensemble_of_two_different_checkpoints_is_the_mean_of_their_forecasts(
    tmp_path, tiny_config_in, history_frame
):
    checkpoints = [
        train(tiny_config_in(tmp_path / "runs", f"seed={seed}"), echo=False)["checkpoint"] for seed in (1, 2)
    ]
    members = [Forecaster.from_checkpoints([path]) for path in checkpoints]
    forecasts = [
        forecast_values(member.predict(history_frame, quantiles=[0.1, 0.9], rearrange=False)) for member in members
    ]
    assert not np.allclose(*forecasts)  # two really different members
    ensemble = Forecaster.from_checkpoints(checkpoints)
    mean = forecast_values(ensemble.predict(history_frame, quantiles=[0.1, 0.9], rearrange=False))
    np.testing.assert_allclose(mean, (forecasts[0] + forecasts[1]) / 2, rtol=1e-5, atol=1e-3)
    folder = ensemble.save(tmp_path / "ensemble")
    assert json.loads((folder / "model.json").read_text())["members"] == 2
    np.testing.assert_array_equal(
        forecast_values(Forecaster.load(folder).predict(history_frame, quantiles=[0.1, 0.9], rearrange=False)), mean
    )


def test_evaluate_saves_a_calibration_with_the_model_and_predict_applies_it(
    tmp_path, tiny_config_in, history_frame, capsys
):
    from anyquantile.cli import export as export_cli

    checkpoint = train(tiny_config_in(tmp_path / "runs"), echo=False)["checkpoint"]
    folder = tmp_path / "model"
    assert export_cli.main(["--checkpoint", checkpoint, "--out", str(folder)]) == 0
    assert (
        evaluate_cli.main(
            [
                "--model",
                str(folder),
                "--conformal",
                "level",
                "--save-calibration",
                "--no-dashboard",
                "--out",
                str(tmp_path / "e"),
            ]
        )
        == 0
    )
    assert (folder / "calibration.json").is_file()
    fitted = json.loads((tmp_path / "e" / "metrics.json").read_text())["conformal"]["calibration"]
    model = Forecaster.load(folder)
    plain = forecast_values(model.predict(history_frame, quantiles=[0.5], rearrange=False))
    calibrated = forecast_values(model.predict(history_frame, quantiles=[0.5], calibrated=True, rearrange=False))
    median_shift = np.interp(0.5, fitted["levels"], fitted["delta"][0])  # pooled: one row of corrections
    np.testing.assert_allclose(calibrated - plain, median_shift, atol=1e-2)
    assert median_shift != 0.0
    # --save-calibration saves a level fit of a saved model, nothing else
    assert evaluate_cli.main(["--checkpoint", checkpoint, "--conformal", "level", "--save-calibration"]) == 2
    assert "--save-calibration" in capsys.readouterr().err


def test_fit_with_val_size_holds_the_last_hours_out_and_calibrate_fits_on_them(
    history_frame, tiny_api_overrides, tmp_path
):
    overrides = [*tiny_api_overrides, f"output_dir={tmp_path}"]
    forecaster = Forecaster("nbeatsaq-synthetic", overrides=overrides, verbose=False).fit(history_frame, val_size=480)
    stored = forecaster.model.configs[0].dataset
    end = history_frame.ds.max() + pd.Timedelta(hours=1)
    assert pd.Timestamp(stored.val_start) == end - pd.Timedelta(hours=480) and stored.train_end is None
    assert forecaster.fit_summary["split"] == "val" and not forecaster.fit_summary["in_sample"]
    plain = forecast_values(forecaster.predict(quantiles=[0.1, 0.5, 0.9], rearrange=False))
    forecaster.calibrate()
    correction = forecaster.model.calibration
    assert correction is not None and not correction.per_step
    moved = forecast_values(forecaster.predict(quantiles=[0.1, 0.5, 0.9], calibrated=True, rearrange=False))
    expected = correction.shift_at(torch.tensor([0.1, 0.5, 0.9])).numpy()  # [1, 3]
    np.testing.assert_allclose(moved - plain, np.broadcast_to(expected, plain.shape), atol=1e-2)
    assert np.abs(expected).max() > 0
    folder = forecaster.save(tmp_path / "calibrated")
    assert (folder / "calibration.json").is_file()
    reloaded = Forecaster.load(folder).predict(
        history_frame, quantiles=[0.1, 0.5, 0.9], calibrated=True, rearrange=False
    )
    np.testing.assert_array_equal(forecast_values(reloaded), moved)
    in_sample = Forecaster("nbeatsaq-synthetic", overrides=overrides, verbose=False).fit(history_frame)
    with pytest.raises(UsageError, match="val_size"):
        in_sample.calibrate()


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: Forecaster("no-such-config"), ConfigError, "shipped configs: .*nbeatsaq-synthetic"),
        (lambda: Forecaster("nbeatsaq-synthetic", overrides=["model.widht=8"]), ConfigError, "widht"),
        (lambda: Forecaster("nbeatsaq-synthetic", overrides="model.width=8"), UsageError, "list of 'key=value'"),
        (lambda: Forecaster().predict(), UsageError, "not fitted"),
        (lambda: Forecaster().save("anywhere"), UsageError, "not fitted"),
        (lambda: Forecaster().calibrate(), UsageError, "not fitted"),
    ],
)
def test_bad_use_is_a_clear_error(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_a_bad_frame_or_split_is_refused_before_training(history_frame, tmp_path):
    forecaster = Forecaster("nbeatsaq-synthetic", overrides=[f"output_dir={tmp_path}"], verbose=False)
    with pytest.raises(DataValidationError, match="missing column"):
        forecaster.fit(history_frame.rename(columns={"y": "load"}))
    with pytest.raises(UsageError, match="DataFrame"):
        forecaster.fit("load.csv")
    with pytest.raises(UsageError, match="at least the horizon"):
        forecaster.fit(history_frame, val_size=24)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # nothing written


def test_quiet_mode_prints_nothing_and_verbose_shows_progress(history_frame, tiny_api_overrides, tmp_path, capsys):
    overrides = [*tiny_api_overrides, f"output_dir={tmp_path}", "trainer.max_steps=2"]
    Forecaster("nbeatsaq-synthetic", overrides=overrides, verbose=False).fit(history_frame)
    quiet = capsys.readouterr()
    assert quiet.out == ""
    Forecaster("nbeatsaq-synthetic", overrides=overrides, verbose=True).fit(history_frame)
    loud = capsys.readouterr()
    assert "Epoch" in loud.out + loud.err  # Lightning's progress bar


def test_cross_validation_reads_times_with_an_offset_on_the_utc_clock(history_frame, tiny_api_overrides, tmp_path):
    aware = history_frame.assign(ds=history_frame.ds.dt.tz_localize("UTC").dt.tz_convert("Europe/Berlin"))
    overrides = [*tiny_api_overrides, f"output_dir={tmp_path}", "trainer.max_steps=2"]
    frame = Forecaster("nbeatsaq-synthetic", overrides=overrides, verbose=False).cross_validation(aware, h=24)
    assert frame.ds.max() == history_frame.ds.max() and frame.y.notna().all()  # the actuals found by their hour
    np.testing.assert_array_equal(frame.y, history_frame.groupby("unique_id").tail(24).y)


def test_an_overwrite_that_fails_midway_keeps_the_old_model_and_leaves_nothing_beside_it(fitted, tmp_path, monkeypatch):
    from anyquantile.inference import saved_model

    folder = fitted.save(tmp_path / "model")
    before = {path.name: path.read_bytes() for path in folder.rglob("*") if path.is_file()}

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(saved_model, "save_file", fail)
    with pytest.raises(OSError, match="disk full"):
        fitted.save(folder, overwrite=True)
    assert {path.name: path.read_bytes() for path in folder.rglob("*") if path.is_file()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]
