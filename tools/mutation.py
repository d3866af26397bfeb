"""Mutation testing of the core maths (``make mutation``): do the tests fail when the code is broken?

    python -m tools.mutation [--files modules/losses.py ...] [--jobs 2] [--out FILE] [--workdir DIR]
    python -m tools.mutation --workdir DIR --rerun-survivors [--out FILE]   # after adding tests

mutmut (2.x: it mutates a file in place and runs a test command) changes one operator, constant,
keyword or name at a time in each file of :data:`TARGETS` and runs that file's tests; a mutant the
tests do not fail on *survives*. The mutants are made in a copy of the checkout (its tracked files),
whose ``anyquantile`` folder links the package's folders (``anyquantile/modules`` -> ``modules/``, as
pyproject.toml maps them) so that the tests, run in the copy, import the copy's code: the checkout
itself is never touched and other work on it goes on. The report lists, per file, the mutants killed /
timed out / survived and the kill rate, and the survivors' diffs (``docs/records/mutation.md``; read
in ``docs/mutation.md``, where the survivors judged equivalent are said so by hand). It takes tens of
minutes: not part of ``make test``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from tools.import_graph import INSTALLED

REPO = Path(__file__).resolve().parents[1]

# mutmut 2.5.1 hung three times here (its mutant queue's feeder blocked writing to a pipe its worker did not
# read) in the machinery that replaces the worker after every 100 mutants (CYCLE_PROCESS_AFTER). With one
# worker for the whole run it has not hung since; that this is the cause is not proven.
MUTMUT = (
    "import sys, mutmut; mutmut.CYCLE_PROCESS_AFTER = 10**9; "
    "from mutmut.__main__ import climain; sys.argv[0] = 'mutmut'; climain()"
)

# The tests, their output dropped and every failure made exit status 1 (see run_mutmut).
PYTEST_QUIETLY = (
    "import os, sys, pytest; quiet = os.open(os.devnull, os.O_WRONLY); os.dup2(quiet, 1); os.dup2(quiet, 2); "
    "sys.exit(0 if pytest.main(sys.argv[1:]) == 0 else 1)"
)

# Left out by default: the wording of strings (error messages, docstrings), which is not behaviour; a string
# that is behaviour (a choice's name, a key) is read by the tests through the code that uses it.
DISABLED = "string,fstring"

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


def copy_tracked(root: Path, under: str = ".") -> None:
    """The checkout's tracked files (below ``under``), as they are in the working tree, into ``root``."""
    listed = subprocess.run(["git", "ls-files", "-z", under], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)


def copy_checkout(destination: Path) -> Path:
    """The tracked files of the checkout, as they are in the working tree, under ``destination / "repo"``."""
    root = destination / "repo"
    copy_tracked(root)
    return root


def package_view(copy: Path) -> Path:
    """Make the copy's ``anyquantile`` folder the whole package (as pyproject.toml's package-dir maps it):
    ``anyquantile/<package>`` -> the copy's ``<package>/``. The copy's root is first on the tests' path
    (pytest's ``pythonpath``, the working folder), so ``anyquantile.modules`` is then the copy's code and
    never the checkout's, which the editable install would give for a package the folder lacks."""
    for name in (*INSTALLED, "config"):
        link = copy / "anyquantile" / name
        if not link.exists():
            link.symlink_to(Path("..") / name)
    return copy


def survivors(copy: Path) -> list[tuple[str, int]]:
    """The (file, mutant id) pairs that survived in a copy's mutmut cache."""
    query = (
        "SELECT sourcefile.filename, mutant.id FROM mutant JOIN line ON mutant.line = line.id "
        "JOIN sourcefile ON line.sourcefile = sourcefile.id WHERE mutant.status = 'bad_survived' ORDER BY mutant.id"
    )
    with sqlite3.connect(copy / ".mutmut-cache") as database:
        return [(path, int(mutant)) for path, mutant in database.execute(query).fetchall()]


