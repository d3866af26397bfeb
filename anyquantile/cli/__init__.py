"""The ``anyquantile`` command: one subcommand per step of a model's life.

    anyquantile train     --config NAME|PATH [...]          fit, test, write runs/<name>/<time>/
    anyquantile evaluate  --checkpoint PATH | --model DIR   metrics.json, forecasts, dashboard, calibration
    anyquantile predict   --model DIR|F.onnx --data FILE    forecasts of the hours after the data
    anyquantile serve     --model DIR [--port P]            the HTTP forecasting service
    anyquantile export    --checkpoint PATH ... --out DIR   a saved model (or --format onnx from a model)
    anyquantile sweep     --config NAME --search SPACE      a hyper-parameter search (Optuna, Hydra multirun)

``anyquantile COMMAND --help`` shows each one's options.
"""

from __future__ import annotations

import importlib
import sys

import anyquantile

COMMANDS = {name: f"anyquantile.cli.{name}" for name in ("train", "evaluate", "predict", "serve", "export", "sweep")}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"anyquantile {anyquantile.__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command '{name}'; the commands are {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    # imported on demand: each command loads only what it needs (serving does not load Lightning's trainer)
    return importlib.import_module(COMMANDS[name]).main(rest, prog=f"anyquantile {name}")
