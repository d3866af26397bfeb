"""The contenders of the benchmark and the one place where each is trained, forecast and scored.

Every contender forecasts the same windows (the benchmark's test split) at the same evaluation
levels; :func:`score_contender` scores its raw forecasts through the project's one scoring path
(``model/scoring.py``), as for our models in training and evaluation: the final forecast (rearranged
when ``evaluation.rearrange``) is scored, and both crossing rates, of the raw forecast and of the
final one, are reported. Three kinds:

- :class:`ReferenceContender`: no training (seasonal naive, the synthetic oracle);
- :class:`OurContender`: a config of this project trained through ``training.train.train`` within the
  budget, its tested checkpoint (best on val, or final: ``trainer.test_checkpoint``) or its snapshot
  ensemble (``trainer.snapshots``) forecasting the windows;
- :class:`NeuralForecastContender`: a Nixtla neuralforecast model (``baselines.neuralforecast_models``)
  trained on the same training hours within the same budget.

With a conformal correction (``Bench.conformal``, ``benchmarks.run --conformal``) every contender
also forecasts the validation windows, and the correction fitted there on its forecasts
(``evaluation.report.conformal_scores``, as ``evaluate.py --conformal`` fits it) is scored on the
test windows too: the record's ``conformal`` scores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from anyquantile.baselines.neuralforecast_models import NeuralForecastBaseline
from anyquantile.baselines.reference import ReferenceForecaster
from anyquantile.baselines.seasonal_naive import SeasonalNaive
from anyquantile.dataset.windows import WindowBatches
from anyquantile.evaluation.ensemble import SplitForecasts, forecast_split
from anyquantile.evaluation.report import conformal_scores, paper_protocol_crps
from anyquantile.experiment.builders import ForecastData
from anyquantile.experiment.checkpoints import load_forecaster
from anyquantile.experiment.config import load_config
from anyquantile.model.ensemble import Ensemble
from anyquantile.model.metrics import headline
from anyquantile.model.scoring import score_forecasts
from anyquantile.modules.conformal import ConformalKind
from anyquantile.modules.quantile_levels import EvaluationLevels
from anyquantile.training.train import train

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"


@dataclass
class Bench:
    """What every contender is scored on: one data set, its test windows and the evaluation levels."""

    cfg: DictConfig  # the base config: data, splits, levels, precision
    data: ForecastData
    windows: WindowBatches
    levels: EvaluationLevels
    overrides: tuple[str, ...]  # applied to every config of ours (data, sizes)
    budget: str | None  # DD:HH:MM:SS per trained contender
    max_steps: int | None  # optional cap on training steps for every trained contender
    conformal: ConformalKind = ConformalKind.none  # a correction fitted on val_windows' forecasts, scored on test
    val_windows: WindowBatches | None = None  # the validation windows, when a correction is fitted
    settings: dict[str, Any] = field(default_factory=dict)  # what the results depend on, kept in every record

    @property
    def train_end(self) -> int:
        """Grid index of the training data's end: the first validation hour, or ``dataset.train_end`` (a refit)."""
        return self.data.panel.hour_index(self.cfg.dataset.train_end or self.cfg.dataset.val_start)


@dataclass
class Forecasts:
    prediction: torch.Tensor  # [N, H, Q] at the bench's levels, raw
    eval_seconds: float  # of the test windows' forecasts
    training: dict[str, float] = field(default_factory=dict)  # seconds, steps, samples_per_second
    extra_metrics: dict[str, float] = field(default_factory=dict)  # e.g. the paper-protocol CRPS
    val_prediction: torch.Tensor | None = None  # [N_val, H, Q] raw, when the bench fits a conformal correction


def timed_forecasts(bench: Bench, forecast: Callable[[WindowBatches], torch.Tensor], **fields: Any) -> Forecasts:
    """``forecast`` of the test windows (timed) and, when the bench fits a correction, of the validation windows."""
    start = time.perf_counter()
    prediction = forecast(bench.windows)
    eval_seconds = time.perf_counter() - start
    val = forecast(bench.val_windows) if bench.val_windows is not None else None
    return Forecasts(prediction=prediction, eval_seconds=eval_seconds, val_prediction=val, **fields)


