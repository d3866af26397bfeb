"""The dashboard's charts, drawn with matplotlib into PNG bytes (no screen, no global pyplot state).

Each function takes plain arrays and returns one PNG; ``evaluation.dashboard`` inlines them.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

MODEL_COLOUR = "#1f5fa8"
AFTER_COLOUR = "#d1495b"  # after conformal calibration
REFERENCE_COLOURS = ("#7a7a7a", "#b08d3c", "#3c9d6b")
BAND_ALPHAS = {0.95: 0.15, 0.9: 0.22, 0.8: 0.3, 0.5: 0.42}  # wider intervals lighter


def png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _axes(width: float = 6.4, height: float = 3.6, columns: int = 1):
    figure = Figure(figsize=(width, height), layout="constrained")  # no overlapping labels between panels
    axes = figure.subplots(1, columns)
    return figure, axes


def crps_by_step(
    model: Sequence[float], references: dict[str, Sequence[float]], coverage: dict[str, Sequence[float]]
) -> bytes:
    """CRPS per horizon step (model and references), and the model's interval coverage per step beside it."""
    figure, (left, right) = _axes(width=11, columns=2)
    steps = np.arange(1, len(model) + 1)
    left.plot(steps, model, color=MODEL_COLOUR, lw=2, label="model")
    for colour, (name, values) in zip(REFERENCE_COLOURS, references.items()):
        left.plot(steps, values, color=colour, lw=1.2, ls="--", label=name)
    left.set(xlabel="horizon step (hours ahead)", ylabel="CRPS", title="CRPS by horizon step")
    left.set_ylim(bottom=0)
    left.legend(fontsize=8)
    for name, values in coverage.items():
        line = right.plot(steps, values, lw=1.5, label=f"{name} % interval")[0]
        right.axhline(int(name) / 100, color=line.get_color(), lw=0.8, ls=":")
    right.set(
        xlabel="horizon step (hours ahead)", ylabel="observed coverage", title="coverage by step (dotted: nominal)"
    )
    right.legend(fontsize=8)
    return png(figure)


def reliability_diagram(
    levels: Sequence[float], share_below: Sequence[float], after: Sequence[float] | None = None
) -> bytes:
    """Observed share of targets below the q forecast against q; calibrated forecasts lie on the diagonal."""
    figure, (left, right) = _axes(width=11, columns=2)
    levels = np.asarray(levels)
    left.plot([0, 1], [0, 1], color="black", lw=0.8, ls=":")
    left.plot(levels, share_below, color=MODEL_COLOUR, marker=".", ms=3, label="model")
    right.axhline(0, color="black", lw=0.8, ls=":")
    right.plot(levels, np.asarray(share_below) - levels, color=MODEL_COLOUR, marker=".", ms=3, label="model")
    if after is not None:
        left.plot(levels, after, color=AFTER_COLOUR, marker=".", ms=3, label="after conformal")
        right.plot(levels, np.asarray(after) - levels, color=AFTER_COLOUR, marker=".", ms=3, label="after conformal")
    left.set(xlabel="nominal level q", ylabel="observed share below the q forecast", title="reliability diagram")
    right.set(xlabel="nominal level q", ylabel="observed share − q", title="reliability error (0 = calibrated)")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    return png(figure)


def coverage_vs_nominal(
    nominal: Sequence[float], observed: Sequence[float], after: tuple[Sequence[float], Sequence[float]] | None = None
) -> bytes:
    """Observed coverage of central intervals against their nominal coverage; ``after``: (nominal, observed)
    after conformal."""
    figure, axes = _axes(width=5.5, height=4.2)
    axes.plot([0, 1], [0, 1], color="black", lw=0.8, ls=":")
    axes.plot(nominal, observed, color=MODEL_COLOUR, marker=".", ms=4, label="model")
    if after is not None:
        axes.plot(*after, color=AFTER_COLOUR, marker="o", ms=4, label="after conformal")
    axes.set(xlabel="nominal coverage of the central interval", ylabel="observed coverage", title="coverage vs nominal")
    axes.legend(fontsize=8)
    return png(figure)


def pit_histogram(shares: Sequence[float]) -> bytes:
    """Shares of targets per tenth of the PIT; flat at 0.1 when calibrated."""
    figure, axes = _axes(width=5.5, height=4.2)
    bins = len(shares)
    axes.bar((np.arange(bins) + 0.5) / bins, shares, width=0.9 / bins, color=MODEL_COLOUR)
    axes.axhline(1 / bins, color="black", lw=0.8, ls=":")
    axes.set(
        xlabel="PIT (share of grid quantiles below the target)",
        ylabel="share of targets",
        title="PIT histogram (dotted: calibrated)",
        xlim=(0, 1),
    )
    return png(figure)


