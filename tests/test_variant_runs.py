"""The comparison engine of the benchmark scripts: variants x seeds through train(), mean ± std tables."""

from __future__ import annotations

import argparse
import json

import pytest

from benchmarks import sampler_comparison, variant_runs
from benchmarks.variant_runs import (
    STANDARD_COLUMNS,
    Column,
    Variant,
    add_arguments,
    markdown_table,
    metric,
    run_variants,
)

VARIANTS = (Variant("a", "first"), Variant("b", "second", ("model.width=8",)), Variant("c", "never run"))


def record(variant: str, seed: int, crps: float) -> dict:
    return {"variant": variant, "seed": seed, "global_step": 10, "model": {"crps": crps}}


def test_markdown_table_means_and_sample_std_by_hand():
    records = [record("a", 0, 1.0), record("a", 1, 3.0), record("b", 0, 5.0)]
    table = markdown_table(
        records, VARIANTS, (Column("steps", lambda r: r["global_step"], 0), Column("CRPS", metric("crps"), 2))
    )
    lines = table.splitlines()
    assert lines[0] == "| variant | change | runs | steps | CRPS |"
    assert lines[2] == "| a | first | 2 | 10 ± 0 | 2.00 ± 1.41 |"  # mean 2, sample std sqrt(2)
    assert lines[3] == "| b | second | 1 | 10 | 5.00 |"  # one seed: no ±
    assert len(lines) == 4  # a variant without runs has no row


def test_run_variants_trains_each_variant_and_seed_and_writes_json(tmp_path, tiny_overrides):
    parser = argparse.ArgumentParser()
    add_arguments(parser, sampler_comparison.VARIANTS, "nbeatsaq-synthetic")
    args = parser.parse_args(
        [
            "--steps",
            "3",
            "--seeds",
            "0",
            "1",
            "--only",
            "uniform",
            "adaptive",
            "--json",
            str(tmp_path / "runs.json"),
            *tiny_overrides,
            f"output_dir={tmp_path}",
            "trainer.val_every_n_steps=3",
        ]
    )
    records = run_variants(args, sampler_comparison.VARIANTS)
    assert [(r["variant"], r["seed"]) for r in records] == [
        ("uniform", 0),
        ("uniform", 1),
        ("adaptive", 0),
        ("adaptive", 1),
    ]
    assert all(r["global_step"] == 3 for r in records)
    assert "sampler" in records[2] and "sampler" not in records[0]
    assert json.loads((tmp_path / "runs.json").read_text()) == records
    table = markdown_table(records, sampler_comparison.VARIANTS, sampler_comparison.COLUMNS)
    assert table.count("\n") == 3 and "below 0.99" in table
    assert markdown_table(records, sampler_comparison.VARIANTS, STANDARD_COLUMNS).count(" ± ") >= 6


@pytest.mark.parametrize("given, max_time, max_steps", [([], "00:00:04:00", 4000), (["--steps", "5"], None, 5)])
def test_the_script_default_budget_applies_unless_one_is_given(monkeypatch, given, max_time, max_steps):
    budgets = []

    def fake_train(cfg):
        budgets.append((cfg.trainer.max_time, cfg.trainer.max_steps))
        return {"model": {"crps": 1.0}, "split": "test"}

    monkeypatch.setattr(variant_runs, "train", fake_train)
    parser = argparse.ArgumentParser()
    add_arguments(parser, VARIANTS, "nbeatsaq-synthetic", default_budget="00:00:04:00")
    run_variants(parser.parse_args([*given, "--only", "a"]), VARIANTS)
    assert budgets == [(max_time, max_steps)]  # 4000: the synthetic config's own max_steps


def test_undefined_columns_show_a_dash_and_the_labels_can_be_renamed():
    records = [record("a", 0, 1.0)]
    table = markdown_table(
        records,
        VARIANTS,
        (Column("CRPS", metric("crps"), 2), Column("paper", lambda r: float("nan"))),
        labels=("contender", "what"),
    )
    assert table.splitlines()[0] == "| contender | what | runs | CRPS | paper |"
    assert table.splitlines()[2] == "| a | first | 1 | 1.00 | – |"


def test_ablation_variants_are_valid_configs_and_changes_are_against_full():
    from anyquantile.experiment.config import load_config
    from benchmarks import ablation

    names = [v.name for v in ablation.VARIANTS]
    assert names[0] == "full" and len(names) == len(set(names))
    shipped = load_config(variant_runs.CONFIG_DIR / "nbeatsaq-adaptive-attention-mhl-cpu.yaml", ["dataset.path=x.csv"])
    for variant in ablation.VARIANTS[1:]:  # every override is a known key (strict schema) and changes the model
        cfg = load_config(
            variant_runs.CONFIG_DIR / "nbeatsaq-adaptive-attention-mhl-cpu.yaml",
            ["dataset.path=x.csv", *variant.overrides],
        )
        assert cfg != shipped, variant.name
    delta, percent = ablation.change_columns(full_crps=200.0)
    assert delta.value(record("b", 0, 190.0)) == pytest.approx(-10.0)
    assert percent.value(record("b", 0, 230.0)) == pytest.approx(15.0)
