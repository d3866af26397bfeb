"""Training and evaluation speed on this machine, side by side in one run; prints markdown tables.

    python -m benchmarks.speed [--models cat film out attention] [--precisions 32-true bf16-mixed]
                               [--steps 15] [--eval-windows 256] [--compile] [--threads N] [key=value ...]

Every model runs on the embedded synthetic data (168 h in, 48 h out, batch 1024), so no file is
needed. Per model and precision:

- **loader alone**: batches from the training DataLoader with nothing done to them;
- **Lightning path**: the builders, data module and Lightning trainer of ``train`` (without its
  logger, checkpoints and LR monitor), timed from one step's end to the next (loading the batch and
  the step; no validation) — and the step alone;
- **plain loop**: the network's own objective, ``network.loss(batch, sampler)`` (levels drawn by
  the sampler, forward, pinball loss: what ``training_step`` delegates to) in a hand-written torch
  loop with the training path's optimiser, on batches gathered beforehand: the difference to the
  Lightning path is what Lightning and the data path cost;
- **GFLOP/s** of the plain loop (floating-point operations of one forward + backward, counted by
  torch's FlopCounterMode, times samples/s) next to the machine's matmul peak measured here;
- **evaluation**: one fp32 forward pass without gradients over ``--eval-windows`` windows at 1, 11
  and 100 levels (best of 5).

``--compile`` adds rows with ``trainer.compile=true`` (torch.compile of the network's forward);
``key=value`` overrides apply to every model's config.
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning import Trainer, seed_everything
from torch.utils.flop_counter import FlopCounterMode

from anyquantile.dataset.windows import WindowBatch
from anyquantile.experiment.builders import build_data, build_datamodule, build_training_forecaster
from anyquantile.experiment.config import load_config
from anyquantile.model.quiet import quiet_lightning
from anyquantile.training.callbacks import Throughput

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
UNTIMED_STEPS = 3
SYNTHETIC = ["dataset=synthetic", "trainer=cpu", "trainer.enable_progress_bar=false"]
# label -> (config, overrides): the paper's CAT base at the size its CPU figure was measured at, our
# CPU configs, and the base with the level entering at the read-out (OUT).
MODELS: dict[str, tuple[str, list[str]]] = {
    "cat": ("nbeatsaq-mhl-cpu", ["model.conditioning=cat", "model.num_blocks=10"]),
    "film": ("nbeatsaq-mhl-cpu", []),
    "out": (
        "nbeatsaq-mhl-cpu",
        ["model.conditioning=out", "model.quantile_embedding=normal", "model.quantile_embedding_dim=2"],
    ),
    "attention": ("nbeatsaq-adaptive-attention-mhl-cpu", []),
}
DESCRIPTIONS = {
    "cat": "base CAT 10 × 3 × 512",
    "film": "base FiLM 8 × 3 × 512 (mhl-cpu)",
    "out": "base OUT 8 × 3 × 512",
    "attention": "adaptive attention (mhl-cpu)",
}
EVAL_LEVELS = (1, 11, 100)
EVAL_REPEATS = 5  # best of: the minimum is the least disturbed by the rest of the machine


@dataclass(frozen=True)
class Subject:
    """One of :data:`MODELS` with the command line's overrides on top."""

    name: str
    overrides: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self.name] + (" (overridden)" if self.overrides else "")


def model_config(model: Subject, precision: str, compile: bool = False):
    config, overrides = MODELS[model.name]
    return load_config(
        CONFIG_DIR / f"{config}.yaml",
        [
            *SYNTHETIC,
            *overrides,
            f"trainer.precision={precision}",
            f"trainer.compile={str(compile).lower()}",
            *model.overrides,
        ],
    )


def _setup(model: Subject, precision: str, compile: bool = False):
    cfg = model_config(model, precision, compile)
    seed_everything(0, verbose=False)
    datamodule = build_datamodule(cfg, build_data(cfg))
    return cfg, datamodule, build_training_forecaster(cfg)


