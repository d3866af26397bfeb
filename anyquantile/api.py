"""``Forecaster``: the Python API, in neuralforecast's conventions.

    from anyquantile import Forecaster

    forecaster = Forecaster("nbeatsaq-synthetic", overrides=["trainer.max_steps=500"])
    forecaster.fit(df)                                  # unique_id, ds (hourly), y
    forecaster.predict(level=[80, 95])                  # unique_id, ds, AnyQuantile-median, -lo-95, ...
    forecaster.predict(quantiles=[0.1, 0.37], h=24)     # unique_id, ds, AnyQuantile_ql0.1, AnyQuantile_ql0.37
    forecaster.save("models/load")
    Forecaster.load("models/load").predict(df=recent_history, level=[90])

A config is a shipped config's name (``anyquantile.experiment.config.shipped_configs()``) or a YAML file;
``overrides`` are the command line's ``key=value``. The frame is checked like a data file (an hourly grid per
series, gaps as NaN rows); the split dates come from the frame, not from the config. Training writes its run
folder (TensorBoard logs, checkpoints) under the config's ``output_dir`` as ``anyquantile train`` does.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from anyquantile.dataset.loader import frame_timestamps, panel_from_frame
from anyquantile.dataset.panel import HourlyPanel
from anyquantile.dataset.windows import WindowBatches
from anyquantile.evaluation.ensemble import forecast_split
from anyquantile.evaluation.report import level_conformal
from anyquantile.experiment.builders import build_data, build_evaluation_levels
from anyquantile.experiment.checkpoints import load_forecaster
from anyquantile.experiment.config import config_to_dict, load_config, merge_config
from anyquantile.experiment.errors import ConfigError, UsageError
from anyquantile.experiment.schema import DataSource
from anyquantile.inference.levels import OutputLevels
from anyquantile.inference.predictor import Predictor, checked_horizon
from anyquantile.inference.saved_model import DEFAULT_ALIAS, SavedModel, load_model, save_model
from anyquantile.model.ensemble import Ensemble
from anyquantile.model.quiet import quiet_lightning
from anyquantile.modules.conformal import ConformalKind
from anyquantile.training.train import train

ONE_HOUR = pd.Timedelta(hours=1)


class Forecaster:
    """An any-quantile forecaster: ``fit`` on a long frame, ``predict`` any levels, ``save`` / ``load``.

    Args:
        config: a shipped config's name (``"nbeatsaq-adaptive-attention-synthetic"``) or a YAML file.
        overrides: ``key=value`` settings, as on the command line (``["trainer.max_steps=200"]``).
        alias: the model's name in the forecast columns (``AnyQuantile-median``, ...).
        verbose: show the training progress bar and Lightning's messages; False trains silently.
    """

    def __init__(
        self,
        config: str | Path = "nbeatsaq-synthetic",
        overrides: Sequence[str] = (),
        alias: str = DEFAULT_ALIAS,
        verbose: bool = True,
    ) -> None:
        if isinstance(overrides, str):
            raise UsageError(f"overrides is a list of 'key=value' strings, got the string {overrides!r}")
        self.config = config
        self.overrides = list(overrides)
        self.cfg = load_config(config, self.overrides)  # a misspelt key fails here, before any data is read
        self.alias = alias
        self.verbose = verbose
        self.model: SavedModel | None = None
        self.fit_summary: dict | None = None  # what training reported: scores on the validation hours, steps, ...
        self._predictor: Predictor | None = None
        self._history: pd.DataFrame | None = None  # the frame of the last fit: predict(df=None) continues it

    # -- training --------------------------------------------------------------------------------------------
    def fit(self, df: pd.DataFrame, val_size: int | None = None) -> "Forecaster":
        """Train on the long frame ``df`` (``unique_id, ds, y``, and the config's covariate columns).

        ``val_size``: the last hours held out for validation (at least the horizon), which then chooses the
        checkpoint when the config says ``trainer.test_checkpoint=best``. None (the default, as in
        neuralforecast): train on every hour, validate in sample on the last horizon, keep the final weights.
        """
        panel = self._panel(df, "df")
        cfg = self._config(self._split_overrides(panel, val_size))
        with self._output():
            summary = train(cfg, panel=panel, echo=False)
        member, member_cfg = load_forecaster(summary["checkpoint"])  # the tested weights: best or final
        self._set_model(SavedModel([member], [member_cfg], alias=self.alias))
        self.fit_summary = summary
        self._history = df
        return self

    def _panel(self, df: pd.DataFrame, name: str) -> HourlyPanel:
        if not isinstance(df, pd.DataFrame):
            raise UsageError(f"{name} must be a pandas DataFrame with columns unique_id, ds, y")
        covariates = OmegaConf.to_object(self.cfg.dataset).covariates()  # the columns training reads
        return panel_from_frame(df, min_length=1, source=name, covariates=covariates)

    def _config(self, overrides: list[str]) -> DictConfig:
        """This forecaster's config with ``overrides``: from its YAML, or (a loaded model) from the stored one."""
        if self.config is None:
            return merge_config(config_to_dict(self.cfg), overrides, source="the loaded model's config")
        return load_config(self.config, self.overrides + overrides)

    def _split_overrides(self, panel: HourlyPanel, val_size: int | None) -> list[str]:
        """The split dates of ``panel``: validation on its last ``val_size`` hours (see :meth:`fit`)."""
        horizon = self.cfg.dataset.horizon
        if val_size is not None and (isinstance(val_size, bool) or not isinstance(val_size, (int, np.integer))):
            raise UsageError(f"val_size must be a whole number of hours, got {val_size!r}")
        if val_size is not None and val_size < horizon:
            raise UsageError(f"val_size must be at least the horizon ({horizon} hours) to hold one window")
        end = panel.timestamps[-1] + ONE_HOUR  # the hour after the last one
        val_start = end - (val_size or horizon) * ONE_HOUR
        overrides = [
            "dataset.source=frame",
            "dataset.path=null",
            "dataset.train_start=null",
            f"dataset.val_start='{val_start}'",
            "dataset.test_start=null",
            "dataset.test_end=null",
            f"trainer.enable_progress_bar={str(self.verbose).lower()}",
        ]
        if val_size is None:  # every hour trains; the final weights are kept
            overrides += [f"dataset.train_end='{end}'", "trainer.test_checkpoint=last"]
        else:
            overrides.append("dataset.train_end=null")
        return overrides

    @contextlib.contextmanager
    def _output(self) -> Iterator[None]:
        if self.verbose:
            yield
            return
        with quiet_lightning():
            yield

    def calibrate(self, df: pd.DataFrame | None = None, per_step: bool = False) -> "Forecaster":
        """Fit a split-conformal correction of every level on the validation hours held out by the last
        ``fit(df, val_size=N)`` and keep it with the model: ``predict(calibrated=True)`` applies it and
        ``save`` writes it. ``per_step``: one correction per horizon step. ``df``: the fit's frame by default."""
        model = self._fitted()
        cfg = model.configs[0]
        if cfg.dataset.source != DataSource.frame:
            raise UsageError(
                "calibrate fits on the frame a Forecaster was fitted on; for a model trained from a config, use "
                "anyquantile evaluate --model DIR --conformal level --save-calibration"
            )
        if OmegaConf.to_object(cfg.dataset).split_boundaries().refits:
            raise UsageError("calibrate needs held-out hours: fit(df, val_size=N) first (val_size=None trains on all)")
        history = self._history if df is None else df
        if history is None:
            raise UsageError("calibrate needs the fit's frame: pass df")
        data = build_data(cfg, panel=self._panel(history, "df"))
        levels = build_evaluation_levels(cfg)
        windows = WindowBatches(data.panel, data.shape, data.splits["val"])
        val = forecast_split(Ensemble(model.members), windows, levels.levels, cfg.dataset.eval_batch_size, "val")
        kind = ConformalKind.level_per_step if per_step else ConformalKind.level
        correction = level_conformal(kind, levels, val)
        try:
            correction.state()  # only a finite correction can be applied and saved
        except ValueError as error:
            raise UsageError(f"calibrate: {error}") from None
        model.calibration = correction
        self._set_model(model)
        return self

    # -- forecasting -----------------------------------------------------------------------------------------
    def predict(
        self,
        df: pd.DataFrame | None = None,
        level: Sequence[float] | None = None,
        quantiles: Sequence[float] | None = None,
        h: int | None = None,
        calibrated: bool = False,
        rearrange: bool = True,
    ) -> pd.DataFrame:
        """Forecasts of the ``h`` hours (default: the trained horizon) after each series' last observation.

        ``df``: the history to forecast from (default: the frame of the last ``fit``). ``level``: central
        interval coverages in % (columns ``<alias>-median``, ``<alias>-lo-80``, ``<alias>-hi-80``, ...);
        ``quantiles``: levels in (0, 1) (``<alias>_ql0.37``); neither: the median as ``<alias>``.
        ``calibrated``: apply the conformal calibration saved with the model (``anyquantile evaluate --model
        DIR --conformal level --save-calibration``). ``rearrange``: non-crossing quantiles (the default);
        False returns the network's raw forecast of each level.
        """
        predictor = self.predictor  # not fitted: say so first
        history = self._history if df is None else df
        if history is None:
            raise UsageError("predict needs a history: pass df (a loaded model keeps no training frame)")
        output = OutputLevels.of(self.alias, level, quantiles)
        return predictor.forecast_frame(history, output, h, calibrated=calibrated, rearrange=rearrange)

    def cross_validation(
        self,
        df: pd.DataFrame,
        n_windows: int = 1,
        step_size: int | None = None,
        h: int | None = None,
        level: Sequence[float] | None = None,
        quantiles: Sequence[float] | None = None,
        val_size: int | None = None,
    ) -> pd.DataFrame:
        """Fit once on ``df`` up to the first cutoff, then forecast ``n_windows`` windows of ``h`` hours whose
        cutoffs (the last hour each forecast sees) are ``step_size`` hours apart (default: ``h``), ending with
        the frame. Returns ``unique_id, ds, cutoff, <forecast columns>, y``, as neuralforecast does."""
        hours = self._horizon(h)
        step = hours if step_size is None else step_size
        if isinstance(n_windows, bool) or not isinstance(n_windows, (int, np.integer)) or n_windows < 1:
            raise UsageError(f"n_windows must be a whole number >= 1, got {n_windows!r}")
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
            raise UsageError(f"step_size must be a whole number of hours >= 1, got {step_size!r}")
        panel = self._panel(df, "df")
        last = panel.timestamps[-1]
        cutoffs = [last - (hours + (n_windows - 1 - k) * step) * ONE_HOUR for k in range(n_windows)]
        stamps = frame_timestamps(df, "df")  # [N] as the loader reads them: offsets on the UTC clock
        self.fit(df[stamps <= cutoffs[0].to_datetime64()], val_size=val_size)
        output = OutputLevels.of(self.alias, level, quantiles)
        predictor = self.predictor
        full = predictor.panel(df, "df")
        frames = []
        for cutoff in cutoffs:
            windows = predictor.prepare(full, origin=str(cutoff + ONE_HOUR))
            with torch.no_grad():
                forecast = predictor.quantiles(windows.batch, output.levels)
            frame = predictor.frame(windows, forecast, hours, output)
            frame.insert(2, "cutoff", cutoff)
            frames.append(frame)
        result = pd.concat(frames, ignore_index=True)
        actual = pd.DataFrame(
            {"unique_id": df["unique_id"].astype(str).to_numpy(), "ds": stamps, "y": df["y"].to_numpy()}
        )
        return result.merge(actual, on=["unique_id", "ds"], how="left")

    def _horizon(self, h: int | None) -> int:
        return checked_horizon(h, self.cfg.dataset.horizon)

    # -- the model -------------------------------------------------------------------------------------------
    def _fitted(self) -> SavedModel:
        if self.model is None:
            raise UsageError("the forecaster is not fitted: call fit(df) or Forecaster.load(path)")
        return self.model

    @property
    def predictor(self) -> Predictor:
        if self._predictor is None:
            raise UsageError("the forecaster is not fitted: call fit(df) or Forecaster.load(path)")
        return self._predictor

    def _set_model(self, model: SavedModel) -> None:
        self.model = model
        self._predictor = model.predictor()

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the fitted model to the folder ``path`` (config, safetensors weights, version, calibration)."""
        return save_model(self._fitted(), path, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path, verbose: bool = True) -> "Forecaster":
        """A forecaster from a folder written by :meth:`save` (or ``anyquantile export``)."""
        return cls._of(load_model(path), verbose)

    @classmethod
    def from_checkpoints(
        cls, checkpoints: Sequence[str | Path], alias: str = DEFAULT_ALIAS, verbose: bool = True
    ) -> "Forecaster":
        """A forecaster of checkpoints written by ``anyquantile train``; several average as an ensemble."""
        return cls._of(SavedModel.from_checkpoints(checkpoints, alias), verbose)

    @classmethod
    def _of(cls, model: SavedModel, verbose: bool) -> "Forecaster":
        forecaster = cls.__new__(cls)
        forecaster.config, forecaster.overrides = None, []
        forecaster.cfg = model.configs[0]
        forecaster.alias, forecaster.verbose = model.alias, verbose
        forecaster.fit_summary, forecaster._history = None, None
        forecaster._set_model(model)
        return forecaster

    def __repr__(self) -> str:
        members = 0 if self.model is None else len(self.model.members)
        state = "not fitted" if members == 0 else f"{members} member{'s' if members > 1 else ''}"
        return f"Forecaster(config={self.config!r}, alias={self.alias!r}, {state})"


__all__ = ["Forecaster", "ConfigError", "UsageError"]
