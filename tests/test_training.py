"""The training entry point: train(cfg) as the CLI calls it, resume, determinism, config errors."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import train_adaptive_attention
from anyquantile.evaluation.references import add_references
from anyquantile.evaluation.report import evaluate
from anyquantile.experiment.builders import build_data, build_datamodule, build_forecaster
from anyquantile.experiment.checkpoints import load_forecaster
from anyquantile.experiment.config import OTHER_NAMES, _all_keys, load_config
from anyquantile.experiment.errors import ConfigError, UsageError
from anyquantile.experiment.schema import ExperimentConfig
from anyquantile.modules.level_sampling import LevelDraw, LevelSampler, SamplerConfig, SamplerKind
from anyquantile.modules.losses import pinball_loss
from anyquantile.training.cpu import cpu_threads, threads_per_process
from anyquantile.training.train import train


def test_fast_dev_run_through_train(tiny_config):
    summary = train(tiny_config("trainer.snapshots=2"), fast_dev_run=True)
    assert summary["snapshots"] == [] and not list(Path(summary["run_dir"]).glob("checkpoints/snapshot-*"))
    assert summary["global_step"] == 1
    assert math.isfinite(summary["model"]["crps"]) and summary["model"]["crps"] > 0
    assert summary["metrics_file"] is None
    assert not (Path(summary["run_dir"]) / "metrics.json").exists()  # a smoke test leaves no results


def test_full_run_writes_the_models_scores_and_the_evaluation_step_adds_the_references(tiny_config):
    cfg = tiny_config()
    summary = train(cfg)
    run_dir = Path(summary["run_dir"])
    assert summary["metrics_file"] == str(run_dir / "metrics.json")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["global_step"] == 4
    assert "references" not in metrics and "references" not in summary  # training scores the model alone
    with_references = add_references(cfg, summary)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["references"] == with_references["references"]
    assert metrics["model"] == summary["model"]  # the model's scores are kept as training wrote them
    for name in ("model", "seasonal_naive_168", "oracle"):
        scores = metrics["model"] if name == "model" else metrics["references"][name]
        assert math.isfinite(scores["crps"]) and 0 <= scores["coverage_90"] <= 1
    assert metrics["references"]["oracle"]["crps"] < metrics["references"]["seasonal_naive_168"]["crps"]
    assert add_references(cfg, {**summary, "metrics_file": None}) == {**summary, "metrics_file": None}
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list((run_dir / "checkpoints").glob("best-*.ckpt"))
    assert (run_dir / "config.yaml").read_text().count("max_steps: 4") == 1
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))


def test_resume_continues_from_saved_step(tiny_config):
    first = train(tiny_config())
    last = Path(first["run_dir"]) / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 4

    resumed = train(tiny_config("trainer.max_steps=6"), resume="last")
    assert resumed["run_dir"] == first["run_dir"]  # continues in the same run folder
    assert resumed["global_step"] == 6
    assert resumed["train_steps"] == 2  # only the steps after the saved one were run
    run_dir = Path(first["run_dir"])
    assert "max_steps: 4" in (run_dir / "config.yaml").read_text()  # the original record is kept
    assert "max_steps: 6" in next(run_dir.glob("config-resumed-*.yaml")).read_text()


def test_resume_with_missing_checkpoint_fails_clearly(tiny_config):
    with pytest.raises(UsageError, match="no last.ckpt"):
        train(tiny_config(), resume="last")
    with pytest.raises(UsageError, match="checkpoint not found"):
        train(tiny_config(), resume="nowhere/last.ckpt")


def test_same_seed_same_numbers(tiny_config):
    first, second = train(tiny_config()), train(tiny_config())
    assert first["model"] == second["model"]
    other = train(tiny_config("seed=1"))
    assert other["model"]["crps"] != first["model"]["crps"]


def test_checkpoint_rebuilds_the_trained_model(tiny_config):
    summary = train(tiny_config())
    model, cfg = load_forecaster(Path(summary["run_dir"]) / "checkpoints" / "last.ckpt")
    assert cfg.model.width == 16
    history, mask, calendar = (
        torch.rand(3, 168) * 100,
        torch.ones(3, 168, dtype=torch.bool),
        torch.zeros(3, 168 + 48, 7),
    )
    with torch.no_grad():
        forecast = model.network(history, mask, calendar, torch.tensor([[0.1, 0.5, 0.9]] * 3)).prediction
    assert forecast.shape == (3, 48, 3) and torch.isfinite(forecast).all()


def test_misspelt_override_fails_with_the_key_named(default_config):
    with pytest.raises(ConfigError, match=r"unknown config key 'model.widht'.*'model.width'"):
        load_config(default_config, ["model.widht=3"])
    with pytest.raises(ConfigError, match=r"bad value for 'trainer.max_steps'"):
        load_config(default_config, ["trainer.max_steps=many"])


@pytest.mark.parametrize(
    "override,allowed",
    [
        ("model.attention.gate=sideways", "fixed, scalar, head, step, token"),
        ("model.conditioning=add", "cat, film, out"),
        ("model.quantile_embedding=sine", "identity, cosine, normal"),
        ("model.scaler=bogus", "max_abs, robust"),
        ("model.loss_normalisation=series", "window, target, none"),
        ("model.architecture=transformer", "nbeats, adaptive_attention"),
        ("model.attention.bias=sometimes", "learned, scheduled, off"),
        ("model.attention.temporal_weights=cubic", "off, linear, sinusoidal"),
        ("sampler.kind=gaussian", "uniform, beta, adaptive"),
        ("dataset.source=url", "synthetic, file, frame"),
    ],
)
def test_a_bad_choice_fails_on_loading_and_names_the_allowed_values(default_config, override, allowed):
    key, value = override.split("=")
    with pytest.raises(ConfigError, match=rf"bad value '{value}' for '{key}'; choose one of {allowed}$"):
        load_config(default_config, [override])


def test_sampler_weakness_choices_are_checked_under_the_adaptive_sampler(default_config):
    with pytest.raises(
        ConfigError,
        match=r"bad value 'loss' for 'sampler.weakness'; choose one of raw, variance, gaussian, calibration",
    ):
        load_config(default_config, ["sampler=adaptive", "sampler.weakness=loss"])


@pytest.mark.parametrize("name,ours", sorted(OTHER_NAMES.items()))
def test_a_key_named_as_other_tools_name_it_points_at_ours(default_config, name, ours):
    """What the setup guide or neuralforecast calls a key, set at the top or under a section, names ours."""
    for written in (name, f"model.{name}"):
        with pytest.raises(ConfigError, match=rf"unknown config key '{written}'\. Did you mean '{ours}'\?$"):
            load_config(default_config, [f"{written}=1"])


def test_every_key_other_names_point_at_exists():
    assert set(OTHER_NAMES.values()) <= set(_all_keys(OmegaConf.structured(ExperimentConfig)))


def test_misspelt_key_in_yaml_fails(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "defaults:\n  - experiment_schema\n  - _self_\noptimizer:\n  learning_rate: 0.1\n"
    )
    with pytest.raises(ConfigError, match=r"unknown config key 'optimizer.learning_rate'.*'optimizer.lr'"):
        load_config(tmp_path / "bad.yaml")


def test_config_without_schema_is_refused(tmp_path):
    (tmp_path / "loose.yaml").write_text("model:\n  width: 3\n")
    with pytest.raises(ConfigError, match="experiment_schema"):
        load_config(tmp_path / "loose.yaml")


@pytest.mark.parametrize("name", [path.stem for path in sorted(Path(__file__).parents[1].glob("config/*.yaml"))])
def test_shipped_configs_compose(config_dir, name):
    cfg = load_config(config_dir / f"{name}.yaml", ["dataset.path=data.csv"])
    assert cfg.name == name


def test_cli_trains_writes_references_applies_overrides_and_reports_errors(
    default_config, tiny_overrides, tmp_path, capsys
):
    args = ["--config", str(default_config), *tiny_overrides, f"output_dir={tmp_path / 'full'}"]
    assert train_adaptive_attention.main(args + ["model.width=8"]) == 0
    printed = capsys.readouterr().out
    assert "crossing_rate_raw" in printed and "crossing_rate_final" in printed and "seasonal_naive_168" in printed
    metrics = json.loads(next((tmp_path / "full").glob("*/*/metrics.json")).read_text())
    assert set(metrics["references"]) == {"seasonal_naive_168", "oracle"}
    assert "width: 8" in next((tmp_path / "full").glob("*/*/config.yaml")).read_text()

    assert train_adaptive_attention.main(["--config", str(default_config), "model.widht=8"]) == 2
    assert "unknown config key 'model.widht'" in capsys.readouterr().err

    missing = tmp_path / "missing.csv"
    mhl_config = str(default_config.parent / "nbeatsaq-mhl-cpu.yaml")
    mhl_runs = tmp_path / "mhl"
    code = train_adaptive_attention.main(
        ["--config", mhl_config, "--fast-dev-run", f"dataset.path={missing}", f"output_dir={mhl_runs}"]
    )
    assert code == 2 and "no such file" in capsys.readouterr().err
    code = train_adaptive_attention.main(["--config", mhl_config, "--fast-dev-run", f"output_dir={mhl_runs}"])
    assert code == 2 and "no dataset.path is given" in capsys.readouterr().err
    assert not mhl_runs.exists()  # a run that cannot start leaves no run folder behind


@pytest.mark.parametrize("precision", ["bf16-mixed", "64-true"])
def test_training_in_another_precision_runs_a_fast_dev_run(tiny_config, precision):
    summary = train(tiny_config(f"trainer.precision={precision}"), fast_dev_run=True)
    assert math.isfinite(summary["model"]["crps"])


def test_bf16_true_is_refused_with_the_reason(tiny_config):
    with pytest.raises(ConfigError, match="bf16-true is not supported.*use bf16-mixed"):
        tiny_config("trainer.precision=bf16-true")


@pytest.mark.slow  # torch.compile builds C++ kernels with the system compiler: a minute or more on 2 cores
@pytest.mark.skipif(
    shutil.which("c++") is None and shutil.which("g++") is None, reason="torch.compile on CPU needs a C++ compiler"
)
def test_compiled_training_runs_a_fast_dev_run(tiny_config):
    summary = train(tiny_config("trainer.compile=true"), fast_dev_run=True)
    assert math.isfinite(summary["model"]["crps"])


def test_evaluation_ignores_bf16_autocast(tiny_config):
    """Val/test forecasts are made in fp32 even inside a bf16 autocast region (as under bf16-mixed)."""
    cfg = tiny_config()
    torch.manual_seed(0)
    model = build_forecaster(cfg).eval()
    batch = build_datamodule(cfg, build_data(cfg)).datasets["val"][torch.arange(16)]
    results = []
    for autocast in (False, True):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            model.validation_step(batch, 0)
        results.append(model.scorers["val"].compute().final)
        model.scorers["val"].reset()
    assert results[0] == results[1]


def test_overrides_cannot_add_or_delete_keys(default_config):
    with pytest.raises(ConfigError, match="adds or deletes a key"):
        load_config(default_config, ["+trainer.max_step=10"])
    with pytest.raises(ConfigError, match="adds or deletes a key"):
        load_config(default_config, ["~model.width"])


@pytest.mark.parametrize(
    "override,message",
    [
        ("evaluation.intervals=[0.5,1.5]", "bad evaluation setting: interval coverage"),
        ("evaluation.calibration_levels=[0.0]", "bad evaluation setting: calibration levels"),
        ("sampler.temperature=0", "sampler.temperature applies only to sampler.kind=adaptive"),
        ("sampler.alpha=2", "sampler.alpha applies only to sampler.kind=beta"),
        ("trainer.precision=banana", "unknown trainer.precision 'banana'; choose one of 32-true, bf16-mixed"),
        ("model.num_blocks=0", "bad model setting: need at least one block"),
        ("model.quantile_embedding_dim=4", "the identity quantile embedding has dim 1, got dim=4"),
        ("dataset.batch_size=0", "bad dataset setting: batch_size and eval_batch_size must be >= 1"),
        ("dataset.val_start=notadate", "bad dataset setting: val_start='notadate' is not a date"),
        ("dataset.test_start=2015-03-01", "split boundaries out of order: val_start=2015-03-15 00:00:00 is not before"),
        ("dataset.synthetic.start=notadate", "bad dataset.synthetic setting: start='notadate' is not a date"),
        ("optimizer.lr=0", "bad optimizer setting: lr must be > 0"),
        ("trainer.val_every_n_steps=0", "bad trainer setting: val_every_n_steps must be >= 1"),
        ("trainer.num_threads=0", "bad trainer setting: num_threads must be >= 1"),
    ],
)
def test_bad_values_fail_when_the_config_is_loaded(tiny_config, override, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(override)


def test_a_split_without_windows_fails_before_a_run_folder_exists(tiny_config, tmp_path):
    cfg = tiny_config("dataset.synthetic.num_hours=200")  # valid keys, but too few hours for a test split
    with pytest.raises(ConfigError, match="dataset split settings: the train split .* has no windows"):
        train(cfg)
    assert not (tmp_path / "runs").exists()


class RunsCode:
    """Unpickling it runs ``touch <marker>``: what a hostile checkpoint could carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_carrying_code_is_refused_without_running_it(tiny_config, tmp_path):
    summary = train(tiny_config())
    checkpoint = torch.load(Path(summary["run_dir"]) / "checkpoints" / "last.ckpt", weights_only=True)
    marker = tmp_path / "ran"
    checkpoint["forecast_config"]["note"] = RunsCode(marker)
    torch.save(checkpoint, tmp_path / "hostile.ckpt")
    with pytest.raises(UsageError, match="is refused: it holds objects other than tensors and plain data"):
        load_forecaster(tmp_path / "hostile.ckpt")
    with pytest.raises(UsageError, match="is refused"):
        train(tiny_config("trainer.max_steps=6"), resume=str(tmp_path / "hostile.ckpt"))
    assert not marker.exists()  # nothing it carried ran
    load_forecaster(Path(summary["run_dir"]) / "checkpoints" / "last.ckpt")  # our own checkpoints load as they are


