"""Every contender on the same windows, the same metrics code and the same training budget.

    python -m benchmarks.run --data synthetic|mhl|FILE --budget-minutes M [--seeds 0 1 2]
        [--only NAME ...] [--max-steps N] [--paper-size] [--refit] [--conformal KIND] [--json PATH] [key=value ...]
    python -m benchmarks.run --data mhl --report results/benchmark-mhl.json   # the table of a results file

Contenders (benchmarks/contenders.py): seasonal naive (24 h, 168 h), the oracle (synthetic data),
neuralforecast NBEATS (MQLoss, IQLoss) and NHITS (MQLoss), our N-BEATS-AQ (CAT, FiLM) and our
adaptive-attention model with each level sampler. Each trained contender gets ``M`` minutes of
training (and at most ``--max-steps`` steps); all forecast the test split's windows at the
evaluation levels and are scored by one function. Prints a markdown table (mean ± std over seeds)
and appends every run's record to ``--json`` (default results/benchmark-<data>.json) as soon as it
is done, so an interrupted benchmark keeps what it has and a table is built up over several runs
(the file's records must be of the same test windows; a run it holds already is not run again).

``--data mhl`` reads ../shared/data/mhl/mhl_2016_2017.csv.gz (or FILE) with the CPU MHL configs,
validation 2017-07..09 (checkpoint choice) and test 2017-10..12 (the table). ``key=value``
overrides apply to every config of ours and to the data. ``--paper-size`` trains our models at the
paper's sizes (``nbeatsaq-mhlv`` configs, 30 blocks x 1024 wide; meant for a GPU). ``--refit`` trains
every contender on the training and validation months, up to the test start, within the same budget
(neuralforecast's too), and tests our models' final weights (``trainer.test_checkpoint=last``): no
choice on val, the schedule annealing to the budget's end in its place (MHL only). ``--conformal
level`` (or another kind of ``evaluate.py --conformal``) fits a split-conformal correction on each
contender's validation forecasts and adds its test scores after it to the record and the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from omegaconf import OmegaConf

from anyquantile.dataset.loader import DataValidationError
from anyquantile.dataset.windows import WindowBatches
from anyquantile.experiment.builders import build_data, build_evaluation_levels
from anyquantile.experiment.config import load_config
from anyquantile.experiment.errors import ConfigError, UsageError
from anyquantile.modules.conformal import ConformalKind
from anyquantile.modules.options import choose
from benchmarks.contenders import CONFIG_DIR, Bench, contenders, run_contender, window_fingerprint
from benchmarks.variant_runs import Column, markdown_table, metric

REPO = Path(__file__).resolve().parents[1]
MHL_FILE = REPO.parent / "shared" / "data" / "mhl" / "mhl_2016_2017.csv.gz"
CONFIGS = {  # data -> (base config, attention config)
    "synthetic": ("nbeatsaq-synthetic", "nbeatsaq-adaptive-attention-synthetic"),
    "mhl": ("nbeatsaq-mhl-cpu", "nbeatsaq-adaptive-attention-mhl-cpu"),
}
PAPER_SIZE_CONFIGS = ("nbeatsaq-mhlv", "nbeatsaq-adaptive-attention-mhlv")  # the paper's sizes, for a GPU
MHL_TEST_START = "2017-10-01"  # val (Jul-Sep) picks the checkpoint, test (Oct-Dec) is the table


NAN = float("nan")
# overrides that change no result (display, where runs are written): records made with and without them compare
NO_RESULT_KEYS = ("trainer.enable_progress_bar", "output_dir")


def conformal_metric(name: str):
    """A score after the conformal correction; NaN ("–") for a record without one."""
    return lambda record: record.get("conformal", {}).get(name, NAN)


def columns(with_oracle: bool, oracle_crps: float | None, with_conformal: bool = False) -> list[Column]:
    table = [
        Column("CRPS", metric("crps"), 2),
        Column("CRPS (paper)", lambda r: r["model"].get("crps_paper_protocol", NAN), 2),
    ]
    if with_oracle and oracle_crps:
        table.append(Column("CRPS ÷ oracle", lambda r: r["model"]["crps"] / oracle_crps, 3))
    table += [
        Column("cov 90", metric("coverage_90")),
        Column("cov 95", metric("coverage_95")),
        Column("cal. error", metric("calibration_error")),
    ]
    if with_conformal:  # the interval kinds leave CRPS and calibration error undefined: "–"
        table += [
            Column("CRPS conf.", conformal_metric("crps"), 2),
            Column("cov 95 conf.", conformal_metric("coverage_95")),
            Column("cal. error conf.", conformal_metric("calibration_error")),
        ]
    table += [
        Column("MAPE %", metric("mape"), 2),
        Column("crossing raw", metric("crossing_rate_raw")),
        Column("crossing final", metric("crossing_rate_final")),
        Column("train s", lambda r: NAN if r["train_seconds"] is None else r["train_seconds"], 0),
        Column(
            "samples/s", lambda r: NAN if r["train_samples_per_second"] is None else r["train_samples_per_second"], 0
        ),
        Column("eval s", lambda r: r["eval_seconds"], 1),
    ]
    return table


def build_bench(
    data: str,
    budget_minutes: float,
    max_steps: int | None,
    overrides: Sequence[str],
    paper_size: bool = False,
    refit: bool = False,
    conformal: str = "none",
) -> tuple[Bench, str, str]:
    """The base config's data and test windows, and the two config names of ours for ``data``."""
    if paper_size and data == "synthetic":
        raise UsageError("--paper-size is for MHL data (the paper's configs read an MHL file)")
    if data in CONFIGS:
        base, attention = CONFIGS[data]
        data_overrides = [f"dataset.path={MHL_FILE}"] if data == "mhl" else []
    else:  # a file in the MHL format
        if not Path(data).is_file():
            raise UsageError(f"--data: '{data}' is neither synthetic, mhl nor an existing file")
        base, attention = CONFIGS["mhl"]
        data_overrides = [f"dataset.path={data}"]
    if paper_size:
        base, attention = PAPER_SIZE_CONFIGS
    if refit and data == "synthetic":
        raise UsageError("--refit is for MHL data (it trains up to the MHL benchmark's test start)")
    try:
        kind = choose(ConformalKind, conformal, "--conformal")
    except ValueError as error:
        raise UsageError(str(error)) from None
    if refit and kind != ConformalKind.none:
        raise UsageError("--refit trains on the validation months: a conformal correction fitted there is in-sample")
    if data != "synthetic":
        data_overrides.append(f"dataset.test_start={MHL_TEST_START}")
    if refit:
        data_overrides += [f"dataset.train_end={MHL_TEST_START}", "trainer.test_checkpoint=last"]
    all_overrides = (*data_overrides, *overrides)
    cfg = load_config(CONFIG_DIR / f"{base}.yaml", list(all_overrides))
    forecast_data = build_data(cfg)
    if "test" not in forecast_data.splits:
        raise ConfigError("the benchmark scores a test split: set dataset.test_start")
    windows = WindowBatches(forecast_data.panel, forecast_data.shape, forecast_data.splits["test"])
    budget = None
    if budget_minutes:
        seconds = int(round(budget_minutes * 60))
        budget = f"00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    if OmegaConf.to_object(cfg.dataset).covariates().width:
        raise UsageError("the benchmark's neuralforecast contenders do not read covariates yet: run it without them")
    val_windows = None
    if kind != ConformalKind.none:
        if "val" not in forecast_data.splits:
            raise ConfigError("--conformal fits its correction on a validation split: this config has none")
        val_windows = WindowBatches(forecast_data.panel, forecast_data.shape, forecast_data.splits["val"])
    settings = {
        "data": data,  # synthetic, mhl or the file's path
        "budget_minutes": budget_minutes,
        "max_steps": max_steps,
        "paper_size": paper_size,
        "refit": refit,
        "conformal": str(kind),
        "overrides": sorted(o for o in overrides if o.split("=")[0].lstrip("+") not in NO_RESULT_KEYS),
    }
    levels = build_evaluation_levels(cfg)
    bench = Bench(
        cfg, forecast_data, windows, levels, tuple(all_overrides), budget, max_steps, kind, val_windows, settings
    )
    return bench, base, attention


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="synthetic", help="synthetic, mhl or an MHL-format file")
    parser.add_argument("--budget-minutes", type=float, default=5.0, help="training wall-clock per trained contender")
    parser.add_argument("--max-steps", type=int, help="also cap every trained contender at this many steps")
    parser.add_argument(
        "--paper-size", action="store_true", help="our models at the paper's sizes (configs *-mhlv; for a GPU)"
    )
    parser.add_argument(
        "--refit", action="store_true", help="train every contender up to the test start; ours test final weights"
    )
    parser.add_argument(
        "--conformal",
        default="none",
        choices=[kind.value for kind in ConformalKind],
        help="fit a split-conformal correction on each contender's val forecasts; score the test after it too",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="a subset of the contenders")
    parser.add_argument("--json", type=Path, help="the results file (default results/benchmark-<data>.json)")
    parser.add_argument(
        "--report", type=Path, metavar="JSON", help="only print the table of a results file, run nothing"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    try:
        bench, base, attention = build_bench(
            args.data, args.budget_minutes, args.max_steps, args.overrides, args.paper_size, args.refit, args.conformal
        )
        table = contenders(base, attention, synthetic=bench.data.oracle is not None)
        names = [c.name for c in table]
        unknown = sorted(set(args.only or ()) - set(names))
        if unknown:
            raise UsageError(f"--only: unknown contender(s) {unknown}; choose from {names}")
    except (ConfigError, UsageError, DataValidationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    selected = [c for c in table if not args.only or c.name in args.only]
    if args.report:
        print(report(json.loads(args.report.read_text()), selected))
        return 0
    out = (
        args.json
        or REPO / "results" / f"benchmark-{Path(args.data).stem if args.data not in CONFIGS else args.data}.json"
    )
    try:
        earlier = earlier_records(out, bench)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    records = run_all(selected, bench, args.seeds, out, earlier)
    print(
        f"\n{args.data}: {len(bench.windows):,} test windows, {args.budget_minutes:g} min of training per trained "
        f"contender{f' (at most {args.max_steps} steps)' if args.max_steps else ''}, seeds {args.seeds}\n"
    )
    print(report(records, selected))
    print(f"\nrecords: {out}")
    return 0


def report(records: list[dict[str, Any]], selected) -> str:
    """The markdown table of ``records`` (CRPS ÷ oracle when the oracle ran)."""
    records = [with_named_crossing_rates(record) for record in records]
    oracle = [r["model"]["crps"] for r in records if r["variant"] == "oracle"]
    table = columns(bool(oracle), sum(oracle) / len(oracle) if oracle else None, any("conformal" in r for r in records))
    return markdown_table(records, selected, table, ("contender", "what"))


def with_named_crossing_rates(record: dict[str, Any]) -> dict[str, Any]:
    """A record of a results file written before the two crossing rates were named: its ``crossing_rate`` was
    the raw forecasts' (``crossing_rate_raw``); the final one was not recorded (NaN: "–" in the table)."""
    scores = record["model"]
    if "crossing_rate" not in scores:
        return record
    renamed = {name: value for name, value in scores.items() if name != "crossing_rate"}
    return {**record, "model": {**renamed, "crossing_rate_raw": scores["crossing_rate"], "crossing_rate_final": NAN}}


def runs(selected, seeds: Sequence[int]) -> list[tuple[Any, int]]:
    """(contender, seed) of every run: every seed of a contender that trains, one run of the others."""
    return [(contender, seed) for contender in selected for seed in (seeds if contender.trains else seeds[:1])]


def earlier_records(out: Path, bench: Bench) -> list[dict[str, Any]]:
    """The records already in the results file ``out``, which this benchmark appends to; a UsageError when they
    are of other test windows (another data set or split) or were made with other settings (budget, steps,
    overrides, ...: ``Bench.settings``)."""
    if not out.is_file():
        return []
    try:
        records = json.loads(out.read_text())
    except json.JSONDecodeError as error:
        raise UsageError(f"{out} is not a results file ({error}); give another --json") from None
    keys = ("variant", "seed", "window_fingerprint", "settings")
    if not isinstance(records, list) or not all(isinstance(r, dict) and all(k in r for k in keys) for r in records):
        raise UsageError(
            f"{out} is not a results file of this benchmark (a list of records with {keys}); give another --json"
        )
    fingerprint = window_fingerprint(bench.windows)
    other = sorted({r["window_fingerprint"] for r in records} - {fingerprint})
    if other:
        raise UsageError(
            f"{out} holds records of other test windows (fingerprint {other[0]}, these are {fingerprint}): "
            "another data set or split; give another --json"
        )
    for record in records:
        theirs = record["settings"]
        differ = sorted(n for n in {*theirs, *bench.settings} if theirs.get(n) != bench.settings.get(n))
        if differ:
            said = "; ".join(f"{n}: {theirs.get(n)!r} there, {bench.settings.get(n)!r} here" for n in differ)
            raise UsageError(f"{out} holds records made with other settings ({said}); give another --json")
    return records


def held(contender, seed: int, records: Sequence[dict[str, Any]]) -> bool:
    """Whether ``records`` hold this run already: the seed's, or any run of a contender that does not train."""
    return any(r["variant"] == contender.name and (r["seed"] == seed or not contender.trains) for r in records)


def run_all(
    selected, bench: Bench, seeds: Sequence[int], out: Path, earlier: Sequence[dict[str, Any]] = ()
) -> list[dict[str, Any]]:
    """Every run (:func:`runs`) that ``earlier`` does not hold, each record appended to them and to ``out`` at once."""
    records: list[dict[str, Any]] = list(earlier)
    for contender, seed in runs(selected, seeds):
        if held(contender, seed, earlier):
            print(f"{contender.name}, seed {seed}: already in {out}, not run again", flush=True)
            continue
        print(f"\n=== {contender.name}, seed {seed} ===", flush=True)
        records.append(run_contender(contender, bench, seed))
        print(f"{contender.name}: CRPS {records[-1]['model']['crps']:.3f}", flush=True)
        out.write_text(json.dumps(records, indent=2))
    return records


if __name__ == "__main__":
    sys.exit(main())
