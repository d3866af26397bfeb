"""Reading and validating long-format hourly files: round trips and every kind of bad input."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pandas as pd
import pytest

from anyquantile.dataset.loader import DataValidationError, load_hourly_panel, panel_from_frame

HEADER = "unique_id,ds,y\n"


def write_csv(path, rows: list[str], header: str = HEADER):
    path.write_text(header + "".join(row + "\n" for row in rows))
    return path


def hours(start: str, count: int) -> list[str]:
    return [str(t) for t in pd.date_range(start, periods=count, freq="h")]


@pytest.fixture
def long_frame() -> pd.DataFrame:
    """Two series, 'north' (5 hours from 00:00, one gap) and 'south' (4 hours from 02:00)."""
    north = pd.DataFrame(
        {
            "unique_id": "north",
            "ds": pd.date_range("2021-03-01 00:00", periods=5, freq="h"),
            "y": [10.5, np.nan, 12.25, 13.0, 14.0],
        }
    )
    south = pd.DataFrame(
        {
            "unique_id": "south",
            "ds": pd.date_range("2021-03-01 02:00", periods=4, freq="h"),
            "y": [-1.0, 2.5, np.nan, 4.0],
        }
    )
    return pd.concat([north, south], ignore_index=True)


def expected_grid() -> tuple[pd.DatetimeIndex, np.ndarray]:
    timestamps = pd.date_range("2021-03-01 00:00", periods=6, freq="h")
    values = np.array(
        [
            [10.5, np.nan, 12.25, 13.0, 14.0, np.nan],
            [np.nan, np.nan, -1.0, 2.5, np.nan, 4.0],
        ],
        dtype=np.float32,
    )
    return timestamps, values


def check_expected_panel(panel) -> None:
    timestamps, values = expected_grid()
    assert panel.series_ids == ("north", "south")
    assert panel.timestamps.equals(timestamps)
    assert panel.values.dtype == np.float32
    np.testing.assert_array_equal(panel.values, values)  # NaN compares equal to NaN here
    assert np.isnan(panel.values[0, 1]) and np.isnan(panel.values[1, 4])


def frame_to_csv_text(frame: pd.DataFrame) -> str:
    lines = [HEADER.strip()]
    for row in frame.itertuples(index=False):
        y = "" if np.isnan(row.y) else repr(float(row.y))
        lines.append(f"{row.unique_id},{row.ds:%Y-%m-%d %H:%M:%S},{y}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Valid files round-trip
# --------------------------------------------------------------------------------------------


def test_csv_round_trip(tmp_path, long_frame):
    path = tmp_path / "load.csv"
    path.write_text(frame_to_csv_text(long_frame))
    check_expected_panel(load_hourly_panel(path))


def test_csv_gz_round_trip(tmp_path, long_frame):
    path = tmp_path / "load.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(frame_to_csv_text(long_frame))
    check_expected_panel(load_hourly_panel(path))


def test_parquet_round_trip(tmp_path, long_frame):
    path = tmp_path / "load.parquet"
    long_frame.to_parquet(path)
    check_expected_panel(load_hourly_panel(str(path)))


def test_parquet_round_trip_of_to_long_frame(tmp_path, long_frame):
    """panel -> to_long_frame -> parquet -> panel gives the same panel back."""
    panel = panel_from_frame(long_frame)
    path = tmp_path / "again.parquet"
    panel.to_long_frame().to_parquet(path)
    again = load_hourly_panel(path)
    assert again.series_ids == panel.series_ids
    assert again.timestamps.equals(panel.timestamps)
    np.testing.assert_array_equal(again.values, panel.values)


def test_rows_of_series_may_be_interleaved(tmp_path):
    rows = []
    for a, b in zip(hours("2020-01-01", 3), hours("2020-01-01", 3)):
        rows += [f"b,{b},2", f"a,{a},1"]
    panel = load_hourly_panel(write_csv(tmp_path / "mixed.csv", rows))
    assert panel.series_ids == ("a", "b")
    np.testing.assert_array_equal(panel.values, [[1, 1, 1], [2, 2, 2]])


def test_series_with_different_spans_share_one_grid_with_nan_outside(tmp_path):
    rows = [f"early,{t},{i}" for i, t in enumerate(hours("2020-01-01 00:00", 4))]
    rows += [f"late,{t},{100 + i}" for i, t in enumerate(hours("2020-01-01 03:00", 5))]
    panel = load_hourly_panel(write_csv(tmp_path / "spans.csv", rows))
    assert panel.series_ids == ("early", "late")
    assert panel.timestamps.equals(pd.date_range("2020-01-01 00:00", "2020-01-01 07:00", freq="h"))
    nan = np.nan
    np.testing.assert_array_equal(
        panel.values,
        np.array([[0, 1, 2, 3, nan, nan, nan, nan], [nan, nan, nan, 100, 101, 102, 103, 104]], dtype=np.float32),
    )
    assert panel.hour_index("2020-01-01 03:00") == 3


def test_empty_y_is_kept_as_nan_and_never_filled(tmp_path):
    rows = [f"s,{t},{y}" for t, y in zip(hours("2020-01-01", 5), ["", "2", " ", "", "5"])]
    panel = load_hourly_panel(write_csv(tmp_path / "gaps.csv", rows))
    np.testing.assert_array_equal(np.isnan(panel.values[0]), [True, False, True, True, False])
    np.testing.assert_array_equal(panel.values[0, [1, 4]], [2, 5])


def test_min_length_equal_to_series_length_is_accepted(tmp_path):
    rows = [f"s,{t},1" for t in hours("2020-01-01", 4)]
    panel = load_hourly_panel(write_csv(tmp_path / "ok.csv", rows), min_length=4)
    assert panel.num_hours == 4


# --------------------------------------------------------------------------------------------
# Bad input: DataValidationError naming the series and the problem
# --------------------------------------------------------------------------------------------


def good_rows(series: str, count: int = 4, start: str = "2020-01-01") -> list[str]:
    return [f"{series},{t},{i}" for i, t in enumerate(hours(start, count))]


def test_missing_columns(tmp_path):
    path = tmp_path / "columns.csv"
    path.write_text("unique_id,timestamp,value\nhouse_7,2020-01-01 00:00,1\n")
    with pytest.raises(DataValidationError, match=r"missing column.*'ds'.*'y'") as error:
        load_hourly_panel(path)
    assert "columns.csv" in str(error.value)
    assert "timestamp" in str(error.value)  # the columns found are listed too


def test_missing_column_in_frame():
    frame = pd.DataFrame({"unique_id": ["a"], "y": [1.0]})
    with pytest.raises(DataValidationError, match=r"missing column.*'ds'"):
        panel_from_frame(frame)


def test_unparseable_timestamp(tmp_path):
    rows = good_rows("ok_series") + ["feeder_3,2020-01-01 00:00,1", "feeder_3,not-a-date,2"]
    with pytest.raises(DataValidationError, match=r"series 'feeder_3'.*unparseable timestamp.*not-a-date"):
        load_hourly_panel(write_csv(tmp_path / "ts.csv", rows))


def test_empty_timestamp_is_unparseable(tmp_path):
    rows = ["feeder_4,2020-01-01 00:00,1", "feeder_4,,2"]
    with pytest.raises(DataValidationError, match=r"series 'feeder_4'.*unparseable timestamp"):
        load_hourly_panel(write_csv(tmp_path / "ts.csv", rows))


def test_duplicate_timestamps(tmp_path):
    rows = good_rows("fine") + [
        "dup_series,2020-01-01 00:00,1",
        "dup_series,2020-01-01 01:00,2",
        "dup_series,2020-01-01 01:00,3",
        "dup_series,2020-01-01 02:00,4",
    ]
    with pytest.raises(DataValidationError, match=r"series 'dup_series'.*duplicate timestamps.*2020-01-01T01:00"):
        load_hourly_panel(write_csv(tmp_path / "dup.csv", rows))


def test_unsorted_hours(tmp_path):
    rows = ["messy,2020-01-01 00:00,1", "messy,2020-01-01 02:00,3", "messy,2020-01-01 01:00,2"]
    with pytest.raises(DataValidationError, match=r"series 'messy'.*not sorted"):
        load_hourly_panel(write_csv(tmp_path / "unsorted.csv", rows + good_rows("zz_fine")))


def test_irregular_hours_gap_of_two_hours(tmp_path):
    rows = ["gappy,2020-01-01 00:00,1", "gappy,2020-01-01 01:00,2", "gappy,2020-01-01 03:00,3"]
    with pytest.raises(
        DataValidationError, match=r"series 'gappy'.*irregular hours.*2020-01-01T01:00.*2020-01-01T03:00"
    ):
        load_hourly_panel(write_csv(tmp_path / "gap.csv", good_rows("aa_fine") + rows))


def test_timestamp_not_on_the_hour(tmp_path):
    rows = ["halfhour,2020-01-01 00:00,1", "halfhour,2020-01-01 00:30,2", "halfhour,2020-01-01 01:00,3"]
    with pytest.raises(DataValidationError, match=r"series 'halfhour'.*not on the hour.*00:30"):
        load_hourly_panel(write_csv(tmp_path / "offhour.csv", rows))


def test_whole_series_shifted_off_the_hour(tmp_path):
    rows = [f"shifted,{t},1" for t in pd.date_range("2020-01-01 00:15", periods=3, freq="h")]
    with pytest.raises(DataValidationError, match=r"series 'shifted'.*not on the hour"):
        load_hourly_panel(write_csv(tmp_path / "shifted.csv", rows))


def test_non_numeric_value(tmp_path):
    rows = ["meter_9,2020-01-01 00:00,1.5", "meter_9,2020-01-01 01:00,12kW"]
    with pytest.raises(DataValidationError, match=r"series 'meter_9'.*non-numeric value '12kW'"):
        load_hourly_panel(write_csv(tmp_path / "text.csv", good_rows("fine") + rows))


def test_non_numeric_value_in_frame():
    frame = pd.DataFrame({"unique_id": ["s1", "s1"], "ds": hours("2020-01-01", 2), "y": ["3", "three"]})
    with pytest.raises(DataValidationError, match=r"series 's1'.*non-numeric"):
        panel_from_frame(frame)


def test_series_shorter_than_min_length(tmp_path):
    rows = good_rows("long_one", 6) + good_rows("stub", 3)
    with pytest.raises(DataValidationError, match=r"series 'stub' has 3 hours, shorter than one window \(5"):
        load_hourly_panel(write_csv(tmp_path / "short.csv", rows), min_length=5)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(DataValidationError, match=r"empty\.csv.*empty"):
        load_hourly_panel(path)


def test_empty_gz_file(tmp_path):
    path = tmp_path / "empty.csv.gz"
    with gzip.open(path, "wb"):
        pass
    with pytest.raises(DataValidationError, match=r"empty"):
        load_hourly_panel(path)


def test_header_only_file(tmp_path):
    path = write_csv(tmp_path / "header.csv", [])
    with pytest.raises(DataValidationError, match=r"header\.csv.*no rows"):
        load_hourly_panel(path)


def test_empty_parquet(tmp_path):
    path = tmp_path / "none.parquet"
    pd.DataFrame(
        {
            "unique_id": pd.Series([], dtype=str),
            "ds": pd.Series([], dtype="datetime64[ns]"),
            "y": pd.Series([], dtype=float),
        }
    ).to_parquet(path)
    with pytest.raises(DataValidationError, match=r"no rows"):
        load_hourly_panel(path)


@pytest.mark.parametrize("name", ["load.xlsx", "load.json", "load.csv.zip", "load"])
def test_unsupported_suffix(tmp_path, name):
    path = tmp_path / name
    path.write_text(HEADER + "a,2020-01-01 00:00,1\n")
    with pytest.raises(DataValidationError, match=r"unsupported file type"):
        load_hourly_panel(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.csv"
    with pytest.raises(DataValidationError, match=re.escape(str(path)) + r".*no such file"):
        load_hourly_panel(path)


def test_validation_error_is_a_value_error():
    assert issubclass(DataValidationError, ValueError)


def test_offsets_across_a_daylight_saving_change_map_to_one_utc_clock():
    frame = pd.DataFrame(
        {
            "unique_id": ["a"] * 3,
            "ds": ["2020-03-29 00:00+01:00", "2020-03-29 01:00+01:00", "2020-03-29 03:00+02:00"],
            "y": ["1", "2", "3"],
        }
    )
    panel = panel_from_frame(frame, source="load.csv")
    assert list(panel.timestamps) == list(pd.date_range("2020-03-28 23:00", periods=3, freq="h"))
    np.testing.assert_array_equal(panel.values[0], [1, 2, 3])


def test_missing_series_name():
    frame = pd.DataFrame({"unique_id": ["a", None], "ds": ["2020-01-01 00:00", "2020-01-01 01:00"], "y": [1.0, 2.0]})
    with pytest.raises(DataValidationError, match=r"row 1 has no 'unique_id'"):
        panel_from_frame(frame, source="ids.parquet")


@pytest.mark.parametrize("bad", ["inf", "-inf"])
def test_infinite_value(tmp_path, bad):
    path = write_csv(tmp_path / "inf.csv", [f"east,{h},{v}" for h, v in zip(hours("2021-01-01", 3), ["1", bad, "3"])])
    with pytest.raises(DataValidationError, match=r"series 'east' has an infinite value"):
        load_hourly_panel(path)
