"""Turn a validated config into built objects: data, network, level sampler, forecaster.

Each module is handed its own option dataclass (``OmegaConf.to_object`` of its section), so no
option is copied here by hand; what is derived (sizes from the data's window shape, the calendar's
width) is passed beside it. Nothing here reads files but data.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from anyquantile.baselines.reference import ReferenceForecaster
from anyquantile.dataset.datamodule import WindowDataModule
from anyquantile.dataset.loader import load_hourly_panel
from anyquantile.dataset.panel import HourlyPanel
from anyquantile.dataset.public_holidays import UnknownCountryError, series_countries
from anyquantile.dataset.splits import make_splits
from anyquantile.dataset.synthetic import SyntheticLoad
from anyquantile.dataset.windows import WindowIndex, WindowShape, calendar_width
from anyquantile.experiment.config import config_to_dict
from anyquantile.experiment.errors import ConfigError
from anyquantile.experiment.schema import Architecture, DatasetConfig, DataSource, ModelConfig
from anyquantile.model.forecaster import AnyQuantileForecaster, AnyQuantileForecasterAdaptiveAttention
from anyquantile.model.schedules import InverseSquareRootWarmup, Schedule, WarmupCosineToBudget
from anyquantile.modules.adaptive_network import AdaptiveAttentionNetwork
from anyquantile.modules.forecast_network import AnyQuantileNetwork, CovariateChannels, QuantileNetwork, context_size
from anyquantile.modules.level_sampling import LevelSampler, build_level_sampler
from anyquantile.modules.nbeats import AnyQuantileNBeats, NBeatsStack, QuantileEmbedding
from anyquantile.modules.quantile_levels import EvaluationLevels


@dataclass(frozen=True)
class ForecastData:
    """Series, window shape and split windows; ``oracle`` is set when the data's true distribution is known."""

    panel: HourlyPanel
    shape: WindowShape
    splits: dict[str, WindowIndex]
    oracle: ReferenceForecaster | None = None


def build_data(cfg: DictConfig, strict_holiday_map: bool = True, panel: HourlyPanel | None = None) -> ForecastData:
    """Load or generate the series named by ``cfg.dataset`` and cut them into split windows.

    ``strict_holiday_map``: a ``dataset.holiday_countries`` entry for a series the data does not have is an
    error (training); evaluating a file of some of a model's series is not strict. ``panel``: the series of
    ``dataset.source=frame`` (the Python API's frame, validated like a file), and only of that source."""
    data: DatasetConfig = OmegaConf.to_object(cfg.dataset)
    shape = WindowShape(data.history_length, data.horizon)
    oracle = None
    if (panel is not None) != (data.source == DataSource.frame):
        raise ConfigError(
            "dataset.source=frame: the series are a frame handed to Forecaster.fit, which this run does not have; "
            "give a data file (dataset.source=file dataset.path=FILE, or evaluate's --data FILE)"
            if panel is None
            else f"a panel was handed over, but dataset.source is '{data.source}'"
        )
    if data.source == DataSource.synthetic:
        synthetic = SyntheticLoad(data.synthetic)
        panel, oracle = synthetic.panel, synthetic.oracle_quantiles
    elif data.source == DataSource.file:  # validation made sure that dataset.path is given
        panel = load_hourly_panel(Path(data.path).expanduser(), min_length=shape.length, covariates=data.covariates())
    assert panel is not None  # the frame's, checked above
    panel = with_holidays(panel, data, strict_holiday_map)
    try:
        splits = make_splits(
            panel, shape, data.split_boundaries(), data.train_step, data.eval_step, data.min_observed_history
        )
    except ValueError as error:  # a split without windows in this data
        raise ConfigError(f"dataset split settings: {error}") from None
    return ForecastData(panel=panel, shape=shape, splits=splits, oracle=oracle)


def with_holidays(panel: HourlyPanel, data: DatasetConfig, strict: bool = True) -> HourlyPanel:
    """``panel`` with each series' holiday country when ``data.holidays`` (a ConfigError naming a series
    without a known country, or with ``strict`` a mapped id that is no series of ``panel``); else as it is."""
    if not data.holidays:
        return panel
    try:
        countries = series_countries(panel.series_ids, dict(data.holiday_countries), strict)
    except UnknownCountryError as error:
        raise ConfigError(str(error)) from None
    return dataclasses.replace(panel, holiday_countries=countries)