def loader_rate(model: Subject, batches: int) -> float:
    """Samples per second of the training DataLoader alone."""
    cfg, datamodule, _ = _setup(model, "32-true")
    datamodule.setup("fit")
    loader = iter(datamodule.train_dataloader())
    next(loader)  # the first batch builds the iterator
    start = time.perf_counter()
    samples = sum(len(next(loader)) for _ in range(batches))
    return samples / (time.perf_counter() - start)


def timing_trainer(precision: str, max_steps: int, throughput: Throughput, **options: Any) -> Trainer:
    """A bare Lightning trainer for timing: one CPU process, ``max_steps`` steps timed by ``throughput``, no
    validation, logger, checkpoints, bar or summary; ``options`` are further Trainer arguments."""
    return Trainer(
        accelerator="cpu",
        devices=1,
        precision=precision,
        max_steps=max_steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        callbacks=[throughput],
        **options,
    )


def lightning_rate(model: Subject, precision: str, steps: int, compile: bool) -> tuple[float, float, float]:
    """(parameters in millions, whole-path samples/s, step-alone samples/s) through the Lightning trainer."""
    cfg, datamodule, forecaster = _setup(model, precision, compile)
    throughput = Throughput(cfg.dataset.batch_size, skip_steps=min(UNTIMED_STEPS, steps - 2))
    with quiet_lightning():
        trainer = timing_trainer(precision, steps, throughput)
    with quiet_lightning():
        trainer.fit(forecaster, datamodule=datamodule)
    params = sum(p.numel() for p in forecaster.parameters()) / 1e6
    return params, throughput.samples_per_second, throughput.compute_samples_per_second


def _training_batches(cfg, datamodule, count: int) -> list[WindowBatch]:
    train = datamodule.datasets["train"]
    generator = torch.Generator().manual_seed(0)
    return [train[torch.randint(len(train), (cfg.dataset.batch_size,), generator=generator)] for _ in range(count)]


def _plain_step(forecaster, batch: WindowBatch, optimiser, bf16: bool) -> None:
    # As under Lightning's bf16-mixed: the objective's forward in autocast.
    with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
        loss = forecaster.network.loss(batch, forecaster.level_sampler)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()


def plain_rate(model: Subject, precision: str, steps: int, compile: bool) -> float:
    """Samples per second of a hand-written torch loop of the same network on batches gathered beforehand."""
    cfg, datamodule, forecaster = _setup(model, precision, compile)
    datamodule.setup("fit")
    batches = _training_batches(cfg, datamodule, steps)
    optimiser = forecaster.optimizer_factory(forecaster.parameters())  # the training path's optimiser
    forecaster.train()
    bf16 = precision == "bf16-mixed"
    for batch in batches[:UNTIMED_STEPS]:
        _plain_step(forecaster, batch, optimiser, bf16)
    start = time.perf_counter()
    for batch in batches[UNTIMED_STEPS:]:
        _plain_step(forecaster, batch, optimiser, bf16)
    return (steps - UNTIMED_STEPS) * cfg.dataset.batch_size / (time.perf_counter() - start)


