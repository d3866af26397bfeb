"""tools/mutation.py: the copy it mutates is what the tests import, and its report counts what mutmut found."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tools import mutation


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    return mutation.package_view(mutation.copy_checkout(tmp_path_factory.mktemp("mutation")))


def test_the_tests_run_in_the_copy_import_the_copys_code_not_the_checkouts(copy, repo):
    assert (copy / "modules" / "losses.py").read_text() == (repo / "modules" / "losses.py").read_text()
    probe = (
        "import anyquantile.modules.losses as m, anyquantile.model.metrics as n; print(m.__file__); print(n.__file__)"
    )
    # as mutmut runs them: in the copy, with the copy on the path (the editable install maps the checkout's)
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=copy,
        env={**os.environ, "PYTHONPATH": str(copy)},
        capture_output=True,
        text=True,
        check=True,
    )
    files = [Path(line).resolve() for line in done.stdout.split()]
    assert files == [(copy / "modules" / "losses.py").resolve(), (copy / "model" / "metrics.py").resolve()]


def fake_cache(folder, statuses):
    """mutmut's cache tables, with one mutant per status given, of modules/losses.py."""
    with sqlite3.connect(folder / ".mutmut-cache") as database:
        database.executescript(
            "CREATE TABLE sourcefile (id INTEGER PRIMARY KEY, filename TEXT);"
            "CREATE TABLE line (id INTEGER PRIMARY KEY, sourcefile INTEGER, line TEXT, line_number INTEGER);"
            "CREATE TABLE mutant (id INTEGER PRIMARY KEY, line INTEGER, status TEXT);"
            "INSERT INTO sourcefile VALUES (1, 'modules/losses.py'), (2, 'modules/other.py');"
            "INSERT INTO line VALUES (1, 1, 'x = 1', 0), (2, 2, 'y = 2', 0);"
        )
        database.executemany("INSERT INTO mutant (line, status) VALUES (1, ?)", [(status,) for status in statuses])
        database.execute("INSERT INTO mutant (line, status) VALUES (2, 'bad_survived')")  # another file's


def test_the_report_counts_each_status_and_refuses_an_unfinished_run(tmp_path, monkeypatch):
    monkeypatch.setattr(mutation.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, "- x\n+ y", ""))
    fake_cache(tmp_path, ["ok_killed", "ok_killed", "ok_suspicious", "bad_timeout", "bad_survived"])
    (report,) = mutation.collect(tmp_path, ["modules/losses.py"])
    assert (report.killed, report.timed_out, report.survived, report.mutants) == (3, 1, 1, 5)
    assert report.kill_rate == pytest.approx(4 / 5)
    assert [mutant for mutant, _ in report.survivors] == [5]
    table = mutation.markdown([report])
    assert "| modules/losses.py | test_losses.py | 5 | 3 | 1 | 1 | 80.0 % |" in table
    assert "Mutant 5:" in table and "+ y" in table

    (tmp_path / ".mutmut-cache").unlink()
    fake_cache(tmp_path, ["ok_killed", "untested"])
    with pytest.raises(SystemExit, match="did not finish"):
        mutation.collect(tmp_path, ["modules/losses.py"])
