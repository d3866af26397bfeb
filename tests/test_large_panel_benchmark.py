"""benchmarks/large_panels.py end to end at a tiny size: one table row per size with every column, and the
JSON records with every field (nothing here compares a time with anything)."""

from __future__ import annotations

import json
import math

from benchmarks import large_panels
from benchmarks.large_panels import COLUMNS, MARGINAL_COLUMNS, RECORD_FIELDS, split_dates

HOURS = 1200  # 50 days: val from day 37, test from day 43 (6 test windows per series)
TINY = ("model.num_blocks=2", "model.width=16", "dataset.batch_size=64", "dataset.eval_batch_size=4")
ARGS = ["--hours", str(HOURS), "--train-steps", "2"]


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def number(cell: str) -> float:
    return float(cell.lstrip("~").split(" (")[0].replace(",", ""))


def table(lines: list[str], columns: tuple[str, ...]) -> list[list[str]]:
    """The body rows of the table whose header is ``columns``."""
    start = lines.index("| " + " | ".join(columns) + " |")
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(cells(line))
    return rows


def test_two_sizes_in_process_give_a_row_each_and_json_records(tmp_path, capsys):
    out = tmp_path / "large.json"
    large_panels.main(["--series", "2", "4", *ARGS, "--in-process", "--json", str(out), *TINY])
    lines = capsys.readouterr().out.splitlines()

    rows = table(lines, COLUMNS)
    assert [row[0] for row in rows] == ["2", "4"]
    for row in rows:
        assert len(row) == len(COLUMNS), row
        values = [number(cell) for cell in row]
        assert all(math.isfinite(v) and v >= 0 for v in values), row
        assert row[1] == f"{HOURS:,}" and "(" not in row[3]  # every test window scored
        assert number(row[6]) > 0 and number(row[7]) > 0  # peak RSS, train samples/s
    marginal = table(lines, MARGINAL_COLUMNS)
    assert len(marginal) == 1 and marginal[0][0] == "2 → 4" and len(marginal[0]) == len(MARGINAL_COLUMNS)

    saved = json.loads(out.read_text())
    assert saved["benchmark"] == "large_panels"
    assert saved["settings"]["hours"] == HOURS and saved["settings"]["train_steps"] == 2
    assert saved["settings"]["eval_step"] == 24 and saved["settings"]["in_process"] is True
    records = saved["records"]
    assert [r["series"] for r in records] == [2, 4]
    for record in records:
        assert set(RECORD_FIELDS) <= set(record), set(RECORD_FIELDS) - set(record)
        assert record["train_steps"] == large_panels.WARMUP_STEPS + 2 and record["train_timed_steps"] == 2
        assert record["test_windows_scored"] == record["test_windows"] > 0
        assert record["peak_rss_mib"] >= record["peak_rss_mib_after_train"] >= record["peak_rss_mib_after_data"]
        assert math.isfinite(record["test_crps"])
    assert records[1]["train_windows"] > records[0]["train_windows"]


def test_a_size_in_its_own_process_with_a_bounded_evaluation(tmp_path, capsys):
    out = tmp_path / "child.json"
    large_panels.main(["--series", "3", *ARGS, "--eval-batches", "2", "--json", str(out), *TINY])
    rows = table(capsys.readouterr().out.splitlines(), COLUMNS)
    (record,) = json.loads(out.read_text())["records"]
    assert set(RECORD_FIELDS) <= set(record)
    assert record["test_windows"] > 8 and record["test_windows_scored"] == 8  # 2 batches of 4
    assert record["baseline_rss_mib"] > 0
    assert len(rows) == 1 and len(rows[0]) == len(COLUMNS) and rows[0][0] == "3"
    assert rows[0][3] == f"{record['test_windows']:,} (8)" and rows[0][10].startswith("~")  # extrapolated


def test_two_years_split_at_the_last_quarter():
    assert split_dates(large_panels.HOURS) == ("2016-07-01", "2016-09-30")
