"""Read and validate long-format hourly series (``unique_id, ds, y``) from CSV, CSV.gz or parquet.

Every problem is reported with a :class:`DataValidationError` that names the file, the series and
what is wrong, so that a user can fix the file without reading this code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from anyquantile.dataset.covariates import RESERVED_COLUMNS, CovariateSpec, covariate_grid
from anyquantile.dataset.errors import DataValidationError
from anyquantile.dataset.panel import HourlyPanel

REQUIRED_COLUMNS = RESERVED_COLUMNS
SUPPORTED_SUFFIXES = (".csv", ".csv.gz", ".parquet")
ONE_HOUR = np.timedelta64(1, "h")
# The whole days of pandas' nanosecond clock (1677-09-21 00:12 to 2262-04-11 23:47), on which the grid is laid.
EARLIEST, LATEST = pd.Timestamp("1677-09-22"), pd.Timestamp("2262-04-11")


__all__ = ["DataValidationError", "load_hourly_panel", "panel_from_frame"]


NO_COVARIATE_COLUMNS = CovariateSpec()


def load_hourly_panel(
    path: str | Path, min_length: int = 1, covariates: CovariateSpec = NO_COVARIATE_COLUMNS
) -> HourlyPanel:
    """Read a long-format file and return its series on one hourly grid.

    Args:
        path: a ``.csv``, ``.csv.gz`` or ``.parquet`` file with columns ``unique_id, ds, y``.
        min_length: the fewest hours (rows) a series may have: one window, history + horizon.
        covariates: the file's covariate columns to read (``dataset/covariates.py``); others are ignored.

    Every series must list every hour between its first and last timestamp exactly once, in
    order; a missing observation is a row with an empty ``y`` (kept as NaN, never filled in).
    """
    frame = read_frame(Path(path))
    return panel_from_frame(frame, min_length=min_length, source=str(path), covariates=covariates)


def panel_from_frame(
    frame: pd.DataFrame,
    min_length: int = 1,
    source: str = "data frame",
    covariates: CovariateSpec = NO_COVARIATE_COLUMNS,
) -> HourlyPanel:
    """Validate a long-format frame and lay its series out on a shared hourly grid."""
    if len(frame) == 0:
        raise DataValidationError(f"{source}: the file has no rows.")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{source}: missing column(s) {missing}; expected {list(REQUIRED_COLUMNS)}, found {list(frame.columns)}."
        )
    repeated = [name for name in (*REQUIRED_COLUMNS, *covariates.names) if isinstance(frame.get(name), pd.DataFrame)]
    if repeated:
        raise DataValidationError(
            f"{source}: column(s) {repeated} appear more than once; each must be one column, "
            f"found {list(frame.columns)}."
        )
    absent = [name for name in covariates.names if name not in frame.columns]
    if absent:
        raise DataValidationError(
            f"{source}: covariate column(s) {absent} (dataset.futr/hist/stat_exog_list) are not in the file; "
            f"it has {list(frame.columns)}."
        )
    no_id = frame["unique_id"].isna().to_numpy() | (frame["unique_id"].astype(str).str.strip() == "").to_numpy()
    if no_id.any():
        raise DataValidationError(f"{source}: row {int(np.flatnonzero(no_id)[0])} has no 'unique_id'.")
    ids = frame["unique_id"].astype(str).to_numpy()
    stamps = _parse_timestamps(frame["ds"], ids, source)
    values = _parse_values(frame["y"], ids, source)
    exogenous = {name: _parse_values(frame[name], ids, source, name) for name in covariates.names}

    # A stable sort by series keeps each series' rows in file order, so order errors stay visible.
    order = np.argsort(ids, kind="stable")
    ids, stamps, values = ids[order], stamps[order], values[order]
    exogenous = {name: column[order] for name, column in exogenous.items()}
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], len(ids)]
    for start, end in zip(starts, ends):
        _check_series_hours(ids[start], stamps[start:end], min_length, source)

    grid_start, grid_end = stamps.min(), stamps.max()
    timestamps = pd.date_range(grid_start, grid_end, freq="h")
    series_ids = tuple(ids[starts])
    panel_values = np.full((len(series_ids), len(timestamps)), np.nan, dtype=np.float32)
    row = np.repeat(np.arange(len(series_ids)), ends - starts)
    column = ((stamps - grid_start) // ONE_HOUR).astype(np.int64)
    panel_values[row, column] = values
    grid = None
    if covariates.width:
        grid = covariate_grid(exogenous, covariates, row, column, series_ids, len(timestamps), source)
    return HourlyPanel(
        series_ids=series_ids, timestamps=timestamps, values=panel_values, covariates=grid, covariate_spec=covariates
    )


def frame_timestamps(frame: pd.DataFrame, source: str = "data frame") -> np.ndarray:
    """The frame's ``ds`` as the loader reads it: naive hours, and times with an offset on the UTC clock."""
    return _parse_timestamps(frame["ds"], frame["unique_id"].astype(str).to_numpy(), source)