def test_a_file_that_is_no_checkpoint_is_a_usage_error(tiny_config, tmp_path):
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    with pytest.raises(UsageError, match="is not a checkpoint torch can read"):
        train(tiny_config(), resume=str(tmp_path / "notes.ckpt"))
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    with pytest.raises(UsageError, match="has no stored config"):
        load_forecaster(tmp_path / "foreign.ckpt")


def test_resumed_run_gets_a_fresh_time_budget(tiny_config):
    first = train(tiny_config("trainer.max_time=00:00:10:00"))
    resumed = train(tiny_config("trainer.max_time=00:00:10:00", "trainer.max_steps=6"), resume="last")
    assert resumed["run_dir"] == first["run_dir"] and resumed["train_steps"] == 2


def test_time_budget_does_not_restore_elapsed_time():
    from anyquantile.training.callbacks import WallClockBudget

    budget = WallClockBudget(duration="00:00:01:00")
    budget.load_state_dict({"time_elapsed": {"train": 3600.0}})
    assert budget.time_elapsed("train") < 1.0


# --------------------------------------------------------------------------------------------
# The adaptive level sampler in training


ADAPTIVE = ("sampler=adaptive", "sampler.levels_per_sample=4")


@pytest.mark.parametrize(
    "override,message",
    [
        ("sampler.min_prob=0.1", r"min_prob \* num_bins = 2"),
        ("sampler.temperature=0", "temperature must be > 0"),
        ("sampler.momentum=1.0", r"momentum must be in \[0, 1\)"),
    ],
)
def test_bad_adaptive_sampler_settings_are_config_errors(tiny_config, override, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(*ADAPTIVE, override)


def test_sampler_config_group_selects_the_preset(tiny_config):
    cfg = tiny_config("sampler=adaptive")
    assert (cfg.sampler.kind, cfg.sampler.num_bins, cfg.sampler.weakness) == ("adaptive", 20, "gaussian")
    assert tiny_config("sampler=beta").sampler.kind == "beta"
    with pytest.raises(ConfigError):
        tiny_config("sampler=gaussian")


@pytest.mark.parametrize("name", ["synthetic", "mhl-cpu", "mhlv"])
def test_attention_configs_train_with_the_adaptive_sampler_and_base_configs_with_uniform(config_dir, name):
    attention = config_dir / f"nbeatsaq-adaptive-attention-{name}.yaml"
    assert load_config(attention, ["dataset.path=data.csv"]).sampler.kind == "adaptive"
    assert load_config(attention, ["dataset.path=data.csv", "sampler=uniform"]).sampler.kind == "uniform"
    base = config_dir / f"nbeatsaq-{name}.yaml"
    assert load_config(base, ["dataset.path=data.csv"]).sampler.kind == "uniform"  # the paper's setting


def sampler_state(checkpoint: Path) -> dict:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    return {k.removeprefix("level_sampler."): v for k, v in state.items() if k.startswith("level_sampler.")}


def test_adaptive_sampler_state_is_saved_restored_on_resume_and_reported(tiny_config):
    first = train(tiny_config(*ADAPTIVE, "trainer.max_steps=8"))
    run_dir = Path(first["run_dir"])
    saved = sampler_state(run_dir / "checkpoints" / "last.ckpt")
    assert saved["bin_count"].sum() > 0 and saved["bin_loss"].abs().sum() > 0
    history = saved["_extra_state"]["history"]
    assert history[-1]["step"] == 8  # a snapshot at the end of every training epoch (here cut short by max_steps)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["sampler"]["count"] == saved["bin_count"].tolist()
    assert sum(metrics["sampler"]["probabilities"]) == pytest.approx(1.0, abs=1e-5)
    for level in ("0.01", "0.05", "0.95", "0.99"):
        assert 0 <= metrics["model"][f"below_{level}"] <= 1

    # A resumed run continues from the saved estimates: its counts add to those of the first run
    # (a fresh sampler would hold only the 4 new steps' counts), and its history extends the saved one.
    resumed = train(tiny_config(*ADAPTIVE, "trainer.max_steps=12"), resume="last")
    assert resumed["global_step"] == 12
    after = sampler_state(run_dir / "checkpoints" / "last.ckpt")
    assert (after["bin_count"] >= saved["bin_count"]).all() and after["bin_count"].sum() > saved["bin_count"].sum()
    assert after["_extra_state"]["history"][: len(history)] == history

    # and load_forecaster rebuilds the sampler with the same state
    model, _ = load_forecaster(run_dir / "checkpoints" / "last.ckpt")
    assert torch.equal(model.level_sampler.bin_count, after["bin_count"])


def test_resume_with_another_sampler_kind_fails_clearly(tiny_config):
    train(tiny_config())  # uniform levels
    with pytest.raises(ConfigError, match="trained with sampler.kind=uniform.*resume with sampler=uniform"):
        train(tiny_config(*ADAPTIVE, "trainer.max_steps=6"), resume="last")


class TwoLevels(LevelSampler):
    """0.1 and 0.9 for every sample, the 0.9 with weight 0."""

    kind = SamplerKind.uniform

    def draw(self, batch_size, device):
        levels = torch.tensor([[0.1, 0.9]]).expand(batch_size, -1)
        return LevelDraw(levels, torch.tensor([[1.0, 0.0]]).expand(batch_size, -1))  # the 0.9 counts for nothing


@pytest.mark.parametrize("normalisation", ["window", "target", "none"])
def test_training_loss_is_the_networks_objective_with_the_sampler_weights(tiny_config, normalisation):
    """The training step's loss is ``network.loss``: the weighted mean of the pinball loss at the drawn
    levels, each error divided as model.loss_normalisation says."""
    cfg = tiny_config(f"model.loss_normalisation={normalisation}")
    model = build_forecaster(cfg)
    model.level_sampler = TwoLevels(SamplerConfig(levels_per_sample=2))
    batch = build_datamodule(cfg, build_data(cfg)).datasets["train"][torch.arange(16)]
    with torch.no_grad():
        loss = model.training_step(batch, 0)
        forecast = model(batch, torch.tensor([[0.1]]).expand(16, -1))
        denominator = {
            "window": forecast.scale.scale[:, :, None],
            "target": batch.target.abs().clamp_min(1)[..., None],
            "none": None,
        }[normalisation]
        expected = pinball_loss(
            forecast.prediction, batch.target, torch.tensor([0.1]), mask=batch.target_mask, denominator=denominator
        )
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(model.network.loss(batch, model.level_sampler), expected)


def test_adaptive_sampler_trains_the_attention_model(tiny_config):
    cfg = tiny_config(
        "model.architecture=adaptive_attention",
        "model.conditioning=out",
        "model.attention.d_model=16",
        *ADAPTIVE,
        "sampler.fixed_levels=[0.05,0.5,0.95]",
    )
    summary = train(cfg)
    assert math.isfinite(summary["model"]["crps"]) and sum(summary["sampler"]["count"]) > 0


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


LAUNCHERS = {
    "lightning": [],  # Lightning starts rank 1 by running the command again
    "torchrun": ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"],  # torchrun starts both
}


def run_ddp(out: Path, overrides: list[str], launcher: str = "lightning") -> subprocess.CompletedProcess:
    """tests/ddp_sampler_run.py: 2 CPU processes (gloo) with the adaptive sampler. OMP_NUM_THREADS is set to
    every core, as a user may set it for a single process: Lightning then leaves the threads alone, and
    only ``training.cpu.threads_per_process`` splits the cores between the ranks."""
    script = Path(__file__).with_name("ddp_sampler_run.py")
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "OMP_NUM_THREADS": str(cores())}
    command = [
        sys.executable,
        *LAUNCHERS[launcher],
        str(script),
        str(out),
        *overrides,
        "dataset.batch_size=512",  # 3,024 training windows: 6 batches an epoch, 3 per rank
        "sampler=adaptive",
        "sampler.levels_per_sample=4",
        "trainer.devices=2",
        "trainer.max_steps=6",  # two epochs
        "trainer.val_every_n_steps=3",
        "trainer.checkpoint_every_n_steps=3",
        "trainer.snapshots=1",  # every rank saves at steps 3 and 6 (a collective); rank 0 deletes step 3's
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_ddp_two_cpu_processes_end_with_identical_sampler_state(tmp_path, tiny_overrides, launcher):
    """A real 2-process DDP (gloo) training run, started by Lightning or by torchrun: the ranks end with the
    same sampler state, split each epoch's windows between them (disjoint, together all of them), split
    the cores, write one run folder from rank 0, and exit cleanly (the process group is destroyed when
    fit and test end, not left to the interpreter's exit, where gloo aborted)."""
    done = run_ddp(tmp_path, tiny_overrides, launcher)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "terminate called" not in done.stderr
    # train() destroyed the gloo group: one left to the interpreter's exit aborted 12 of 100 runs under load
    assert [(tmp_path / f"rank{rank}-group-alive.txt").read_text() for rank in range(2)] == ["False", "False"]
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in range(2)]
    assert [rank["rank"] for rank in ranks] == [0, 1]
    states = [rank["sampler"] for rank in ranks]
    for name in ("bin_loss", "bin_below_minus_level", "bin_count"):
        assert torch.equal(states[0][name], states[1][name]), name
    assert states[0]["_extra_state"] == states[1]["_extra_state"]
    assert states[0]["bin_count"].sum() > 0
    every_window = {tuple(pair) for pair in ranks[0]["all_windows"].tolist()}
    for epoch in (0, 1):
        seen = [epoch_windows(rank, epoch) for rank in ranks]
        assert len(seen[0]) == len(set(seen[0])) and len(seen[1]) == len(set(seen[1]))  # no window twice in an epoch
        assert not set(seen[0]) & set(seen[1])  # every window trained by one rank only
        assert set(seen[0]) | set(seen[1]) == every_window  # and together they cover the epoch
    assert [rank["threads"] for rank in ranks] == [max(1, cores() // 2)] * 2  # the cores split between the ranks
    # one run folder, written by rank 0 only
    (run_folder,) = (tmp_path / "runs").glob("*/*")
    assert [(tmp_path / f"rank{rank}-run-dir.txt").read_text() for rank in range(2)] == [str(run_folder)] * 2
    (metrics_file,) = run_folder.glob("metrics.json")
    assert [path.name for path in run_folder.glob("config*.yaml")] == ["config.yaml"]
    saved = sorted(path.name for path in run_folder.glob("checkpoints/*.ckpt") if not path.name.startswith("best"))
    assert saved == ["last.ckpt", "snapshot-step=6.ckpt"]
    # the test split was shared out between the ranks and their sums added: a single process scores the
    # same checkpoint the same, to float rounding (the sums are added in another order)
    tested = json.loads(metrics_file.read_text())
    alone = evaluate([tested["checkpoint"]], tmp_path / "alone", dashboard=False)
    assert alone["windows"] == tested["windows"]
    for name in (
        "crps",
        "crps_paper_protocol",
        "coverage_90",
        "calibration_error",
        "mape",
        "below_0.99",
        "crossing_rate_raw",
        "observed_targets",
        "crps_step_48",
    ):
        assert alone["model"][name] == pytest.approx(tested["model"][name], rel=1e-9, abs=1e-12), name


def epoch_windows(rank: dict, epoch: int) -> list[tuple[int, int]]:
    """The (series, origin) pairs a rank trained on in ``epoch``, in order."""
    return [tuple(pair) for batch, at in zip(rank["windows"], rank["epochs"]) if at == epoch for pair in batch.tolist()]


def test_the_thread_count_is_set_for_training_kept_from_lightnings_launcher_and_restored(tiny_config):
    """Lightning's DDP launcher resets torch's threads to cores ÷ processes unless OMP_NUM_THREADS is set;
    cpu_threads sets both, so trainer.num_threads holds, and restores them after."""
    from lightning.fabric.utilities.distributed import _set_num_threads_if_needed

    before, variable = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    wanted = threads_per_process(tiny_config("trainer.devices=2", "trainer.num_threads=3"))
    with cpu_threads(wanted):
        _set_num_threads_if_needed(num_processes=2)  # what the launcher does in fit
        assert torch.get_num_threads() == 3 and os.environ["OMP_NUM_THREADS"] == "3"
    assert torch.get_num_threads() == before and os.environ.get("OMP_NUM_THREADS") == variable
    with cpu_threads(None):  # one process: torch's default is kept
        assert torch.get_num_threads() == before


def test_cpu_processes_split_the_cores(tiny_config):
    assert threads_per_process(tiny_config("trainer.devices=2"), cores=2) == 1
    assert threads_per_process(tiny_config("trainer.devices=2"), cores=16) == 8
    assert threads_per_process(tiny_config("trainer.devices=3"), cores=2) == 1  # never fewer than one
    assert threads_per_process(tiny_config("trainer.devices=2", "trainer.num_threads=3"), cores=2) == 3  # as asked
    assert threads_per_process(tiny_config(), cores=2) is None  # one process keeps torch's default
    assert threads_per_process(tiny_config("trainer.devices=2", "trainer.accelerator=gpu"), cores=2) is None


def test_evaluation_rearranges_and_reports_both_crossing_rates(tiny_config):
    one_validation = "trainer.val_every_n_steps=4"  # both runs test the same (final) checkpoint
    summary = train(tiny_config(one_validation))
    before, after = summary["model_before_rearrangement"], summary["model"]
    assert before["crossing_rate_raw"] > 0.1  # 4 steps of a tiny model: its quantiles cross
    assert after["crossing_rate_raw"] == before["crossing_rate_raw"] and after["crossing_rate_final"] == 0.0
    assert "crossing_rate" not in after and "crossing_rate" not in before  # no name that means two things
    assert after["crps"] <= before["crps"] + 1e-9  # rearrangement never increases the grid's pinball loss
    metrics = json.loads((Path(summary["run_dir"]) / "metrics.json").read_text())
    assert metrics["model_before_rearrangement"]["crps"] == before["crps"]
    plain = train(tiny_config(one_validation, "evaluation.rearrange=false"))
    assert "model_before_rearrangement" not in plain
    assert plain["model"]["crps"] == pytest.approx(before["crps"])  # the same forecasts, scored unsorted
    assert plain["model"]["crossing_rate_final"] == plain["model"]["crossing_rate_raw"] == before["crossing_rate_raw"]


def test_test_stage_scores_the_paper_protocol_crps(tiny_config):
    summary = train(tiny_config())
    model = summary["model"]
    # 100 levels per window against the 99-level grid on the same forecasts: close, not equal
    assert model["crps_paper_protocol"] == pytest.approx(model["crps"], rel=0.1)
    assert model["crps_paper_protocol"] != model["crps"]
    assert "crps_paper_protocol" not in train(tiny_config("evaluation.paper_protocol_levels=0"))["model"]
    with pytest.raises(ConfigError, match="paper_protocol_levels must be >= 0"):
        tiny_config("evaluation.paper_protocol_levels=-1")


# bf16 keeps 8 bits of mantissa (0.4 % relative per rounding). Through the shipped networks, at their
# initial weights, the worst forecast of 64 windows x 5 levels moved by 0.36 % (base) and 1.7 % (adaptive
# attention) of the data's mean magnitude; this is the bound the tests hold them to.
BF16_TOLERANCE = 0.02


@pytest.mark.parametrize("config", ["nbeatsaq-synthetic.yaml", "nbeatsaq-adaptive-attention-synthetic.yaml"])
def test_bf16_forward_agrees_with_fp32(config_dir, config):
    cfg = load_config(config_dir / config, ["dataset.synthetic.num_series=2"])
    torch.manual_seed(0)
    model = build_forecaster(cfg).eval()
    batch = build_datamodule(cfg, build_data(cfg)).datasets["val"][torch.arange(64)]
    levels = torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95]).expand(64, -1)
    with torch.no_grad():
        fp32 = model(batch, levels).prediction
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(batch, levels).prediction
    assert bf16.dtype == torch.float32  # the forecast head runs in fp32 under autocast
    relative = (bf16 - fp32).abs().max() / batch.target.abs().mean()  # worst difference ÷ the data's magnitude
    assert 0 < relative < BF16_TOLERANCE  # > 0: autocast did change the arithmetic


