"""Training level samplers compared: uniform, beta, adaptive with and without importance weights,
and the adaptive sampler's measures of weakness; prints a markdown table (mean ± std over seeds)
with CRPS, coverage and the calibration of the tails (share of targets below the 0.01, 0.05, 0.95
and 0.99 forecasts; a calibrated forecast gives the level itself).

    python -m benchmarks.sampler_comparison --steps 1500 --seeds 0 1 2 --json sampler.json \\
        dataset.path=FILE trainer.val_every_n_steps=500 [--only uniform adaptive ...]

Runs go through benchmarks/variant_runs.py. ``--steps`` gives every sampler the same number of
optimiser steps (samplers cost the same per step), so the comparison does not depend on machine load.
"""

from __future__ import annotations

from benchmarks.variant_runs import Column, Variant, main, metric

VARIANTS = (
    Variant("uniform", "levels uniform on (0, 1)", ("sampler=uniform",)),
    Variant("beta", "levels from Beta(0.5, 0.5)", ("sampler=beta",)),
    Variant("adaptive", "adaptive, gaussian weakness, importance-weighted", ("sampler=adaptive",)),
    Variant(
        "adaptive_unweighted",
        "adaptive, gaussian weakness, no importance weights",
        ("sampler=adaptive", "sampler.importance_weighting=false"),
    ),
    Variant(
        "adaptive_sharp",
        "adaptive, gaussian weakness, weighted, temperature 0.25",
        ("sampler=adaptive", "sampler.temperature=0.25"),
    ),
    Variant(
        "adaptive_raw", "adaptive, raw pinball as weakness, weighted", ("sampler=adaptive", "sampler.weakness=raw")
    ),
    Variant(
        "adaptive_variance", "adaptive, pinball / q(1-q), weighted", ("sampler=adaptive", "sampler.weakness=variance")
    ),
    Variant(
        "adaptive_calibration",
        "adaptive, calibration error, weighted",
        ("sampler=adaptive", "sampler.weakness=calibration"),
    ),
)

COLUMNS = (
    Column("steps", lambda r: r["global_step"], 0),
    Column("CRPS", metric("crps"), 1),
    Column("coverage 90", metric("coverage_90")),
    Column("coverage 95", metric("coverage_95")),
    Column("below 0.01", metric("below_0.01")),
    Column("below 0.05", metric("below_0.05")),
    Column("below 0.95", metric("below_0.95")),
    Column("below 0.99", metric("below_0.99")),
    Column("calibration error", metric("calibration_error")),
)

if __name__ == "__main__":
    main(__doc__, VARIANTS, COLUMNS, default_config="nbeatsaq-adaptive-attention-mhl-cpu", default_steps=1500)
