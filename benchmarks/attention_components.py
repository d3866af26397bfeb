"""What each part of the adaptive-attention model adds: one run per part switched off (or, for the
parts that are off by default, switched on), and two cheaper variants, each with the same time
budget; prints a markdown table.

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
VARIANTS: dict[str, tuple[str, list[str]]] = {  # name: (what it changes, overrides)
    "full": ("the config as shipped", []),
    "d_model_32": ("cheaper: attention width 32 instead of 64", ["model.attention.d_model=32"]),
    "no_convolution": ("no multi-scale convolution", ["model.attention.conv_kernels=[]"]),
    "with_convolution": ("multi-scale convolution, kernels 3 and 7", ["model.attention.conv_kernels=[3,7]"]),
    "one_attention_block": ("cheaper: 1 HATA block instead of 2", ["model.attention.num_blocks=1"]),
    "no_cross_step": ("no cross-step refinement", ["model.attention.cross_step=false"]),
    "no_attention_blocks": ("no HATA block: read-out from the token embeddings", ["model.attention.num_blocks=0"]),
    "no_local_heads": ("all heads global (no dual scale)", ["model.attention.local_ratio=0.0"]),
    "fixed_gate": ("alpha fixed at 0.5, no calendar", ["model.attention.gate=fixed", "model.attention.calendar_gates=false"]),
    "no_calendar_gates": ("gate without calendar input", ["model.attention.calendar_gates=false"]),
    "no_locality_bias": ("beta = 0", ["model.attention.bias=off"]),
    "with_temporal_weights": ("linear temporal weights on", ["model.attention.temporal_weights=linear"]),
    "with_fft_features": ("8 FFT amplitudes and phases on", ["model.attention.fft_features=8"]),
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
        description, variant = VARIANTS[name]
        overrides = [*args.overrides, f"trainer.max_time={args.budget}", *variant]
        cfg = load_config(CONFIG_DIR / f"{args.config}.yaml", overrides)
        summary = train(cfg)
        model = summary["model"]
        rows.append(
            f"| {name} | {description} | {summary['global_step']:,} | {summary['train_samples_per_second']:,.0f} | {model['crps']:.1f} "
            f"| {model['coverage_90']:.3f} | {model['coverage_95']:.3f} | {model['mape']:.2f} |"
        )
        print(f"\n{name}: {rows[-1]}\n", flush=True)
    print(f"\n{args.config}, {args.budget} per run, scored on the {summary['split']} split\n")
    print("| variant | change | steps | samples/s | CRPS | coverage 90 | coverage 95 | MAPE % |\n|---|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
