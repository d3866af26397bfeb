"""``train(cfg)``: fit, test and write ``metrics.json`` — the function the CLI and the tests call."""

from __future__ import annotations

import json
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from lightning import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ModelSummary, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from anyquantile.dataset.panel import HourlyPanel
from anyquantile.experiment.builders import build_data, build_datamodule, build_training_forecaster
from anyquantile.experiment.checkpoints import CHECKPOINTS, read_checkpoint, stored_config
from anyquantile.experiment.errors import ConfigError, UsageError
from anyquantile.experiment.files import write_text_atomic
from anyquantile.experiment.schema import TestCheckpoint
from anyquantile.model.metrics import headline
from anyquantile.model.schedules import WarmupCosineToBudget
from anyquantile.training.callbacks import AnnealWithBudget, Snapshots, Throughput, WallClockBudget
from anyquantile.training.cpu import cpu_threads, native_bf16, threads_per_process
from anyquantile.training.distributed import (
    end_process_group,
    group_is_up,
    is_rank_zero,
    join_launched_group,
    shared_run_dir,
)
from anyquantile.training.resume import AtomicCheckpointIO, RandomStates, ResumePoint

LAST_CHECKPOINT = "last.ckpt"
METRICS_FILE = "metrics.json"


def train(
    cfg: DictConfig,
    fast_dev_run: bool = False,
    resume: str | None = None,
    callbacks: Sequence[Callback] = (),
    panel: HourlyPanel | None = None,
    echo: bool = True,
) -> dict[str, Any]:
    """Train the model of ``cfg``, score it on the test split (val if there is none), return the summary.

    Args:
        cfg: a config from ``experiment.config.load_config``.
        fast_dev_run: one batch of train, val and test, nothing written but the run folder's config.
        resume: a checkpoint path, or ``"last"`` for the newest ``last.ckpt`` of this config's runs;
            training continues from its step (and in its run folder) up to ``trainer.max_steps``.
        callbacks: extra Lightning callbacks for the trainer.
        panel: the series when ``dataset.source=frame`` (the Python API's ``Forecaster.fit``).
        echo: print the resolved config and the run folder (the command line does; the Python API need not).

    Returns the model's scores (``model``: the final forecast's, ``model_before_rearrangement``: the
    raw forecast's) and how training went; they are written to ``metrics.json`` in the run folder
    (``metrics_file``; None when nothing was written). Reference forecasters are scored by
    ``evaluation.references.add_references``, not here.

    With ``trainer.devices > 1`` (DDP: gloo on CPUs, NCCL on GPUs), the ranks are started by Lightning
    (which runs the same command again) or by torchrun / srun; every rank trains in rank 0's run
    folder, only rank 0 writes files (``training.distributed``), and on CPUs the cores are split
    between the ranks of a machine (``training.cpu.threads_per_process``).
    """
    resume_path = _resolve_resume(cfg, resume)
    if resume_path:
        _check_same_sampler(cfg, resume_path)
    if cfg.trainer.accelerator == "cpu" and cfg.trainer.precision == "bf16-mixed" and not native_bf16():
        warnings.warn(
            "this CPU has no native bf16 matrix instructions (AVX-512 BF16 or AMX): trainer.precision="
            "bf16-mixed is emulated here and runs several times slower than trainer.precision=32-true",
            stacklevel=2,
        )
    # torchrun / srun started the ranks: joined now, so that rank 0's run folder reaches them (Lightning
    # trains in this group). A group joined here, or one Lightning starts in fit, is ended when this call
    # ends, whatever happens; one that was up before is not ours to end.
    joined = join_launched_group(cfg.trainer.accelerator, cfg.trainer.devices * cfg.trainer.num_nodes)
    group_is_ours = joined or not group_is_up()
    try:
        return _fit_and_test(cfg, fast_dev_run, resume_path, callbacks, panel, echo, joined)
    finally:
        if group_is_ours:
            end_process_group()


