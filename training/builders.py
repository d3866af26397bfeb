"""Turn a validated config into built objects: data, network, forecaster. Nothing here reads files but data."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from dataset.calendar import CALENDAR_FEATURES
from dataset.datamodule import WindowDataModule
from dataset.loader import load_hourly_panel
from dataset.panel import HourlyPanel
from dataset.splits import SplitBoundaries, make_splits
from dataset.synthetic import SyntheticLoad, SyntheticLoadSpec
from dataset.windows import WindowIndex, WindowShape
from evaluation.references import ReferenceForecaster
from model.forecaster import AnyQuantileForecaster, AnyQuantileForecasterAdaptiveAttention
from model.schedules import InverseSquareRootWarmup
from modules.adaptive_network import AdaptiveAttentionNetwork, CrossStepRefinement, HataBlock
from modules.attention import AdaptiveTemporalAttention
from modules.forecast_network import AnyQuantileNetwork, context_size
from modules.level_sampling import LevelSampler, build_level_sampler
from modules.nbeats import AnyQuantileNBeats, NBeatsStack, QuantileEmbedding
from modules.quantile_levels import EvaluationLevels
from modules.scaling import build_scaler
from training.config import SAMPLER_KEYS_BY_KIND, ConfigError, ExperimentConfig, SamplerConfig, config_to_dict

DATA_SOURCES = ("synthetic", "file")
ARCHITECTURES = ("nbeats", "adaptive_attention")


@dataclass(frozen=True)
class ForecastData:
    """Series, window shape and split windows; ``oracle`` is set when the data's true distribution is known."""

    panel: HourlyPanel
    shape: WindowShape
    splits: dict[str, WindowIndex]
    oracle: ReferenceForecaster | None = None


def build_data(cfg: DictConfig) -> ForecastData:
    """Load or generate the series named by ``cfg.dataset`` and cut them into split windows."""
    data = cfg.dataset
    shape = WindowShape(data.history_length, data.horizon)
    oracle = None
    if data.source == "synthetic":
        synthetic = SyntheticLoad(SyntheticLoadSpec(**OmegaConf.to_container(data.synthetic)))
        panel, oracle = synthetic.panel, synthetic.oracle_quantiles
    elif data.source == "file":
        if not data.path:
            raise ConfigError("dataset.source is 'file' but no dataset.path is given; add dataset.path=FILE")
        panel = load_hourly_panel(Path(data.path).expanduser(), min_length=shape.length)
    else:
        raise ConfigError(f"unknown dataset.source '{data.source}'; choose one of {DATA_SOURCES}")
    boundaries = SplitBoundaries(
        val_start=data.val_start, train_start=data.train_start, test_start=data.test_start, test_end=data.test_end
    )
    try:
        splits = make_splits(panel, shape, boundaries, data.train_step, data.eval_step, data.min_observed_history)
    except ValueError as error:  # unparseable or out-of-order dates, empty splits, bad steps
        raise ConfigError(f"dataset split settings: {error}") from None
    return ForecastData(panel=panel, shape=shape, splits=splits, oracle=oracle)


def build_datamodule(cfg: DictConfig, data: ForecastData) -> WindowDataModule:
    return WindowDataModule(
        data.panel, data.shape, data.splits,
        batch_size=cfg.dataset.batch_size, eval_batch_size=cfg.dataset.eval_batch_size,
        seed=cfg.seed, num_workers=cfg.dataset.num_workers,
    )


def build_evaluation_levels(cfg: DictConfig) -> EvaluationLevels:
    e = cfg.evaluation
    return EvaluationLevels(e.grid_size, tuple(e.intervals), extra_levels=tuple(e.calibration_levels))