def flops_per_sample(model: Subject, batch_size: int = 64) -> float:
    """Floating-point operations of one training sample (forward + backward), counted in fp32."""
    _, datamodule, forecaster = _setup(model, "32-true")
    datamodule.setup("fit")
    batch = datamodule.datasets["train"][torch.arange(batch_size)]
    with FlopCounterMode(display=False) as counter:
        forecaster.network.loss(batch, forecaster.level_sampler).backward()
    return counter.get_total_flops() / batch_size


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 10, slow_seconds: float = 0.05) -> float:
    """GFLOP/s of a square matmul in ``dtype`` (best of ``repeats``), of ``size``, or of the first size from 256
    up (doubling) whose product takes over ``slow_seconds``: a CPU without native bf16 emulates it, a
    2048² product then takes most of a minute, and the peak is plain at a smaller size."""
    n = min(256, size)
    while n < size and _timed(torch.matmul, *_square_matrices(n, dtype)) < slow_seconds:
        n *= 2
    a, b = _square_matrices(n, dtype)
    a @ b
    best = min(_timed(torch.matmul, a, b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _square_matrices(n: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)


def _timed(call, *args) -> float:
    """Seconds of one ``call(*args)``."""
    start = time.perf_counter()
    call(*args)
    return time.perf_counter() - start


def evaluation_seconds(model: Subject, num_windows: int) -> dict[int, float]:
    """Seconds (best of :data:`EVAL_REPEATS`) of one fp32 forward pass without gradients over ``num_windows`` validation
    windows, at each of :data:`EVAL_LEVELS` levels spread evenly over (0, 1)."""
    _, datamodule, forecaster = _setup(model, "32-true")
    datamodule.setup("fit")
    forecaster.eval()
    windows = datamodule.datasets["val"]
    batch = windows[torch.arange(min(num_windows, len(windows)))]
    seconds = {}
    with torch.no_grad():
        for count in EVAL_LEVELS:
            levels = ((torch.arange(count) + 0.5) / count).expand(len(batch), -1)  # [B, Q]
            forecaster(batch, levels)  # warm-up
            seconds[count] = min(_timed(forecaster, batch, levels) for _ in range(EVAL_REPEATS))
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"], choices=["32-true", "bf16-mixed"])
    parser.add_argument(
        "--steps", type=int, default=15, help=f"training steps per measurement (first {UNTIMED_STEPS} untimed)"
    )
    parser.add_argument("--loader-batches", type=int, default=30)
    parser.add_argument("--eval-windows", type=int, default=256, help="windows for the evaluation table (0 skips it)")
    parser.add_argument("--compile", action="store_true", help="also measure with trainer.compile=true")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every model")
    args = parser.parse_args(argv)
    subjects = [Subject(name, tuple(args.overrides)) for name in args.models]
    if args.steps <= UNTIMED_STEPS + 1:
        parser.error(f"--steps must be more than {UNTIMED_STEPS + 1}")
    if args.eval_windows < 0:
        parser.error("--eval-windows must be 0 (no evaluation table) or more")
    if args.threads:
        torch.set_num_threads(args.threads)
    peaks = {"32-true": matmul_peak(torch.float32), "bf16-mixed": matmul_peak(torch.bfloat16)}
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; 2048² matmul peak: "
        f"fp32 {peaks['32-true']:.0f} GFLOP/s, bf16 {peaks['bf16-mixed']:.0f} GFLOP/s\n"
    )

    print(f"Training (batch {model_config(subjects[0], '32-true').dataset.batch_size}; samples/s)\n")
    print(
        "| model | precision | compile | params (M) | loader alone | Lightning path | Lightning step alone | plain "
        "loop | "
        "plain GFLOP/s | % of matmul peak |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
        flush=True,
    )
    for model in subjects:
        loader = loader_rate(model, args.loader_batches)
        flops = flops_per_sample(model)
        for precision in args.precisions:
            for compile in (False, True) if args.compile else (False,):
                params, path, step = lightning_rate(model, precision, args.steps, compile)
                plain = plain_rate(model, precision, args.steps, compile)
                gflops = flops * plain / 1e9
                print(
                    f"| {model.description} | {precision} | {'yes' if compile else 'no'} | {params:.2f} | "
                    f"{loader:,.0f} | "
                    f"{path:,.0f} | {step:,.0f} | {plain:,.0f} | {gflops:.1f} | "
                    f"{100 * gflops / peaks[precision]:.1f} % |",
                    flush=True,
                )

    if args.eval_windows == 0:
        return
    print(f"\nEvaluation (fp32, no gradients, {args.eval_windows} windows; milliseconds, best of {EVAL_REPEATS})\n")
    print(
        "| model | "
        + " | ".join(f"{n} level{'s' if n > 1 else ''}" for n in EVAL_LEVELS)
        + f" | {EVAL_LEVELS[-1]} ÷ 1 |"
    )
    print("|---|" + "---:|" * (len(EVAL_LEVELS) + 1), flush=True)
    for model in subjects:
        s = evaluation_seconds(model, args.eval_windows)
        print(
            f"| {model.description} | "
            + " | ".join(f"{1000 * s[n]:.1f}" for n in EVAL_LEVELS)
            + f" | {s[EVAL_LEVELS[-1]] / s[1]:.1f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