def build_datamodule(cfg: DictConfig, data: ForecastData) -> WindowDataModule:
    return WindowDataModule(
        data.panel,
        data.shape,
        data.splits,
        batch_size=cfg.dataset.batch_size,
        eval_batch_size=cfg.dataset.eval_batch_size,
        seed=cfg.seed,
        num_workers=cfg.dataset.num_workers,
    )


def build_evaluation_levels(cfg: DictConfig) -> EvaluationLevels:
    return OmegaConf.to_object(cfg.evaluation).levels()


def build_network(cfg: DictConfig) -> QuantileNetwork:
    """``(history, history_mask, calendar, levels) -> ScaledForecast`` for ``cfg.model``."""
    model: ModelConfig = OmegaConf.to_object(cfg.model)
    T, H = cfg.dataset.history_length, cfg.dataset.horizon
    spec = OmegaConf.to_object(cfg.dataset).covariates()
    covariates = CovariateChannels(len(spec.futr), len(spec.hist), len(spec.stat))
    C = calendar_width(cfg.dataset.holidays, covariates.width)
    side_inputs = context_size(
        T, H, C, use_calendar=model.use_calendar, use_history_mask=model.use_history_mask, covariates=covariates
    )
    if model.architecture == Architecture.nbeats:
        return AnyQuantileNetwork(model, AnyQuantileNBeats(model, T, H, side_inputs), covariates=covariates)
    # The adaptive network's backbone is q-free; the level enters at its output (validation: conditioning 'out').
    return AdaptiveAttentionNetwork(
        model.attention,
        model,
        NBeatsStack(model, T, H, side_inputs),
        history_length=T,
        horizon=H,
        calendar_features=C,
        covariates=covariates,
        level_embedding=QuantileEmbedding(model.quantile_embedding, model.quantile_embedding_dim),
    )


def build_lr_schedule(cfg: DictConfig) -> InverseSquareRootWarmup | WarmupCosineToBudget:
    """The learning-rate multiplier per step of ``cfg.optimizer``; a cosine schedule follows the step budget
    here, and ``training.train`` makes it follow ``trainer.max_time`` too."""
    optimizer = cfg.optimizer
    if optimizer.schedule == Schedule.cosine:
        return WarmupCosineToBudget(optimizer.warmup_steps, cfg.trainer.max_steps, optimizer.final_lr_fraction)
    return InverseSquareRootWarmup(optimizer.warmup_steps)


def build_sampler(cfg: DictConfig) -> LevelSampler:
    """The training level sampler of ``cfg.sampler``."""
    return build_level_sampler(OmegaConf.to_object(cfg.sampler))


def build_forecaster(cfg: DictConfig) -> AnyQuantileForecaster:
    """The LightningModule of ``cfg``, with fresh weights; a setting its parts refuse is a ConfigError."""
    try:
        return _build_forecaster(cfg)
    except ConfigError:
        raise
    except ValueError as error:  # the modules check their own arguments (sizes, ranges) and say what is wrong
        raise ConfigError(f"bad model setting: {error}") from None


def build_training_forecaster(cfg: DictConfig) -> AnyQuantileForecaster:
    """The forecaster to train: :func:`build_forecaster`, its network's forward compiled in place when
    ``trainer.compile`` (the state dict keeps its keys, so checkpoints load without it)."""
    forecaster = build_forecaster(cfg)
    if cfg.trainer.compile:
        forecaster.network.compile()
    return forecaster


def _build_forecaster(cfg: DictConfig) -> AnyQuantileForecaster:
    adaptive = cfg.model.architecture == Architecture.adaptive_attention
    forecaster = AnyQuantileForecasterAdaptiveAttention if adaptive else AnyQuantileForecaster
    return forecaster(
        network=build_network(cfg),
        level_sampler=build_sampler(cfg),
        evaluation_levels=build_evaluation_levels(cfg),
        horizon=cfg.dataset.horizon,
        optimizer=functools.partial(
            torch.optim.Adam,
            lr=cfg.optimizer.lr,
            weight_decay=cfg.optimizer.weight_decay,
            fused=cfg.optimizer.fused,
        ),
        lr_schedule=build_lr_schedule(cfg),
        rearrange=cfg.evaluation.rearrange,
        paper_protocol_levels=cfg.evaluation.paper_protocol_levels,
        config=config_to_dict(cfg),
    )
