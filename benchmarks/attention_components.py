"""What each part of the adaptive-attention model adds: one run per part switched off (or, for the
parts that are off by default, switched on), each with the same time budget; prints a markdown table.

    python -m benchmarks.attention_components --config nbeatsaq-adaptive-attention-mhl-cpu \\
        --budget 00:00:04:00 [--only full no_cross_step ...] [key=value ...]

Every run is the named config plus its variant's overrides plus the shared ``key=value``
overrides (``dataset.path=FILE`` for MHL), trained through ``train`` like any run (checkpoints and
metrics.json under ``output_dir``). Runs are sequential, so each has the whole machine. One run
per variant and a short budget: differences of a few percent are within seed-to-seed noise.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from training.config import load_config
from training.train import train

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
VARIANTS: dict[str, list[str]] = {
    "full": [],
    "no_local_heads (all global)": ["model.attention.local_ratio=0.0"],
    "fixed_gate (alpha = 0.5)": ["model.attention.gate=fixed", "model.attention.calendar_gates=false"],
    "no_calendar_gates": ["model.attention.calendar_gates=false"],
    "no_locality_bias": ["model.attention.bias=off"],
    "no_convolution": ["model.attention.conv_kernels=[]"],
    "no_cross_step": ["model.attention.cross_step=false"],
    "with_temporal_weights (linear)": ["model.attention.temporal_weights=linear"],
    "with_fft_features (8)": ["model.attention.fft_features=8"],
    "no_attention_blocks": ["model.attention.num_blocks=0"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="nbeatsaq-adaptive-attention-mhl-cpu")
    parser.add_argument("--budget", default="00:00:04:00", help="trainer.max_time of every run (DD:HH:MM:SS)")
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), metavar="VARIANT", help=f"a subset of {list(VARIANTS)}")
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every run")
    args = parser.parse_args()
    rows = []
    for name in args.only or list(VARIANTS):
        overrides = [*args.overrides, f"trainer.max_time={args.budget}", *VARIANTS[name]]
        cfg = load_config(CONFIG_DIR / f"{args.config}.yaml", overrides)
        summary = train(cfg)
        model = summary["model"]
        rows.append(
            f"| {name} | {summary['global_step']:,} | {summary['train_samples_per_second']:,.0f} | {model['crps']:.1f} "
            f"| {model['coverage_90']:.3f} | {model['coverage_95']:.3f} | {model['mape']:.2f} |"
        )
        print(f"\n{name}: {rows[-1]}\n", flush=True)
    print(f"\n{args.config}, {args.budget} per run, scored on the {summary['split']} split\n")
    print("| variant | steps | samples/s | CRPS | coverage 90 | coverage 95 | MAPE % |\n|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
