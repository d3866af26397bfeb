"""Property tests of the long-format loader: whatever frame it is given, ``panel_from_frame`` loads it or refuses
it with its own :class:`DataValidationError` (what the CLI, the API and the server report), never another error;
and a well-formed frame loads exactly as given."""

from __future__ import annotations

import datetime
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from anyquantile.dataset.loader import DataValidationError, panel_from_frame
from anyquantile.dataset.panel import HourlyPanel

# Reproducible (the same examples every run, no example database written into the repository) and bounded:
# each property runs in about a second.
SETTINGS = settings(
    max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu")  # +5:30, +5:45 too
EPOCH_HOUR_2021 = int(np.datetime64("2021-03-01T00", "h").astype(np.int64))
EARLIEST, LATEST = pd.Timestamp("1677-09-22"), pd.Timestamp("2262-04-11")  # pandas' nanosecond clock, in hours
FLOAT32 = st.floats(width=32, allow_nan=True, allow_infinity=False)


@st.composite
def series_hours(draw, years: int = 2) -> dict[str, tuple[int, list[float]]]:
    """1 to 3 series: name -> (first hour since the epoch, values), each hourly without a gap in the stamps;
    they start within two days of each other, somewhere within ``years`` of 2021."""
    names = draw(st.lists(st.sampled_from(["a", "b", "north", "7", "ü"]), min_size=1, max_size=3, unique=True))
    base = EPOCH_HOUR_2021 + draw(st.integers(-years * 8766, years * 8766))
    return {
        name: (base + draw(st.integers(-48, 48)), draw(st.lists(FLOAT32, min_size=1, max_size=8))) for name in names
    }


def rows_of(series: dict[str, tuple[int, list[float]]], interleave: bool, draw) -> list[tuple[str, int, float]]:
    """(name, hour, value) rows; each series' rows in order, the series' rows interleaved or not."""
    per_series = [[(name, first + i, v) for i, v in enumerate(values)] for name, (first, values) in series.items()]
    if not interleave:
        return [row for rows in per_series for row in rows]
    merged, queues = [], [list(rows) for rows in per_series]
    while any(queues):
        queue = draw(st.sampled_from([q for q in queues if q]))
        merged.append(queue.pop(0))
    return merged


def stamps_as(hours: np.ndarray, kind: str, zone: str) -> pd.Series | list:
    """The UTC hours ``hours`` [n] (int, since the epoch) written as a ``ds`` column of ``kind``."""
    utc = pd.Series(hours.astype("datetime64[h]").astype("datetime64[s]"))
    if kind == "naive":
        return utc
    if kind == "text":
        return [str(t) for t in utc]
    aware = utc.dt.tz_localize("UTC").dt.tz_convert(zone)
    if kind == "aware":
        return aware
    return [t.isoformat() for t in aware]  # text with an offset


@given(
    series=series_hours(years=600),  # some of them outside the years the loader's clock holds
    interleave=st.booleans(),
    kind=st.sampled_from(["naive", "text", "aware", "offset_text"]),
    zone=st.sampled_from(ZONES),
    data=st.data(),
)
@SETTINGS
def test_a_well_formed_frame_loads_exactly_as_given_or_is_refused_as_out_of_range(series, interleave, kind, zone, data):
    rows = rows_of(series, interleave, data.draw)
    hours = np.array([hour for _, hour, _ in rows], dtype=np.int64)
    first, last = (pd.Timestamp(np.datetime64(int(h), "h")) for h in (hours.min(), hours.max()))
    in_range = EARLIEST <= first and last <= LATEST
    if kind in ("aware", "offset_text") and not (in_range and first.year >= 1970):
        kind = "text"  # zones in years of whole-minute offsets (before 1893 Berlin was +00:53:28, local mean time)
    frame = pd.DataFrame(
        {
            "unique_id": [name for name, _, _ in rows],
            "ds": stamps_as(hours, kind, zone),
            "y": np.array([v for _, _, v in rows], dtype=np.float32),
        }
    )
    if not in_range:
        event("refused: out of range")
        with pytest.raises(DataValidationError, match="outside the supported range"):
            panel_from_frame(frame)
        return
    event(f"loaded: {kind}")
    panel = panel_from_frame(frame)
    assert panel.series_ids == tuple(sorted(series))
    assert list(panel.timestamps) == list(pd.date_range(first, last, freq="h"))
    expected = np.full((len(series), len(panel.timestamps)), np.nan, dtype=np.float32)
    for row, name in enumerate(panel.series_ids):
        start, values = series[name]
        offset = start - int(hours.min())
        expected[row, offset : offset + len(values)] = values
    np.testing.assert_array_equal(panel.values, expected)  # NaN where NaN, never filled in


JUNK_VALUES = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["", " ", "nan", "NA", "inf", "-Infinity", "1e999", "1,5", "12 kW", "0x1f", "None"]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.none(),
    st.just(complex(1, 2)),
    st.just(b"1"),
    st.just([1.0]),
    st.just(pd.Timestamp("2021-01-01")),
    st.just(pd.Timedelta(hours=1)),
)
JUNK_STAMPS = st.one_of(
    st.text(max_size=8),
    st.sampled_from(
        [
            "",
            "2021-13-01 00:00",
            "2021-03-01 00:30",
            "2021-03-01 00:00:01",
            "2021-03-01T00:00+05:30",
            "9999-12-31 23:00",
            "0001-01-01 00:00",
            "1677-09-21 00:00",
            "2262-04-12 00:00",
            "yesterday",
            "NaT",
            "1614556800",
        ]
    ),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.booleans(),
    st.just(pd.NaT),
    st.just(pd.Timestamp("2021-03-01 02:00", tz="Asia/Kolkata")),
    st.just(pd.Timestamp("2021-03-01 02:00", tz="UTC")),
    st.just(datetime.date(2021, 3, 1)),
    st.just(pd.Timedelta(hours=2)),
    st.just(pd.Period("2021-03-01 00:00", freq="h")),
)
JUNK_IDS = st.one_of(
    st.sampled_from(["", " ", "a", "b"]), st.none(), st.just(float("nan")), st.integers(0, 3), st.just(("a",))
)


