"""The run configuration: a typed schema, composed from YAML by Hydra, strict about every key.

Every YAML file and every ``key=value`` override is merged into the structured schema below, so a
misspelt key or a value of the wrong type fails before anything runs, with a message that names
the key and suggests the nearest valid one.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

SCHEMA_NAME = "experiment_schema"


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which key and why."""


@dataclass
class SyntheticDataConfig:
    num_series: int = 6
    start: str = "2015-01-01"
    num_hours: int = 3 * 365 * 24
    seed: int = 0
    gaps_per_series: int = 2


@dataclass
class DatasetConfig:
    name: str = "synthetic"
    source: str = "synthetic"  # synthetic | file
    path: Optional[str] = None  # the data file when source = file (CSV, CSV.gz or parquet)
    synthetic: SyntheticDataConfig = field(default_factory=SyntheticDataConfig)
    history_length: int = 168  # T hours
    horizon: int = 48  # H hours
    train_start: Optional[str] = None  # None: the first hour of the data
    val_start: str = "2017-01-01"
    test_start: Optional[str] = None  # None: no test split, the final evaluation uses val
    test_end: Optional[str] = None  # None: the end of the data
    train_step: int = 1  # hours between training window origins
    eval_step: int = 24  # hours between val/test window origins
    min_observed_history: float = 0.5  # share of history hours a window needs observed
    batch_size: int = 1024
    eval_batch_size: int = 256
    num_workers: int = 0


@dataclass
class AttentionConfig:
    """The adaptive-attention (HATA) refinement; used when model.architecture = adaptive_attention."""

    patch_length: int = 8  # hours per token; the attention's cost falls with its square
    d_model: int = 64
    num_heads: int = 4
    num_blocks: int = 2
    local_ratio: float = 0.5  # share of heads that are local
    window: int = 3  # local heads see keys within this many tokens (3 patches of 8 hours: a day either side)
    gate: str = "scalar"  # fixed | scalar | head | step | token
    fixed_gate: float = 0.5  # alpha when gate = fixed
    calendar_gates: bool = True  # alpha also conditioned on each position's calendar
    bias: str = "learned"  # learned | scheduled | off: the soft locality bias beta
    bias_init: float = 1.0
    bias_start: float = 2.0  # scheduled beta moves from bias_start ...
    bias_end: float = 0.0  # ... to bias_end over bias_schedule_steps training steps
    bias_schedule_steps: int = 2000
    temporal_weights: str = "off"  # off | linear | sinusoidal
    conv_kernels: list[int] = field(default_factory=lambda: [3, 7])  # in tokens; [] switches the convolution off
    ffn_multiplier: int = 2
    fft_features: int = 0  # 0 = off; else the number of lowest frequencies embedded
    cross_step: bool = True
    dropout: float = 0.0  # 0.1 costs ~15 % of a CPU training step (bernoulli sampling); switch on where it helps


@dataclass
class ModelConfig:
    architecture: str = "nbeats"  # nbeats | adaptive_attention
    conditioning: str = "film"  # cat | film | out
    num_blocks: int = 6
    num_layers: int = 3
    width: int = 256
    dropout: float = 0.0
    quantile_embedding: str = "identity"  # identity (q) | cosine (cos(pi k q), k = 1..dim) | normal (q and its normal quantile z(q))
    quantile_embedding_dim: int = 1  # 1 for identity, 2 for normal, any for cosine
    scaler: str = "max_abs"  # max_abs | robust
    use_calendar: bool = True
    use_history_mask: bool = True
    loss_normalisation: str = "window"  # window | target | none
    attention: AttentionConfig = field(default_factory=AttentionConfig)


@dataclass
class SamplerConfig:
    """How training levels are drawn (modules/level_sampling.py); presets in config/sampler/."""

    kind: str = "uniform"  # uniform | beta | adaptive
    levels_per_sample: int = 1  # random levels per sample (for adaptive: its adaptive levels)
    fixed_levels: list[float] = field(default_factory=list)  # added to every sample, e.g. [0.5, 0.05, 0.95]
    alpha: float = 0.5  # beta only
    beta: float = 0.5  # beta only
    num_bins: int = 20  # adaptive only, and the rest below
    momentum: float = 0.98  # running per-bin estimates: new = momentum * old + (1 - momentum) * batch
    temperature: float = 1.0  # softmax temperature over relative bin weakness; higher = closer to uniform
    min_prob: float = 0.01  # floor of each bin's probability; min_prob * num_bins <= 1
    importance_weighting: bool = True  # weight levels by uniform / sampling density (objective stays CRPS / 2)
    weakness: str = "gaussian"  # raw | variance | gaussian | calibration (see AdaptiveLevelSampler)


