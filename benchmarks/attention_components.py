"""What each part of the adaptive-attention model adds: one run per part switched off (or, for the
parts that are off by default, switched on), a wider and a cheaper variant, each with the same budget;
prints a markdown table (mean ± std over seeds).

    python -m benchmarks.attention_components --config nbeatsaq-adaptive-attention-mhl-cpu \\
        --budget 00:00:04:00 [--seeds 0 1 2] [--only full no_cross_step ...] [key=value ...]

Every run is the named config plus the shared ``key=value`` overrides (``dataset.path=FILE`` for
MHL) plus its variant's overrides (benchmarks/variant_runs.py). With one seed and a short budget,
differences of a few percent are within seed-to-seed noise.
"""

from __future__ import annotations

from benchmarks.variant_runs import STANDARD_COLUMNS, Variant, main

VARIANTS = (
    Variant("full", "the config as shipped"),
    Variant("d_model_64", "wider: attention width 64 instead of 32", ("model.attention.d_model=64",)),
    Variant("with_convolution", "multi-scale convolution, kernels 3 and 7", ("model.attention.conv_kernels=[3,7]",)),
    Variant("one_attention_block", "cheaper: 1 HATA block instead of 2", ("model.attention.num_blocks=1",)),
    Variant("no_cross_step", "no cross-step refinement", ("model.attention.cross_step=false",)),
    Variant(
        "no_attention_blocks", "no HATA block: read-out from the token embeddings", ("model.attention.num_blocks=0",)
    ),
    Variant("no_local_heads", "all heads global (no dual scale)", ("model.attention.local_ratio=0.0",)),
    Variant("no_global_heads", "all heads local (no dual scale)", ("model.attention.local_ratio=1.0",)),
    Variant("gate_per_head", "one gate per head instead of one per block", ("model.attention.gate=head",)),
    Variant("gate_per_step", "one gate per token position", ("model.attention.gate=step",)),
    Variant("gate_per_token", "gate computed from each token", ("model.attention.gate=token",)),
    Variant(
        "fixed_gate",
        "alpha fixed at 0.5, no calendar",
        ("model.attention.gate=fixed", "model.attention.calendar_gates=false"),
    ),
    Variant("no_calendar_gates", "gate without calendar input", ("model.attention.calendar_gates=false",)),
    Variant("no_locality_bias", "beta = 0", ("model.attention.bias=off",)),
    Variant("scheduled_locality_bias", "beta scheduled 2 -> 0 instead of learned", ("model.attention.bias=scheduled",)),
    Variant("with_temporal_weights", "linear temporal weights on", ("model.attention.temporal_weights=linear",)),
    Variant(
        "with_sinusoidal_temporal_weights",
        "sinusoidal temporal weights on",
        ("model.attention.temporal_weights=sinusoidal",),
    ),
    Variant("with_fft_features", "8 FFT amplitudes and phases on", ("model.attention.fft_features=8",)),
)

if __name__ == "__main__":
    main(
        __doc__,
        VARIANTS,
        STANDARD_COLUMNS,
        default_config="nbeatsaq-adaptive-attention-mhl-cpu",
        default_budget="00:00:04:00",
    )