def _to_object(frame: pd.DataFrame, column: str) -> None:
    frame[column] = frame[column].astype(object)


@st.composite
def malformed_frames(draw) -> pd.DataFrame:
    """A small well-formed frame with 1 to 4 things done to it, each a way a real file goes wrong."""
    rows = rows_of(draw(series_hours()), draw(st.booleans()), draw)
    hours = np.array([hour for _, hour, _ in rows], dtype=np.int64)
    frame = pd.DataFrame(
        {
            "unique_id": [name for name, _, _ in rows],
            "ds": stamps_as(hours, draw(st.sampled_from(["naive", "text", "aware", "offset_text"])), "Europe/Berlin"),
            "y": [v for _, _, v in rows],
        }
    )
    for action in draw(st.lists(st.sampled_from(list(ACTIONS)), min_size=1, max_size=4)):
        frame = ACTIONS[action](frame, draw)
    return frame


def _cell(frame: pd.DataFrame, draw, column: str, junk: st.SearchStrategy) -> pd.DataFrame:
    if column not in frame.columns or len(frame) == 0 or isinstance(frame[column], pd.DataFrame):
        return frame
    frame = frame.copy()
    _to_object(frame, column)
    frame.iloc[draw(st.integers(0, len(frame) - 1)), list(frame.columns).index(column)] = draw(junk)
    return frame


def _rows(frame: pd.DataFrame, draw, how: str) -> pd.DataFrame:
    if len(frame) == 0:
        return frame
    i = draw(st.integers(0, len(frame) - 1))
    if how == "duplicate":
        return pd.concat([frame.iloc[: i + 1], frame.iloc[i:]], ignore_index=True)
    if how == "drop":
        return frame.drop(index=frame.index[i]).reset_index(drop=True)
    order = draw(st.permutations(range(len(frame))))
    return frame.iloc[list(order)].reset_index(drop=True)


def _retype(frame: pd.DataFrame, draw, column: str) -> pd.DataFrame:
    if column not in frame.columns or isinstance(frame[column], pd.DataFrame):
        return frame
    frame = frame.copy()
    n = len(frame)
    kinds = {
        "ds": [
            lambda: np.arange(n, dtype=np.int64),
            lambda: np.linspace(0.0, 1.0, n),
            lambda: np.ones(n, dtype=bool),
            lambda: pd.to_timedelta(np.arange(n), unit="h"),
            lambda: pd.Categorical(frame["ds"].astype(str)),
            lambda: pd.period_range("2021-03-01", periods=n, freq="h"),
            lambda: pd.date_range("2021-03-01", periods=n, freq="min"),  # not hourly
            lambda: pd.date_range("2021-03-01", periods=n, freq="D"),  # not hourly
            lambda: [
                pd.Timestamp("2021-03-01 00:00", tz="UTC") if i % 2 else pd.Timestamp("2021-03-01") for i in range(n)
            ],
        ],
        "y": [
            lambda: frame["y"].astype(str),
            lambda: frame["y"].astype(object),
            lambda: np.array(frame["y"], dtype=np.complex128),
            lambda: np.ones(n, dtype=bool),
            lambda: pd.array([None] * n, dtype="Int64"),
            lambda: pd.Categorical(frame["y"].astype(str)),
            lambda: pd.date_range("2021-03-01", periods=n, freq="h"),
            lambda: np.full(n, 1e300),  # beyond float32
        ],
        "unique_id": [
            lambda: np.arange(n),
            lambda: np.zeros(n),
            lambda: pd.Categorical(frame["unique_id"]),
            lambda: [None] * n,
        ],
    }[column]
    frame[column] = draw(st.sampled_from(kinds))()
    return frame


def _drop_column(frame: pd.DataFrame, draw) -> pd.DataFrame:
    return frame.drop(columns=draw(st.sampled_from(list(frame.columns)))) if len(frame.columns) else frame