SAMPLER_KEYS_BY_KIND = {
    "beta": ("alpha", "beta"),
    "adaptive": ("num_bins", "momentum", "temperature", "min_prob", "importance_weighting", "weakness"),
}


@dataclass
class OptimizerConfig:
    lr: float = 5e-4
    weight_decay: float = 0.0
    warmup_steps: int = 400  # inverse-square-root schedule after a linear warm-up
    # Adam's update as one vectorised kernel per parameter instead of a dozen for-each passes over all
    # of them: the same algorithm (equal within float rounding); for the 8 M-parameter CAT its own time
    # per step falls from 14.5 to 4.8 ms (README, "Efficiency").
    fused: bool = True


@dataclass
class EvaluationConfig:
    grid_size: int = 99  # K midpoint levels for CRPS
    intervals: list[float] = field(default_factory=lambda: [0.5, 0.8, 0.9, 0.95])
    paper_protocol_levels: int = 100  # test-time CRPS by the any-quantile paper's protocol (levels per window; 0 = off)
    rearrange: bool = True  # sort each forecast along the level grid before scoring (scores before it are kept)
    calibration_levels: list[float] = field(default_factory=lambda: [0.01, 0.05, 0.95, 0.99])  # share of targets below each
    seasonal_naive_lags: list[int] = field(default_factory=lambda: [168])  # reference forecasts in metrics.json
    residual_window: int = 28 * 24  # hours of past seasonal errors for the naive quantiles


@dataclass
class TrainerConfig:
    accelerator: str = "cpu"
    devices: int = 1
    precision: str = "32-true"  # 32-true | bf16-mixed | 16-mixed (GPU) | 64-true
    max_steps: int = 2000
    max_time: Optional[str] = None  # wall-clock budget "DD:HH:MM:SS"; training stops at whichever comes first
    val_every_n_steps: int = 200
    limit_val_batches: float = 1.0
    gradient_clip_val: Optional[float] = None
    log_every_n_steps: int = 50
    enable_progress_bar: bool = True
    num_threads: Optional[int] = None  # torch intra-op threads; None keeps torch's default
    compile: bool = False  # torch.compile the network's forward for training (benchmarks/speed.py --compile measures it)


@dataclass
class ExperimentConfig:
    name: str = "nbeatsaq"
    seed: int = 0
    output_dir: str = "runs"
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


ConfigStore.instance().store(name=SCHEMA_NAME, node=ExperimentConfig)


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Compose ``path`` (a YAML file in a Hydra config folder) with ``key=value`` overrides.

    The YAML's ``defaults`` list must start with ``experiment_schema`` so that every key is checked.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    for override in overrides:
        if override.startswith(("+", "~")):
            # '+key=value' would add a key the schema does not know, '~key' delete one it needs.
            raise ConfigError(f"{path}: override '{override}' adds or deletes a key; only existing keys can be set (key=value)")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(path.parent.resolve()), version_base="1.3"):
            cfg = compose(config_name=path.stem, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(_explain(error, path)) from None
    finally:
        GlobalHydra.instance().clear()
    if OmegaConf.get_type(cfg) is not ExperimentConfig:
        raise ConfigError(f"{path}: its defaults list must start with '{SCHEMA_NAME}' so that keys are checked")
    return cfg


def config_to_dict(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain Python containers."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def _explain(error: Exception, path: Path) -> str:
    """One message that names the offending key (and the nearest valid one) or the bad value."""
    text = "\n".join(str(e) for e in (error, error.__cause__) if e is not None)
    key = re.search(r"full_key: ([\w.]+)", text) or re.search(r"Could not override '([^']+)'", text)
    if key is None:
        return f"{path}: {text}"
    name = key.group(1)
    converted = re.search(r"Value .* could not be converted to \w+|Invalid value .*", text)
    if converted:
        return f"{path}: bad value for '{name}': {converted.group(0)}"
    suggestion = _nearest_key(name)
    hint = f" Did you mean '{suggestion}'?" if suggestion else ""
    return f"{path}: unknown config key '{name}'.{hint}"


def _nearest_key(name: str) -> str | None:
    valid = _all_keys(OmegaConf.structured(ExperimentConfig))
    match = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    return match[0] if match else None


def _all_keys(node: Any, prefix: str = "") -> list[str]:
    keys = []
    for key in node.keys():
        full = f"{prefix}{key}"
        keys.append(full)
        child = node[key]
        if isinstance(child, DictConfig):
            keys += _all_keys(child, f"{full}.")
    return keys
