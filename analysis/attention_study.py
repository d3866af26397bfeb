"""Train the reference transformer on each generator's series and describe the attention it learns.

    python -m analysis.attention_study [--generators garch random_walk ...] [--quick] [--out results]

For each generator (dataset/generators.py): one seeded series, windows of 100 past and 20 future
points, the first 80 % of windows for training and the rest held out; the reference transformer
(analysis/reference_transformer.py) trained on MSE; then on held-out windows the attention of every
layer and head and its numbers (analysis/attention_metrics.py). Writes ``OUT/<generator>/``:
``training_curves.png``, ``attention_summary.png`` (mean map per layer and head),
``entropy_analysis.png`` (entropy and Gini per head), ``attention_L<l>_H<h>_S<s>.png`` (single
held-out windows), ``attention_metrics.json`` (per layer and head), ``summary.json`` (settings,
losses); and ``OUT/comparison.md`` + ``OUT/comparison.png`` across generators. ``--quick`` (short
series, few steps) runs all nine generators in a few minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm import tqdm

from analysis.attention_metrics import pattern_strengths, row_entropy, row_gini
from analysis.reference_transformer import ReferenceTransformer
from dataset.generators import GENERATORS, generate

INPUT, OUTPUT = 100, 20


@dataclass(frozen=True)
class StudySettings:
    length: int = 20_000
    steps: int = 2_000
    batch_size: int = 64
    learning_rate: float = 1e-3
    stride: int = 5  # between window starts
    held_out_windows: int = 256  # attention is read on (at most) this many held-out windows
    samples: int = 3  # single-window maps drawn per layer and head
    seed: int = 0


QUICK = StudySettings(length=4_000, steps=150, held_out_windows=64, samples=2)


def windows_of(values: np.ndarray, stride: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).unfold(0, INPUT + OUTPUT, stride)  # [N, 120]


def train_reference(values: np.ndarray, settings: StudySettings) -> tuple[ReferenceTransformer, dict, torch.Tensor]:
    """The trained model, its loss curves and the held-out windows."""
    torch.manual_seed(settings.seed)
    windows = windows_of(values, settings.stride)
    split = int(0.8 * len(windows))
    train, held_out = windows[:split], windows[split:]
    model = ReferenceTransformer(INPUT, OUTPUT)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    generator = torch.Generator().manual_seed(settings.seed)
    curves: dict[str, list] = {"step": [], "train_mse": [], "held_out_mse": []}
    every = max(settings.steps // 20, 1)
    for step in range(1, settings.steps + 1):
        batch = train[torch.randint(len(train), (settings.batch_size,), generator=generator)]
        loss = torch.nn.functional.mse_loss(model(batch[:, :INPUT]), batch[:, INPUT:])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % every == 0 or step == settings.steps:
            model.eval()
            with torch.no_grad():
                held = held_out[: settings.held_out_windows]
                curves["step"].append(step)
                curves["train_mse"].append(loss.item())
                curves["held_out_mse"].append(torch.nn.functional.mse_loss(model(held[:, :INPUT]), held[:, INPUT:]).item())
            model.train()
    return model.eval(), curves, held_out[: settings.held_out_windows]


@torch.no_grad()
def attention_of(model: ReferenceTransformer, held_out: torch.Tensor) -> np.ndarray:
    """[layers, windows, heads, T, T] attention on the held-out windows."""
    _, weights = model(held_out[:, :INPUT], return_attention=True)
    return torch.stack(weights).numpy()


def describe(attention: np.ndarray) -> list[dict]:
    """Per layer and head: mean entropy and Gini of the rows, pattern strengths of the mean map."""
    layers, _, heads = attention.shape[:3]
    rows = []
    for layer in range(layers):
        for head in range(heads):
            maps = attention[layer, :, head]  # [W, T, T]
            rows.append({"layer": layer + 1, "head": head + 1,
                         "entropy": float(row_entropy(maps).mean()), "gini": float(row_gini(maps).mean()),
                         **pattern_strengths(maps.mean(axis=0))})
    return rows


def study(name: str, settings: StudySettings, out: Path) -> dict:
    """Everything for one generator; returns its summary."""
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    series = generate(name, settings.length, settings.seed)
    model, curves, held_out = train_reference(series.values, settings)
    attention = attention_of(model, held_out)
    metrics = describe(attention)
    _training_figure(curves, name).savefig(folder / "training_curves.png", dpi=90)
    _summary_figure(attention.mean(axis=1), name).savefig(folder / "attention_summary.png", dpi=90)
    _entropy_figure(metrics, name).savefig(folder / "entropy_analysis.png", dpi=90)
    for layer in range(attention.shape[0]):
        for head in range(attention.shape[2]):
            for sample in range(min(settings.samples, attention.shape[1])):
                figure = _map_figure(attention[layer, sample, head], f"{name}: layer {layer + 1}, head {head + 1}, window {sample + 1}")
                figure.savefig(folder / f"attention_L{layer + 1}_H{head + 1}_S{sample + 1}.png", dpi=80)
    (folder / "attention_metrics.json").write_text(json.dumps(metrics, indent=2))
    summary = {"generator": name, "settings": asdict(settings), "held_out_windows": int(len(held_out)),
               "final_train_mse": curves["train_mse"][-1], "final_held_out_mse": curves["held_out_mse"][-1],
               "held_out_variance": float(held_out[:, INPUT:].var()),
               "mean": {key: float(np.mean([m[key] for m in metrics])) for key in ("entropy", "gini", "diagonal", "horizontal", "vertical", "stripe")}}
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def comparison(summaries: list[dict], out: Path) -> str:
    """A markdown table of the per-generator means (over layers and heads), and a figure of them."""
    keys = ("entropy", "gini", "diagonal", "horizontal", "vertical", "stripe")
    lines = ["| generator | held-out MSE ÷ variance | " + " | ".join(keys) + " |", "|---|---:|" + "---:|" * len(keys)]
    for s in summaries:
        relative = s["final_held_out_mse"] / max(s["held_out_variance"], 1e-12)
        lines.append(f"| {s['generator']} | {relative:.3f} | " + " | ".join(f"{s['mean'][k]:.3f}" for k in keys) + " |")
    table = "\n".join(lines)
    (out / "comparison.md").write_text(table + "\n")
    figure = Figure(figsize=(11, 4), layout="constrained")
    axes = figure.subplots()
    x = np.arange(len(summaries))
    width = 0.8 / len(keys)
    for i, key in enumerate(keys):
        axes.bar(x + i * width, [s["mean"][key] for s in summaries], width, label=key)
    axes.set_xticks(x + 0.4 - width / 2, [s["generator"] for s in summaries], rotation=20, fontsize=8)
    axes.set(ylabel="mean over layers and heads", title="attention by generator")
    axes.legend(fontsize=7, ncol=3)
    figure.savefig(out / "comparison.png", dpi=90)
    return table


def _training_figure(curves: dict, name: str) -> Figure:
    figure = Figure(figsize=(6, 3.5), layout="constrained")
    axes = figure.subplots()
    axes.plot(curves["step"], curves["train_mse"], label="train (batch)")
    axes.plot(curves["step"], curves["held_out_mse"], label="held out")
    axes.set(xlabel="step", ylabel="MSE", title=f"{name}: training", yscale="log")
    axes.legend()
    return figure


def _summary_figure(mean_maps: np.ndarray, name: str) -> Figure:
    """``mean_maps`` [layers, heads, T, T]."""
    layers, heads = mean_maps.shape[:2]
    figure = Figure(figsize=(2.4 * heads, 2.4 * layers), layout="constrained")
    grid = figure.subplots(layers, heads, squeeze=False)
    for layer in range(layers):
        for head in range(heads):
            grid[layer][head].imshow(mean_maps[layer, head], cmap="magma")
            grid[layer][head].set_title(f"L{layer + 1} H{head + 1}", fontsize=8)
            grid[layer][head].tick_params(labelsize=6)
    figure.suptitle(f"{name}: mean attention over held-out windows (x attended, y attending)", fontsize=9)
    return figure


def _entropy_figure(metrics: list[dict], name: str) -> Figure:
    figure = Figure(figsize=(6, 3.5), layout="constrained")
    axes = figure.subplots()
    labels = [f"L{m['layer']}H{m['head']}" for m in metrics]
    x = np.arange(len(metrics))
    axes.bar(x - 0.2, [m["entropy"] for m in metrics], 0.4, label="entropy (1 = uniform)")
    axes.bar(x + 0.2, [m["gini"] for m in metrics], 0.4, label="Gini (1 = one key)")
    axes.set_xticks(x, labels, fontsize=8)
    axes.set(ylim=(0, 1), title=f"{name}: focus per head")
    axes.legend(fontsize=8)
    return figure


def _map_figure(weights: np.ndarray, title: str) -> Figure:
    figure = Figure(figsize=(3.6, 3.2), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(weights, cmap="magma")
    figure.colorbar(image, ax=axes)
    axes.set(xlabel="attended time", ylabel="attending time")
    axes.set_title(title, fontsize=8)
    return figure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generators", nargs="+", default=sorted(GENERATORS), metavar="NAME", help=f"from {sorted(GENERATORS)}")
    parser.add_argument("--quick", action="store_true", help="short series and few steps (minutes for all generators)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder (default: results)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.generators) - set(GENERATORS))
    if unknown:
        print(f"error: unknown generator(s) {unknown}; choose from {sorted(GENERATORS)}", file=sys.stderr)
        return 2
    settings = QUICK if args.quick else StudySettings()
    summaries = [study(name, settings, args.out) for name in tqdm(args.generators, desc="generators", unit="generator")]
    print(comparison(summaries, args.out))
    print(f"\nwritten: {args.out}/<generator>/ and {args.out}/comparison.md, comparison.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
