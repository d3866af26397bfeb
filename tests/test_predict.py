"""The production forecast path (``inference/predictor.py``, ``anyquantile predict``): forecasts past the end of the
data, the model's own numbers, non-crossing levels independent of each other, calibration, clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from anyquantile.cli import predict as predict_cli
from anyquantile.dataset.errors import DataValidationError
from anyquantile.dataset.windows import WindowBatches
from anyquantile.experiment.builders import build_data
from anyquantile.experiment.checkpoints import load_forecaster
from anyquantile.experiment.errors import UsageError
from anyquantile.inference.levels import TAIL_LEVELS, OutputLevels
from anyquantile.inference.saved_model import SavedModel
from anyquantile.modules.conformal import LevelConformal
from anyquantile.training.train import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_config_in):
    folder = tmp_path_factory.mktemp("predict")
    cfg = tiny_config_in(folder / "runs", "trainer.max_steps=6")
    summary = train(cfg)
    data_file = folder / "series.csv"
    build_data(cfg).panel.to_long_frame().to_csv(data_file, index=False)
    return summary["checkpoint"], data_file, cfg


@pytest.fixture(scope="module")
def predictor(trained):
    return SavedModel.from_checkpoints([trained[0]]).predictor()


def values(frame: pd.DataFrame) -> np.ndarray:
    """The forecast columns [rows, Q]."""
    return frame.drop(columns=["unique_id", "ds"]).to_numpy()


def test_forecasts_start_after_each_series_last_observation(trained, predict_file):
    checkpoint, data_file, _ = trained
    frame = predict_file(checkpoint, data_file, [0.1, 0.5, 0.9])
    assert list(frame.columns) == ["unique_id", "ds", "AnyQuantile_ql0.1", "AnyQuantile_ql0.5", "AnyQuantile_ql0.9"]
    assert len(frame) == 2 * 48
    data = pd.read_csv(data_file, parse_dates=["ds"]).dropna()
    for name, rows in frame.groupby("unique_id"):
        last = data[data.unique_id == name]["ds"].max()
        assert rows["ds"].iloc[0] == last + pd.Timedelta(hours=1)
        assert rows["ds"].max() == last + pd.Timedelta(hours=48)  # beyond the end of the data
    assert np.isfinite(values(frame)).all()
    assert len(predict_file(checkpoint, data_file, [0.5], h=6)) == 2 * 6


def test_the_raw_forecast_is_the_model_on_the_same_window(trained, predict_file):
    checkpoint, data_file, cfg = trained
    data = build_data(cfg)
    test = data.splits["test"]
    row, origin_hour = int(test.series[3]), int(test.origin[3])
    name, origin = data.panel.series_ids[row], str(data.panel.timestamps[origin_hour])
    raw = predict_file(checkpoint, data_file, [0.9], series=[name], origin=origin, rearrange=False)
    model, _ = load_forecaster(checkpoint)
    batch = WindowBatches(data.panel, data.shape, test)[torch.tensor([3])]
    with torch.no_grad():
        expected = model(batch, torch.tensor([[0.9]])).prediction[0, :, 0]
    torch.testing.assert_close(torch.tensor(values(raw)[:, 0], dtype=torch.float32), expected)


def test_rearranged_levels_never_cross_are_evaluations_rearranged_forecast_and_do_not_depend_on_each_other(
    trained, predictor, predict_file
):
    checkpoint, data_file, _ = trained
    asked = [0.002, 0.02, 0.1, 0.37, 0.371, 0.5, 0.9, 0.9995]
    frame = predict_file(checkpoint, data_file, asked)
    assert (np.diff(values(frame), axis=1) >= 0).all()  # no two levels cross, the far tails included
    alone = predict_file(checkpoint, data_file, [0.9])
    np.testing.assert_array_equal(values(alone)[:, 0], frame["AnyQuantile_ql0.9"].to_numpy())  # exactly
    # On an evaluation level the answer is the forecast evaluation scores: the evaluation levels' forecast, sorted.
    windows = predictor.prepare(predictor.panel(pd.read_csv(data_file)))
    evaluated = predictor.evaluation_levels.levels
    with torch.no_grad():
        scored = predictor.network(windows.batch, evaluated.float()).sort(dim=-1).values  # [B, H, Q_eval]
    index = int(torch.argmin((evaluated - 0.9).abs()))
    # float tolerance only: the network runs the grid with the tails, one GEMM shape wider
    np.testing.assert_allclose(frame["AnyQuantile_ql0.9"].to_numpy(), scored[..., index].reshape(-1).numpy(), rtol=1e-5)
    assert predictor.reference.min() == TAIL_LEVELS[0] and predictor.reference.max() == TAIL_LEVELS[-1]


def test_the_tails_are_sorted_beyond_the_evaluation_levels_which_are_sorted_among_themselves(predictor):
    grid = predictor.reference  # [G]
    raw = torch.cos(40 * grid).repeat(2, 3, 1)  # [B, H, G]: crossing everywhere, tails included
    final = predictor.rearrange(raw)
    assert (final.diff(dim=-1) >= 0).all()
    inner = (grid >= predictor.evaluation_levels.levels.min()) & (grid <= predictor.evaluation_levels.levels.max())
    torch.testing.assert_close(final[..., inner], raw[..., inner].sort(dim=-1).values, rtol=0, atol=0)
    lowest = final[..., inner][..., 0]
    assert (final[..., grid < grid[inner][0]] <= lowest[..., None]).all()
    assert not torch.equal(final[..., ~inner], raw[..., ~inner].sort(dim=-1).values)  # the tails were clamped


def test_a_saved_calibration_shifts_the_forecast(trained, predictor):
    _, data_file, _ = trained
    history = pd.read_csv(data_file)
    correction = LevelConformal(torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64))
    correction.delta = torch.full((1, 3), 100.0, dtype=torch.float64)  # [1, Q]: every level up by 100
    calibrated = SavedModel(predictor.network.members, [trained[2]], calibration=correction).predictor()
    output = OutputLevels.of("AnyQuantile", quantiles=[0.05, 0.3, 0.7, 0.95])
    plain = values(calibrated.forecast_frame(history, output))
    moved = values(calibrated.forecast_frame(history, output, calibrated=True))
    np.testing.assert_allclose(moved - plain, 100.0, atol=1e-3)  # a shift of all levels alike commutes with sorting
    raw = values(calibrated.forecast_frame(history, output, rearrange=False))
    raw_moved = values(calibrated.forecast_frame(history, output, calibrated=True, rearrange=False))
    np.testing.assert_allclose(raw_moved - raw, 100.0, atol=1e-3)
    with pytest.raises(UsageError, match="no conformal calibration"):
        predictor.forecast_frame(history, output, calibrated=True)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(series=["nowhere"]), r"unknown series \['nowhere'\]"),
        (dict(origin="2015-01-02 00:00"), "too short a history"),
        (dict(origin="2015-02-01 00:30"), "not an hour of the data's grid"),
        (dict(h=49), r"h must be a whole number of hours in \[1, 48\]"),
        (dict(h=0), r"h must be"),
    ],
)
def test_bad_requests_fail_clearly(trained, predict_file, options, message):
    checkpoint, data_file, _ = trained
    with pytest.raises(UsageError, match=message):
        predict_file(checkpoint, data_file, [0.5], **options)


def test_a_history_without_any_observation_is_refused(trained, predictor):
    history = pd.read_csv(trained[1]).assign(y=np.nan)
    with pytest.raises(DataValidationError, match="every y is missing"):
        predictor.forecast_frame(history, OutputLevels.of("AnyQuantile"))


@pytest.mark.parametrize(
    "level, quantiles, message",
    [
        (None, [0.5, 1.0], r"quantiles must be inside \(0, 1\)"),
        (None, [0.0], r"quantiles must be inside \(0, 1\)"),
        (None, [], "quantiles is empty"),
        (None, "0.5", "list of numbers"),
        ([100], None, r"level must be inside \(0, 100\)"),
        ([80], [0.5], "not both"),
        ([float("nan")], None, "finite"),
    ],
)
def test_levels_are_checked(level, quantiles, message):
    with pytest.raises(UsageError, match=message):
        OutputLevels.of("M", level=level, quantiles=quantiles)


def test_columns_follow_neuralforecast():
    assert OutputLevels.of("M", level=[90, 80]) == OutputLevels(
        ("M-median", "M-lo-90", "M-lo-80", "M-hi-80", "M-hi-90"), (0.5, 0.05, 0.1, 0.9, 0.95)
    )
    assert OutputLevels.of("M", level=[99.5]).columns == ("M-median", "M-lo-99.5", "M-hi-99.5")
    assert OutputLevels.of("M", quantiles=[0.37, 0.1]).columns == ("M_ql0.37", "M_ql0.1")
    assert OutputLevels.of("M") == OutputLevels(("M",), (0.5,))


def test_cli_writes_the_forecast_columns_and_reports_errors(trained, tmp_path, capsys):
    checkpoint, data_file, _ = trained
    out = tmp_path / "forecast.csv"
    base = ["--checkpoint", checkpoint, "--data", str(data_file)]
    assert predict_cli.main([*base, "--level", "80", "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["unique_id", "ds", "AnyQuantile-median", "AnyQuantile-lo-80", "AnyQuantile-hi-80"]
    assert len(frame) == 2 * 48
    assert predict_cli.main([*base, "--quantiles", "1.5", "--out", str(out)]) == 2
    assert "inside (0, 1)" in capsys.readouterr().err
    assert predict_cli.main([*base, "--quantiles", "0.5", "--out", "x.txt"]) == 2
    assert predict_cli.main(["--checkpoint", "missing.ckpt", "--data", str(data_file), "--out", str(out)]) == 2
    assert "not found: missing.ckpt" in capsys.readouterr().err


def test_a_model_with_holidays_forecasts_with_the_series_own_holidays_and_names_an_unmapped_series(
    tmp_path, tiny_config_in, predict_file
):
    holidays = ("dataset.holidays=true", "+dataset.holiday_countries.synthetic_00=DE")
    cfg = tiny_config_in(tmp_path / "runs", *holidays, "+dataset.holiday_countries.synthetic_01=FR")
    summary = train(cfg)
    data = build_data(cfg)
    data_file = tmp_path / "series.csv"
    data.panel.to_long_frame().to_csv(data_file, index=False)
    test = data.splits["test"]
    name, origin = data.panel.series_ids[int(test.series[3])], str(data.panel.timestamps[int(test.origin[3])])
    frame = predict_file(summary["checkpoint"], data_file, [0.9], series=[name], origin=origin, rearrange=False)
    model, _ = load_forecaster(summary["checkpoint"])
    batch = WindowBatches(data.panel, data.shape, test)[torch.tensor([3])]  # with the training's holidays
    assert batch.calendar.shape[-1] == 11
    with torch.no_grad():
        expected = model(batch, torch.tensor([[0.9]])).prediction[0, :, 0]
    torch.testing.assert_close(torch.tensor(values(frame)[:, 0], dtype=torch.float32), expected)
    renamed = data.panel.to_long_frame().replace({"unique_id": {"synthetic_01": "XX"}})
    renamed.to_csv(tmp_path / "renamed.csv", index=False)
    with pytest.raises(UsageError, match="series 'XX'"):  # asked for, but without a holiday country
        predict_file(summary["checkpoint"], tmp_path / "renamed.csv", [0.9], series=["XX"])
    # only the series asked for need a country: the file may hold others
    assert len(predict_file(summary["checkpoint"], tmp_path / "renamed.csv", [0.9], series=["synthetic_00"])) == 48


def test_an_origin_with_an_offset_is_read_on_the_datas_utc_clock_and_a_non_time_is_refused(trained, predict_file):
    checkpoint, data_file, _ = trained
    naive = predict_file(checkpoint, data_file, [0.5], origin="2015-04-20 10:00")
    offset = predict_file(checkpoint, data_file, [0.5], origin="2015-04-20 12:00+02:00")
    pd.testing.assert_frame_equal(naive, offset)
    for bad in ("soon", ""):
        with pytest.raises(UsageError, match="is not a time"):
            predict_file(checkpoint, data_file, [0.5], origin=bad)


@pytest.mark.parametrize("series", [[], ["synthetic_00", "synthetic_00"], "synthetic_00"])
def test_an_empty_or_repeated_series_list_is_refused(trained, predict_file, series):
    checkpoint, data_file, _ = trained
    with pytest.raises(UsageError, match="each series once|not a string|the string") as refused:
        predict_file(checkpoint, data_file, [0.5], series=series)
    assert refused.value.field == "series"
