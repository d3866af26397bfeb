"""Forecast the next H hours of each series at the levels asked, from a trained checkpoint.

    python predict.py --checkpoint PATH --data FILE --levels 0.05,0.5,0.95 --out FILE.csv|FILE.parquet
        [--series A,B] [--origin "2017-12-31 00:00"]

By default each series is forecast from the hour after its last observation; ``--origin`` gives
the first forecast hour instead (the same for every series). The output is long format:
series, origin, timestamp, step, level, value.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dataset.loader import DataValidationError
from experiment.errors import ConfigError, UsageError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True, help="long-format file (unique_id, ds, y) with the history")
    parser.add_argument("--levels", required=True, help="comma-separated levels in (0, 1), e.g. 0.05,0.5,0.95")
    parser.add_argument("--out", required=True, help="output file, .csv or .parquet")
    parser.add_argument("--series", help="comma-separated series ids (default: all)")
    parser.add_argument(
        "--origin", help="first forecast hour, e.g. '2017-12-31 00:00' (default: after each series' last observation)"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        if out.suffix not in (".csv", ".parquet"):
            raise UsageError(f"--out must end in .csv or .parquet, got '{out.name}'")
        if not Path(args.checkpoint).is_file():
            raise UsageError(f"checkpoint not found: {args.checkpoint}")
        from inference.forecast import parse_levels, predict  # imported late: argument errors come first

        series = [name.strip() for name in args.series.split(",")] if args.series else None
        frame = predict(args.checkpoint, args.data, parse_levels(args.levels), series, args.origin)
    except (ConfigError, UsageError, DataValidationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False) if out.suffix == ".csv" else frame.to_parquet(out)
    print(
        f"{len(frame)} forecasts ({frame['series'].nunique()} series x {frame['step'].nunique()} hours x "
        f"{frame['level'].nunique()} levels) written to {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
