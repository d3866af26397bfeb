"""How the cost grows with the number of series: synthetic panels of 100, 1,000 and 10,000 series x 2 years hourly.

    python -m benchmarks.large_panels [--series 100 1000 10000] [--hours 17520] [--train-steps 20]
                                      [--eval-batches N] [--in-process] [--json FILE] [key=value ...]

Each size runs in a fresh child process (``python -m benchmarks.large_panels --one N ...``), so its peak
RSS is its own; ``--in-process`` measures every size in this process instead (quicker, but the peaks are
then cumulative). The model is the default config, ``config/nbeatsaq-synthetic.yaml`` (N-BEATS-AQ,
FiLM 4 x 3 x 256, batch 1024), in fp32 on CPU, on the embedded synthetic data
(``dataset.synthetic.num_series`` / ``num_hours`` from 2015-01-01) with the last quarter of the hours
split off for validation and test (val from 75 %, test from 87.5 % of the days: for two years, val
2016-07-01.., test 2016-09-30..). Everything goes through the repository's own path, timed piece by piece
rather than through ``train()`` (which would add checkpoints, logs and a validation pass):

- **panel + window index (s)**: ``build_data`` (the synthetic panel and ``make_splits``: the window index
  of train / val / test; training windows every ``dataset.train_step`` = 1 hour, val/test every
  ``dataset.eval_step`` = 24 hours, the config's defaults);
- **batch tensors (s)**: ``build_datamodule`` (each split's gathered tensors: filled history, masks,
  calendar);
- **peak RSS (MiB)**: ``getrusage(RUSAGE_SELF).ru_maxrss`` at the end of the child. The record also keeps
  the RSS before anything was built and the peak after the data and after training: at small sizes the
  end's peak is set by evaluation (a batch of 256 windows at the ~107 grid levels: some 400-500 MiB that do
  not grow with the series), at large ones by building the data;
- **train samples/s**: a Lightning ``fit`` of ``--train-steps`` steps after 3 untimed warm-up steps,
  the whole training path as ``train()`` measures it (``training.callbacks.Throughput``: loading the
  batch, forward, backward, optimiser; no validation). It depends on the panel only through the size
  of the tensors the batches are gathered from, so it should stay flat while the rest grows;
- **eval (s)**: Lightning ``test`` of the test split (``trainer.test`` as in ``train()``: the level grid's
  forecast and scores per window, plus the paper protocol's 100 random levels unless
  ``evaluation.paper_protocol_levels=0``), all its windows, or the first ``--eval-batches`` batches of
  ``dataset.eval_batch_size`` (then the per-series ratio is extrapolated from the windows scored: "~");
- **per 1,000 series**: the data seconds (panel + windows + tensors), the eval seconds and the data's RSS
  growth (the peak after the data minus the RSS before it) divided by the series, times 1,000: constant
  when the cost grows linearly (at small sizes fixed costs make them larger). A second table gives the
  same between consecutive sizes, where the fixed costs cancel.

``--json FILE`` writes the settings and one record per size (rewritten after each size, so an interrupted
run keeps what it has). ``key=value`` overrides apply to every size's config (e.g. ``dataset.train_step=24``).

The table of 100 / 1,000 / 10,000 series and its reading: docs/results.md, "Large panels".
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import torch
from lightning import seed_everything
from omegaconf import DictConfig

from anyquantile.experiment.builders import build_data, build_datamodule, build_training_forecaster
from anyquantile.experiment.config import load_config
from anyquantile.experiment.files import write_text_atomic
from anyquantile.model.quiet import quiet_lightning
from anyquantile.training.callbacks import Throughput
from anyquantile.training.cpu import cpu_threads, threads_per_process
from benchmarks.speed import timing_trainer

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "nbeatsaq-synthetic.yaml"
SIZES = (100, 1_000, 10_000)
HOURS = 2 * 365 * 24  # 17,520: two years hourly
START = "2015-01-01"  # the synthetic data's first hour (dataset.synthetic.start)
VAL_FRACTION, TEST_FRACTION = 0.75, 0.875  # of the days: where val and test start
WARMUP_STEPS = 3  # untimed training steps before the timed ones
FIXED = ("trainer.precision=32-true", "trainer.enable_progress_bar=false")

# (header, field of a record, digits); the ratio columns are computed in ``row``
COLUMNS = (
    "series",
    "hours",
    "train windows",
    "test windows (scored)",
    "panel + window index (s)",
    "batch tensors (s)",
    "peak RSS (MiB)",
    "train samples/s",
    "eval (s)",
    "data s / 1k series",
    "eval s / 1k series",
    "data RSS MiB / 1k series",
)
RECORD_FIELDS = (
    "series",
    "hours",
    "train_windows",
    "val_windows",
    "test_windows",
    "test_windows_scored",
    "panel_and_splits_seconds",
    "datamodule_seconds",
    "data_seconds",
    "baseline_rss_mib",
    "peak_rss_mib_after_data",
    "peak_rss_mib_after_train",
    "peak_rss_mib",
    "rss_growth_mib_per_1k_series",
    "data_rss_mib_per_1k_series",
    "fit_seconds",
    "train_steps",
    "train_timed_steps",
    "train_samples_per_second",
    "train_step_alone_samples_per_second",
    "eval_seconds",
    "data_seconds_per_1k_series",
    "eval_seconds_per_1k_series",
    "test_crps",
)


def peak_rss_mib() -> float:
    """This process's peak resident set so far, MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def split_dates(hours: int, start: str = START) -> tuple[str, str]:
    """(val_start, test_start) at :data:`VAL_FRACTION` and :data:`TEST_FRACTION` of the whole days of ``hours``."""
    days = hours // 24
    first = pd.Timestamp(start)
    return tuple(  # type: ignore[return-value]
        str((first + pd.Timedelta(days=math.floor(fraction * days))).date())
        for fraction in (VAL_FRACTION, TEST_FRACTION)
    )


