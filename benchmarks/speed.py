"""Training throughput and evaluation time of shipped configs on this machine; prints markdown tables.

    python -m benchmarks.speed [--configs nbeatsaq-synthetic nbeatsaq-mhlv] [--precisions 32-true bf16-mixed]
                               [--steps 15] [--eval-windows 256] [--threads N]

Training runs through the same builders, data module and Lightning trainer as ``train`` (on the
synthetic data, so no file is needed; window shape and model come from each config) and times the
steady steps. Evaluation times one forward pass over a batch of windows at the median alone and
at the full evaluation grid, without gradients and in fp32, as validation and test run.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from lightning import Trainer, seed_everything

from training.builders import build_data, build_datamodule, build_evaluation_levels, build_forecaster
from training.callbacks import Throughput
from training.config import load_config

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
UNTIMED_STEPS = 3


def _setup(config: str, precision: str):
    cfg = load_config(CONFIG_DIR / f"{config}.yaml", ["dataset=synthetic", "trainer=cpu", f"trainer.precision={precision}"])
    seed_everything(0, verbose=False)
    datamodule = build_datamodule(cfg, build_data(cfg))
    return cfg, datamodule, build_forecaster(cfg)


def training_rate(config: str, precision: str, steps: int) -> tuple[float, float]:
    """(parameters in millions, training samples per second)."""
    cfg, datamodule, model = _setup(config, precision)
    throughput = Throughput(cfg.dataset.batch_size, skip_steps=min(UNTIMED_STEPS, steps - 1))
    trainer = Trainer(
        accelerator="cpu", devices=1, precision=precision, max_steps=steps, limit_val_batches=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        use_distributed_sampler=False, callbacks=[throughput],
    )
    trainer.fit(model, datamodule=datamodule)
    return sum(p.numel() for p in model.parameters()) / 1e6, throughput.samples_per_second


def evaluation_seconds(config: str, num_windows: int) -> dict[str, float]:
    """Seconds for one fp32 forward pass over ``num_windows`` windows at 1 level and at the grid."""
    cfg, datamodule, model = _setup(config, "32-true")
    model.eval()
    windows = datamodule.datasets["val"]
    batch = windows[torch.arange(min(num_windows, len(windows)))]
    grid = build_evaluation_levels(cfg).levels.float()
    seconds = {"windows": len(batch["history"]), "grid_levels": len(grid)}
    for name, levels in (("1", torch.tensor([0.5])), ("grid", grid)):
        level_batch = levels.expand(len(batch["history"]), -1)
        with torch.no_grad():
            model(batch, level_batch)  # warm-up
            start = time.perf_counter()
            model(batch, level_batch)
            seconds[name] = time.perf_counter() - start
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["nbeatsaq-synthetic", "nbeatsaq-mhlv"])
    parser.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    parser.add_argument("--steps", type=int, default=15, help=f"training steps per measurement (first {UNTIMED_STEPS} untimed)")
    parser.add_argument("--eval-windows", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")

    print("Training (through the Lightning trainer, each config's batch size)\n")
    print("| config | precision | params (M) | samples/s |\n|---|---|---:|---:|", flush=True)
    for config in args.configs:
        for precision in args.precisions:
            params, rate = training_rate(config, precision, args.steps)
            print(f"| {config} | {precision} | {params:.1f} | {rate:,.0f} |", flush=True)

    print("\nEvaluation (fp32, no gradients)\n")
    print("| config | windows | 1 level (s) | grid (s) | grid levels | grid / 1 level |\n|---|---:|---:|---:|---:|---:|")
    for config in args.configs:
        s = evaluation_seconds(config, args.eval_windows)
        print(f"| {config} | {s['windows']} | {s['1']:.3f} | {s['grid']:.3f} | {s['grid_levels']} | {s['grid'] / s['1']:.0f}x |", flush=True)


if __name__ == "__main__":
    main()
