"""The run configuration's typed schema: every key, its type, default and allowed values.

The sections that configure a module are that module's own option dataclass (``model.attention``
is ``modules.adaptive_network.AdaptiveAttentionConfig``, ``sampler`` is
``modules.level_sampling.SamplerConfig``, ``dataset.synthetic`` is
``dataset.synthetic.SyntheticLoadSpec``; ``model`` joins ``NBeatsConfig`` and ``NetworkConfig``):
an option is written once, beside the code that reads it, and the YAML keys are its fields. The
rest (data windows, optimiser, evaluation, trainer) is read by ``experiment/builders.py`` and
``training/train.py``. ``experiment/config.py`` composes and checks a run's config against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from hydra.core.config_store import ConfigStore

from anyquantile.dataset.covariates import CovariateSpec
from anyquantile.dataset.splits import SplitBoundaries
from anyquantile.dataset.synthetic import SyntheticLoadSpec
from anyquantile.model.schedules import Schedule
from anyquantile.modules.adaptive_network import AdaptiveAttentionConfig
from anyquantile.modules.forecast_network import NetworkConfig
from anyquantile.modules.level_sampling import SamplerConfig
from anyquantile.modules.nbeats import NBeatsConfig
from anyquantile.modules.options import Choice, choose, require
from anyquantile.modules.quantile_levels import EvaluationLevels

SCHEMA_NAME = "experiment_schema"


class DataSource(Choice):
    synthetic = "synthetic"  # the embedded synthetic load data set (dataset/synthetic.py)
    file = "file"  # a long-format file, dataset.path
    frame = "frame"  # a pandas frame handed to the Python API (anyquantile.Forecaster.fit), not a file


class Architecture(Choice):
    nbeats = "nbeats"  # N-BEATS-AQ: the level enters the backbone (model.conditioning)
    adaptive_attention = "adaptive_attention"  # a q-free N-BEATS refined by HATA blocks (model.attention)


@dataclass
class DatasetConfig:
    name: str = "synthetic"
    source: DataSource = DataSource.synthetic
    path: Optional[str] = None  # the data file when source = file (CSV, CSV.gz or parquet)
    synthetic: SyntheticLoadSpec = field(default_factory=SyntheticLoadSpec)
    history_length: int = 168  # T hours
    horizon: int = 48  # H hours
    train_start: Optional[str] = None  # None: the first hour of the data
    val_start: str = "2017-01-01"
    # None: val_start. Later (up to test_start, or the data's end): refit on the validation months too
    # (training/refit.py); then the final weights are tested (trainer.test_checkpoint=last)
    train_end: Optional[str] = None
    test_start: Optional[str] = None  # None: no test split, the final evaluation uses val
    test_end: Optional[str] = None  # None: the end of the data
    train_step: int = 1  # hours between training window origins
    eval_step: int = 24  # hours between val/test window origins
    min_observed_history: float = 0.5  # share of history hours a window needs observed
    batch_size: int = 1024
    eval_batch_size: int = 256
    num_workers: int = 0
    holidays: bool = False  # public-holiday features per series beside the calendar's (dataset/public_holidays.py)
    holiday_countries: dict[str, str] = field(default_factory=dict)  # series id -> country code; default: the id
    # covariate columns of the file, under neuralforecast's names (dataset/covariates.py): known for the
    # horizon too, known up to the origin, one value per series
    futr_exog_list: list[str] = field(default_factory=list)
    hist_exog_list: list[str] = field(default_factory=list)
    stat_exog_list: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.source = choose(DataSource, self.source, "data source")
        require(
            self.history_length >= 1 and self.horizon >= 1,
            f"history_length and horizon must be >= 1, got {self.history_length}, {self.horizon}",
        )
        require(
            self.train_step >= 1 and self.eval_step >= 1,
            f"train_step and eval_step must be >= 1, got {self.train_step}, {self.eval_step}",
        )
        require(
            0.0 < self.min_observed_history <= 1.0,
            f"min_observed_history must be in (0, 1], got {self.min_observed_history}",
        )
        require(
            self.batch_size >= 1 and self.eval_batch_size >= 1,
            f"batch_size and eval_batch_size must be >= 1, got {self.batch_size}, {self.eval_batch_size}",
        )
        require(self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}")
        require(
            self.holidays or not self.holiday_countries,
            "dataset.holiday_countries is set but dataset.holidays is false: set dataset.holidays=true",
        )
        self.split_boundaries()  # the split dates parse and come in order
        require(
            self.source != DataSource.synthetic or not self.covariates().width,
            "dataset.futr/hist/stat_exog_list name columns of a file: the synthetic data has no covariates",
        )

    def covariates(self) -> CovariateSpec:
        return CovariateSpec(tuple(self.futr_exog_list), tuple(self.hist_exog_list), tuple(self.stat_exog_list))

    def split_boundaries(self) -> SplitBoundaries:
        return SplitBoundaries(
            val_start=self.val_start,
            train_start=self.train_start,
            test_start=self.test_start,
            test_end=self.test_end,
            train_end=self.train_end,
        )


@dataclass
class ModelConfig(NetworkConfig, NBeatsConfig):
    """``model.*``: the N-BEATS backbone's options (``NBeatsConfig``), the network's around it
    (``NetworkConfig``: scaling, side inputs, loss normalisation), which architecture, and the
    attention refinement's options (``model.attention``, used when architecture = adaptive_attention)."""

    architecture: Architecture = Architecture.nbeats
    attention: AdaptiveAttentionConfig = field(default_factory=AdaptiveAttentionConfig)

    def __post_init__(self) -> None:
        NBeatsConfig.__post_init__(self)  # both parents' checks: a dataclass runs only the first one it finds
        NetworkConfig.__post_init__(self)
        self.architecture = choose(Architecture, self.architecture, "architecture")


