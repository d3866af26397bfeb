"""predict.py: forecasts past the end of the data, the same numbers as the model on that window, clear errors."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

import predict as predict_cli
from anyquantile.dataset.windows import WindowBatches
from anyquantile.experiment.builders import build_data
from anyquantile.experiment.checkpoints import load_forecaster
from anyquantile.experiment.errors import ConfigError, UsageError
from anyquantile.inference.forecast import parse_levels, predict
from anyquantile.training.train import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_config_in):
    folder = tmp_path_factory.mktemp("predict")
    cfg = tiny_config_in(folder / "runs", "trainer.max_steps=6")
    summary = train(cfg)
    data_file = folder / "series.csv"
    build_data(cfg).panel.to_long_frame().to_csv(data_file, index=False)
    return summary["checkpoint"], data_file, cfg


def test_forecasts_start_after_each_series_last_observation(trained):
    checkpoint, data_file, _ = trained
    frame = predict(checkpoint, data_file, [0.1, 0.5, 0.9])
    assert len(frame) == 2 * 48 * 3
    data = pd.read_csv(data_file, parse_dates=["ds"]).dropna()
    for name, rows in frame.groupby("series"):
        last = data[data.unique_id == name]["ds"].max()
        assert rows["origin"].iloc[0] == last + pd.Timedelta(hours=1)
        assert rows["timestamp"].max() == last + pd.Timedelta(hours=48)  # beyond the end of the data
    assert frame["value"].notna().all()


def test_forecast_equals_the_model_on_the_same_window_and_levels_are_independent(trained):
    checkpoint, data_file, cfg = trained
    data = build_data(cfg)
    test = data.splits["test"]
    row, origin_hour = int(test.series[3]), int(test.origin[3])
    name, origin = data.panel.series_ids[row], str(data.panel.timestamps[origin_hour])
    one = predict(checkpoint, data_file, [0.9], series=[name], origin=origin)
    three = predict(checkpoint, data_file, [0.1, 0.5, 0.9], series=[name], origin=origin)
    # float tolerance: FiLM runs one GEMM shape for 1 level and another for 3
    torch.testing.assert_close(
        torch.tensor(one["value"].values), torch.tensor(three[three.level == 0.9]["value"].values), rtol=1e-4, atol=1e-3
    )
    model, _ = load_forecaster(checkpoint)
    batch = WindowBatches(data.panel, data.shape, test)[torch.tensor([3])]
    with torch.no_grad():
        expected = model(batch, torch.tensor([[0.9]])).prediction[0, :, 0]
    torch.testing.assert_close(torch.tensor(one["value"].values, dtype=torch.float32), expected)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(series=["nowhere"]), r"unknown series \['nowhere'\]"),
        (dict(origin="2015-01-02 00:00"), "too short a history"),
        (dict(origin="2015-02-01 00:30"), "not an hour of the data's grid"),
    ],
)
def test_bad_requests_fail_clearly(trained, kwargs, message):
    checkpoint, data_file, _ = trained
    with pytest.raises(UsageError, match=message):
        predict(checkpoint, data_file, [0.5], **kwargs)


@pytest.mark.parametrize(
    "text, message",
    [("0.5,1.0", r"inside \(0, 1\)"), ("0,0.5", r"inside \(0, 1\)"), ("a,b", "numbers"), (",", "empty")],
)
def test_levels_are_checked(text, message):
    with pytest.raises(UsageError, match=message):
        parse_levels(text)
    assert parse_levels("0.05, 0.5,0.95") == [0.05, 0.5, 0.95]


def test_cli_writes_csv_and_reports_errors(trained, tmp_path, capsys):
    checkpoint, data_file, _ = trained
    out = tmp_path / "forecast.csv"
    assert (
        predict_cli.main(
            ["--checkpoint", checkpoint, "--data", str(data_file), "--levels", "0.05,0.95", "--out", str(out)]
        )
        == 0
    )
    assert len(pd.read_csv(out)) == 2 * 48 * 2
    assert (
        predict_cli.main(["--checkpoint", checkpoint, "--data", str(data_file), "--levels", "1.5", "--out", str(out)])
        == 2
    )
    assert "inside (0, 1)" in capsys.readouterr().err
    assert (
        predict_cli.main(["--checkpoint", checkpoint, "--data", str(data_file), "--levels", "0.5", "--out", "x.txt"])
        == 2
    )
    assert (
        predict_cli.main(
            ["--checkpoint", "missing.ckpt", "--data", str(data_file), "--levels", "0.5", "--out", str(out)]
        )
        == 2
    )


def test_a_model_with_holidays_forecasts_with_the_series_own_holidays_and_names_an_unmapped_series(
    tmp_path, tiny_config_in
):
    holidays = ("dataset.holidays=true", "+dataset.holiday_countries.synthetic_00=DE")
    cfg = tiny_config_in(tmp_path / "runs", *holidays, "+dataset.holiday_countries.synthetic_01=FR")
    summary = train(cfg)
    data = build_data(cfg)
    data_file = tmp_path / "series.csv"
    data.panel.to_long_frame().to_csv(data_file, index=False)
    test = data.splits["test"]
    name, origin = data.panel.series_ids[int(test.series[3])], str(data.panel.timestamps[int(test.origin[3])])
    frame = predict(summary["checkpoint"], data_file, [0.9], series=[name], origin=origin)
    model, _ = load_forecaster(summary["checkpoint"])
    batch = WindowBatches(data.panel, data.shape, test)[torch.tensor([3])]  # with the training's holidays
    assert batch.calendar.shape[-1] == 11
    with torch.no_grad():
        expected = model(batch, torch.tensor([[0.9]])).prediction[0, :, 0]
    torch.testing.assert_close(torch.tensor(frame["value"].values, dtype=torch.float32), expected)
    renamed = data.panel.to_long_frame().replace({"unique_id": {"synthetic_01": "XX"}})
    renamed.to_csv(tmp_path / "renamed.csv", index=False)
    with pytest.raises(ConfigError, match="series 'XX'"):  # other series than the model was trained with
        predict(summary["checkpoint"], tmp_path / "renamed.csv", [0.9], series=["synthetic_00"])
    subset = renamed[renamed.unique_id == "synthetic_00"]  # some of the model's series: its map is not checked whole
    subset.to_csv(tmp_path / "subset.csv", index=False)
    assert len(predict(summary["checkpoint"], tmp_path / "subset.csv", [0.9])) == 48
