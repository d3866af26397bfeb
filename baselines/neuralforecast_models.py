"""Nixtla neuralforecast NBEATS and NHITS as contenders: trained on our training hours, forecasting our windows.

``NeuralForecastBaseline(...).fit(panel, train_end)`` trains one neuralforecast model through its own
``NeuralForecast.fit``; calling the fitted baseline with windows (series [N], origin [N]) and levels
returns quantile forecasts ``[N, H, Q]``, like every ``ReferenceForecaster``, so it is scored by the
same metrics code on the same windows as our models.

How the windows are forecast: each window becomes its own short series (its T history hours,
observed flags as neuralforecast's ``available_mask``, then H future rows), and the fitted model's
own ``predict`` forecasts the H hours after each history — what ``NeuralForecast.predict(df=...)``
does (a test checks the two agree), but in one dataset for every window.

Levels:
- ``MQLoss`` is trained at exactly the levels it will be asked for (the evaluation levels: the 99-level
  grid plus interval ends), so no level is interpolated;
- ``IQLoss`` (implicit quantiles) is asked level by level through the model's own
  ``predict(quantiles=[q])``. (``NeuralForecast.predict(quantiles=...)`` would instead take
  quantiles over 11 fixed-level forecasts and not return the level asked for.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from anyquantile.dataset.panel import HourlyPanel
from anyquantile.dataset.windows import fill_from_past
from anyquantile.model.quiet import quiet_lightning

MODELS = ("NBEATS", "NHITS")
LOSSES = ("mq", "iq")
ID, TIME, TARGET, MASK = "unique_id", "ds", "y", "available_mask"


@dataclass
class TrainingRecord:
    seconds: float = 0.0
    steps: int = 0
    samples_per_second: float = 0.0


@dataclass
class NeuralForecastBaseline:
    """One neuralforecast model (``model`` in MODELS, ``loss`` in LOSSES) with its training settings."""

    model: str
    loss: str
    history_length: int  # T, neuralforecast's input_size
    horizon: int  # H
    levels: tuple[float, ...]  # what an MQLoss model is trained at (and may be asked for)
    seed: int = 0
    max_time: str | None = None  # DD:HH:MM:SS wall-clock budget
    max_steps: int = 1_000_000
    precision: str = "32-true"
    windows_batch_size: int = 1024  # training windows per step
    inference_batch_size: int = 4096  # windows per forecast batch
    extra: dict[str, Any] = field(default_factory=dict)  # other constructor arguments of the model
    training: TrainingRecord = field(default_factory=TrainingRecord)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown neuralforecast model '{self.model}'; choose one of {MODELS}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss '{self.loss}'; choose one of {LOSSES}")
        self._fitted = None
        self._panel: HourlyPanel | None = None
        self.neuralforecast = None

    @property
    def name(self) -> str:
        return f"neuralforecast_{self.model.lower()}_{self.loss}loss"

    def fit(self, panel: HourlyPanel, train_end: int) -> "NeuralForecastBaseline":
        """Train on every series' hours before grid index ``train_end`` (our training split)."""
        from neuralforecast import NeuralForecast

        self._panel = panel
        frame = training_frame(panel, train_end)
        nf = NeuralForecast(models=[self._build()], freq="h")
        start = time.perf_counter()
        with quiet_lightning():
            nf.fit(df=frame, val_size=0)
        self.training.seconds = time.perf_counter() - start
        self.neuralforecast = nf  # the fitted NeuralForecast, for its own API
        self._fitted = nf.models[0]  # fit trains copies of the models it was given
        # its log of (step, loss), one entry per training step: the trainer is not kept after fit
        self.training.steps = len(self._fitted.train_trajectories)
        self.training.samples_per_second = (
            self.training.steps * self.windows_batch_size / max(self.training.seconds, 1e-9)
        )
        return self

    def __call__(self, series: np.ndarray, origin: np.ndarray, horizon: int, levels: torch.Tensor) -> torch.Tensor:
        """Quantile forecasts [N, H, Q] of the windows (series [N] rows, origin [N] hours of the panel it
        was fitted on) at ``levels`` [Q]."""
        if self._fitted is None:
            raise RuntimeError("fit the baseline before forecasting")
        if horizon != self.horizon:
            raise ValueError(f"{self.name} forecasts {self.horizon} hours, asked for {horizon}")
        panel = self._panel
        levels = [float(q) for q in torch.as_tensor(levels).tolist()]
        if self.loss == "mq" and (len(levels) != len(self.levels) or not np.allclose(levels, self.levels)):
            raise ValueError(f"{self.name} was trained at {len(self.levels)} fixed levels and forecasts only those")
        parts = []
        for start in range(0, len(origin), self.inference_batch_size):
            chunk = slice(start, start + self.inference_batch_size)
            parts.append(
                self._forecast(
                    window_dataset(panel, series[chunk], origin[chunk], self.history_length, self.horizon), levels
                )
            )
        return torch.cat(parts) if parts else torch.zeros(0, self.horizon, len(levels))

    def _forecast(self, dataset, levels: list[float]) -> torch.Tensor:
        """[n, H, Q] for the n windows of ``dataset`` (ids in window order)."""
        model = self._fitted
        model.set_test_size(self.horizon)
        with quiet_lightning():
            if self.loss == "mq":
                values = model.predict(dataset=dataset)  # [n * H, Q], the trained levels in order
            else:
                values = np.concatenate([model.predict(dataset=dataset, quantiles=[q]) for q in levels], axis=-1)
        return torch.from_numpy(np.asarray(values, dtype=np.float32).reshape(-1, self.horizon, len(levels)))

    def _build(self):
        from neuralforecast.losses.pytorch import IQLoss, MQLoss
        from neuralforecast.models import NBEATS, NHITS

        loss = MQLoss(quantiles=list(self.levels)) if self.loss == "mq" else IQLoss()
        model_class = {"NBEATS": NBEATS, "NHITS": NHITS}[self.model]
        trainer = {"max_time": self.max_time} if self.max_time else {}
        return model_class(
            h=self.horizon,
            input_size=self.history_length,
            loss=loss,
            max_steps=self.max_steps,
            scaler_type="robust",  # a window's own median and IQR: series from 10 to 60,000 MW share one model
            windows_batch_size=self.windows_batch_size,
            random_seed=self.seed,
            precision=self.precision,
            enable_progress_bar=False,
            enable_model_summary=False,
            logger=False,
            enable_checkpointing=False,
            **trainer,
            **self.extra,
        )