def fan_chart(
    title: str,
    history_time: np.ndarray,
    history: np.ndarray,
    time: np.ndarray,
    actual: np.ndarray,
    bands: dict[float, tuple[np.ndarray, np.ndarray]],
    median: np.ndarray,
) -> bytes:
    """Forecast intervals (``bands``: coverage -> lower [H], upper [H]) and median over the horizon, with actuals."""
    figure, axes = _axes(width=6.4, height=3.4)
    axes.plot(history_time, history, color="black", lw=1)
    for coverage, (lower, upper) in sorted(bands.items(), reverse=True):
        axes.fill_between(
            time,
            lower,
            upper,
            color=MODEL_COLOUR,
            alpha=BAND_ALPHAS.get(coverage, 0.25),
            lw=0,
            label=f"{round(100 * coverage)} %",
        )
    axes.plot(time, median, color=MODEL_COLOUR, lw=1.5, label="median")
    axes.plot(time, actual, color="black", lw=1, ls="--", label="actual")
    axes.axvline(time[0], color="grey", lw=0.8, ls=":")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=7, ncol=3, loc="upper left")
    figure.autofmt_xdate()
    return png(figure)


def sampler_evolution(
    steps: Sequence[int], bin_centres: Sequence[float], probabilities: np.ndarray, weakness: Sequence[float]
) -> bytes:
    """The adaptive sampler's bin probabilities over training (``probabilities`` [snapshots, bins]) and its last
    weakness profile."""
    figure, (left, right) = _axes(width=11, columns=2)
    centres = np.asarray(bin_centres)
    half = (centres[1] - centres[0]) / 2 if len(centres) > 1 else 0.5
    image = left.imshow(
        np.asarray(probabilities).T,
        aspect="auto",
        origin="lower",
        cmap="viridis",
        extent=(0, len(steps), centres[0] - half, centres[-1] + half),
    )
    ticks = np.linspace(0, len(steps) - 1, min(len(steps), 6)).round().astype(int)
    left.set_xticks(ticks + 0.5, [str(steps[i]) for i in ticks])
    left.set(
        xlabel="training step (end of epoch)", ylabel="quantile level bin", title="sampling probability per level bin"
    )
    figure.colorbar(image, ax=left)
    right.plot(centres, np.asarray(probabilities)[-1], color=MODEL_COLOUR, marker=".", label="probability (last)")
    right.axhline(1 / len(centres), color="black", lw=0.8, ls=":", label="uniform")
    right.set(xlabel="quantile level", ylabel="probability", title="last state")
    twin = right.twinx()
    twin.plot(centres, weakness, color=AFTER_COLOUR, lw=1, label="weakness")
    twin.set_ylabel("weakness (normalised loss)")
    right.legend(fontsize=8, loc="upper left")
    twin.legend(fontsize=8, loc="upper right")
    return png(figure)


def attention_maps(maps: list[np.ndarray], history_tokens: int) -> bytes:
    """Attention weights of one window: ``maps`` per block [N, L, L] (rows attend to columns), a panel per head."""
    blocks, heads = len(maps), maps[0].shape[0]
    figure = Figure(figsize=(2.6 * heads, 2.6 * blocks))
    grid = figure.subplots(blocks, heads, squeeze=False)
    for b, block in enumerate(maps):
        for h in range(heads):
            axes = grid[b][h]
            axes.imshow(block[h], cmap="magma", interpolation="nearest")
            axes.axvline(history_tokens - 0.5, color="white", lw=0.6, ls=":")
            axes.axhline(history_tokens - 0.5, color="white", lw=0.6, ls=":")
            axes.set_title(f"block {b + 1}, head {h + 1}", fontsize=8)
            axes.tick_params(labelsize=6)
    figure.supxlabel("attended token (dotted: forecast origin)", fontsize=8)
    figure.supylabel("attending token", fontsize=8)
    return png(figure)


def gate_profiles(gates: list[np.ndarray], history_tokens: int) -> bytes:
    """Mean local-head gate alpha per token for each block and head (``gates`` per block [N, L])."""
    figure, axes = _axes(width=11, height=3.4, columns=len(gates))
    axes = np.atleast_1d(axes)
    for b, (block, ax) in enumerate(zip(gates, axes)):
        if np.allclose(block, block[:1]):  # one gate shared by the heads: one line, not N on top of each other
            ax.plot(block[0], lw=1, label="every head")
        else:
            for h, profile in enumerate(block):
                ax.plot(profile, lw=1, label=f"head {h + 1}")
        ax.axvline(history_tokens - 0.5, color="grey", lw=0.8, ls=":")
        ax.set(
            xlabel="token (dotted: forecast origin)", ylabel="gate α (local share)", title=f"block {b + 1}", ylim=(0, 1)
        )
        ax.legend(fontsize=7)
    return png(figure)


def training_curves(curves: dict[str, tuple[Sequence[int], Sequence[float]]]) -> bytes:
    """Scalars logged during training (tag -> steps, values), one panel each."""
    figure, axes = _axes(width=11, height=3.2, columns=len(curves))
    axes = np.atleast_1d(axes)
    for ax, (tag, (steps, values)) in zip(axes, curves.items()):
        ax.plot(steps, values, color=MODEL_COLOUR, lw=1, marker="." if len(steps) < 30 else None)
        ax.set(xlabel="step", title=tag)
    return png(figure)