def build_network(cfg: DictConfig) -> torch.nn.Module:
    """``(history, history_mask, calendar, levels) -> ScaledForecast`` for ``cfg.model``."""
    m, data = cfg.model, cfg.dataset
    if m.architecture not in ARCHITECTURES:
        raise ConfigError(f"unknown model.architecture '{m.architecture}'; choose one of {ARCHITECTURES}")
    adaptive = m.architecture == "adaptive_attention"
    if adaptive and not (m.use_calendar and m.use_history_mask and m.conditioning == "out"):
        raise ConfigError("model.architecture=adaptive_attention needs model.conditioning=out, "
                          "model.use_calendar=true and model.use_history_mask=true")
    calendar_features = len(CALENDAR_FEATURES)
    backbone_context_size = context_size(data.history_length, calendar_features, m.use_calendar, m.use_history_mask)
    if not adaptive:
        backbone = AnyQuantileNBeats(
            history_length=data.history_length,
            horizon=data.horizon,
            context_size=backbone_context_size,
            num_blocks=m.num_blocks,
            num_layers=m.num_layers,
            width=m.width,
            conditioning=m.conditioning,
            quantile_embedding=m.quantile_embedding,
            quantile_embedding_dim=m.quantile_embedding_dim,
            dropout=m.dropout,
        )
        return AnyQuantileNetwork(backbone, build_scaler(m.scaler), m.use_calendar, m.use_history_mask)
    # The adaptive network's backbone is q-free; the level enters at its output (conditioning 'out').
    backbone = NBeatsStack(data.history_length, data.horizon, backbone_context_size, m.num_blocks, m.num_layers, m.width, m.dropout)
    a = m.attention
    blocks = [
        HataBlock(
            a.d_model,
            AdaptiveTemporalAttention(
                a.d_model, a.num_heads, local_ratio=a.local_ratio, window=a.window, gate=a.gate,
                fixed_gate=a.fixed_gate, max_length=(data.history_length + data.horizon) // a.patch_length,
                gate_context_size=calendar_features if a.calendar_gates else 0, bias=a.bias,
                bias_init=a.bias_init, bias_start=a.bias_start, bias_end=a.bias_end,
                temporal_weights=a.temporal_weights, dropout=a.dropout,
            ),
            kernel_sizes=tuple(a.conv_kernels), ffn_multiplier=a.ffn_multiplier, dropout=a.dropout,
        )
        for _ in range(a.num_blocks)
    ]
    return AdaptiveAttentionNetwork(
        backbone, build_scaler(m.scaler), blocks,
        history_length=data.history_length, horizon=data.horizon, calendar_features=calendar_features,
        d_model=a.d_model, fft_features=a.fft_features,
        cross_step=CrossStepRefinement(a.d_model, data.horizon, a.patch_length) if a.cross_step else None,
        calendar_gates=a.calendar_gates, schedule_steps=a.bias_schedule_steps, patch_length=a.patch_length,
        level_embedding=QuantileEmbedding(m.quantile_embedding, m.quantile_embedding_dim),
    )


def build_forecaster(cfg: DictConfig) -> AnyQuantileForecaster:
    """The LightningModule of ``cfg``, with fresh weights; a setting its parts refuse is a ConfigError."""
    try:
        return _build_forecaster(cfg)
    except ConfigError:
        raise
    except ValueError as error:  # the modules check their own arguments (kinds, ranges) and say what is wrong
        raise ConfigError(f"bad model setting: {error}") from None


def build_training_forecaster(cfg: DictConfig) -> AnyQuantileForecaster:
    """The forecaster to train: :func:`build_forecaster`, its network's forward compiled in place when
    ``trainer.compile`` (the state dict keeps its keys, so checkpoints load without it)."""
    forecaster = build_forecaster(cfg)
    if cfg.trainer.compile:
        forecaster.network.compile()
    return forecaster


def build_sampler(cfg: DictConfig) -> LevelSampler:
    """The training level sampler of ``cfg.sampler``; a setting that its kind does not use is an error."""
    s = cfg.sampler
    defaults = SamplerConfig()
    for kind, keys in SAMPLER_KEYS_BY_KIND.items():
        for key in keys:
            if kind != s.kind and s[key] != getattr(defaults, key):
                raise ConfigError(f"sampler.{key} applies only to sampler.kind={kind}, but sampler.kind is '{s.kind}'")
    adaptive = {key: s[key] for key in SAMPLER_KEYS_BY_KIND["adaptive"]} if s.kind == "adaptive" else {}
    try:
        return build_level_sampler(s.kind, s.levels_per_sample, tuple(s.fixed_levels), s.alpha, s.beta, **adaptive)
    except ValueError as error:
        raise ConfigError(f"bad sampler setting (sampler.*): {error}") from None


def _build_forecaster(cfg: DictConfig) -> AnyQuantileForecaster:
    forecaster = (
        AnyQuantileForecasterAdaptiveAttention if cfg.model.architecture == "adaptive_attention" else AnyQuantileForecaster
    )
    return forecaster(
        network=build_network(cfg),
        level_sampler=build_sampler(cfg),
        evaluation_levels=build_evaluation_levels(cfg),
        horizon=cfg.dataset.horizon,
        optimizer=functools.partial(
            torch.optim.Adam, lr=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay, fused=cfg.optimizer.fused,
        ),
        lr_schedule=InverseSquareRootWarmup(cfg.optimizer.warmup_steps),
        loss_normalisation=cfg.model.loss_normalisation,
        rearrange=cfg.evaluation.rearrange,
        paper_protocol_levels=cfg.evaluation.paper_protocol_levels,
        config=config_to_dict(cfg),
    )


def load_forecaster(checkpoint_path: str | Path) -> tuple[AnyQuantileForecaster, DictConfig]:
    """Rebuild a trained forecaster and its config from a checkpoint written by ``train``."""
    checkpoint: dict[str, Any] = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    if "forecast_config" not in checkpoint:
        raise ValueError(f"{checkpoint_path} has no stored config; was it written by train_adaptive_attention.py?")
    cfg = OmegaConf.merge(OmegaConf.structured(ExperimentConfig), checkpoint["forecast_config"])
    forecaster = build_forecaster(cfg)
    forecaster.load_state_dict(checkpoint["state_dict"])
    return forecaster.eval(), cfg
