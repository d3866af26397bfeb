"""Hyper-parameter search: Hydra's multirun with the Optuna sweeper (``hydra-optuna-sweeper``).

A search space is a config file of ``config/search/`` (the sweeper's settings: direction, trials, the
TPE sampler's seed, ``params``), as lightning-hydra-template keeps them. Each trial is one ``train``
of the config with the sweeper's choices as overrides; its objective is the best validation CRPS (the
test split is never the objective: tune on what is not judged). Every trial appends its row to
``trials.json`` and ``trials.md`` in the sweep folder (``OUTPUT_DIR/sweeps/NAME/TIME``) as it ends, so
an interrupted sweep keeps the trials it finished; Optuna's best is in ``optimization_results.yaml``.

Everything is checked before the first trial: the config and overrides (as ``load_config`` does), the
search file's keys (each must be a key of the config), and that runs validate (``test_checkpoint=best``).
"""

from __future__ import annotations

import json
import math
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import hydra
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from anyquantile.experiment.config import CONFIG_DIR, config_path, load_config, merge_config
from anyquantile.experiment.errors import ConfigError
from anyquantile.experiment.files import write_text_atomic
from anyquantile.experiment.schema import TestCheckpoint
from anyquantile.experiment.validation import validate
from anyquantile.training.train import train

SEARCH_DIR = CONFIG_DIR / "search"
TRIALS_FILE = "trials.json"
TABLE_FILE = "trials.md"


def search_spaces() -> list[str]:
    """The search spaces that ship with the package (``config/search/*.yaml``)."""
    return sorted(path.stem for path in SEARCH_DIR.glob("*.yaml"))


def sweep(config: str, search: str, overrides: list[str], trials: int | None = None) -> Path:
    """Run the search ``search`` over ``config`` with ``overrides``; returns the sweep folder."""
    cfg = load_config(config, overrides)
    _check_search_space(search_file(search, config), cfg)
    if cfg.trainer.test_checkpoint != TestCheckpoint.best:
        raise ConfigError(
            "a sweep's objective is the best validation CRPS: set trainer.test_checkpoint=best (it validates)"
        )
    if trials is not None and trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {trials}")
    folder = Path(cfg.output_dir, "sweeps", cfg.name, datetime.now().strftime("%Y%m%d-%H%M%S-%f")).resolve()
    path = config_path(config).resolve()
    arguments = [
        f"--config-dir={path.parent}",
        f"--config-name={path.stem}",
        "--multirun",
        "hydra/sweeper=optuna",
        f"+search={search}",
        f"hydra.searchpath=[file://{CONFIG_DIR}]",  # config/search/ when the config lives elsewhere
        f"hydra.sweep.dir={folder}",
        "hydra.sweep.subdir=trial-${hydra.job.num}",
        "hydra.job.chdir=false",
        *([f"hydra.sweeper.n_trials={trials}"] if trials is not None else []),
        *overrides,
    ]
    task = hydra.main(version_base="1.3", config_path=None, config_name=None)(run_trial)
    # hydra.main reads its arguments from sys.argv; HYDRA_FULL_ERROR: a trial's error reaches the caller as
    # itself (a ConfigError is the command line's one-line error) rather than Hydra's traceback and exit
    saved, sys.argv = sys.argv, [sys.argv[0], *arguments]
    full_error = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        task()
    except (HydraException, OmegaConfBaseException) as error:  # Hydra's own: a sweeper setting, a plugin
        raise ConfigError(f"sweep: {error}") from None
    finally:
        sys.argv = saved
        if full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR")
        else:
            os.environ["HYDRA_FULL_ERROR"] = full_error
    return folder


