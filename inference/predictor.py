"""The production forecast path: a history frame in, a neuralforecast-style frame of quantile forecasts out.

One path for the Python API (``Forecaster.predict``), the command line (``anyquantile predict``), the HTTP
service (which batches several requests into one forward pass: :meth:`Predictor.prepare` per request,
:func:`concat_windows`, one :meth:`Predictor.grid_forecast`, :meth:`Predictor.finish_grid` and
:meth:`Predictor.frame` per request) and an
exported ONNX graph (the same path with another ``network``).

Per window the network forecasts the fixed reference grid (``inference.levels``); a saved conformal
calibration, when asked for, shifts it; the grid is sorted (monotone rearrangement, on by default); the
levels asked are read off it. So each level's answer depends on that level alone, and no two cross.
Without rearrangement the network forecasts exactly the levels asked (raw any-quantile output).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from anyquantile.dataset.errors import DataValidationError
from anyquantile.dataset.loader import panel_from_frame
from anyquantile.dataset.panel import HourlyPanel
from anyquantile.dataset.windows import WindowBatch, WindowBatches, WindowShape
from anyquantile.experiment.builders import with_holidays
from anyquantile.experiment.errors import ConfigError, UsageError
from anyquantile.experiment.schema import DatasetConfig
from anyquantile.inference.forecast import extend_grid, forecast_origins
from anyquantile.inference.levels import OutputLevels, reference_levels
from anyquantile.modules.conformal import LevelConformal
from anyquantile.modules.quantile_levels import EvaluationLevels, interpolate_levels
from anyquantile.modules.rearrangement import rearrange_quantiles

# (batch, levels [Q] or [B, Q]) -> forecasts [B, H, Q] in fp32 and data units: an ensemble, or an ONNX session
Network = Callable[[WindowBatch, torch.Tensor], torch.Tensor]


def _series_of(panel: HourlyPanel, names: Sequence[str]) -> HourlyPanel:
    """The rows of ``panel`` of the series ``names`` (known ones), in that order: only they need a holiday country."""
    rows = [panel.series_ids.index(name) for name in names]
    covariates = None if panel.covariates is None else panel.covariates[rows]
    return dataclasses.replace(panel, series_ids=tuple(names), values=panel.values[rows], covariates=covariates)


def checked_horizon(h: int | None, horizon: int) -> int:
    """The hours asked, ``h``, checked against the trained ``horizon`` (None: all of it)."""
    if h is None:
        return horizon
    if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or not 1 <= h <= horizon:
        raise UsageError(
            f"h must be a whole number of hours in [1, {horizon}] (the trained horizon), got {h!r}", field="h"
        )
    return int(h)


@dataclass(frozen=True)
class PreparedWindows:
    """One window per series of a request: its batch, the series' names and each window's first forecast hour."""

    batch: WindowBatch
    series: tuple[str, ...]  # [B]
    first_hour: pd.DatetimeIndex  # [B]

    def __len__(self) -> int:
        return len(self.series)


def concat_windows(parts: Sequence[PreparedWindows]) -> WindowBatch:
    """The batches of several requests as one (every field concatenated along the windows)."""
    fields = [field.name for field in dataclasses.fields(WindowBatch)]
    return WindowBatch(**{name: torch.cat([getattr(part.batch, name) for part in parts]) for name in fields})


@dataclass
class Predictor:
    """A trained network (or ensemble) with what its windows need, and an optional conformal calibration."""

    network: Network
    dataset: DatasetConfig  # window shape, holiday countries and covariates of training
    evaluation_levels: EvaluationLevels
    calibration: LevelConformal | None = None
    alias: str = "AnyQuantile"

    def __post_init__(self) -> None:
        self.shape = WindowShape(self.dataset.history_length, self.dataset.horizon)
        self.reference = reference_levels(self.evaluation_levels)  # [G] float64, ascending
        evaluated = self.evaluation_levels.levels
        below, above = self.reference < evaluated.min(), self.reference > evaluated.max()
        self._parts = (below, ~(below | above), above)  # the reference grid's lower tail, evaluation levels, upper tail
        if self.calibration is not None and self.calibration.delta.shape[0] not in (1, self.shape.horizon):
            raise UsageError(
                f"the calibration has corrections for {self.calibration.delta.shape[0]} horizon steps; "
                f"this model forecasts {self.shape.horizon}"
            )

    # -- a request's windows ---------------------------------------------------------------------------------
    def panel(self, history: pd.DataFrame, source: str = "history") -> HourlyPanel:
        """A history frame (``unique_id, ds, y`` and the covariates of training) checked like a data file."""
        if not isinstance(history, pd.DataFrame):
            raise UsageError(f"{source} must be a pandas DataFrame with columns unique_id, ds, y")
        panel = panel_from_frame(history, min_length=1, source=source, covariates=self.dataset.covariates())
        if not np.isfinite(panel.values).any():
            raise DataValidationError(f"{source}: every y is missing (NaN): there is nothing to forecast from")
        return panel

    def prepare(
        self, panel: HourlyPanel, series: Sequence[str] | None = None, origin: str | None = None
    ) -> PreparedWindows:
        """One window per series (all of the panel's by default), from the hour after its last observation or
        from ``origin``; unknown series, an off-grid origin or too short a history are UsageErrors."""
        if isinstance(series, str):
            raise UsageError(f"series is a list of series ids, got the string {series!r}", "series")
        if series is not None and (len(series) == 0 or len(set(series)) < len(series)):
            raise UsageError(f"series must name each series once (None: all of them), got {list(series)}", "series")
        names = list(series) if series is not None else list(panel.series_ids)
        unknown = sorted(set(names) - set(panel.series_ids))
        if unknown:
            raise UsageError(f"unknown series {unknown}; the history has {list(panel.series_ids)}", field="series")
        panel = self._with_holidays(_series_of(panel, names))
        windows = forecast_origins(panel, self.shape, names, origin, self.dataset.min_observed_history)
        extended = extend_grid(panel, self.shape.horizon)  # the horizon lies beyond the data
        batch = WindowBatches(extended, self.shape, windows).all()
        return PreparedWindows(batch, tuple(names), extended.timestamps[windows.origin])

    def _with_holidays(self, panel: HourlyPanel) -> HourlyPanel:
        try:
            return with_holidays(panel, self.dataset, strict=False)
        except ConfigError as error:  # a series asked for has no holiday country the model can use
            raise UsageError(str(error)) from None

    # -- forecasts -------------------------------------------------------------------------------------------
    def reference_forecast(self, batch: WindowBatch, calibrated: bool = False, rearrange: bool = True) -> torch.Tensor:
        """Forecasts ``[B, H, G]`` of the reference grid: calibrated if asked, then sorted if ``rearrange``."""
        return self.finish_grid(self.grid_forecast(batch), calibrated, rearrange)

    def grid_forecast(self, batch: WindowBatch) -> torch.Tensor:
        """The network's forecasts ``[B, H, G]`` of the reference grid, neither calibrated nor sorted: the
        forward pass the service runs once for the windows of several requests (:func:`concat_windows`)."""
        return self.network(batch, self.reference.float())

    def finish_grid(self, forecast: torch.Tensor, calibrated: bool = False, rearrange: bool = True) -> torch.Tensor:
        """A :meth:`grid_forecast` ``[B, H, G]`` calibrated if asked, then rearranged: each request of a shared
        batch is finished with its own options."""
        if calibrated:
            forecast = forecast + self._shift(self.reference)  # a UsageError when the model has no calibration
        return self.rearrange(forecast) if rearrange else forecast

    def rearrange(self, forecast: torch.Tensor) -> torch.Tensor:
        """``[B, H, G]`` made monotone in the level: the evaluation levels sorted among themselves (exactly the
        forecast evaluation scores), each tail sorted and kept beyond the outermost sorted evaluation level."""
        lower, inner, upper = (forecast[..., part] for part in self._parts)
        inner = rearrange_quantiles(inner)  # [B, H, Q_eval]
        lower = torch.minimum(rearrange_quantiles(lower), inner[..., :1])  # [B, H, tails below]
        upper = torch.maximum(rearrange_quantiles(upper), inner[..., -1:])  # [B, H, tails above]
        return torch.cat([lower, inner, upper], dim=-1)

    def quantiles(
        self, batch: WindowBatch, levels: Sequence[float], calibrated: bool = False, rearrange: bool = True
    ) -> torch.Tensor:
        """Forecasts ``[B, H, Q]`` of ``levels``: read off the sorted reference grid, or (``rearrange=False``)
        the network's raw forecast of exactly those levels."""
        asked = torch.tensor(levels, dtype=torch.float64)
        if rearrange:
            return self.at_levels(self.reference_forecast(batch, calibrated), asked)
        forecast = self.network(batch, asked.float())  # [B, H, Q]
        return forecast + self._shift(asked) if calibrated else forecast

    def at_levels(self, reference_forecast: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
        """``[B, H, G]`` sorted reference forecasts read at ``levels`` ``[Q]`` -> ``[B, H, Q]``."""
        return interpolate_levels(reference_forecast, self.reference, levels)

    def _shift(self, levels: torch.Tensor) -> torch.Tensor:
        if self.calibration is None:
            raise UsageError("this model has no conformal calibration: fit one with anyquantile evaluate --model DIR")
        return self.calibration.shift_at(levels).float()  # [H or 1, Q]

    # -- frames ----------------------------------------------------------------------------------------------
    def horizon(self, h: int | None) -> int:
        """``h`` checked against the trained horizon H (None: H)."""
        return checked_horizon(h, self.shape.horizon)

    def frame(self, windows: PreparedWindows, forecast: torch.Tensor, h: int, output: OutputLevels) -> pd.DataFrame:
        """``forecast`` ``[B, >= h, Q]`` (at ``output.levels``) as ``unique_id, ds, <columns>``, h rows per series."""
        values = forecast[:, :h].double().numpy()  # [B, h, Q]
        offsets = pd.to_timedelta(np.arange(h), unit="h")
        stamps = np.concatenate([(first + offsets).values for first in windows.first_hour])
        frame = pd.DataFrame({"unique_id": np.repeat(np.asarray(windows.series, dtype=object), h), "ds": stamps})
        for index, column in enumerate(output.columns):
            frame[column] = values[..., index].reshape(-1)
        return frame

    def forecast_frame(
        self,
        history: pd.DataFrame,
        output: OutputLevels,
        h: int | None = None,
        series: Sequence[str] | None = None,
        origin: str | None = None,
        calibrated: bool = False,
        rearrange: bool = True,
    ) -> pd.DataFrame:
        """The whole path for one request: ``unique_id, ds`` and one column per level of ``output``."""
        hours = self.horizon(h)
        windows = self.prepare(self.panel(history), series, origin)
        with torch.no_grad():
            forecast = self.quantiles(windows.batch, output.levels, calibrated, rearrange)
        return self.frame(windows, forecast, hours, output)

    # -- one forward pass for several requests (the HTTP service, anyquantile/serving.py) ----------------------
