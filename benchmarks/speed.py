"""Training throughput and evaluation time of shipped configs on this machine; prints a markdown table.

    python -m benchmarks.speed [--configs nbeatsaq-synthetic nbeatsaq-mhlv] [--precisions 32-true bf16-mixed]
                               [--steps 20] [--threads N]

Training runs through the same builders, data module and Lightning trainer as ``train`` (on the
synthetic data, so no file is needed; the window shape and model come from each config) and
times the steady steps. Evaluation times one forward pass over a batch of windows at 1 level and
at the full evaluation grid, without gradients.
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


def measure(config: str, precision: str, steps: int, eval_windows: int) -> dict[str, float]:
    cfg = load_config(CONFIG_DIR / f"{config}.yaml", ["dataset=synthetic", "trainer=cpu", f"trainer.precision={precision}"])
    seed_everything(0, verbose=False)
    data = build_data(cfg)
    datamodule = build_datamodule(cfg, data)
    model = build_forecaster(cfg)
    skip = min(3, steps - 1)
    throughput = Throughput(cfg.dataset.batch_size, skip_steps=skip)
    trainer = Trainer(
        accelerator="cpu", devices=1, precision=precision, max_steps=steps, limit_val_batches=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        use_distributed_sampler=False, callbacks=[throughput],
    )
    trainer.fit(model, datamodule=datamodule)

    model.eval()
    windows = datamodule.datasets["val"]
    batch = windows[torch.arange(min(eval_windows, len(windows)))]
    levels = build_evaluation_levels(cfg).levels.float()
    timings = {}
    for name, level_set in (("1", levels[len(levels) // 2 : len(levels) // 2 + 1]), ("grid", levels)):
        level_batch = level_set.expand(len(batch["history"]), -1)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision.startswith("bf16")):
            model(batch, level_batch)  # warm-up
            start = time.perf_counter()
            model(batch, level_batch)
            timings[name] = time.perf_counter() - start
    parameters = sum(p.numel() for p in model.parameters())
    return {
        "params_M": parameters / 1e6,
        "batch": cfg.dataset.batch_size,
        "train_samples_per_s": throughput.samples_per_second,
        "eval_windows": len(batch["history"]),
        "eval_s_1_level": timings["1"],
        "eval_s_grid": timings["grid"],
        "grid_levels": len(levels),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["nbeatsaq-synthetic", "nbeatsaq-mhlv"])
    parser.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"])
    parser.add_argument("--steps", type=int, default=20, help="training steps per measurement (first 3 untimed)")
    parser.add_argument("--eval-windows", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    header = "| config | precision | params (M) | batch | train samples/s | eval windows | eval 1 level (s) | eval grid (s) | grid levels |"
    print(header)
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for config in args.configs:
        for precision in args.precisions:
            r = measure(config, precision, args.steps, args.eval_windows)
            print(
                f"| {config} | {precision} | {r['params_M']:.1f} | {r['batch']} | {r['train_samples_per_s']:,.0f} | "
                f"{r['eval_windows']} | {r['eval_s_1_level']:.3f} | {r['eval_s_grid']:.3f} | {r['grid_levels']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
