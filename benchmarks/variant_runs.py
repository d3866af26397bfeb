"""Train named variants of one config over several seeds and tabulate their metrics (mean ± std).

The shared engine of the comparison scripts (``attention_components``, ``sampler_comparison``):
every run is ``config + shared overrides + budget + the variant's overrides + seed=S``, trained
through ``training.train.train`` like any other run (checkpoints and metrics.json under
``output_dir``). Runs are sequential, so each has the whole machine. Each finished run is appended
to a JSON file at once, so an interrupted comparison keeps what it has.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from anyquantile.experiment.config import load_config
from anyquantile.model.metrics import headline
from anyquantile.training.train import train

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[dict[str, Any]], float]  # from one run's record
    digits: int = 3


def metric(name: str) -> Callable[[dict[str, Any]], float]:
    return lambda record: record["model"][name]


STANDARD_COLUMNS = (
    Column("steps", lambda r: r["global_step"], 0),
    Column("samples/s", lambda r: r["train_samples_per_second"], 0),
    Column("CRPS", metric("crps"), 1),
    Column("coverage 90", metric("coverage_90")),
    Column("coverage 95", metric("coverage_95")),
    Column("MAPE %", metric("mape"), 2),
)


def add_arguments(
    parser: argparse.ArgumentParser,
    variants: Sequence[Variant],
    default_config: str,
    default_budget: str | None = None,
    default_steps: int | None = None,
) -> None:
    """The shared options; a run's budget is ``--budget`` or ``--steps`` (given, else the script's default)."""
    parser.add_argument("--config", default=default_config, help="a config name in config/")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument(
        "--budget", help=f"trainer.max_time of every run (DD:HH:MM:SS): equal wall-clock; default {default_budget}"
    )
    budget.add_argument(
        "--steps",
        type=int,
        help=f"trainer.max_steps of every run: equal work, immune to machine load; default {default_steps}",
    )
    parser.set_defaults(default_budget=default_budget, default_steps=default_steps)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds to run each variant with")
    names = [v.name for v in variants]
    parser.add_argument("--only", nargs="+", choices=names, metavar="VARIANT", help=f"a subset of {names}")
    parser.add_argument("--json", type=Path, help="where to write every run's record (default: none)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every run (e.g. dataset.path=FILE)")


def run_variants(args: argparse.Namespace, variants: Sequence[Variant]) -> list[dict[str, Any]]:
    """Train every selected variant with every seed; returns one record per run."""
    if not args.budget and not args.steps:  # neither given: the script's default budget
        args.budget, args.steps = args.default_budget, args.default_steps
    budget = [f"trainer.max_time={args.budget}"] if args.budget else []
    budget += [f"trainer.max_steps={args.steps}"] if args.steps else []
    selected = [v for v in variants if not args.only or v.name in args.only]
    records: list[dict[str, Any]] = []
    for variant in selected:
        for seed in args.seeds:
            cfg = load_config(
                CONFIG_DIR / f"{args.config}.yaml", [*args.overrides, *budget, *variant.overrides, f"seed={seed}"]
            )
            summary = train(cfg)
            summary["model"] = headline(summary["model"])
            records.append({"variant": variant.name, "seed": seed, **summary})
            print(f"\n{variant.name}, seed {seed}: CRPS {summary['model']['crps']:.2f}\n", flush=True)
            if args.json:
                args.json.write_text(json.dumps(records, indent=2))
    return records


def markdown_table(
    records: list[dict[str, Any]],
    variants: Sequence[Variant],
    columns: Sequence[Column],
    labels: tuple[str, str] = ("variant", "change"),
) -> str:
    """One row per variant: each column's mean over seeds, ± the sample std when there are several
    ("–" where a column is not defined for a variant)."""
    header = f"| {labels[0]} | {labels[1]} | runs | " + " | ".join(c.header for c in columns) + " |"
    rule = "|---|---|---:|" + "---:|" * len(columns)
    rows = [header, rule]
    for variant in variants:
        runs = [r for r in records if r["variant"] == variant.name]
        if not runs:
            continue
        cells = []
        for column in columns:
            values = [float(column.value(r)) for r in runs]
            if all(math.isnan(v) for v in values):  # not defined for this variant
                cells.append("–")
                continue
            cell = f"{statistics.mean(values):,.{column.digits}f}"
            if len(values) > 1:
                cell += f" ± {statistics.stdev(values):,.{column.digits}f}"
            cells.append(cell)
        rows.append(f"| {variant.name} | {variant.description} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(
    description: str,
    variants: Sequence[Variant],
    columns: Sequence[Column],
    default_config: str,
    default_budget: str | None = None,
    default_steps: int | None = None,
) -> None:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, variants, default_config, default_budget, default_steps)
    args = parser.parse_args()
    records = run_variants(args, variants)
    budget = (
        args.budget
        and f"{args.budget} per run"
        or args.steps
        and f"{args.steps} steps per run"
        or "the config's budget"
    )
    print(f"\n{args.config}, {budget}, seeds {args.seeds}, scored on the {records[-1]['split']} split\n")
    print(markdown_table(records, variants, columns))
