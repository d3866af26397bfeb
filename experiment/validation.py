"""Every check of a run config beyond its keys and types, in one place; ``load_config`` runs it.

Two kinds of rule:

- a section's own rules (ranges, and rules among its fields) belong to its option dataclass, which
  checks itself when it is created (``__post_init__``); :func:`validate` creates each checked
  section from the config, so those checks run here, before anything is built;
- rules that tie keys of different sections together are the functions in :data:`RULES` below.

Each failure is a ``ConfigError`` whose message names the keys and what to change.
"""

from __future__ import annotations

from typing import Callable

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from anyquantile.experiment.errors import ConfigError
from anyquantile.experiment.schema import Architecture, DataSource, OptimizerConfig, TestCheckpoint
from anyquantile.model.schedules import Schedule
from anyquantile.modules.nbeats import Conditioning

# Lightning precisions this project trains and evaluates in.
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "64-true")
# Lightning precisions it refuses, with the reason.
REFUSED_PRECISIONS = {
    "bf16-true": "bf16 weights would make the evaluation's forecasts bf16 and cross; use bf16-mixed "
    "(bf16 matmuls, fp32 weights and evaluation)",
}
# Sections created from their option dataclass (deepest first, so a message names the section that failed).
CHECKED_SECTIONS = (
    "dataset.synthetic",
    "dataset",
    "model.attention",
    "model",
    "sampler",
    "optimizer",
    "evaluation",
    "trainer",
)


def validate(cfg: DictConfig, source: str = "config") -> None:
    """Raise a ``ConfigError`` (prefixed by ``source``, e.g. the config file) at the first broken rule."""
    # First, as creating the dataset section would fail on a missing path with a less helpful message.
    problem = _a_file_source_names_its_file(cfg)
    if problem:
        raise ConfigError(f"{source}: {problem}")
    for section in CHECKED_SECTIONS:
        try:
            OmegaConf.to_object(OmegaConf.select(cfg, section))
        except (ValueError, OmegaConfBaseException) as error:
            raise ConfigError(f"{source}: bad {section} setting: {error}") from None
    for rule in RULES:
        problem = rule(cfg)
        if problem:
            raise ConfigError(f"{source}: {problem}")


def _a_file_source_names_its_file(cfg: DictConfig) -> str | None:
    data = cfg.dataset
    if data.source == DataSource.file and (OmegaConf.is_missing(data, "path") or not data.path):
        return "dataset.source is 'file' but no dataset.path is given; add dataset.path=FILE"
    if data.source == DataSource.frame and (cfg.trainer.devices != 1 or cfg.trainer.num_nodes != 1):
        # DDP on CPU starts its ranks by running the command again: a frame in memory cannot travel with it
        return (
            "dataset.source is 'frame' (Forecaster.fit): it trains in one process; set trainer.devices=1 and "
            "trainer.num_nodes=1"
        )
    return None


def _adaptive_attention_takes_the_level_at_the_output(cfg: DictConfig) -> str | None:
    m = cfg.model
    if m.architecture == Architecture.adaptive_attention and not (
        m.conditioning == Conditioning.out and m.use_calendar and m.use_history_mask
    ):
        return (
            "model.architecture=adaptive_attention needs model.conditioning=out, model.use_calendar=true "
            "and model.use_history_mask=true"
        )
    return None


def _patches_tile_the_window(cfg: DictConfig) -> str | None:
    if cfg.model.architecture != Architecture.adaptive_attention:
        return None
    P, T, H = cfg.model.attention.patch_length, cfg.dataset.history_length, cfg.dataset.horizon
    if T % P or H % P:
        return f"model.attention.patch_length ({P}) must divide dataset.history_length ({T}) and dataset.horizon ({H})"
    return None


def _a_supported_precision(cfg: DictConfig) -> str | None:
    precision = cfg.trainer.precision
    if precision in REFUSED_PRECISIONS:
        return f"trainer.precision={precision} is not supported: {REFUSED_PRECISIONS[precision]}"
    if precision not in PRECISIONS:
        return f"unknown trainer.precision '{precision}'; choose one of {', '.join(PRECISIONS)}"
    return None


def _fp16_clipping_needs_an_unfused_adam(cfg: DictConfig) -> str | None:
    # A fused Adam unscales fp16 gradients inside its own step, after Lightning would clip them.
    if cfg.trainer.precision == "16-mixed" and cfg.trainer.gradient_clip_val and cfg.optimizer.fused:
        return "trainer.gradient_clip_val with trainer.precision=16-mixed needs optimizer.fused=false"
    return None


def _validation_chooses_only_outside_training(cfg: DictConfig) -> str | None:
    refits = OmegaConf.to_object(cfg.dataset).split_boundaries().refits
    if refits and cfg.trainer.test_checkpoint == TestCheckpoint.best:
        return (
            f"dataset.train_end={cfg.dataset.train_end} trains on the validation months (from dataset.val_start="
            f"{cfg.dataset.val_start}): validation cannot choose the checkpoint; set trainer.test_checkpoint=last"
        )
    return None


def _one_clock_for_every_rank(cfg: DictConfig) -> str | None:
    # Each DDP rank would read its own clock: rates a hair apart, replicas drifting apart over a run.
    ranks = cfg.trainer.devices * cfg.trainer.num_nodes
    if cfg.optimizer.schedule == Schedule.cosine and cfg.trainer.max_time and ranks > 1:
        return (
            "optimizer.schedule=cosine follows trainer.max_time by each process's clock, which differ between "
            "DDP ranks: with several ranks give the budget in trainer.max_steps (trainer.max_time=null)"
        )
    return None


def _cosine_settings_only_under_cosine(cfg: DictConfig) -> str | None:
    default = OptimizerConfig.final_lr_fraction
    if cfg.optimizer.schedule != Schedule.cosine and cfg.optimizer.final_lr_fraction != default:
        return "optimizer.final_lr_fraction applies to optimizer.schedule=cosine only"
    return None


RULES: tuple[Callable[[DictConfig], str | None], ...] = (
    _one_clock_for_every_rank,
    _cosine_settings_only_under_cosine,
    _validation_chooses_only_outside_training,
    _adaptive_attention_takes_the_level_at_the_output,
    _patches_tile_the_window,
    _a_supported_precision,
    _fp16_clipping_needs_an_unfused_adam,
)
