"""The in-memory form of a set of hourly series: one dense array on a shared hourly grid."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from anyquantile.dataset.covariates import CovariateSpec


@dataclass(frozen=True)
class HourlyPanel:
    """S series on one regular hourly grid of L timestamps.

    ``values`` holds NaN wherever a series has no observation (a real gap, or hours before it
    starts or after it ends); nothing here ever fills a value in.
    """

    series_ids: tuple[str, ...]  # S names, in row order of ``values``
    timestamps: pd.DatetimeIndex  # L regular hours
    values: np.ndarray  # [S, L] float32, NaN where missing
    # the holiday calendar (country code) of each series, for the holiday features; None: no holiday features
    holiday_countries: tuple[str, ...] | None = None
    # the file's covariates (dataset/covariates.py): [S, L, K] float32, NaN where none is given; None: K = 0
    covariates: np.ndarray | None = None
    covariate_spec: CovariateSpec = field(default_factory=CovariateSpec)

    def __post_init__(self) -> None:
        if self.values.shape != (len(self.series_ids), len(self.timestamps)):
            raise ValueError(
                f"values has shape {self.values.shape}, expected "
                f"({len(self.series_ids)}, {len(self.timestamps)}) for the series and timestamps given"
            )
        if self.holiday_countries is not None and len(self.holiday_countries) != len(self.series_ids):
            raise ValueError(
                f"{len(self.holiday_countries)} holiday countries for {len(self.series_ids)} series: one per series"
            )
        expected = (*self.values.shape, self.covariate_spec.width)  # [S, L, K]
        if self.covariates is None and self.covariate_spec.width:
            raise ValueError(f"no covariates given for the {self.covariate_spec.width} the spec names")
        if self.covariates is not None and self.covariates.shape != expected:
            raise ValueError(f"covariates of shape {self.covariates.shape}, expected {expected}")

    @property
    def num_series(self) -> int:
        return len(self.series_ids)

    @property
    def num_hours(self) -> int:
        return len(self.timestamps)

    def hour_index(self, when: str | pd.Timestamp) -> int:
        """Index of the first grid hour at or after ``when`` (clipped to [0, L])."""
        return int(self.timestamps.searchsorted(pd.Timestamp(when), side="left"))

    def to_long_frame(self) -> pd.DataFrame:
        """The panel in long format (``unique_id, ds, y``), one row per series and hour."""
        return pd.DataFrame(
            {
                "unique_id": np.repeat(np.asarray(self.series_ids, dtype=object), self.num_hours),
                "ds": np.tile(self.timestamps.to_numpy(), self.num_series),
                "y": self.values.reshape(-1),
            }
        )