def _duplicate_column(frame: pd.DataFrame, draw) -> pd.DataFrame:
    if not len(frame.columns):
        return frame
    column = draw(st.sampled_from(list(dict.fromkeys(frame.columns))))
    return pd.concat([frame, frame[[column]]], axis=1)


def _rename_column(frame: pd.DataFrame, draw) -> pd.DataFrame:
    if not len(frame.columns):
        return frame
    column = draw(st.sampled_from(list(dict.fromkeys(frame.columns))))
    return frame.rename(columns={column: draw(st.sampled_from(["Y", "ds ", "id", "timestamp", 0]))})


def _empty(frame: pd.DataFrame, draw) -> pd.DataFrame:
    return draw(st.sampled_from([frame.iloc[:0], pd.DataFrame(), pd.DataFrame({"unique_id": [], "ds": [], "y": []})]))


ACTIONS = {
    "junk y": lambda f, draw: _cell(f, draw, "y", JUNK_VALUES),
    "junk ds": lambda f, draw: _cell(f, draw, "ds", JUNK_STAMPS),
    "junk id": lambda f, draw: _cell(f, draw, "unique_id", JUNK_IDS),
    "duplicate row": lambda f, draw: _rows(f, draw, "duplicate"),
    "drop row": lambda f, draw: _rows(f, draw, "drop"),
    "shuffle rows": lambda f, draw: _rows(f, draw, "shuffle"),
    "retype ds": lambda f, draw: _retype(f, draw, "ds"),
    "retype y": lambda f, draw: _retype(f, draw, "y"),
    "retype id": lambda f, draw: _retype(f, draw, "unique_id"),
    "drop column": _drop_column,
    "duplicate column": _duplicate_column,
    "rename column": _rename_column,
    "empty": _empty,
}


REFUSAL_DETAILS = re.compile(r"'.*?'|\d+|\[.*\]|\(.*\)")  # names, numbers, lists: what varies in a refusal


@given(frame=malformed_frames(), min_length=st.integers(1, 10))
@SETTINGS
def test_a_malformed_frame_loads_or_is_refused_with_the_loaders_own_error(frame, min_length):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas' and numpy's own warnings on odd dtypes are not the question
        try:
            panel = panel_from_frame(frame, min_length=min_length, source="bad.csv")
        except DataValidationError as error:
            assert str(error).startswith("bad.csv: ")  # every refusal names the source
            event("refused: " + REFUSAL_DETAILS.sub("_", str(error))[:60])  # --hypothesis-show-statistics
            return
    event("loaded")
    assert isinstance(panel, HourlyPanel)
    assert panel.values.dtype == np.float32 and not np.isinf(panel.values).any()
    assert panel.values.shape == (len(panel.series_ids), len(panel.timestamps)) and len(panel.series_ids) >= 1
    assert len(set(panel.series_ids)) == len(panel.series_ids)
    assert (np.diff(panel.timestamps.to_numpy()) == np.timedelta64(1, "h")).all()
    assert int((~np.isnan(panel.values)).sum()) <= len(frame)  # one value per row at most, nothing filled in


# -- what the properties found, pinned ------------------------------------------------------------------------


@pytest.mark.parametrize("column", ["unique_id", "ds", "y"])
def test_a_column_given_twice_is_refused(column):
    """``frame[name]`` of a repeated name is a frame, not a column: it raised AttributeError before."""
    frame = pd.DataFrame({"unique_id": ["a", "a"], "ds": ["2021-03-01 00:00", "2021-03-01 01:00"], "y": [1.0, 2.0]})
    frame = pd.concat([frame, frame[[column]]], axis=1)
    with pytest.raises(DataValidationError, match=rf"bad.csv: column\(s\) \['{column}'\] appear more than once"):
        panel_from_frame(frame, source="bad.csv")


@pytest.mark.parametrize("stamp", ["2300-01-01 00:00", "1600-01-01 00:00", "9999-12-31 22:00"])
def test_a_timestamp_beyond_the_nanosecond_clock_is_refused_as_such(stamp):
    """Such a stamp wrapped around on the conversion to nanoseconds, and was reported at an hour not in the file."""
    hours = [str(t) for t in pd.date_range(stamp, periods=2, freq="h", unit="s")]
    frame = pd.DataFrame({"unique_id": ["a", "a"], "ds": hours, "y": [1.0, 2.0]})
    with pytest.raises(DataValidationError, match=rf"'{hours[0]}' \(row 0\) outside the supported range 1677-09-22"):
        panel_from_frame(frame, source="bad.csv")


def test_complex_values_are_refused_not_cut_to_their_real_part():
    ds = pd.date_range("2021-03-01", periods=2, freq="h")
    frame = pd.DataFrame({"unique_id": ["a", "a"], "ds": ds, "y": np.array([1 + 2j, 3 + 0j])})
    with pytest.raises(DataValidationError, match=r"series 'a' has a non-numeric value .*\(1\+2j\) in 'y' \(row 0\)"):
        panel_from_frame(frame, source="bad.csv")
