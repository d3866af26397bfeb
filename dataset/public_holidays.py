"""Public-holiday features per series, from the ``holidays`` package: known in advance, so they are
read for the history and for the horizon alike.

Each series has the holiday calendar of one country (an ISO 3166 code: MHL's series ids are such
codes). Per hour, from the hour's date:

- ``is_holiday``: the date is a public holiday;
- ``is_bridge_day``: a working day between a holiday and a day off (a weekend or another holiday),
  such as the Friday after a Thursday holiday: many take it off, and load falls as on a holiday;
- ``days_to_holiday``, ``days_from_holiday``: days to the next holiday and since the last one
  (0 on a holiday), clipped at ``HOLIDAY_REACH_DAYS`` and divided by it, so in [0, 1]: the run-up to
  Christmas and the days after Easter differ from ordinary weeks.

The dates are those of the timestamps as loaded: in UTC when the file's timestamps carry an offset
(``dataset/loader.py`` converts them), so for European series a holiday's first local hour or two
fall on the day before. Weekends are Saturday and Sunday for every country.
"""

from __future__ import annotations

from functools import lru_cache

import holidays as holiday_calendars
import numpy as np
import pandas as pd

HOLIDAY_FEATURES = ("is_holiday", "is_bridge_day", "days_to_holiday", "days_from_holiday")
HOLIDAY_REACH_DAYS = 7  # the distances saturate a week away: the history is a week long


class UnknownCountryError(ValueError):
    """A series has no holiday calendar: its country code is not one the ``holidays`` package knows."""


@lru_cache(maxsize=1)
def known_countries() -> frozenset[str]:
    return frozenset(holiday_calendars.list_supported_countries())


def check_country(series: str, country: str) -> None:
    """Raise :class:`UnknownCountryError` naming ``series`` unless ``country`` has a holiday calendar."""
    if country not in known_countries():
        raise UnknownCountryError(
            f"series '{series}': '{country}' is not a country code of the holidays package (ISO 3166 alpha-2, "
            f"such as DE or FR); map the series with +dataset.holiday_countries.{series}=CODE"
        )


def holiday_dates(country: str, first: pd.Timestamp, last: pd.Timestamp) -> np.ndarray:
    """The public holidays of ``country`` from a year before ``first`` to a year after ``last``, as
    sorted ``datetime64[D]`` (the margins give every date of the range its nearest holiday)."""
    years = range(first.year - 1, last.year + 2)
    dates = holiday_calendars.country_holidays(country, years=years).keys()
    return np.array(sorted(dates), dtype="datetime64[D]")


def holiday_features(timestamps: pd.DatetimeIndex, country: str) -> np.ndarray:
    """The features of ``HOLIDAY_FEATURES`` for each timestamp, ``[L, 4]`` float32 in [0, 1]."""
    hours = timestamps.values.astype("datetime64[D]")  # [L] the date of each hour
    days = np.arange(hours.min() - 1, hours.max() + 2, dtype="datetime64[D]")  # [N] with a day either side
    holidays = holiday_dates(country, timestamps[0], timestamps[-1])
    if len(holidays) == 0:  # a calendar without a holiday in these years: never a holiday, always far from one
        holidays = np.array([days[0] - 2 * HOLIDAY_REACH_DAYS], dtype="datetime64[D]")
    is_holiday = np.isin(days, holidays)  # [N]
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday: 0 = Monday
    day_off = is_holiday | (weekday >= 5)
    working = ~day_off
    before, after = np.roll(day_off, 1), np.roll(day_off, -1)  # [N] the day before is off, the day after is off
    holiday_before, holiday_after = np.roll(is_holiday, 1), np.roll(is_holiday, -1)
    is_bridge = working & ((holiday_before & after) | (holiday_after & before))
    is_bridge[[0, -1]] = False  # np.roll wrapped the margin days around
    # distances to the nearest holiday on either side, through the sorted holiday dates
    next_index = np.searchsorted(holidays, days, side="left")  # first holiday >= day
    last_index = np.searchsorted(holidays, days, side="right") - 1  # last holiday <= day
    reach = np.timedelta64(HOLIDAY_REACH_DAYS, "D")
    to_next = (holidays[np.minimum(next_index, len(holidays) - 1)] - days).clip(np.timedelta64(0, "D"), reach)
    from_last = (days - holidays[np.maximum(last_index, 0)]).clip(np.timedelta64(0, "D"), reach)
    to_next[next_index >= len(holidays)] = reach  # no holiday after: as far as the features see
    from_last[last_index < 0] = reach
    per_day = np.stack(
        [
            is_holiday,
            is_bridge,
            to_next.astype(np.int64) / HOLIDAY_REACH_DAYS,
            from_last.astype(np.int64) / HOLIDAY_REACH_DAYS,
        ],
        axis=-1,
    ).astype(np.float32)  # [N, 4]
    return per_day[(hours - days[0]).astype(np.int64)]  # [L, 4]


def series_countries(series_ids: tuple[str, ...], mapping: dict[str, str], strict: bool = True) -> tuple[str, ...]:
    """The holiday country of each series: ``mapping[id]``, or the id itself when it has no entry.

    A country the holidays package does not know is an :class:`UnknownCountryError` naming the series;
    so is, when ``strict`` (training: a misspelt id would otherwise be ignored), a mapping entry for a
    series the data does not have. Forecasting some of a model's series is not strict.
    """
    strays = sorted(set(mapping) - set(series_ids))
    if strays and strict:
        raise UnknownCountryError(f"dataset.holiday_countries names series the data does not have: {strays}")
    countries = tuple(mapping.get(series, series) for series in series_ids)
    for series, country in zip(series_ids, countries, strict=True):
        check_country(series, country)
    return countries


def series_holiday_features(timestamps: pd.DatetimeIndex, countries: tuple[str, ...]) -> np.ndarray:
    """``[S, L, 4]``: the holiday features of each series' country (countries of several series computed once)."""
    per_country = {country: holiday_features(timestamps, country) for country in set(countries)}
    return np.stack([per_country[country] for country in countries])
