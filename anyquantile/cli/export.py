"""Export trained models: checkpoints of ``anyquantile train`` to a saved model folder, or a model to ONNX.

    anyquantile export --checkpoint PATH [--checkpoint PATH ...] --out DIR [--alias NAME] [--overwrite]
    anyquantile export --model DIR --format onnx --out F.onnx [--alias NAME] [--overwrite]
    anyquantile export --checkpoint PATH [--checkpoint PATH ...] --format onnx --out F.onnx [--alias NAME]

Several checkpoints make an ensemble (their quantile forecasts averaged level by level). ``--format model``
(the default) writes the folder ``Forecaster.load`` and ``anyquantile predict --model DIR`` read; ``--format
onnx`` writes one ``.onnx`` file that ``anyquantile predict --model F.onnx`` runs with onnxruntime, without
torch's weights: the ensemble as one graph, the window and level counts free, the alias, config and saved
calibration in its metadata. An existing output is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from anyquantile.dataset.errors import DataValidationError
from anyquantile.experiment.errors import ConfigError, UsageError

FORMATS = ("model", "onnx")


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", action="append", help="a checkpoint of anyquantile train; repeat: ensemble")
    source.add_argument("--model", help="a saved model folder (Forecaster.save, anyquantile export)")
    parser.add_argument("--out", required=True, help="the folder (--format model) or the .onnx file (--format onnx)")
    parser.add_argument("--format", choices=FORMATS, default="model", help="a saved model folder or an ONNX file")
    parser.add_argument(
        "--alias", help="the model's name in the forecast columns (default: AnyQuantile, or the model's)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        check_arguments(args, out)
        # imported late: argument errors come first, and fast
        from anyquantile.inference.saved_model import DEFAULT_ALIAS, SavedModel, load_model, save_model

        if args.checkpoint:
            model = SavedModel.from_checkpoints(args.checkpoint, alias=args.alias or DEFAULT_ALIAS)
        else:
            model = load_model(args.model)
            model.alias = args.alias or model.alias
        if args.format == "onnx":
            from anyquantile.inference.onnx_model import export_onnx

            written = export_onnx(model, out, overwrite=args.overwrite)
        else:
            written = save_model(model, out, overwrite=args.overwrite)
    except (ConfigError, UsageError, DataValidationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{describe(args.format, len(model.members), model.alias)} written to {written}")
    return 0


def check_arguments(args: argparse.Namespace, out: Path) -> None:
    """The command line's own mistakes, found before any model is read (UsageErrors)."""
    for path in args.checkpoint or [args.model]:
        if not Path(path).exists():
            raise UsageError(f"not found: {path}")
    if args.model and args.format == "model":
        raise UsageError(f"{args.model} is a saved model already: export it with --format onnx, or give --checkpoint")
    if args.format == "onnx" and out.suffix != ".onnx":
        raise UsageError(f"--format onnx writes one file: --out must end in .onnx, got '{out.name}'")
    if args.format == "model" and out.suffix == ".onnx":
        raise UsageError(f"--out '{out.name}' ends in .onnx, which predict reads as an ONNX file: add --format onnx")
    if out.exists() and not args.overwrite:
        raise UsageError(f"{out} exists; give another --out or pass --overwrite")


def describe(format: str, members: int, alias: str) -> str:
    kind = "ONNX model" if format == "onnx" else "saved model"
    return f"{kind} '{alias}' ({members} member{'s' if members > 1 else ''})"


if __name__ == "__main__":
    sys.exit(main())
