"""Score trained checkpoints or a saved model on a split: metrics.json (overall, per step, per series,
before/after rearrangement and conformal calibration), forecasts.parquet and dashboard.html.

    anyquantile evaluate (--checkpoint PATH [--checkpoint PATH ...] [--snapshots RUN_DIR ...] | --model DIR)
        [--data FILE] [--split val|test] [--out DIR]
        [--conformal none|level|level_per_step|interval|interval_per_step] [--save-calibration]
        [--fan-series A,B] [--fan-origins "2017-12-01 00:00,..."] [--no-dashboard] [key=value ...]

Several checkpoints form an ensemble that averages their quantile forecasts: of several runs, or one
run's snapshots (``trainer.snapshots=K``, then ``--snapshots runs/NAME/TIME``; repeat it for several runs).
``--model DIR`` scores a saved model (``anyquantile export``, ``Forecaster.save``); with ``--conformal level``
(or ``level_per_step``) and ``--save-calibration`` the correction fitted on val is saved with it, for
``predict --calibrated``. ``key=value`` overrides the stored config (e.g. ``evaluation.grid_size=199``).
"""

from __future__ import annotations

import argparse
import sys

from anyquantile.dataset.loader import DataValidationError
from anyquantile.experiment.errors import ConfigError, UsageError
from anyquantile.modules.conformal import ConformalKind


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", action="append", default=[], help="a checkpoint; repeat for an ensemble")
    parser.add_argument(
        "--snapshots",
        action="append",
        default=[],
        metavar="RUN_DIR",
        help="add a run's snapshot checkpoints (trainer.snapshots) to the ensemble; repeat for several runs",
    )
    parser.add_argument("--model", help="a saved model folder, in place of checkpoints")
    parser.add_argument(
        "--save-calibration",
        action="store_true",
        help="with --model and --conformal level|level_per_step: save the fitted correction with the model",
    )
    parser.add_argument("--data", help="a data file in place of the config's dataset.path")
    parser.add_argument("--split", choices=("val", "test"), help="default: test if the config has one, else val")
    parser.add_argument("--out", default="evaluation-out", help="output folder (default: evaluation-out)")
    parser.add_argument(
        "--conformal",
        default="none",
        choices=[kind.value for kind in ConformalKind],
        help="fit a split-conformal correction on val (of every level, or of the central "
        "intervals' ends as in CQR), report the scores after it",
    )
    parser.add_argument(
        "--fan-series",
        type=_names,
        default=[],
        metavar="A,B",
        help="series drawn as fan charts (default: best, median and worst by CRPS)",
    )
    parser.add_argument(
        "--fan-origins",
        type=_names,
        default=[],
        metavar="T1,T2",
        help="forecast origins of the fan charts (default: each series' last window)",
    )
    parser.add_argument("--no-dashboard", action="store_true", help="skip dashboard.html")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    try:
        from anyquantile.evaluation.report import evaluate  # imported late: argument errors come before Lightning loads
        from anyquantile.experiment.checkpoints import snapshot_checkpoints

        if args.save_calibration and not (args.model and args.conformal in ("level", "level_per_step")):
            raise UsageError("--save-calibration saves a --conformal level (or level_per_step) fit with a --model DIR")
        if args.model and (args.checkpoint or args.snapshots):
            raise UsageError("give a --model DIR or checkpoints (--checkpoint, --snapshots), not both")
        loaded = None
        if args.model:
            from anyquantile.inference.saved_model import load_model
            from anyquantile.model.ensemble import Ensemble

            saved = load_model(args.model)
            loaded, checkpoints = (Ensemble(saved.members), saved.configs[0]), [args.model]
        else:
            checkpoints = args.checkpoint + [path for run in args.snapshots for path in snapshot_checkpoints(run)]
        if not checkpoints:
            raise UsageError("give a --checkpoint (repeat it for an ensemble), --snapshots RUN_DIR or --model DIR")
        results = evaluate(
            checkpoints,
            args.out,
            args.data,
            args.split,
            args.conformal,
            args.overrides,
            args.fan_series,
            args.fan_origins,
            dashboard=not args.no_dashboard,
            loaded=loaded,
        )
        if args.save_calibration:
            calibration = _save_calibration(args.model, results)
    except (ConfigError, UsageError, DataValidationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    model = results["model"]
    print(f"\n{results['split']} split, {results['windows']} windows, {len(checkpoints)} checkpoint(s)")
    for name in (
        "crps",
        "crps_paper_protocol",
        "coverage_90",
        "coverage_95",
        "calibration_error",
        "mape",
        "crossing_rate_raw",
        "crossing_rate_final",
    ):
        if name in model:
            print(f"  {name:22s}{model[name]:12.4f}")
    if "conformal" in results:
        after = results["conformal"]["after"]
        shown = ", ".join(
            f"{name} {after[name]:.4f}" for name in ("crps", "coverage_90", "coverage_95") if name in after
        )
        print(f"  after conformal ({results['conformal']['kind']}): {shown}")
    written = [f"{args.out}/{name}" for name in ["metrics.json", "forecasts.parquet"]]
    written += [] if args.no_dashboard else [f"{args.out}/dashboard.html"]
    written += [str(calibration)] if args.save_calibration else []
    print("\nwritten: " + ", ".join(written))
    return 0


def _save_calibration(model_dir: str, results: dict):
    """Write the level correction fitted on val into the saved model folder (``calibration.json``)."""
    from anyquantile.inference.saved_model import write_calibration
    from anyquantile.modules.conformal import LevelConformal

    state = results["conformal"].get("calibration")
    if state is None:
        raise UsageError(
            "the correction of the outermost levels is infinite (too few validation targets): nothing is saved; "
            "validate on more windows"
        )
    return write_calibration(model_dir, LevelConformal.from_state(state))


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


if __name__ == "__main__":
    sys.exit(main())
