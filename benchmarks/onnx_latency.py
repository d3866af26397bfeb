"""CPU forecast latency of an ONNX export (onnxruntime) against the same model in torch, side by side in one
run; prints a markdown table.

    python -m benchmarks.onnx_latency [--configs nbeatsaq-synthetic nbeatsaq-adaptive-attention-synthetic]
        [--windows 1 256] [--levels 99] [--threads 2] [--warmup 5] [--repeats 50] [key=value ...]

Each shipped config is built at its own size with untrained weights (the weights' values do not change the
work), exported to ONNX once, and timed on the same inputs both ways, with torch and onnxruntime on the same
number of threads (``--threads``) so that neither has more cores. Per window and level count, two paths:

- **network**: one forward of the predictor's network, ``network(batch, levels [Q])``: torch's ``Ensemble``
  (fp32, no gradients) against ``OnnxNetwork`` (the inputs' conversion to numpy included);
- **predictor**: ``Predictor.quantiles`` as production runs it: the reference grid's forward, sorting, and
  the levels read off the sorted grid.

After ``--warmup`` untimed calls, ``--repeats`` calls are timed one by one; the table gives their median and
90th percentile in milliseconds, and torch's median over onnxruntime's (above 1: onnxruntime is faster).
``key=value`` overrides apply to every config.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime
import torch

from anyquantile.dataset.windows import WindowBatch
from anyquantile.experiment.builders import build_forecaster
from anyquantile.experiment.config import load_config
from anyquantile.inference.onnx_model import OnnxNetwork, example_inputs, export_onnx, onnx_session
from anyquantile.inference.predictor import Predictor
from anyquantile.inference.saved_model import SavedModel

CONFIGS = ("nbeatsaq-synthetic", "nbeatsaq-adaptive-attention-synthetic")


def example_batch(model: SavedModel, windows: int) -> WindowBatch:
    """``windows`` made-up windows of the model's shape (the target is never read)."""
    history, history_mask, calendar, _ = example_inputs(model.configs[0], windows, 1)
    horizon = model.configs[0].dataset.horizon
    return WindowBatch(
        history=history,
        history_mask=history_mask,
        target=torch.zeros(windows, horizon),
        target_mask=torch.zeros(windows, horizon, dtype=torch.bool),
        calendar=calendar,
        series=torch.zeros(windows, dtype=torch.long),
        origin=torch.zeros(windows, dtype=torch.long),
    )


def timings(call: Callable[[], object], warmup: int, repeats: int) -> np.ndarray:
    """Seconds of each of ``repeats`` calls of ``call``, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    seconds = np.empty(repeats)
    for index in range(repeats):
        start = time.perf_counter()
        call()
        seconds[index] = time.perf_counter() - start
    return seconds


def onnx_predictor(torch_predictor: Predictor, file: Path, threads: int) -> Predictor:
    """``torch_predictor`` with its network replaced by onnxruntime's session of ``file`` on ``threads`` threads."""
    return Predictor(
        network=OnnxNetwork(onnx_session(file, threads)),
        dataset=torch_predictor.dataset,
        evaluation_levels=torch_predictor.evaluation_levels,
        calibration=torch_predictor.calibration,
        alias=torch_predictor.alias,
    )


def measure(
    name: str, overrides: list[str], windows: list[int], levels: int, threads: int, warmup: int, repeats: int
) -> list[str]:
    """The table rows of one config: per window count, the network and the predictor path, both ways."""
    cfg = load_config(name, overrides)
    torch.manual_seed(0)
    model = SavedModel([build_forecaster(cfg).eval()], [cfg])
    parameters = sum(p.numel() for p in model.members[0].parameters()) / 1e6
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        file = export_onnx(model, Path(folder) / "model.onnx")
        export_seconds, megabytes = time.perf_counter() - start, file.stat().st_size / 1e6
        predictors = {"torch": model.predictor(), "onnxruntime": onnx_predictor(model.predictor(), file, threads)}
        asked = torch.linspace(0.01, 0.99, levels)  # [Q]
        rows = []
        for count in windows:
            batch = example_batch(model, count)
            paths: dict[str, dict[str, Callable[[], object]]] = {
                "network": {key: _bound(p.network, batch, asked) for key, p in predictors.items()},
                "predictor": {key: _bound(p.quantiles, batch, asked.tolist()) for key, p in predictors.items()},
            }
            for path, calls in paths.items():
                seconds = {key: 1000 * timings(call, warmup, repeats) for key, call in calls.items()}
                medians = {key: float(np.median(value)) for key, value in seconds.items()}
                cells = [f"{medians[key]:.2f} | {np.percentile(seconds[key], 90):.2f}" for key in seconds]
                rows.append(
                    f"| {name} ({parameters:.2f} M, {megabytes:.1f} MB, export {export_seconds:.0f} s) | "
                    f"{count} × {levels} | {path} | {' | '.join(cells)} | "
                    f"{medians['torch'] / medians['onnxruntime']:.2f}x |"
                )
                print(rows[-1], flush=True)
    return rows


def _bound(function: Callable, batch: WindowBatch, levels: object) -> Callable[[], object]:
    def call() -> object:
        with torch.no_grad():
            return function(batch, levels)

    return call


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), help="shipped configs (or YAML files)")
    parser.add_argument("--windows", nargs="+", type=int, default=[1, 256], help="windows per call")
    parser.add_argument("--levels", type=int, default=99, help="quantile levels per window")
    parser.add_argument("--threads", type=int, default=2, help="threads of torch and of onnxruntime alike")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls first")
    parser.add_argument("--repeats", type=int, default=50, help="timed calls")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every config")
    args = parser.parse_args(argv)
    if min(args.windows) < 1 or args.levels < 1 or args.threads < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--windows, --levels, --threads and --repeats must be positive, --warmup not negative")
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {args.threads} threads each; "
        f"{args.warmup} warm-up calls, then {args.repeats} timed (milliseconds)\n"
    )
    print(
        "| model (parameters, ONNX file, export time) | windows × levels | path | torch median | torch p90 | "
        "onnxruntime median | onnxruntime p90 | torch ÷ onnxruntime |\n|---|---|---|---:|---:|---:|---:|---:|",
        flush=True,
    )
    for name in args.configs:
        measure(name, list(args.overrides), args.windows, args.levels, args.threads, args.warmup, args.repeats)


if __name__ == "__main__":
    main()
