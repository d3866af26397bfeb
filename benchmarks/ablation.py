"""Ablation of the adaptive-attention model: each attention component and each sampler feature
switched off (or swapped) against the full model, over several seeds, with the change in CRPS.

    python -m benchmarks.ablation --steps 1500 --seeds 0 1 2 [--only full no_cross_step uniform ...] \\
        [--json ablation.json] dataset.path=FILE trainer.val_every_n_steps=500

"full" is the config as shipped (``nbeatsaq-adaptive-attention-mhl-cpu``: HATA blocks, adaptive
importance-weighted sampler). The attention variants are those of ``benchmarks.attention_components``,
the sampler variants those of ``benchmarks.sampler_comparison``, each applied to the full model.
``--steps`` (equal work) keeps the comparison independent of machine load; ``--budget`` gives equal
wall-clock instead, which charges each part its cost. The table gives mean ± std over seeds and
the change of the mean CRPS against "full" (negative = better without the part); a change smaller
than the seeds' std is not resolved.
"""

from __future__ import annotations

import argparse

from benchmarks import attention_components, sampler_comparison
from benchmarks.variant_runs import (
    STANDARD_COLUMNS,
    Column,
    Variant,
    add_arguments,
    markdown_table,
    metric,
    run_variants,
)

SAMPLER_VARIANTS = tuple(
    Variant(v.name if v.name.startswith("adaptive_") else f"sampler_{v.name}", f"sampler: {v.description}", v.overrides)
    for v in sampler_comparison.VARIANTS
    if v.name != "adaptive"  # that is the full model's sampler
)
VARIANTS = (*attention_components.VARIANTS, *SAMPLER_VARIANTS)  # attention_components.VARIANTS[0] is "full"


def change_columns(full_crps: float) -> tuple[Column, ...]:
    """The change of CRPS against the full model (the mean of per-run changes = the change of the mean)."""
    return (
        Column("Δ CRPS", lambda r: metric("crps")(r) - full_crps, 2),
        Column("Δ %", lambda r: 100 * (metric("crps")(r) / full_crps - 1), 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, VARIANTS, "nbeatsaq-adaptive-attention-mhl-cpu", default_steps=1500)
    args = parser.parse_args()
    if args.only and "full" not in args.only:
        args.only = ["full", *args.only]  # the reference every change is measured against
    records = run_variants(args, VARIANTS)
    full = [metric("crps")(r) for r in records if r["variant"] == "full"]
    full_crps = sum(full) / len(full)
    print(
        f"\n{args.config}, seeds {args.seeds}, scored on the {records[-1]['split']} split; full model CRPS "
        f"{full_crps:.2f}\n"
    )
    calibration = Column("calibration error", metric("calibration_error"))
    print(markdown_table(records, VARIANTS, (*STANDARD_COLUMNS, *change_columns(full_crps), calibration)))


if __name__ == "__main__":
    main()
