"""Search hyper-parameters: Hydra's multirun with the Optuna sweeper over a search space of config/search/.

    anyquantile sweep --config NAME|FILE --search SPACE [--trials N] [key=value ...]

Each trial trains the config with the sweeper's choices (``runs/NAME/TIME`` as ``train`` writes it); the
objective is the trial's best validation CRPS. The trials' table (``trials.md``, ``trials.json``) and
Optuna's best (``optimization_results.yaml``) are written to ``OUTPUT_DIR/sweeps/NAME/TIME/`` as the
trials end. A ``key=value`` of a searched key fixes it. The shipped search spaces: config/search/*.yaml.
"""

from __future__ import annotations

import argparse
import sys

from anyquantile.dataset.errors import DataValidationError
from anyquantile.experiment.errors import ConfigError, UsageError


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, help="a shipped config's name or a YAML file")
    parser.add_argument("--search", required=True, help="a search space of config/search/, e.g. nbeatsaq")
    parser.add_argument("--trials", type=int, help="number of trials (default: the search space's n_trials)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    args = parser.parse_args(argv)
    try:
        from anyquantile.training.sweep import TABLE_FILE, sweep  # imported late: argument errors come first

        folder = sweep(args.config, args.search, args.overrides, args.trials)
    except (ConfigError, UsageError, DataValidationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print((folder / TABLE_FILE).read_text() if (folder / TABLE_FILE).is_file() else "no trial finished")
    print(f"sweep folder: {folder} ({TABLE_FILE}, trials.json, optimization_results.yaml)")
    return 0