def read_frame(path: Path) -> pd.DataFrame:
    """A data file (``.csv``, ``.csv.gz``, ``.parquet``) as it is, before :func:`panel_from_frame` checks it."""
    name = path.name.lower()
    if not any(name.endswith(suffix) for suffix in SUPPORTED_SUFFIXES):
        raise DataValidationError(f"{path}: unsupported file type; use one of {SUPPORTED_SUFFIXES}.")
    if not path.is_file():
        raise DataValidationError(f"{path}: no such file.")
    try:
        if name.endswith(".parquet"):
            return pd.read_parquet(path)
        # Read ds and y as text: parsing is ours, so that a bad value is reported, not guessed at.
        return pd.read_csv(path, dtype={"unique_id": str, "ds": str, "y": str}, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataValidationError(f"{path}: the file is empty.") from None


def _parse_timestamps(column: pd.Series, ids: np.ndarray, source: str) -> np.ndarray:
    # utc=True maps times with offsets (e.g. local time across a daylight-saving change) onto
    # one UTC clock and leaves naive times as they are.
    if pd.api.types.is_datetime64_any_dtype(column):
        parsed = pd.to_datetime(column, utc=True)
    else:
        text = column.astype(str).str.strip()
        parsed = pd.to_datetime(text, errors="coerce", format="mixed", utc=True)
    bad = parsed.isna().to_numpy()
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataValidationError(
            f"{source}: series '{ids[first]}' has an unparseable timestamp {column.iloc[first]!r} "
            f"(row {first}); {int(bad.sum())} row(s) in all."
        )
    parsed = parsed.dt.tz_localize(None)
    outside = ((parsed < EARLIEST) | (parsed > LATEST)).to_numpy()
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise DataValidationError(
            f"{source}: series '{ids[first]}' has a timestamp {column.iloc[first]!r} (row {first}) outside the "
            f"supported range {EARLIEST} to {LATEST}; {int(outside.sum())} row(s) in all."
        )
    return parsed.to_numpy().astype("datetime64[ns]")


def _parse_values(column: pd.Series, ids: np.ndarray, source: str, name: str = "y") -> np.ndarray:
    values = _parse_numbers(column, ids, source, name)
    infinite = np.isinf(values)
    if infinite.any():
        first = int(np.flatnonzero(infinite)[0])
        raise DataValidationError(
            f"{source}: series '{ids[first]}' has an infinite value in '{name}' (row {first}); "
            f"{int(infinite.sum())} row(s) in all. Leave a missing value empty."
        )
    return values


def _parse_numbers(column: pd.Series, ids: np.ndarray, source: str, name: str) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_complex_dtype(column):  # complex: refused below
        return column.to_numpy(dtype=np.float32, na_value=np.nan)
    text = column.astype("string").str.strip()
    empty = text.isna() | text.isin(["", "nan", "NaN", "NA", "null", "None"])
    numbers = pd.to_numeric(text.mask(empty), errors="coerce")
    bad = (numbers.isna() & ~empty).to_numpy()
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataValidationError(
            f"{source}: series '{ids[first]}' has a non-numeric value {column.iloc[first]!r} in '{name}' "
            f"(row {first}); {int(bad.sum())} row(s) in all. Leave a missing value empty."
        )
    return numbers.to_numpy(dtype=np.float32, na_value=np.nan)


def _check_series_hours(series_id: str, stamps: np.ndarray, min_length: int, source: str) -> None:
    where = f"{source}: series '{series_id}'"
    off_hour = stamps != stamps.astype("datetime64[h]")
    if off_hour.any():
        raise DataValidationError(f"{where} has a timestamp that is not on the hour: {stamps[off_hour][0]}.")
    steps = np.diff(stamps)
    if (steps == np.timedelta64(0)).any():
        at = stamps[1:][steps == np.timedelta64(0)][0]
        raise DataValidationError(f"{where} has duplicate timestamps, first at {at}.")
    if (steps < np.timedelta64(0)).any():
        at = stamps[1:][steps < np.timedelta64(0)][0]
        raise DataValidationError(f"{where} is not sorted by 'ds': {at} comes after a later hour.")
    if (steps != ONE_HOUR).any():
        i = int(np.flatnonzero(steps != ONE_HOUR)[0])
        raise DataValidationError(
            f"{where} has irregular hours: {stamps[i]} is followed by {stamps[i + 1]}. "
            "List every hour; mark a missing observation with an empty 'y'."
        )
    if len(stamps) < min_length:
        raise DataValidationError(
            f"{where} has {len(stamps)} hours, shorter than one window ({min_length} = history + horizon)."
        )