def _fit_and_test(
    cfg: DictConfig,
    fast_dev_run: bool,
    resume_path: Path | None,
    callbacks: Sequence[Callback],
    panel: HourlyPanel | None,
    echo: bool,
    joined: bool,
) -> dict[str, Any]:
    """``train`` from the seed on: build, fit, test, write ``metrics.json`` (``joined``: the launcher's group is up)."""
    seed_everything(cfg.seed, workers=True, verbose=False)
    # Data and model are built before the run folder exists: a bad file or setting leaves nothing behind.
    data = build_data(cfg, panel=panel)
    model = build_training_forecaster(cfg)
    run_dir = resume_path.parent.parent if resume_path else shared_run_dir(_new_run_dir(cfg), joined)
    if is_rank_zero():
        run_dir.mkdir(parents=True, exist_ok=True)
        # A resume keeps the original config.yaml and records its own config beside it.
        config_name = f"config-resumed-{_timestamp()}.yaml" if resume_path else "config.yaml"
        resolved = OmegaConf.to_yaml(cfg, resolve=True)
        write_text_atomic(run_dir / config_name, resolved)
        if echo:
            print(resolved, flush=True)
            print(f"run folder: {run_dir}", flush=True)

    datamodule = build_datamodule(cfg, data)
    throughput = Throughput(cfg.dataset.batch_size)
    budget = WallClockBudget(duration=cfg.trainer.max_time, interval="step") if cfg.trainer.max_time else None
    budget_callbacks: list[Callback] = [] if budget is None else [budget]
    if isinstance(model.lr_schedule, WarmupCosineToBudget):
        budget_callbacks.append(AnnealWithBudget(model.lr_schedule, budget))
    # test_checkpoint=last: no validation while training (none chooses); the final weights are tested
    chooses = cfg.trainer.test_checkpoint == TestCheckpoint.best
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / CHECKPOINTS,
        filename="best-{step}",
        monitor="val/crps" if chooses else None,
        mode="min",
        save_top_k=1 if chooses else 0,
        save_last=False,  # last.ckpt is the resume point's (ResumePoint), and the final step's (below)
    )
    snapshots = (
        [Snapshots(run_dir / CHECKPOINTS, every_n_steps=cfg.trainer.val_every_n_steps, keep=cfg.trainer.snapshots)]
        if cfg.trainer.snapshots
        else []
    )
    trainer = Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        num_nodes=cfg.trainer.num_nodes,
        precision=cfg.trainer.precision,
        max_steps=cfg.trainer.max_steps,
        max_epochs=-1,
        val_check_interval=cfg.trainer.val_every_n_steps,
        check_val_every_n_epoch=None,
        limit_val_batches=cfg.trainer.limit_val_batches if chooses else 0,
        gradient_clip_val=cfg.trainer.gradient_clip_val,
        log_every_n_steps=cfg.trainer.log_every_n_steps,
        enable_progress_bar=cfg.trainer.enable_progress_bar,
        num_sanity_val_steps=1 if chooses else 0,
        use_distributed_sampler=False,  # WindowDataModule shards batches by rank itself
        plugins=[AtomicCheckpointIO()],
        logger=TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=""),
        callbacks=[
            checkpoint,
            RandomStates(),
            *snapshots,
            throughput,
            LearningRateMonitor(logging_interval="step"),
            *callbacks,
            *budget_callbacks,
            # the plain model summary and tqdm's bar whether or not rich is installed: Lightning would then pick
            # rich ones, whose summary prints past the logging that quiet runs (Forecaster(verbose=False)) silence
            ModelSummary(),
            *([TQDMProgressBar()] if cfg.trainer.enable_progress_bar else []),
            # last of the Checkpoint callbacks (Lightning runs them last, in this order): after every
            # ModelCheckpoint, ours and any passed in, has taken a validation's score
            ResumePoint(
                run_dir / CHECKPOINTS / LAST_CHECKPOINT,
                cfg.trainer.checkpoint_every_n_steps,
                cfg.trainer.val_every_n_steps if chooses else None,
            ),
        ],
        fast_dev_run=fast_dev_run,
        default_root_dir=str(run_dir),
    )
    with cpu_threads(threads_per_process(cfg)):
        trainer.fit(
            model, datamodule=datamodule, ckpt_path=str(resume_path) if resume_path else None, weights_only=True
        )
        if not fast_dev_run:
            trainer.save_checkpoint(run_dir / CHECKPOINTS / LAST_CHECKPOINT)  # the exact final step, for --resume
        # The sampler's state where training ended (testing below loads the best checkpoint's).
        sampler_state = model.level_sampler.state_summary()
        snapshot_paths = [str(path) for callback in snapshots for path in callback.paths]
        best = checkpoint.best_model_path or None
        if best is None and chooses and not fast_dev_run:
            warnings.warn(
                "no validation ran (val_every_n_steps > steps trained?): testing the final weights, not the best",
                stacklevel=2,
            )
        trainer.test(model, datamodule=datamodule, ckpt_path=best, verbose=False, weights_only=True)
    split = "test" if "test" in data.splits else "val"
    summary: dict[str, Any] = {
        "name": cfg.name,
        "split": split,
        "windows": len(data.splits[split]),
        "checkpoint": best or _final_checkpoint(run_dir, fast_dev_run),
        "global_step": trainer.global_step,
        "best_step": read_checkpoint(best)["global_step"] if best else trainer.global_step,  # the tested weights'
        # the tested checkpoint's validation CRPS (None without validation, test_checkpoint=last): a sweep's objective
        "best_val_crps": float(checkpoint.best_model_score)
        if best and checkpoint.best_model_score is not None
        else None,
        "in_sample": split == "val" and OmegaConf.to_object(cfg.dataset).split_boundaries().refits,
        # the snapshot ensemble's members, oldest first (trainer.snapshots)
        "snapshots": snapshot_paths,
        "train_steps": throughput.steps,  # steps run by this call (fewer than global_step after --resume)
        "train_seconds": throughput.seconds,  # the whole training path of the timed steps (all but the first)
        "train_timed_steps": throughput.timed_steps,
        "train_samples_per_second": throughput.samples_per_second,
        "model": model.results.get("test", {}),
    }
    if "test_raw" in model.results:  # the same forecasts before monotone rearrangement
        summary["model_before_rearrangement"] = headline(model.results["test_raw"])
    if sampler_state is not None:  # where an adaptive sampler ended: bin probabilities and weakness
        summary["sampler"] = sampler_state
    metrics_file = None
    # one batch of model metrics (fast-dev-run) is no result; and only rank 0 writes
    if not fast_dev_run and trainer.is_global_zero:
        metrics_file = run_dir / METRICS_FILE
        write_text_atomic(metrics_file, json.dumps(summary, indent=2))
    summary["run_dir"] = str(run_dir)
    summary["metrics_file"] = None if metrics_file is None else str(metrics_file)
    return summary


