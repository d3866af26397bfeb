"""How local and global attention heads scale with sequence length T; prints a markdown table.

    python -m benchmarks.attention_scaling [--lengths 168 336 672 1344 2688] [--batch 8] [--window 24]

For each T, one AdaptiveTemporalAttention block (d_model 64, 4 heads) with all heads local on
the banded path, and all heads global (the fused dense pass, which local heads also take below
BANDED_MIN_RATIO * (2w + 1)), forward + backward on the fast path, fp32. "saved MB" is the activation
memory autograd keeps for the backward pass (the bytes of every tensor saved for backward), which is
what grows with T; time is the median of a few repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from anyquantile.modules.attention import AdaptiveTemporalAttention, AttentionConfig


def saved_bytes_and_seconds(attention: AdaptiveTemporalAttention, x: torch.Tensor, repeats: int) -> tuple[float, float]:
    saved = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        attention(x).output.sum().backward()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        attention(x).output.sum().backward()
        times.append(time.perf_counter() - start)
    return saved / 2**20, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[168, 336, 672, 1344, 2688])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--window", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, window {args.window}\n")
    print("| T | local saved MB | local ms | global saved MB | global ms | global / local time |")
    print("|---:|---:|---:|---:|---:|---:|", flush=True)
    for length in args.lengths:
        x = torch.randn(args.batch, length, 64)
        row = []
        for ratio in (1.0, 0.0):
            torch.manual_seed(0)
            config = AttentionConfig(d_model=64, num_heads=4, local_ratio=ratio, window=args.window, bias="learned")
            attention = AdaptiveTemporalAttention(config, local_path="banded")
            row.append(saved_bytes_and_seconds(attention, x, args.repeats))
        (local_mb, local_s), (global_mb, global_s) = row
        print(
            f"| {length} | {local_mb:.1f} | {1000 * local_s:.1f} | {global_mb:.1f} | {1000 * global_s:.1f} | "
            f"{global_s / local_s:.1f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
