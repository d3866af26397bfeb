"""Calendar features of an hourly grid: smooth (sin/cos) encodings of the daily, weekly, annual cycles."""

from __future__ import annotations

import numpy as np
import pandas as pd

CALENDAR_FEATURES = (
    "hour_sin",
    "hour_cos",
    "weekday_sin",
    "weekday_cos",
    "year_sin",
    "year_cos",
    "is_weekend",
)


def calendar_features(timestamps: pd.DatetimeIndex) -> np.ndarray:
    """Features of each timestamp, ``[L, C]`` float32 in [-1, 1], columns as in ``CALENDAR_FEATURES``.

    Sin/cos pairs keep 23:00 next to 00:00 and December next to January; the weekend flag
    lets a model single out the two days with the lowest load.
    """
    hour = timestamps.hour.to_numpy() + timestamps.minute.to_numpy() / 60.0
    weekday = timestamps.dayofweek.to_numpy() + hour / 24.0
    day_of_year = timestamps.dayofyear.to_numpy() - 1 + hour / 24.0
    year_length = np.where(timestamps.is_leap_year, 366.0, 365.0)
    angles = {
        "hour": 2 * np.pi * hour / 24.0,
        "weekday": 2 * np.pi * weekday / 7.0,
        "year": 2 * np.pi * day_of_year / year_length,
    }
    columns = []
    for name in ("hour", "weekday", "year"):
        columns += [np.sin(angles[name]), np.cos(angles[name])]
    columns.append((timestamps.dayofweek.to_numpy() >= 5).astype(np.float64))
    return np.stack(columns, axis=-1).astype(np.float32)