def test_fused_adam_is_the_default_and_takes_the_same_steps(tiny_config):
    """optimizer.fused only changes how Adam's update runs, not what it computes."""
    final = {}
    for fused in (True, False):
        torch.manual_seed(0)
        forecaster = build_forecaster(tiny_config(f"optimizer.fused={str(fused).lower()}"))
        optimizer = forecaster.configure_optimizers()["optimizer"]
        assert optimizer.param_groups[0]["fused"] is fused
        for step in range(3):
            for parameter in forecaster.parameters():
                parameter.grad = torch.full_like(parameter, 0.1 * (step + 1)) * torch.randn_like(parameter)
            optimizer.step()
        final[fused] = torch.cat([p.detach().flatten() for p in forecaster.parameters()])
    assert torch.allclose(final[True], final[False], atol=1e-6)
    assert tiny_config().optimizer.fused is True


def test_resume_runs_adam_fused_as_configured_now(tiny_config):
    """torch's Adam.load_state_dict takes `fused` from the saved groups; the forecaster's
    on_load_checkpoint makes the current config win (a checkpoint saved without fusing resumes fused)."""
    saved_by = build_forecaster(tiny_config("optimizer.fused=false"))
    saved_optimizer = saved_by.configure_optimizers()["optimizer"]
    for parameter in saved_by.parameters():
        parameter.grad = torch.ones_like(parameter)
    saved_optimizer.step()
    checkpoint = {"optimizer_states": [saved_optimizer.state_dict()]}

    resumed = build_forecaster(tiny_config())  # optimizer.fused=true by default
    resumed.on_load_checkpoint(checkpoint)
    optimizer = resumed.configure_optimizers()["optimizer"]
    optimizer.load_state_dict(checkpoint["optimizer_states"][0])
    assert optimizer.param_groups[0]["fused"] is True
    for parameter in resumed.parameters():
        parameter.grad = torch.ones_like(parameter)
    optimizer.step()  # the saved step counts and moments work with the fused kernel
    assert all(float(state["step"]) == 2 for state in optimizer.state.values())