def size_config(series: int, hours: int, overrides: Sequence[str] = ()) -> DictConfig:
    """The default config in fp32 on a synthetic panel of ``series`` x ``hours``, val and test at its end."""
    val_start, test_start = split_dates(hours)
    return load_config(
        CONFIG,
        [
            *FIXED,
            f"dataset.synthetic.num_series={series}",
            f"dataset.synthetic.num_hours={hours}",
            f"dataset.val_start={val_start}",
            f"dataset.test_start={test_start}",
            *overrides,
        ],
    )


def measure(
    series: int,
    hours: int = HOURS,
    train_steps: int = 20,
    eval_batches: int | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """One size: build the data, train ``train_steps`` timed steps, score the test split; the record."""
    baseline = peak_rss_mib()
    cfg = size_config(series, hours, overrides)
    seed_everything(cfg.seed, verbose=False)
    start = time.perf_counter()
    data = build_data(cfg)
    built = time.perf_counter()
    datamodule = build_datamodule(cfg, data)
    data_end = time.perf_counter()
    after_data = peak_rss_mib()

    forecaster = build_training_forecaster(cfg)
    throughput = Throughput(cfg.dataset.batch_size, skip_steps=WARMUP_STEPS)
    with quiet_lightning():
        trainer = timing_trainer(
            cfg.trainer.precision,
            WARMUP_STEPS + train_steps,
            throughput,
            max_epochs=-1,
            limit_test_batches=eval_batches if eval_batches else 1.0,
            num_sanity_val_steps=0,
            gradient_clip_val=cfg.trainer.gradient_clip_val,
        )
    with cpu_threads(threads_per_process(cfg)), quiet_lightning():
        fit_start = time.perf_counter()
        trainer.fit(forecaster, datamodule=datamodule)
        fit_seconds = time.perf_counter() - fit_start
        after_train = peak_rss_mib()
        eval_start = time.perf_counter()
        trainer.test(forecaster, datamodule=datamodule, verbose=False)
        eval_seconds = time.perf_counter() - eval_start
    peak = peak_rss_mib()

    test_windows = len(data.splits["test"])
    scored = min(test_windows, eval_batches * cfg.dataset.eval_batch_size) if eval_batches else test_windows
    data_seconds = data_end - start
    per_1k = 1000 / series
    return {
        "series": series,
        "hours": hours,
        "train_windows": len(data.splits["train"]),
        "val_windows": len(data.splits["val"]),
        "test_windows": test_windows,
        "test_windows_scored": scored,
        "panel_and_splits_seconds": built - start,
        "datamodule_seconds": data_end - built,
        "data_seconds": data_seconds,
        "baseline_rss_mib": baseline,
        "peak_rss_mib_after_data": after_data,
        "peak_rss_mib_after_train": after_train,
        "peak_rss_mib": peak,
        "rss_growth_mib_per_1k_series": (peak - baseline) * per_1k,  # with the fixed costs of model and evaluation
        "data_rss_mib_per_1k_series": (after_data - baseline) * per_1k,  # the peak while the data is built
        "fit_seconds": fit_seconds,  # the whole fit: loaders (the shuffled order of every window), warm-up, steps
        "train_steps": throughput.steps,
        "train_timed_steps": throughput.timed_steps,
        "train_samples_per_second": throughput.samples_per_second,
        "train_step_alone_samples_per_second": throughput.compute_samples_per_second,
        "eval_seconds": eval_seconds,
        "data_seconds_per_1k_series": data_seconds * per_1k,
        # extrapolated to every test window when only some were scored
        "eval_seconds_per_1k_series": eval_seconds * test_windows / max(scored, 1) * per_1k,
        "test_crps": float(forecaster.results.get("test", {}).get("crps", float("nan"))),
    }


def measure_in_child(
    series: int, hours: int, train_steps: int, eval_batches: int | None, overrides: Sequence[str]
) -> dict[str, Any]:
    """:func:`measure` in a fresh ``python -m benchmarks.large_panels --one N`` process: its own peak RSS."""
    with tempfile.TemporaryDirectory() as folder:
        record_file = Path(folder) / "record.json"
        command = [
            sys.executable,
            "-m",
            "benchmarks.large_panels",
            "--one",
            str(series),
            "--hours",
            str(hours),
            "--train-steps",
            str(train_steps),
            "--record-file",
            str(record_file),
            *(["--eval-batches", str(eval_batches)] if eval_batches else []),
            *overrides,
        ]
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        if result.returncode != 0 or not record_file.is_file():
            raise RuntimeError(
                f"the run of {series} series failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return json.loads(record_file.read_text())


def row(record: dict[str, Any]) -> str:
    """One Markdown table row of a record (:data:`COLUMNS`)."""
    partial = record["test_windows_scored"] < record["test_windows"]
    scored = f"{record['test_windows']:,}" + (f" ({record['test_windows_scored']:,})" if partial else "")
    cells = [
        f"{record['series']:,}",
        f"{record['hours']:,}",
        f"{record['train_windows']:,}",
        scored,
        f"{record['panel_and_splits_seconds']:.2f}",
        f"{record['datamodule_seconds']:.2f}",
        f"{record['peak_rss_mib']:,.0f}",
        f"{record['train_samples_per_second']:,.0f}",
        f"{record['eval_seconds']:.2f}",
        f"{record['data_seconds_per_1k_series']:.2f}",
        ("~" if partial else "") + f"{record['eval_seconds_per_1k_series']:.2f}",
        f"{record['data_rss_mib_per_1k_series']:,.0f}",
    ]
    return "| " + " | ".join(cells) + " |"


def header() -> str:
    return "| " + " | ".join(COLUMNS) + " |\n|" + "---:|" * len(COLUMNS)


MARGINAL_COLUMNS = ("from → to (series)", "data s / 1k series", "eval s / 1k series", "data RSS MiB / 1k series")


def marginal_table(records: Sequence[dict[str, Any]]) -> str:
    """The cost of each further 1,000 series between consecutive sizes (the fixed costs cancel): constant when
    the cost is linear in the series. Eval uses the per-series ratio (extrapolated when partly scored)."""
    lines = ["| " + " | ".join(MARGINAL_COLUMNS) + " |", "|---|" + "---:|" * (len(MARGINAL_COLUMNS) - 1)]
    ordered = sorted(records, key=lambda r: r["series"])
    for small, large in zip(ordered[:-1], ordered[1:]):
        added = large["series"] - small["series"]
        if added <= 0:
            continue
        per_1k = 1000 / added
        eval_large = large["eval_seconds_per_1k_series"] * large["series"] / 1000
        eval_small = small["eval_seconds_per_1k_series"] * small["series"] / 1000
        cells = [
            f"{small['series']:,} → {large['series']:,}",
            f"{(large['data_seconds'] - small['data_seconds']) * per_1k:.2f}",
            f"{(eval_large - eval_small) * per_1k:.2f}",
            f"{(large['peak_rss_mib_after_data'] - small['peak_rss_mib_after_data']) * per_1k:,.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, nargs="+", default=list(SIZES), help="panel sizes (series)")
    parser.add_argument("--hours", type=int, default=HOURS, help="hours per series (default: two years)")
    parser.add_argument(
        "--train-steps", type=int, default=20, help=f"timed training steps (after {WARMUP_STEPS} untimed)"
    )
    parser.add_argument(
        "--eval-batches", type=int, help="score only the first N test batches (default: the whole test split)"
    )
    parser.add_argument(
        "--in-process", action="store_true", help="measure every size in this process (peak RSS cumulative)"
    )
    parser.add_argument("--json", type=Path, help="write the settings and every size's record here")
    parser.add_argument("--one", type=int, metavar="N", help=argparse.SUPPRESS)  # a child: one size
    parser.add_argument("--record-file", type=Path, help=argparse.SUPPRESS)  # where the child writes its record
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every size")
    args = parser.parse_args(argv)
    if args.train_steps < 2:
        parser.error("--train-steps must be at least 2")
    if any(n < 1 for n in args.series) or args.hours < 24:
        parser.error("--series must be >= 1 and --hours >= 24")
    if args.eval_batches is not None and args.eval_batches < 1:
        parser.error("--eval-batches must be >= 1")
    if args.one is not None:  # the child of measure_in_child
        record = measure(args.one, args.hours, args.train_steps, args.eval_batches, args.overrides)
        if args.record_file:
            args.record_file.write_text(json.dumps(record))
        else:
            print(json.dumps(record))
        return

    cfg = size_config(args.series[0], args.hours, args.overrides)
    val_start, test_start = split_dates(args.hours)
    settings = {
        "config": CONFIG.name,
        "overrides": [*FIXED, *args.overrides],
        "hours": args.hours,
        "val_start": val_start,
        "test_start": test_start,
        "train_step": cfg.dataset.train_step,
        "eval_step": cfg.dataset.eval_step,
        "batch_size": cfg.dataset.batch_size,
        "eval_batch_size": cfg.dataset.eval_batch_size,
        "warmup_steps": WARMUP_STEPS,
        "train_steps": args.train_steps,
        "eval_batches": args.eval_batches,
        "in_process": args.in_process,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    print(
        f"{CONFIG.name} in fp32 on CPU (torch {torch.__version__}, {torch.get_num_threads()} threads); "
        f"{args.hours:,} hours from {START}, val from {val_start}, test from {test_start}; "
        f"train_step {cfg.dataset.train_step} h, eval_step {cfg.dataset.eval_step} h; "
        f"{args.train_steps} timed training steps of {cfg.dataset.batch_size} after {WARMUP_STEPS} untimed; "
        + ("every size in this process (peak RSS cumulative)" if args.in_process else "each size in its own process")
        + "\n"
    )
    print(header(), flush=True)
    records = []
    for series in args.series:
        if args.in_process:
            record = measure(series, args.hours, args.train_steps, args.eval_batches, args.overrides)
        else:
            record = measure_in_child(series, args.hours, args.train_steps, args.eval_batches, args.overrides)
        records.append(record)
        print(row(record), flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(
                args.json, json.dumps({"benchmark": "large_panels", "settings": settings, "records": records}, indent=2)
            )
    if len(records) > 1:
        print("\nEach further 1,000 series, between consecutive sizes (fixed costs cancel)\n")
        print(marginal_table(records), flush=True)


if __name__ == "__main__":
    main()