@dataclass(frozen=True)
class ReferenceContender:
    name: str
    description: str
    make: Callable[[Bench], ReferenceForecaster]
    trains: ClassVar[bool] = False  # deterministic: one run whatever the seed

    def run(self, bench: Bench, seed: int) -> Forecasts:
        forecaster = self.make(bench)
        return timed_forecasts(bench, lambda windows: by_window(forecaster, windows, bench.levels).float())


@dataclass(frozen=True)
class OurContender:
    name: str
    description: str
    config: str  # a config name in config/
    overrides: tuple[str, ...] = ()
    trains: ClassVar[bool] = True

    def run(self, bench: Bench, seed: int) -> Forecasts:
        budget = [f"trainer.max_time={bench.budget}"] if bench.budget else []
        budget += [f"trainer.max_steps={bench.max_steps}"] if bench.max_steps else []
        cfg = load_config(
            CONFIG_DIR / f"{self.config}.yaml", [*bench.overrides, *budget, *self.overrides, f"seed={seed}"]
        )
        if OmegaConf.to_container(cfg.dataset) != OmegaConf.to_container(bench.cfg.dataset):
            raise ValueError(
                f"{self.name}: config {self.config} reads other data or windows than the benchmark's base config"
            )
        summary = train(cfg)
        if not Path(summary["checkpoint"]).is_file():
            raise RuntimeError(
                f"{self.name}: training left no checkpoint ({summary['checkpoint']}); give it more budget"
            )
        # the run's snapshot ensemble when it kept snapshots (trainer.snapshots), else its tested checkpoint
        members = summary["snapshots"] or [summary["checkpoint"]]
        ensemble = Ensemble([load_forecaster(path)[0] for path in members])
        batch_size = cfg.dataset.eval_batch_size
        training = {
            "seconds": summary["train_seconds"],
            "steps": summary["train_steps"],
            "samples_per_second": summary["train_samples_per_second"],
        }
        forecasts = timed_forecasts(
            bench,
            lambda windows: forecast_split(ensemble, windows, bench.levels.levels, batch_size, self.name).prediction,
            training=training,
        )
        forecasts.extra_metrics = paper_protocol_crps(
            ensemble, bench.windows, bench.cfg.evaluation.paper_protocol_levels, batch_size
        )
        return forecasts


@dataclass(frozen=True)
class NeuralForecastContender:
    name: str
    description: str
    model: str  # NBEATS or NHITS
    loss: str  # mq or iq
    trains: ClassVar[bool] = True

    def run(self, bench: Bench, seed: int) -> Forecasts:
        baseline = NeuralForecastBaseline(
            self.model,
            self.loss,
            bench.cfg.dataset.history_length,
            bench.cfg.dataset.horizon,
            levels=tuple(bench.levels.levels.tolist()),
            seed=seed,
            max_time=bench.budget,
            max_steps=bench.max_steps or 1_000_000,
            precision=bench.cfg.trainer.precision,
        ).fit(bench.data.panel, bench.train_end)
        training = {
            "seconds": baseline.training.seconds,
            "steps": baseline.training.steps,
            "samples_per_second": baseline.training.samples_per_second,
        }
        return timed_forecasts(bench, lambda windows: by_window(baseline, windows, bench.levels), training=training)


def by_window(forecaster: ReferenceForecaster, windows: WindowBatches, levels: EvaluationLevels) -> torch.Tensor:
    """A forecaster of (series, origin) pairs on the windows: [N, H, Q] at the levels."""
    return forecaster(windows.windows.series, windows.windows.origin, windows.shape.horizon, levels.levels)


Contender = ReferenceContender | OurContender | NeuralForecastContender


def seasonal_naive(lag: int) -> ReferenceContender:
    return ReferenceContender(
        f"seasonal_naive_{lag}",
        f"the value {lag} h earlier + quantiles of past {lag}-h errors",
        lambda bench: SeasonalNaive(bench.data.panel, lag, bench.cfg.evaluation.residual_window),
    )


ORACLE = ReferenceContender(
    "oracle", "the true conditional distribution (synthetic data only)", lambda bench: bench.data.oracle
)