def run_trial(cfg: DictConfig) -> float:
    """One trial: train the config Hydra composed with the sweeper's choices; its best validation CRPS."""
    validate(cfg, source="sweep trial")
    hydra_cfg = HydraConfig.get()
    summary = train(cfg, echo=False)
    objective = summary["best_val_crps"]
    folder = Path(hydra_cfg.sweep.dir)
    row = {
        "trial": int(hydra_cfg.job.num),
        "params": {key: OmegaConf.select(cfg, key) for key in hydra_cfg.sweeper.params},
        "val_crps": objective,
        "test_crps": summary["model"].get("crps"),
        "best_step": summary["best_step"],
        "train_seconds": summary["train_seconds"],
        "run_dir": summary["run_dir"],
    }
    rows = read_trials(folder) + [row]
    write_text_atomic(folder / TRIALS_FILE, json.dumps(rows, indent=2))
    write_text_atomic(folder / TABLE_FILE, trials_table(rows))
    return objective if objective is not None and math.isfinite(objective) else float("inf")


def read_trials(folder: str | Path) -> list[dict[str, Any]]:
    file = Path(folder, TRIALS_FILE)
    return json.loads(file.read_text()) if file.is_file() else []


def trials_table(rows: list[dict[str, Any]]) -> str:
    """The trials as a Markdown table, in the order they ran, the best validation CRPS marked."""
    if not rows:
        return "no trial finished\n"
    keys = list(rows[0]["params"])
    scored = [row["val_crps"] for row in rows if row["val_crps"] is not None]
    best = min(scored) if scored else None
    head = ["trial", *keys, "val CRPS", "test CRPS", "best step", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for row in rows:
        mark = " **best**" if row["val_crps"] is not None and row["val_crps"] == best else ""
        cells = [
            str(row["trial"]),
            *[_cell(row["params"][key]) for key in keys],
            f"{_cell(row['val_crps'])}{mark}",
            _cell(row["test_crps"]),
            str(row["best_step"]),
            _cell(row["train_seconds"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def search_file(search: str, config: str) -> Path:
    """``search/NAME.yaml`` beside the config (a config folder of the user's own), else the shipped one."""
    for folder in (config_path(config).parent / "search", SEARCH_DIR):
        if (folder / f"{search}.yaml").is_file():
            return folder / f"{search}.yaml"
    raise ConfigError(f"search space not found: {search} (the shipped ones: {', '.join(search_spaces())})")


def _check_search_space(file: Path, cfg: DictConfig) -> None:
    """Each key the search file varies must be a key of the config (a misspelt one is an error), and each
    value it may take, key by key, must pass the config's checks: each choice, both ends of an interval
    (combinations are checked by each trial's own config). A searched key also given on the command
    line is fixed there: the sweeper drops it from the search space."""
    try:
        params = OmegaConf.to_container(OmegaConf.load(file)).get("params") or {}
    except (yaml.YAMLError, OmegaConfBaseException, AttributeError) as error:
        raise ConfigError(f"{file} is not a search space (YAML with a 'params' map): {error}") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{file}: 'params' must map keys to search expressions, got {type(params).__name__}")
    unknown = [key for key in params if OmegaConf.select(cfg, key, default=_MISSING) is _MISSING]
    if unknown:
        raise ConfigError(f"{file}: params {unknown} are not keys of the config")
    parser = OverridesParser.create()
    for key, space in params.items():
        try:
            override = parser.parse_override(f"{key}={space}")
        except HydraException as error:
            raise ConfigError(f"{file}: params.{key}: {space!r} is not a search expression: {error}") from None
        for value in _extremes(override):
            try:
                merge_config(cfg, [f"{key}={value}"], source=f"{file}: params.{key}")
            except ConfigError as error:
                raise ConfigError(f"{error} (a value the search may try)") from None


def _extremes(override: Override) -> list[Any]:
    """The values of a search expression to check: every choice or range value, an interval's two ends."""
    value = override.value()
    if isinstance(value, IntervalSweep):
        return [value.start, value.end]
    if override.is_sweep_override():
        return list(override.sweep_string_iterator())
    return [override.get_value_element_as_str()]


_MISSING = object()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