def test_fp16_gradient_clipping_with_fused_adam_is_refused(tiny_config):
    with pytest.raises(ConfigError, match="optimizer.fused=false"):
        tiny_config("trainer.precision=16-mixed", "trainer.gradient_clip_val=1.0")
    assert tiny_config("trainer.precision=16-mixed", "trainer.gradient_clip_val=1.0", "optimizer.fused=false")


def test_cli_dashboard_evaluates_the_tested_checkpoint_into_the_run_folder(default_config, tiny_overrides, tmp_path):
    args = ["--config", str(default_config), *tiny_overrides, f"output_dir={tmp_path}"]
    assert train_adaptive_attention.main([*args, "--dashboard"]) == 0
    (run_dir,) = (tmp_path / "nbeatsaq-synthetic").iterdir()
    written = json.loads((run_dir / "metrics.json").read_text())
    evaluated = json.loads((run_dir / "evaluation" / "metrics.json").read_text())
    assert (run_dir / "evaluation" / "dashboard.html").is_file()
    assert evaluated["checkpoints"] == [written["checkpoint"]]
    assert evaluated["model"]["crps"] == pytest.approx(written["model"]["crps"], rel=1e-6)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--dashboard", "--fast-dev-run"], "a --fast-dev-run keeps none"),
        (["--refit", "--resume", "last"], "--refit trains twice"),
        (["--refit", "--fast-dev-run"], "--refit trains twice"),
    ],
)
def test_cli_refuses_flags_that_do_not_go_together(default_config, tiny_overrides, tmp_path, capsys, flags, message):
    args = ["--config", str(default_config), *tiny_overrides, f"output_dir={tmp_path}"]
    assert train_adaptive_attention.main([*args, *flags]) == 2
    assert message in capsys.readouterr().err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # nothing written