def contenders(base_config: str, attention_config: str, synthetic: bool) -> list[Contender]:
    """Every contender, in table order."""
    ours = [
        OurContender(
            "nbeatsaq_cat", "our N-BEATS-AQ, level concatenated to the input", base_config, ("model.conditioning=cat",)
        ),
        OurContender("nbeatsaq_film", "our N-BEATS-AQ, level by FiLM", base_config, ("model.conditioning=film",)),
        *(
            OurContender(
                f"adaptive_attention_{kind}",
                f"our adaptive-attention model, {kind} level sampler",
                attention_config,
                (f"sampler={kind}",),
            )
            for kind in ("uniform", "beta", "adaptive")
        ),
        OurContender(
            "adaptive_attention_no_hata",
            "the adaptive-attention config as shipped, without its HATA blocks (model.attention.num_blocks=0)",
            attention_config,
            ("model.attention.num_blocks=0",),
        ),
    ]
    nixtla = [
        NeuralForecastContender(
            "neuralforecast_nbeats_mq", "neuralforecast NBEATS, MQLoss at the evaluation levels", "NBEATS", "mq"
        ),
        NeuralForecastContender(
            "neuralforecast_nbeats_iq", "neuralforecast NBEATS, IQLoss, asked level by level", "NBEATS", "iq"
        ),
        NeuralForecastContender(
            "neuralforecast_nhits_mq", "neuralforecast NHITS, MQLoss at the evaluation levels", "NHITS", "mq"
        ),
    ]
    references = [seasonal_naive(24), seasonal_naive(168)] + ([ORACLE] if synthetic else [])
    return [*references, *nixtla, *ours]


def score_contender(bench: Bench, forecasts: Forecasts) -> dict[str, float]:
    """The headline scores of a contender's forecasts on the bench's windows: every contender through this code."""
    batch = bench.windows.all()
    raw = forecasts.prediction
    if raw.shape != (*batch.target.shape, len(bench.levels)):
        raise ValueError(f"forecasts of shape {tuple(raw.shape)}, expected {(*batch.target.shape, len(bench.levels))}")
    scores = score_forecasts(bench.levels, raw, batch.target, batch.target_mask, bench.cfg.evaluation.rearrange)
    return {**headline(scores.final), **forecasts.extra_metrics}


def conformal_contender_scores(bench: Bench, forecasts: Forecasts) -> dict[str, float]:
    """The headline scores of the test forecasts after the bench's correction, fitted on the validation forecasts."""
    test, val = (
        SplitForecasts(prediction, batch.target, batch.target_mask, batch.series, batch.origin)
        for prediction, batch in (
            (forecasts.prediction, bench.windows.all()),
            (forecasts.val_prediction, bench.val_windows.all()),
        )
    )
    return conformal_scores(bench.conformal, bench.levels, val, test, bench.cfg.evaluation.rearrange)["after"]


def run_contender(contender: Contender, bench: Bench, seed: int) -> dict[str, Any]:
    """Train (if it trains), forecast and score one contender: one record of the results file."""
    forecasts = contender.run(bench, seed)
    if not torch.isfinite(forecasts.prediction).all():
        raise RuntimeError(f"{contender.name} forecast non-finite values")
    record = {
        "variant": contender.name,  # the key benchmarks.variant_runs tabulates by
        "seed": seed,
        "model": score_contender(bench, forecasts),
        "train_seconds": forecasts.training.get("seconds"),
        "train_steps": forecasts.training.get("steps"),
        "train_samples_per_second": forecasts.training.get("samples_per_second"),
        "eval_seconds": forecasts.eval_seconds,
        "windows": len(bench.windows),
        "window_fingerprint": window_fingerprint(bench.windows),
        "settings": bench.settings,
    }
    if forecasts.val_prediction is not None:
        record["conformal"] = {"kind": str(bench.conformal), **conformal_contender_scores(bench, forecasts)}
    return record


def window_fingerprint(windows: WindowBatches) -> str:
    """A short hash of the (series, origin) pairs: equal fingerprints = the very same windows."""
    import hashlib

    pairs = np.stack([windows.windows.series, windows.windows.origin]).astype(np.int64)
    return hashlib.sha1(pairs.tobytes()).hexdigest()[:12]