@dataclass
class OptimizerConfig:
    lr: float = 5e-4
    weight_decay: float = 0.0
    warmup_steps: int = 400  # linear warm-up, then the schedule's decay
    # inverse_sqrt: 1 / sqrt(step), never annealed; cosine: to final_lr_fraction exactly when the budget
    # (trainer.max_time or max_steps, whichever runs out first) is spent
    schedule: Schedule = Schedule.inverse_sqrt
    final_lr_fraction: float = 0.01  # cosine: the rate's floor, as a fraction of lr
    # Adam's update as one vectorised kernel per parameter instead of a dozen for-each passes over
    # all of them: the same algorithm, equal within float rounding (docs/results.md, "Efficiency").
    fused: bool = True

    def __post_init__(self) -> None:
        require(
            self.lr > 0 and self.weight_decay >= 0,
            f"lr must be > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}",
        )
        self.schedule = choose(Schedule, self.schedule, "learning-rate schedule")
        require(self.warmup_steps >= 1, f"warmup_steps must be >= 1, got {self.warmup_steps}")
        require(
            0.0 <= self.final_lr_fraction < 1.0, f"final_lr_fraction must be in [0, 1), got {self.final_lr_fraction}"
        )


@dataclass
class EvaluationConfig:
    grid_size: int = 99  # K midpoint levels for CRPS
    intervals: list[float] = field(default_factory=lambda: [0.5, 0.8, 0.9, 0.95])
    paper_protocol_levels: int = 100  # test-time CRPS by the any-quantile paper's protocol (levels per window; 0 = off)
    rearrange: bool = True  # sort each forecast along the level grid before scoring (the raw scores are kept)
    calibration_levels: list[float] = field(default_factory=lambda: [0.01, 0.05, 0.95, 0.99])  # share below each
    seasonal_naive_lags: list[int] = field(default_factory=lambda: [168])  # reference forecasts in metrics.json
    residual_window: int = 28 * 24  # hours of past seasonal errors for the naive quantiles

    def __post_init__(self) -> None:
        require(
            self.paper_protocol_levels >= 0,
            f"paper_protocol_levels must be >= 0 (0 = off), got {self.paper_protocol_levels}",
        )
        self.levels()  # the level set checks the grid size, the intervals and the calibration levels

    def levels(self) -> EvaluationLevels:
        """The levels every forecast is scored at."""
        return EvaluationLevels(self.grid_size, tuple(self.intervals), extra_levels=tuple(self.calibration_levels))


class TestCheckpoint(Choice):
    __test__ = False  # not a pytest test class, whatever its name

    best = "best"  # the best validation CRPS
    last = "last"  # the final weights


@dataclass
class TrainerConfig:
    accelerator: str = "cpu"
    devices: int = 1  # processes per machine (DDP ranks: one per GPU, or CPU processes splitting the cores)
    num_nodes: int = 1  # machines; started by torchrun --nnodes or SLURM's srun (docs/scale-out.md)
    precision: str = "32-true"  # one of experiment.validation.PRECISIONS
    max_steps: int = 2000
    max_time: Optional[str] = None  # wall-clock budget "DD:HH:MM:SS"; training stops at whichever comes first
    val_every_n_steps: int = 200
    limit_val_batches: float = 1.0
    gradient_clip_val: Optional[float] = None
    log_every_n_steps: int = 50
    enable_progress_bar: bool = True
    # torch intra-op threads per process; None: torch's default, or with several CPU processes
    # (trainer.devices > 1) the machine's cores split between them (training.cpu.threads_per_process)
    num_threads: Optional[int] = None
    compile: bool = False  # torch.compile the network's forward for training (benchmarks/speed.py --compile)
    # best: the checkpoint of the best validation CRPS is tested; last: the final weights, and no validation
    # runs while training (a refit, or a schedule that anneals to the budget's end)
    test_checkpoint: TestCheckpoint = TestCheckpoint.best
    # keep the K latest of the checkpoints taken every val_every_n_steps steps and at the end of training
    # (checkpoints/snapshot-step=N.ckpt; no validation needed): a snapshot ensemble of one run, for
    # evaluate.py --snapshots RUN_DIR and the benchmark (0: none)
    snapshots: int = 0
    # a resume point: checkpoints/last.ckpt every N training steps (and at the end), where --resume last
    # continues a killed run exactly (training/resume.py)
    checkpoint_every_n_steps: int = 200

    def __post_init__(self) -> None:
        self.test_checkpoint = choose(TestCheckpoint, self.test_checkpoint, "test checkpoint")
        for name in (
            "devices",
            "num_nodes",
            "max_steps",
            "val_every_n_steps",
            "log_every_n_steps",
            "checkpoint_every_n_steps",
        ):
            require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        require(self.limit_val_batches > 0, f"limit_val_batches must be > 0, got {self.limit_val_batches}")
        require(self.snapshots >= 0, f"snapshots must be >= 0 (0: none), got {self.snapshots}")
        require(self.num_threads is None or self.num_threads >= 1, f"num_threads must be >= 1, got {self.num_threads}")
        require(
            self.gradient_clip_val is None or self.gradient_clip_val > 0,
            f"gradient_clip_val must be > 0 (or null: no clipping), got {self.gradient_clip_val}",
        )


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
