"""Covariate columns (dataset/covariates.py): read from the file, checked per window, standardised by hand,
read by the model over the horizon only when known in advance, and clear errors for what is missing."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from anyquantile.dataset.covariates import CovariateSpec, window_covariates
from anyquantile.dataset.loader import DataValidationError, panel_from_frame
from anyquantile.dataset.splits import SplitBoundaries, make_splits
from anyquantile.dataset.windows import WindowBatches, WindowIndex, WindowShape
from anyquantile.experiment.builders import build_data, build_network
from anyquantile.experiment.errors import ConfigError
from anyquantile.modules.forecast_network import AnyQuantileNetwork, CovariateChannels, NetworkConfig, context_size
from anyquantile.modules.nbeats import AnyQuantileNBeats, NBeatsConfig
from anyquantile.training.train import train

SPEC = CovariateSpec(futr=("temp",), hist=("meter",), stat=("area",))


def frame(hours: int = 12, series: tuple[str, ...] = ("A", "B")) -> pd.DataFrame:
    rows = []
    for s, name in enumerate(series):
        for h, ds in enumerate(pd.date_range("2017-01-01", periods=hours, freq="h")):
            rows.append(dict(unique_id=name, ds=ds, y=100.0 * (s + 1) + h, temp=h / 2, meter=-h, area=10.0 + s))
    return pd.DataFrame(rows)


def test_covariates_are_laid_out_on_the_grid_futr_hist_then_static():
    data = frame()
    data = data[~((data.unique_id == "B") & (data.ds < "2017-01-01 03:00"))]  # B starts 3 hours later
    panel = panel_from_frame(data, covariates=SPEC)
    assert panel.covariates.shape == (2, 12, 3)
    np.testing.assert_array_equal(panel.covariates[0, :, 0], np.arange(12) / 2)  # temp
    np.testing.assert_array_equal(panel.covariates[0, :, 1], -np.arange(12))  # meter
    assert np.isnan(panel.covariates[1, :3, :2]).all()  # B has no rows there
    np.testing.assert_array_equal(panel.covariates[:, :, 2], [[10.0] * 12, [11.0] * 12])  # static: the whole row


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.drop(columns="temp"), r"covariate column\(s\) \['temp'\] .* not in the file"),
        (
            lambda f: f.assign(meter=f.meter.astype(object).where(f.index != 5, "n/a")),
            "non-numeric value 'n/a' in 'meter'",
        ),
        (lambda f: f.assign(area=f.area.where(f.index != 13, 12.0)), "'B': static covariate 'area' must have one"),
        (lambda f: f.assign(area=f.area.where(f.index != 2, np.nan)), "series 'A': static covariate 'area'.*empty"),
    ],
)
def test_bad_covariate_columns_fail_clearly(change, message):
    with pytest.raises(DataValidationError, match=message):
        panel_from_frame(change(frame()), covariates=SPEC)


def test_a_column_has_one_kind_and_the_series_own_columns_are_no_covariates():
    with pytest.raises(ValueError, match=r"\['temp'\] listed more than once"):
        CovariateSpec(futr=("temp",), hist=("temp",))
    with pytest.raises(ValueError, match=r"\['y'\] cannot be a covariate"):
        CovariateSpec(hist=("y",))


def test_standardised_by_the_history_historical_zero_after_the_origin_static_as_given():
    T = 4
    temp = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])  # history mean 2.5, standard deviation sqrt(1.25)
    meter = torch.tensor([10.0, 10.0, 10.0, 10.0, 99.0, 99.0])  # constant history: only centred
    area = torch.full((6,), 7.0)
    raw = torch.stack([temp, meter, area], dim=-1)[None]  # [1, 6, 3]
    out = window_covariates(raw, SPEC, T)[0]
    torch.testing.assert_close(out[:, 0], (temp - 2.5) / math.sqrt(1.25))
    torch.testing.assert_close(out[:, 1], torch.zeros(6))  # 0 over the history (centred) and over the horizon
    torch.testing.assert_close(out[:, 2], area)


def test_a_window_missing_a_future_covariate_in_its_horizon_names_series_covariate_and_hour():
    data = frame(hours=14)
    data.loc[(data.unique_id == "B") & (data.ds == "2017-01-01 10:00"), "temp"] = np.nan
    data.loc[(data.unique_id == "A") & (data.ds == "2017-01-01 11:00"), "meter"] = np.nan
    panel = panel_from_frame(data, covariates=SPEC)
    shape = WindowShape(history_length=4, horizon=2)
    # A at origin 10: meter is missing at 11:00, in its horizon, which a historical covariate never reads
    WindowBatches(panel, shape, WindowIndex(np.array([0]), np.array([10])))
    missing = "'B': future-known covariate 'temp' has no value at 2017-01-01 10:00"
    with pytest.raises(DataValidationError, match=missing):
        WindowBatches(panel, shape, WindowIndex(np.array([0, 1]), np.array([10, 9])))
    missing = "'A': historical covariate 'meter' has no value at 2017-01-01 11:00"
    with pytest.raises(DataValidationError, match=missing):
        WindowBatches(panel, shape, WindowIndex(np.array([0]), np.array([12])))


@pytest.mark.parametrize(
    "channels, hour, read",
    [
        (CovariateChannels(futr=1), "horizon", True),  # a future-known covariate: every hour of the window
        (CovariateChannels(futr=1), "history", True),
        (CovariateChannels(hist=1), "history", True),
        (CovariateChannels(hist=1), "horizon", False),  # a historical one: never after the origin
        (CovariateChannels(), "horizon", False),  # a calendar channel: the first forecast hour only
        (CovariateChannels(), "history", False),
    ],
)
def test_the_backbone_reads_each_kind_of_covariate_where_it_is_known(channels, hour, read):
    T, H, C = 24, 6, 8  # C: the calendar's width, its last channel a covariate when the channels say so

    def network() -> AnyQuantileNetwork:
        torch.manual_seed(0)
        size = context_size(T, H, C, use_calendar=True, use_history_mask=True, covariates=channels)
        backbone = AnyQuantileNBeats(NBeatsConfig(num_blocks=2, num_layers=2, width=16), T, H, size)
        return AnyQuantileNetwork(NetworkConfig(), backbone, covariates=channels).eval()

    g = torch.Generator().manual_seed(1)
    history, mask = 100.0 + torch.randn(2, T, generator=g), torch.ones(2, T, dtype=torch.bool)
    calendar, levels = torch.randn(2, T + H, C, generator=g), torch.full((2, 3), 0.5)
    moved = calendar.clone()
    moved[:, T + 3 if hour == "horizon" else T - 5, -1] += 1.0  # the last channel, away from the first forecast hour
    with torch.no_grad():
        before, after = (network()(history, mask, c, levels).prediction for c in (calendar, moved))
    assert (not torch.equal(before, after)) == read


def test_static_covariates_are_read_once():
    channels = CovariateChannels(futr=1, hist=2, stat=1)
    assert channels.context_size(24, 6) == 30 * 1 + 24 * 2 + 1
    calendar = torch.arange(2 * 30 * 5, dtype=torch.float32).reshape(2, 30, 5)  # [B, T + H, C], K = 4 last
    context = channels.context(calendar, 24)
    assert context.shape == (2, 79)
    torch.testing.assert_close(context[:, -1], calendar[:, 24, 4])  # the static channel at the first forecast hour
    torch.testing.assert_close(context[:, :30], calendar[:, :, 1])  # the future-known channel, every hour


def test_a_split_skips_the_windows_that_read_a_covariate_gap_and_says_how_many():
    data = frame(hours=40)
    data.loc[(data.unique_id == "A") & (data.ds == "2017-01-01 20:00"), "meter"] = np.nan
    panel = panel_from_frame(data, covariates=SPEC)
    shape = WindowShape(history_length=4, horizon=2)
    with pytest.warns(UserWarning, match="the train split skips 4 of its"):
        splits = make_splits(panel, shape, SplitBoundaries(val_start="2017-01-02 06:00"), 1, 1, 1.0)
    # A's windows with 20:00 in their history: origins 21..24 (history [origin - 4, origin)); origin 20 reads
    # 20:00 in its horizon only, where a historical covariate is not read; B keeps all
    a = splits["train"].series == 0
    assert not set(splits["train"].origin[a]) & {21, 22, 23, 24}
    assert {20, 25} <= set(splits["train"].origin[a])
    assert (splits["train"].series == 1).sum() == a.sum() + 4


def test_covariates_need_a_file(tiny_config):
    with pytest.raises(ConfigError, match="the synthetic data has no covariates"):
        tiny_config("dataset.futr_exog_list=[temp]")


@pytest.fixture(scope="module")
def covariate_file(tmp_path_factory, tiny_config_in):
    """The tiny synthetic series with a future-known, a historical and a static covariate, and the overrides
    that read them."""
    folder = tmp_path_factory.mktemp("covariates")
    series = build_data(tiny_config_in(folder / "runs")).panel.to_long_frame()
    hours = (series.ds - series.ds.min()) / pd.Timedelta(hours=1)
    series["temp"] = np.sin(2 * np.pi * hours / 24)
    series["meter"] = series.groupby("unique_id").y.shift(1).fillna(0.0)
    series["area"] = series.unique_id.map({"synthetic_00": 1.0, "synthetic_01": 2.0})
    data_file = folder / "series.csv"
    series.to_csv(data_file, index=False)
    overrides = (
        "dataset.source=file",
        f"dataset.path={data_file}",
        "dataset.futr_exog_list=[temp]",
        "dataset.hist_exog_list=[meter]",
        "dataset.stat_exog_list=[area]",
    )
    return series, folder, overrides


@pytest.fixture(scope="module")
def trained_with_covariates(covariate_file, tiny_config_in):
    series, folder, overrides = covariate_file
    return train(tiny_config_in(folder / "runs", *overrides))["checkpoint"], series, folder


def test_the_attention_model_reads_the_future_covariates_of_its_horizon(covariate_file, tiny_config):
    _, _, overrides = covariate_file
    cfg = tiny_config(*overrides, "model.architecture=adaptive_attention", "model.conditioning=out")
    data = build_data(cfg)
    batch = WindowBatches(data.panel, data.shape, data.splits["val"])[torch.arange(4)]
    assert batch.calendar.shape[-1] == 7 + 3  # the calendar's features, then temp, meter, area
    network = build_network(cfg).eval()
    moved = batch.calendar.clone()
    moved[:, data.shape.history_length + 20, 7] += 1.0  # temp, 20 hours after the origin
    levels = torch.full((4, 2), 0.5)
    with torch.no_grad():
        before, after = (
            network(batch.history, batch.history_mask, c, levels).prediction for c in (batch.calendar, moved)
        )
    assert not torch.equal(before, after)


def with_horizon_rows(series: pd.DataFrame, hours: int, temp_shift: float = 0.0, meter: float = 0.0) -> pd.DataFrame:
    """``series`` with ``hours`` more rows per series: no ``y``, covariates given (``temp`` moved by ``temp_shift``)."""
    extra = []
    for name, rows in series.groupby("unique_id"):
        stamps = pd.date_range(rows.ds.max() + pd.Timedelta(hours=1), periods=hours, freq="h")
        extra.append(
            pd.DataFrame(
                dict(unique_id=name, ds=stamps, y=np.nan, temp=temp_shift + np.arange(hours) / hours, meter=meter)
            ).assign(area=rows.area.iloc[0])
        )
    return pd.concat([series, *extra], ignore_index=True)


def test_a_forecast_reads_future_covariates_over_its_horizon_and_never_historical_ones(
    trained_with_covariates, predict_file
):
    checkpoint, series, folder = trained_with_covariates
    files = {}
    for name, table in {
        "plain": with_horizon_rows(series, 48),
        "warmer": with_horizon_rows(series, 48, temp_shift=5.0),
        "metered": with_horizon_rows(series, 48, meter=1e6),
    }.items():
        files[name] = folder / f"{name}.csv"
        table.to_csv(files[name], index=False)
    plain, warmer, metered = (
        predict_file(checkpoint, files[name], [0.1, 0.5, 0.9]).drop(columns="unique_id").set_index("ds")
        for name in files
    )
    assert (plain.index.min() - series.ds.max()) == pd.Timedelta(hours=1)  # the horizon is the new rows
    assert not np.allclose(plain.to_numpy(), warmer.to_numpy())  # the horizon's temperature moves the forecast
    np.testing.assert_array_equal(plain.to_numpy(), metered.to_numpy())  # the horizon's meter readings are never read


def test_a_forecast_without_future_covariates_for_its_horizon_says_what_to_add(trained_with_covariates, predict_file):
    checkpoint, series, folder = trained_with_covariates
    data_file = folder / "history_only.csv"
    series.to_csv(data_file, index=False)
    with pytest.raises(DataValidationError, match="future-known covariate 'temp' has no value at .*add the horizon"):
        predict_file(checkpoint, data_file, [0.5])
