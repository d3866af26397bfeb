"""Loading a run's configuration: YAML composed by Hydra into the schema, then validated.

Every YAML file and every ``key=value`` override is merged into the structured schema
(``experiment/schema.py``), so a misspelt key, a value of the wrong type or a choice outside its
allowed values fails before anything runs, with a message that names the key and suggests the
nearest valid one (or lists the allowed values). Then ``experiment/validation.py`` checks the
ranges and the rules that tie keys together. A config read back from a checkpoint goes through
the same checks (:func:`merge_config`).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from anyquantile.experiment.errors import ConfigError
from anyquantile.experiment.schema import SCHEMA_NAME, ExperimentConfig
from anyquantile.experiment.validation import validate

# The shipped configs: config/ of the checkout, anyquantile/config/ of an installed package (package data).
CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"

# Maps whose keys are the user's (series ids), not the schema's: '+dataset.holiday_countries.DE_north=DE' adds one.
FREE_KEY_MAPS = ("dataset.holiday_countries",)


def _adds_to_a_free_map(override: str) -> bool:
    key = override.partition("=")[0]
    return key.startswith("+") and any(key[1:].startswith(f"{name}.") for name in FREE_KEY_MAPS)


def shipped_configs() -> list[str]:
    """The names of the configs that ship with the package (``config/*.yaml``)."""
    return sorted(path.stem for path in CONFIG_DIR.glob("*.yaml"))


def config_path(name_or_path: str | Path) -> Path:
    """A YAML file, or the shipped config of that name (``nbeatsaq-synthetic``); neither is a ConfigError."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / f"{path.name}.yaml"
    if path.parent == Path(".") and not path.suffix and shipped.is_file():
        return shipped
    raise ConfigError(f"config file not found: {name_or_path} (the shipped configs: {', '.join(shipped_configs())})")


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Compose ``path`` (a YAML file in a Hydra config folder, or a shipped config's name) with ``key=value``
    overrides, and validate it.

    The YAML's ``defaults`` list must start with ``experiment_schema`` so that every key is checked.
    """
    path = config_path(path)
    for override in overrides:
        if override.startswith(("+", "~")) and not _adds_to_a_free_map(override):
            # '+key=value' would add a key the schema does not know, '~key' delete one it needs.
            raise ConfigError(
                f"{path}: override '{override}' adds or deletes a key; only existing keys can be set (key=value), "
                f"and entries added to the maps {', '.join(FREE_KEY_MAPS)} (+map.key=value)"
            )
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(path.parent.resolve()), version_base="1.3"):
            cfg = compose(config_name=path.stem, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(explain(error, path)) from None
    except yaml.YAMLError as error:  # read with a safe loader: a tag that would build a Python object is refused
        raise ConfigError(f"{path} is not a YAML config this library reads: {error}") from None
    finally:
        GlobalHydra.instance().clear()
    if OmegaConf.get_type(cfg) is not ExperimentConfig:
        raise ConfigError(f"{path}: its defaults list must start with '{SCHEMA_NAME}' so that keys are checked")
    validate(cfg, source=str(path))
    return cfg


def merge_config(
    base: DictConfig | dict[str, Any], overrides: list[str] | tuple[str, ...] = (), source: str = "config"
) -> DictConfig:
    """``base`` (a stored config) in the schema, with ``key=value`` overrides, checked like a loaded config."""
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(ExperimentConfig), base, OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as error:
        raise ConfigError(explain(error, source)) from None
    validate(cfg, source=source)
    return cfg  # type: ignore[return-value]


def config_to_dict(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain Python containers, choices as their names (what a checkpoint stores)."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]


def explain(error: Exception, source: str | Path) -> str:
    """One message that names the offending key (and the nearest valid one) or the bad value."""
    text = "\n".join(str(e) for e in (error, error.__cause__) if e is not None)
    key = re.search(r"full_key: ([\w.]+)", text) or re.search(r"Could not override '([^']+)'", text)
    if key is None:
        return f"{source}: {text}"
    name = key.group(1)
    choice = re.search(r"Invalid value '([^']*)', expected one of \[([^\]]*)\]", text)
    if choice:
        return f"{source}: bad value '{choice.group(1)}' for '{name}'; choose one of {choice.group(2)}"
    converted = re.search(r"Value .* could not be converted to \w+|Invalid value .*", text)
    if converted:
        return f"{source}: bad value for '{name}': {converted.group(0)}"
    suggestion = _nearest_key(name)
    hint = f" Did you mean '{suggestion}'?" if suggestion else ""
    return f"{source}: unknown config key '{name}'.{hint}"


# Names other tools and guides give our keys (the any-quantile setup guide, neuralforecast, Hugging Face
# trainers), looked up by the unknown key's last part: their spelling is too far from ours for a close match
# (difflib pointed 'num_adaptive_quantiles' at 'sampler.num_bins', which sets something else).
OTHER_NAMES: dict[str, str] = {
    "num_adaptive_quantiles": "sampler.levels_per_sample",
    "num_quantiles": "sampler.levels_per_sample",
    "n_heads": "model.attention.num_heads",
    "num_attention_heads": "model.attention.num_heads",
    "warmup_updates": "optimizer.warmup_steps",
    "num_warmup_steps": "optimizer.warmup_steps",
    "train_batch_size": "dataset.batch_size",
    "valid_batch_size": "dataset.eval_batch_size",
    "val_batch_size": "dataset.eval_batch_size",
    "learning_rate": "optimizer.lr",
    "input_size": "dataset.history_length",
    "context_length": "dataset.history_length",
    "lookback": "dataset.history_length",
    "h": "dataset.horizon",
    "prediction_length": "dataset.horizon",
    "forecast_horizon": "dataset.horizon",
    "random_seed": "seed",
    "n_blocks": "model.num_blocks",
    "dropout_rate": "model.dropout",
    "hidden_size": "model.width",
    "max_updates": "trainer.max_steps",
    "grad_clip": "trainer.gradient_clip_val",
    "gradient_clip": "trainer.gradient_clip_val",
}


def _nearest_key(name: str) -> str | None:
    if (other := OTHER_NAMES.get(name.rpartition(".")[2])) is not None:
        return other
    valid = _all_keys(OmegaConf.structured(ExperimentConfig))
    match = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    return match[0] if match else None


def _all_keys(node: Any, prefix: str = "") -> list[str]:
    keys = []
    for key in node.keys():
        full = f"{prefix}{key}"
        keys.append(full)
        child = node[key]
        if isinstance(child, DictConfig):
            keys += _all_keys(child, f"{full}.")
    return keys