def _final_checkpoint(run_dir: Path, fast_dev_run: bool) -> str:
    """The final weights' checkpoint (test_checkpoint=last, or no validation ran), or a note when none was written."""
    return "final weights (fast-dev-run: none saved)" if fast_dev_run else str(run_dir / CHECKPOINTS / LAST_CHECKPOINT)


def _check_same_sampler(cfg: DictConfig, checkpoint_path: Path) -> None:
    """A run resumes with the sampler kind it was trained with: an adaptive sampler's state cannot
    come from a checkpoint of another kind (nor be dropped silently)."""
    trained = stored_config(checkpoint_path).sampler.kind
    if trained != cfg.sampler.kind:
        raise ConfigError(
            f"--resume: {checkpoint_path} was trained with sampler.kind={trained}, this config has "
            f"sampler.kind={cfg.sampler.kind}; resume with sampler={trained}"
        )


def _timestamp() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S-%f")


def _new_run_dir(cfg: DictConfig) -> Path:
    """A fresh timestamped folder (every rank proposes one; rank 0's is taken, ``shared_run_dir``)."""
    return Path(cfg.output_dir) / cfg.name / _timestamp()


def _resolve_resume(cfg: DictConfig, resume: str | None) -> Path | None:
    if resume is None:
        return None
    if resume == "last":
        runs = Path(cfg.output_dir, cfg.name)
        candidates = sorted(runs.glob(f"*/{CHECKPOINTS}/{LAST_CHECKPOINT}"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise UsageError(f"--resume last: no {LAST_CHECKPOINT} under {runs}")
        return candidates[-1]
    path = Path(resume)
    if not path.is_file():
        raise UsageError(f"--resume: checkpoint not found: {path}")
    return path
