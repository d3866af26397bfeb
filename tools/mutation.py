"""Mutation testing of the core maths (``make mutation``): do the tests fail when the code is broken?

    python -m tools.mutation [--files modules/losses.py ...] [--out docs/mutation.md] [--workdir DIR]

mutmut (2.x: it mutates a file in place and runs a test command) changes one operator, constant or
keyword at a time in each file of :data:`TARGETS` and runs that file's tests; a mutant the tests do
not fail on *survives*. The mutants are made in a copy of the checkout (the tracked files), which a
package view (``VIEW/anyquantile/<package>`` -> the copy's folders, first on ``PYTHONPATH``) makes
the ``anyquantile`` the tests import, so the checkout itself is never touched and other work on it
goes on. The report lists, per file, the mutants killed / survived / timed out and the kill rate, and
the survivors' diffs (``docs/mutation.md``, with the survivors judged equivalent said so by hand).
It takes tens of minutes: not part of ``make test``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tools.import_graph import INSTALLED

REPO = Path(__file__).resolve().parents[1]

# Each file and the tests that guard it (run with -x: a mutant dies at its first failing test).
TARGETS: dict[str, tuple[str, ...]] = {
    "modules/attention.py": ("tests/test_attention.py",),
    "modules/losses.py": ("tests/test_losses.py",),
    "modules/level_sampling.py": ("tests/test_level_sampling.py",),
    "modules/rearrangement.py": ("tests/test_rearrangement.py",),
    "model/metrics.py": ("tests/test_metrics.py", "tests/test_scoring.py"),
}


@dataclass
class FileReport:
    path: str
    killed: int = 0
    survived: int = 0
    timed_out: int = 0
    survivors: list[tuple[int, str]] = field(default_factory=list)  # (mutant id, diff)

    @property
    def mutants(self) -> int:
        return self.killed + self.survived + self.timed_out

    @property
    def kill_rate(self) -> float:
        """Killed or timed out (a mutant that makes the tests hang is caught) over all mutants."""
        return (self.killed + self.timed_out) / self.mutants if self.mutants else 0.0


def copy_checkout(destination: Path) -> Path:
    """The tracked files of the checkout, as they are in the working tree, under ``destination / "repo"``."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    root = destination / "repo"
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    return root


def package_view(copy: Path, destination: Path) -> Path:
    """A folder whose ``anyquantile`` package is the copy's code (as pyproject.toml's package-dir maps it)."""
    package = destination / "view" / "anyquantile"
    package.mkdir(parents=True)
    for entry in (copy / "anyquantile").iterdir():
        (package / entry.name).symlink_to(entry)
    for name in (*INSTALLED, "config"):
        (package / name).symlink_to(copy / name)
    return package.parent


def run_mutmut(copy: Path, view: Path, path: str, tests: tuple[str, ...]) -> None:
    runner = f"{sys.executable} -m pytest -x -q -p no:cacheprovider {' '.join(tests)}"
    environment = {**os.environ, "PYTHONPATH": str(view)}
    command = [sys.executable, "-m", "mutmut", "run", "--paths-to-mutate", path, "--runner", runner]
    command += ["--tests-dir", "tests", "--simple-output", "--no-progress"]
    print(f"mutmut: {path} against {', '.join(tests)}", flush=True)
    done = subprocess.run(command, cwd=copy, env=environment, capture_output=True, text=True)
    if done.returncode & 1:  # bit 1: a fatal error (the unmutated tests failed, say); 2, 4, 8: survivors
        raise SystemExit(f"mutmut failed on {path}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def collect(copy: Path, paths: list[str]) -> list[FileReport]:
    """Each file's mutants by status, read from mutmut's cache (a SQLite file), and the survivors' diffs."""
    reports = {path: FileReport(path) for path in paths}
    query = (
        "SELECT sourcefile.filename, mutant.id, mutant.status FROM mutant "
        "JOIN line ON mutant.line = line.id JOIN sourcefile ON line.sourcefile = sourcefile.id ORDER BY mutant.id"
    )
    with sqlite3.connect(copy / ".mutmut-cache") as database:
        rows = database.execute(query).fetchall()
    for path, mutant, status in rows:
        report = reports.get(path)
        if report is None:
            continue
        if status in ("ok_killed", "ok_suspicious"):  # suspicious: killed, but the tests took long
            report.killed += 1
        elif status == "bad_timeout":
            report.timed_out += 1
        elif status == "bad_survived":
            report.survived += 1
            show = subprocess.run(
                [sys.executable, "-m", "mutmut", "show", str(mutant)], cwd=copy, capture_output=True, text=True
            )
            report.survivors.append((mutant, show.stdout.strip()))
        else:  # untested or skipped: the run did not finish; a report must not count them as killed
            raise SystemExit(f"{path}: mutant {mutant} is '{status}': rerun, the mutation run did not finish")
    return list(reports.values())


def markdown(reports: list[FileReport]) -> str:
    total = FileReport("all")
    for report in reports:
        total.killed += report.killed
        total.survived += report.survived
        total.timed_out += report.timed_out
    lines = [
        "| file | tests | mutants | killed | timed out | survived | kill rate |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for report in [*reports, total]:
        tests = ", ".join(Path(test).name for test in TARGETS.get(report.path, ()))
        lines.append(
            f"| {report.path} | {tests} | {report.mutants} | {report.killed} | {report.timed_out} | "
            f"{report.survived} | {100 * report.kill_rate:.1f} % |"
        )
    for report in reports:
        if report.survivors:
            lines += ["", f"### Survivors in {report.path}", ""]
            for mutant, diff in report.survivors:
                lines += [f"Mutant {mutant}:", "", "```diff", diff, "```", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    parser.add_argument("--out", type=Path, help="write the report (Markdown) here as well as printing it")
    parser.add_argument("--workdir", type=Path, help="where the copy is made (default: a temporary folder)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="anyquantile-mutation-"))
    copy = copy_checkout(workdir)
    view = package_view(copy, workdir)
    for path in args.files:
        run_mutmut(copy, view, path, TARGETS[path])
    report = markdown(collect(copy, args.files))
    print(report)
    if args.out:
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
