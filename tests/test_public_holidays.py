"""Public-holiday features (dataset/public_holidays.py) by hand for known dates, and their way into windows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from anyquantile.dataset.calendar import CALENDAR_FEATURES
from anyquantile.dataset.panel import HourlyPanel
from anyquantile.dataset.public_holidays import (
    HOLIDAY_FEATURES,
    UnknownCountryError,
    holiday_features,
    series_countries,
)
from anyquantile.dataset.windows import WindowBatches, WindowIndex, WindowShape, calendar_width
from anyquantile.experiment.builders import build_data, build_network
from anyquantile.experiment.errors import ConfigError

HOLIDAY, BRIDGE, TO_NEXT, FROM_LAST = range(4)


def day_features(country: str, start: str, days: int) -> dict[str, np.ndarray]:
    """The features at noon of each of ``days`` dates from ``start`` (they hold for every hour of a date)."""
    timestamps = pd.date_range(start, periods=days * 24, freq="h")
    features = holiday_features(timestamps, country)  # [L, 4]
    assert (features.reshape(days, 24, 4) == features.reshape(days, 24, 4)[:, :1]).all()  # constant within a day
    noon = features[12::24]
    return {str(date.date()): row for date, row in zip(timestamps[12::24], noon, strict=True)}


def test_german_unity_day_2017_and_the_monday_before_it():
    # 2017-10-03 was a Tuesday: the Monday between the weekend and the holiday is a bridge day.
    days = day_features("DE", "2017-09-28", 10)
    assert days["2017-10-03"][HOLIDAY] == 1 and days["2017-10-03"][BRIDGE] == 0
    assert days["2017-10-02"][BRIDGE] == 1 and days["2017-10-02"][HOLIDAY] == 0
    assert days["2017-10-04"][BRIDGE] == 0  # a Wednesday after it: Thursday is a working day
    assert days["2017-09-30"][TO_NEXT] == pytest.approx(3 / 7)  # Saturday: three days to Tuesday
    assert days["2017-10-03"][TO_NEXT] == 0 and days["2017-10-03"][FROM_LAST] == 0
    assert days["2017-10-05"][FROM_LAST] == pytest.approx(2 / 7)
    # the only holiday before it in 2017 was Pentecost Monday (June 5): far away, clipped at a week
    assert days["2017-09-28"][FROM_LAST] == 1.0


def test_ascension_thursday_makes_the_friday_a_bridge_day_in_france():
    days = day_features("FR", "2017-05-22", 7)  # Ascension 2017: Thursday May 25
    assert days["2017-05-25"][HOLIDAY] == 1
    assert days["2017-05-26"][BRIDGE] == 1
    assert days["2017-05-24"][BRIDGE] == 0  # Wednesday: Tuesday before it was a working day
    assert [days[d][HOLIDAY] for d in ("2017-05-22", "2017-05-23", "2017-05-27", "2017-05-28")] == [0, 0, 0, 0]


def test_christmas_in_great_britain_and_distances_across_the_new_year():
    days = day_features("GB", "2017-12-20", 16)
    assert days["2017-12-25"][HOLIDAY] == 1 and days["2017-12-26"][HOLIDAY] == 1
    assert days["2017-12-27"][BRIDGE] == 0  # Wednesday: Thursday is a working day
    assert days["2017-12-28"][TO_NEXT] == pytest.approx(4 / 7)  # to New Year's Day 2018, a Monday
    assert days["2018-01-01"][HOLIDAY] == 1
    assert days["2017-12-29"][FROM_LAST] == pytest.approx(3 / 7)


def test_a_country_without_a_calendar_names_the_series():
    with pytest.raises(UnknownCountryError, match=r"series 'XX'.*\+dataset.holiday_countries.XX=CODE"):
        series_countries(("DE", "XX"), {})
    assert series_countries(("DE", "north"), {"north": "NO"}) == ("DE", "NO")
    with pytest.raises(UnknownCountryError, match="'nort'"):  # a misspelt series id in the mapping
        series_countries(("DE", "north"), {"nort": "NO"})


def test_windows_carry_each_series_own_holidays_after_the_calendar():
    timestamps = pd.date_range("2017-09-25", periods=24 * 14, freq="h")
    values = np.ones((2, len(timestamps)), dtype=np.float32)
    panel = HourlyPanel(("DE", "FR"), timestamps, values, holiday_countries=("DE", "FR"))
    shape = WindowShape(history_length=48, horizon=48)
    origin = int(timestamps.searchsorted(pd.Timestamp("2017-10-03")))
    windows = WindowIndex(series=np.array([0, 1]), origin=np.array([origin, origin]))
    batch = WindowBatches(panel, shape, windows).all()
    C = len(CALENDAR_FEATURES)
    assert batch.calendar.shape == (2, 96, calendar_width(holidays=True)) == (2, 96, C + len(HOLIDAY_FEATURES))
    first_target_hour = batch.calendar[:, 48, C:]  # [2, 4] 2017-10-03 00:00
    assert first_target_hour[0, HOLIDAY] == 1  # German Unity Day
    assert first_target_hour[1, HOLIDAY] == 0  # a Tuesday in France (All Saints' Day is Nov 1)
    assert batch.calendar[0, 24, C + BRIDGE] == 1  # the Monday before it, in the history
    without = WindowBatches(HourlyPanel(("DE", "FR"), timestamps, values), shape, windows).all()
    assert torch.equal(without.calendar, batch.calendar[..., :C])  # the calendar's own columns unchanged


def test_the_holiday_option_reaches_the_network_and_names_a_series_without_a_country(tiny_config):
    cfg = tiny_config("dataset.holidays=true")
    with pytest.raises(ConfigError, match="series 'synthetic_00'"):
        build_data(cfg)
    mapped = tiny_config(
        "dataset.holidays=true",
        "+dataset.holiday_countries.synthetic_00=DE",
        "+dataset.holiday_countries.synthetic_01=FR",
    )
    data = build_data(mapped)
    assert data.panel.holiday_countries == ("DE", "FR")
    batch = WindowBatches(data.panel, data.shape, data.splits["val"]).all()
    network = build_network(mapped)
    levels = torch.full((len(batch), 1), 0.5)
    assert network(batch.history, batch.history_mask, batch.calendar, levels).prediction.shape[0] == len(batch)


def test_a_country_mapping_without_holidays_is_refused(tiny_config):
    with pytest.raises(ConfigError, match="dataset.holidays is false"):
        tiny_config("+dataset.holiday_countries.synthetic_00=DE")