def training_frame(panel: HourlyPanel, train_end: int) -> pd.DataFrame:
    """Long frame of the hours before ``train_end``: values filled from the past where missing, flagged
    by ``available_mask`` (so neuralforecast neither scores nor scales them), from each series' first observation."""
    filled = fill_from_past(panel.values)  # [S, L]
    frames = []
    for row, name in enumerate(panel.series_ids):
        observed = np.isfinite(panel.values[row, :train_end])
        if not observed.any():
            continue
        first = int(np.argmax(observed))
        frames.append(
            pd.DataFrame(
                {
                    ID: name,
                    TIME: panel.timestamps[first:train_end],
                    TARGET: filled[row, first:train_end].astype(np.float64),
                    MASK: observed[first:].astype(np.float64),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def window_dataset(panel: HourlyPanel, series: np.ndarray, origin: np.ndarray, history_length: int, horizon: int):
    """A neuralforecast ``TimeSeriesDataset`` with one series per window: T history hours then H future
    rows (unavailable, value 0), ids ordered as the windows."""
    from neuralforecast.tsdataset import TimeSeriesDataset

    filled = fill_from_past(panel.values)  # [S, L]
    offsets = np.arange(-history_length, horizon)  # [T + H]
    hours = origin[:, None] + offsets  # [N, T + H]
    N, length = hours.shape
    values = filled[series[:, None], hours].astype(np.float64)  # [N, T + H]
    available = np.isfinite(panel.values[series[:, None], hours])
    available[:, history_length:] = False  # the future is not shown
    values = np.where(available, values, np.nan_to_num(values))
    values[:, history_length:] = 0.0
    width = len(str(N))
    frame = pd.DataFrame(
        {
            ID: np.repeat([f"{i:0{width}d}" for i in range(N)], length),  # zero-padded: sorted ids keep window order
            TIME: panel.timestamps[hours.ravel()],
            TARGET: values.ravel(),
            MASK: available.ravel().astype(np.float64),
        }
    )
    dataset, ids, _, _ = TimeSeriesDataset.from_df(frame, id_col=ID, time_col=TIME, target_col=TARGET)
    if list(ids) != sorted(ids):  # the forecasts are read back in id order
        raise RuntimeError("neuralforecast did not keep the windows in id order")
    return dataset
