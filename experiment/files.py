"""Atomic output files: a file is either its old content or its whole new content, never a torn half.

Every file a run or an evaluation writes (checkpoints, ``metrics.json``, forecasts, dashboards, saved
calibrations) goes through :func:`atomic_path`: the content is written to a temporary file beside the
destination, flushed to disk, and renamed onto it. ``os.replace`` is atomic on one file system, so a
process killed mid-write (SIGKILL, power loss, an exception) leaves the previous file intact and
at most a hidden ``.NAME.tmp-*`` beside it, which no reader takes for the file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to; it replaces ``path`` when the block ends
    without an exception, and is removed when the block raises (``path`` is then left as it was)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp: a name no other writer (another rank, a second process) can share
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    os.close(handle)
    staging = Path(name)
    try:
        yield staging
        _flush_to_disk(staging)
        os.chmod(staging, _mode_for(path))  # mkstemp makes it owner-only; the file gets the usual mode
        os.replace(staging, path)
        with contextlib.suppress(OSError):  # the file is in place; a folder that cannot be synced is no failure
            _flush_to_disk(path.parent)  # the rename itself
    finally:
        staging.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as staging:
        staging.write_text(text, encoding="utf-8")
    return Path(path)


def _flush_to_disk(path: Path) -> None:
    """Make a file's content (before the rename: a rename that reaches the disk before the data would
    leave an empty file after a power loss) or a folder's entries (after it) durable."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _mode_for(path: Path) -> int:
    """The permissions the new file gets: those of the file it replaces, else what ``open`` would give."""
    if path.exists():
        return path.stat().st_mode & 0o777
    return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask, read without setting it (``os.umask`` sets it, racing other threads' files)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    umask = os.umask(0o022)  # no /proc (not Linux): read by setting, and put back at once
    os.umask(umask)
    return umask
