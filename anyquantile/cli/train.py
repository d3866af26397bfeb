"""Train an any-quantile forecaster from a YAML config.

    anyquantile train --config config/nbeatsaq-synthetic.yaml [--fast-dev-run]
        [--resume PATH|last | --refit] [--dashboard] [key=value ...]

Overrides use the config's dotted keys (``model.width=512 trainer.max_steps=100``); a key that
does not exist fails with a message naming it. The resolved config, TensorBoard logs, checkpoints
(last and best by val CRPS) and ``metrics.json`` go to ``runs/<name>/<time>/``. ``--refit`` then trains
again, on the training and validation months, for the best run's step count (``training/refit.py``):
the way to forecast a new period; that run goes to ``runs/<name>-refit/<time>/``. ``--dashboard`` then
evaluates the tested checkpoint (or the run's snapshot ensemble) as ``evaluate.py`` does, into the run
folder's ``evaluation/`` (``dashboard.html``, ``metrics.json``, ``forecasts.parquet``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from anyquantile.dataset.loader import DataValidationError
from anyquantile.experiment.config import load_config
from anyquantile.experiment.errors import ConfigError, UsageError


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="YAML config, e.g. config/nbeatsaq-synthetic.yaml")
    parser.add_argument("--fast-dev-run", action="store_true", help="one batch of train/val/test, as a smoke test")
    parser.add_argument(
        "--resume", metavar="PATH|last", help="continue from a checkpoint, or this config's newest last.ckpt"
    )
    parser.add_argument(
        "--refit", action="store_true", help="then train on train + val for the step count chosen on val"
    )
    parser.add_argument(
        "--dashboard", action="store_true", help="then write RUN/evaluation/dashboard.html of the tested checkpoint"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    args = parser.parse_args(argv)
    try:
        if args.refit and (args.resume or args.fast_dev_run):
            raise UsageError("--refit trains twice from fresh weights: it takes neither --resume nor --fast-dev-run")
        if args.dashboard and args.fast_dev_run:
            raise UsageError("--dashboard evaluates a trained checkpoint: a --fast-dev-run keeps none")
        cfg = load_config(args.config, args.overrides)
        from anyquantile.evaluation.references import (
            add_references,  # imported late: a bad config fails fast, before Lightning loads
        )
        from anyquantile.training.distributed import is_rank_zero
        from anyquantile.training.refit import refit
        from anyquantile.training.train import train

        if args.refit:
            summary = add_references(cfg, refit(cfg))
        else:
            summary = add_references(cfg, train(cfg, fast_dev_run=args.fast_dev_run, resume=args.resume))
        if not is_rank_zero():  # a DDP rank Lightning started: rank 0 evaluates and reports
            return 0
        if args.dashboard:
            from anyquantile.evaluation.report import evaluate

            out = Path(summary["run_dir"]) / "evaluation"
            evaluate(summary["snapshots"] or [summary["checkpoint"]], out)
            summary["dashboard"] = str(out / "dashboard.html")
    except (ConfigError, UsageError, DataValidationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print_summary(summary)
    return 0


def print_summary(summary: dict) -> None:
    """A short table of the model's and the references' headline metrics, CRPS relative to the model's."""
    rows = {"model": summary["model"], **summary.get("references", {})}
    columns = ("crps", "coverage_90", "coverage_95", "mape", "crossing_rate_raw", "crossing_rate_final")
    print(f"\n{summary['split']} split, {summary['windows']} windows, step {summary['global_step']}")
    if "first_run" in summary:
        first = summary["first_run"]
        print(
            f"refit on train + val for {first['steps']} steps, chosen by the {first['chosen_by']} of {first['run_dir']}"
        )
    if summary.get("in_sample"):
        print("these scores are of months the model trained on (no test split): in-sample, not a test")
    print(f"{'':20s}" + "".join(f"{c:>20s}" for c in columns) + f"{'model/row crps':>17s}")
    model_crps = summary["model"].get("crps", float("nan"))
    for name, metrics in rows.items():
        cells = "".join(f"{metrics.get(c, float('nan')):20.4f}" for c in columns)
        print(f"{name:20s}{cells}{model_crps / metrics.get('crps', float('nan')):17.3f}")
    if "references" in summary:  # a full run (not --fast-dev-run) wrote its results
        print(
            f"\nresults: {summary['run_dir']}/metrics.json, checkpoints/, tensorboard/ (tensorboard --logdir "
            f"{summary['run_dir']})"
        )
    if "dashboard" in summary:
        print(f"dashboard: {summary['dashboard']}")


if __name__ == "__main__":
    sys.exit(main())
