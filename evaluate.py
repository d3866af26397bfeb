"""Score trained checkpoints on a split: metrics.json (overall, per series, before/after rearrangement
and conformal calibration) and forecasts.parquet.

    python evaluate.py --checkpoint PATH [--checkpoint PATH ...] [--data FILE] [--split val|test]
        [--out DIR] [--conformal none|level|level_per_step] [key=value ...]

Several checkpoints form an ensemble that averages their quantile forecasts. ``key=value`` overrides
the stored config (e.g. ``evaluation.grid_size=199``).
"""
from __future__ import annotations

import argparse
import sys

from dataset.loader import DataValidationError
from training.config import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", required=True, help="a checkpoint; repeat for an ensemble")
    parser.add_argument("--data", help="a data file in place of the config's dataset.path")
    parser.add_argument("--split", choices=("val", "test"), help="default: test if the config has one, else val")
    parser.add_argument("--out", default="evaluation-out", help="output folder (default: evaluation-out)")
    parser.add_argument("--conformal", default="none", choices=("none", "level", "level_per_step"),
                        help="fit a split-conformal correction of every level on val, report the scores after it")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    try:
        from evaluation.evaluate import evaluate  # imported late: argument errors come before torch loads

        results = evaluate(args.checkpoint, args.out, args.data, args.split, args.conformal, args.overrides)
    except (ConfigError, DataValidationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    model = results["model"]
    print(f"\n{results['split']} split, {results['windows']} windows, {len(args.checkpoint)} checkpoint(s)")
    for name in ("crps", "crps_paper_protocol", "coverage_90", "coverage_95", "calibration_error", "mape", "crossing_rate"):
        if name in model:
            print(f"  {name:22s}{model[name]:12.4f}")
    if "conformal" in results:
        after = results["conformal"]["after"]
        print(f"  after conformal ({results['conformal']['kind']}): crps {after['crps']:.4f}, "
              f"coverage 90 {after['coverage_90']:.4f}, coverage 95 {after['coverage_95']:.4f}")
    print(f"\nwritten: {args.out}/metrics.json, {args.out}/forecasts.parquet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
