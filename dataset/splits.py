"""Train / val / test splits by date boundaries."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pandas as pd

from anyquantile.dataset.covariates import covariate_gaps
from anyquantile.dataset.panel import HourlyPanel
from anyquantile.dataset.windows import WindowIndex, WindowShape, split_windows

BOUNDARY_ORDER = ("train_start", "val_start", "test_start", "test_end")  # each before the next


@dataclass(frozen=True)
class SplitBoundaries:
    """Targets of split ``train`` lie in [train_start, train_end), of ``val`` in [val_start, test_start)
    and of ``test`` in [test_start, test_end). ``None`` means: the first hour (train_start), val_start
    (train_end), the end of the data (test_start: no test split; test_end: the last hour).

    A ``train_end`` after ``val_start`` refits on the validation months too (``training/refit.py``):
    validation can then no longer choose a checkpoint. It never lies after ``test_start``: no window
    trains on a test target.
    """

    val_start: str
    train_start: str | None = None
    test_start: str | None = None
    test_end: str | None = None
    train_end: str | None = None

    def __post_init__(self) -> None:
        """The dates parse and come in order (a ValueError that names them otherwise)."""
        given = []
        for name in BOUNDARY_ORDER:
            value = getattr(self, name)
            if value is None:
                continue
            try:
                given.append((name, pd.Timestamp(value)))
            except ValueError:
                raise ValueError(f"{name}={value!r} is not a date") from None
        for (earlier, first), (later, second) in zip(given[:-1], given[1:]):
            if first >= second:
                raise ValueError(f"split boundaries out of order: {earlier}={first} is not before {later}={second}")
        if self.train_end is not None:
            try:
                train_end = pd.Timestamp(self.train_end)
            except ValueError:
                raise ValueError(f"train_end={self.train_end!r} is not a date") from None
            if self.train_start is not None and train_end <= pd.Timestamp(self.train_start):
                raise ValueError(f"train_end={train_end} is not after train_start={self.train_start}")
            if self.test_start is not None and train_end > pd.Timestamp(self.test_start):
                raise ValueError(
                    f"train_end={train_end} is after test_start={self.test_start}: training would see test targets"
                )

    @property
    def refits(self) -> bool:
        """Training targets reach into the validation months (train_end after val_start)."""
        return self.train_end is not None and pd.Timestamp(self.train_end) > pd.Timestamp(self.val_start)

    def hour_ranges(self, panel: HourlyPanel) -> dict[str, tuple[int, int]]:
        """Grid index ranges [start, end) of each split (``test`` absent when no test_start is set)."""
        train_start = panel.hour_index(self.train_start) if self.train_start else 0
        val_start = panel.hour_index(self.val_start)
        train = (train_start, panel.hour_index(self.train_end) if self.train_end else val_start)
        if self.test_start is None:
            val_end = panel.hour_index(self.test_end) if self.test_end else panel.num_hours
            return {"train": train, "val": (val_start, val_end)}
        test_start = panel.hour_index(self.test_start)
        test_end = panel.hour_index(self.test_end) if self.test_end else panel.num_hours
        return {"train": train, "val": (val_start, test_start), "test": (test_start, test_end)}


def make_splits(
    panel: HourlyPanel,
    shape: WindowShape,
    boundaries: SplitBoundaries,
    train_step: int,
    eval_step: int,
    min_observed_history: float,
) -> dict[str, WindowIndex]:
    """The windows of each split; raises if a split has none, saying which and why it may be. A window that reads
    a covariate hour without a value is skipped, with a warning that counts them."""
    splits = {}
    for name, (start, end) in boundaries.hour_ranges(panel).items():
        step = train_step if name == "train" else eval_step
        windows = split_windows(panel, shape, start, end, step, min_observed_history)
        gaps = covariate_gaps(panel, shape, windows.series, windows.origin).any(axis=1)  # [N]
        if gaps.any():
            warnings.warn(
                f"the {name} split skips {int(gaps.sum())} of its {len(windows)} windows: they read an hour of a "
                "covariate that has no value (dataset/covariates.py)",
                stacklevel=2,
            )
            windows = WindowIndex(windows.series[~gaps], windows.origin[~gaps])
        if len(windows) == 0:
            first, last = panel.timestamps[0], panel.timestamps[-1]
            skipped = f" ({int(gaps.sum())} skipped for covariate gaps)" if gaps.any() else ""
            raise ValueError(
                f"the {name} split (grid hours {start}..{end} of data {first} .. {last}) has no windows{skipped}: "
                f"it must hold a full horizon of {shape.horizon} hours after {shape.history_length} hours of history, "
                f"with at least {min_observed_history:.0%} of the history observed. Check the split dates."
            )
        splits[name] = windows
    return splits