def rerun_survivors(copy: Path, disabled: str | None) -> None:
    """Run each surviving mutant of a finished run again, against the checkout's tests as they are now
    (copied into the copy first): what new tests kill is then reported killed."""
    copy_tracked(copy, "tests")
    for path, mutant in survivors(copy):
        run_mutmut(copy, path, TARGETS[path], disabled, mutant)


def _mutated_in(copy: Path, path: str) -> bool:
    with sqlite3.connect(copy / ".mutmut-cache") as database:
        return bool(database.execute("SELECT 1 FROM sourcefile WHERE filename = ?", (path,)).fetchone())


def run_mutmut(copy: Path, path: str, tests: tuple[str, ...], disabled: str | None, mutant: int | None = None) -> None:
    # mutmut 2 counts a mutant killed only when the command exits 1; pytest exits 2 when the mutant breaks
    # the import (a collection error) and 5 when nothing ran: every failure is made a 1. The output is
    # dropped: mutmut needs the exit status alone, and a long traceback filled its pipe and hung it.
    # pytest itself is the process mutmut starts, so that a timed-out mutant's tests are the ones killed.
    arguments = ["-x", "-q", "-p", "no:cacheprovider", *tests]
    runner = f'{sys.executable} -c "{PYTEST_QUIETLY}" ' + " ".join(arguments)
    environment = {**os.environ, "PYTHONPATH": str(copy), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", MUTMUT, "run", *([str(mutant)] if mutant else []), "--paths-to-mutate", path]
    command += ["--runner", runner]
    command += ["--tests-dir", "tests", "--simple-output", "--no-progress"]
    if disabled:
        command += ["--disable-mutation-types", disabled]
    print(f"mutmut: {path}{f' mutant {mutant}' if mutant else ''} against {', '.join(tests)}", flush=True)
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


def markdown(reports: list[FileReport], disabled: str | None = None) -> str:
    total = FileReport("all")
    for report in reports:
        total.killed += report.killed
        total.survived += report.survived
        total.timed_out += report.timed_out
    lines = [
        f"mutmut {version('mutmut')}; mutation types left out: {disabled or 'none'}",
        "",
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


def mutate_group(workdir: Path, paths: list[str], disabled: str | None) -> list[FileReport]:
    """Mutate ``paths`` one after another in a copy of their own (under ``workdir``), and report them."""
    copy = package_view(copy_checkout(workdir))
    for path in paths:
        run_mutmut(copy, path, TARGETS[path], disabled)
    return collect(copy, paths)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    parser.add_argument("--out", type=Path, help="write the report (Markdown) here as well as printing it")
    parser.add_argument("--workdir", type=Path, help="where the copies are made (default: a temporary folder)")
    parser.add_argument(
        "--jobs", type=int, default=1, help="files mutated side by side, each group in its own copy (default: 1)"
    )
    parser.add_argument(
        "--disable", default=DISABLED, help=f"mutmut's mutation types left out (default: {DISABLED}; '' for none)"
    )
    parser.add_argument(
        "--rerun-survivors",
        action="store_true",
        help="in the finished run of --workdir, run the survivors again against the tests as they are now",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.rerun_survivors:
        if args.workdir is None:
            parser.error("--rerun-survivors needs the --workdir of a finished run")
        copies = sorted(args.workdir.glob("group-*/repo"))
        if not copies:
            parser.error(f"{args.workdir} holds no finished run (no group-*/repo)")
        with ThreadPoolExecutor(max(1, len(copies))) as pool:
            list(pool.map(lambda copy: rerun_survivors(copy, args.disable), copies))
        found = [collect(copy, [path for path in args.files if _mutated_in(copy, path)]) for copy in copies]
    else:
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="anyquantile-mutation-"))
        groups = [args.files[index :: args.jobs] for index in range(args.jobs) if args.files[index :: args.jobs]]
        with ThreadPoolExecutor(len(groups)) as pool:
            found = list(
                pool.map(
                    lambda item: mutate_group(workdir / f"group-{item[0]}", item[1], args.disable), enumerate(groups)
                )
            )
    by_path = {report.path: report for reports in found for report in reports}
    report = markdown([by_path[path] for path in args.files if path in by_path], args.disable)
    print(report)
    if args.out:
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
