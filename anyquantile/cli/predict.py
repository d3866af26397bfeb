"""Forecast the hours after the data: a saved model (or its ONNX export, or checkpoints) and a history file in,
neuralforecast-style columns out.

    anyquantile predict (--model DIR|F.onnx | --checkpoint PATH [--checkpoint PATH ...]) --data FILE
        --out FILE.csv|FILE.parquet [--level 80,95 | --quantiles 0.05,0.5,0.95] [--h HOURS]
        [--series A,B] [--origin "2017-12-31 00:00"] [--calibrated] [--no-rearrange]

By default each series is forecast from the hour after its last observation; ``--origin`` gives the first
forecast hour instead (the same for every series). The output has a row per series and hour: ``unique_id,
ds`` and ``AnyQuantile-median, AnyQuantile-lo-80, AnyQuantile-hi-80, ...`` (``--level``) or
``AnyQuantile_ql0.05, ...`` (``--quantiles``); neither gives the median as ``AnyQuantile``. Quantiles never
cross (monotone rearrangement on a fixed reference grid, ``--no-rearrange`` for the raw network output);
``--calibrated`` applies the conformal calibration saved with the model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from anyquantile.dataset.errors import DataValidationError
from anyquantile.experiment.errors import ConfigError, UsageError
from anyquantile.experiment.files import atomic_path


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", help="a saved model folder (Forecaster.save, anyquantile export) or an .onnx file")
    model.add_argument("--checkpoint", action="append", help="a checkpoint of anyquantile train; repeat: ensemble")
    parser.add_argument("--data", required=True, help="long-format file (unique_id, ds, y) with the history")
    parser.add_argument("--out", required=True, help="output file, .csv or .parquet")
    parser.add_argument("--level", type=_numbers, help="central interval coverages in %%, e.g. 80,95")
    parser.add_argument("--quantiles", type=_numbers, help="levels in (0, 1), e.g. 0.05,0.5,0.95")
    parser.add_argument("--h", type=int, help="hours to forecast (default: the trained horizon)")
    parser.add_argument("--series", help="comma-separated series ids (default: all)")
    parser.add_argument(
        "--origin", help="first forecast hour, e.g. '2017-12-31 00:00' (default: after each series' last observation)"
    )
    parser.add_argument("--calibrated", action="store_true", help="apply the model's saved conformal calibration")
    parser.add_argument("--no-rearrange", action="store_true", help="the network's raw levels (they may cross)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        if out.suffix not in (".csv", ".parquet"):
            raise UsageError(f"--out must end in .csv or .parquet, got '{out.name}'")
        for path in [args.model] if args.model else args.checkpoint:
            if not Path(path).exists():
                raise UsageError(f"not found: {path}")
        # imported late: argument errors come first, and fast
        from anyquantile.dataset.loader import read_frame
        from anyquantile.inference.levels import OutputLevels
        from anyquantile.inference.saved_model import SavedModel, open_predictor

        predictor = (
            open_predictor(args.model) if args.model else SavedModel.from_checkpoints(args.checkpoint).predictor()
        )
        series = [name.strip() for name in args.series.split(",")] if args.series else None
        frame = predictor.forecast_frame(
            read_frame(Path(args.data)),
            OutputLevels.of(predictor.alias, args.level, args.quantiles),
            args.h,
            series,
            args.origin,
            calibrated=args.calibrated,
            rearrange=not args.no_rearrange,
        )
    except (ConfigError, UsageError, DataValidationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with atomic_path(out) as staging:  # a kill mid-write leaves no torn forecast file
        frame.to_csv(staging, index=False) if out.suffix == ".csv" else frame.to_parquet(staging, index=False)
    hours = len(frame) // max(frame["unique_id"].nunique(), 1)
    print(
        f"{len(frame)} rows ({frame['unique_id'].nunique()} series x {hours} hours, "
        f"{len(frame.columns) - 2} forecast columns) written to {out}"
    )
    return 0


def _numbers(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"numbers separated by commas, got '{text}'") from None


if __name__ == "__main__":
    sys.exit(main())
