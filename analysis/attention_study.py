"""Train the reference transformer on each generator's series and describe the attention it learns.

    python -m analysis.attention_study [--generators garch random_walk ...] [--quick] [--out results]
                                       [--adaptive-steps N] [--retrain]

For each generator (dataset/generators.py): one seeded series, windows of 100 past and 20 future
points — training windows at every point of the first 70 %, validation windows in the next 10 %,
held-out windows in the last 20 %; the reference transformer (analysis/reference_transformer.py)
trained on MSE, keeping the state of its best validation MSE; then on held-out windows the attention
of every layer and head and its numbers (analysis/attention_metrics.py). With ``adaptive_steps``
(``--adaptive-steps``), our adaptive-attention model is trained on the same series too
(analysis/adaptive_study.py). Writes ``OUT/<generator>/``:
``training_curves.png``, ``attention_summary.png`` (mean map per layer and head),
``entropy_analysis.png`` (entropy and Gini per head), ``attention_L<l>_H<h>_S<s>.png`` (single
held-out windows), ``attention_metrics.json`` (per layer and head), ``summary.json`` (settings,
losses, the answers to the study's questions that the generator's hidden state allows: see
analysis/questions.py), ``reference_model.pt`` (reused by a later run with the same settings unless
``--retrain``); and ``OUT/comparison.md`` (means per generator and a section per question) +
``OUT/comparison.png`` across generators. ``--quick`` (short series, few steps) runs all nine
generators in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import inspect
import json
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from tqdm import tqdm

from analysis import reference_transformer
from analysis.adaptive_study import study_adaptive
from analysis.attention_metrics import pattern_strengths, recency, row_entropy, row_gini, stripe_periodicity
from analysis.questions import (
    calm_vs_turbulent,
    error_by_time_since_change,
    event_lift,
    last_change,
    post_change_lift,
)
from analysis.reference_transformer import ReferenceTransformer
from anyquantile.dataset.generators import FAMILIES, GENERATORS, STATIONARY, GeneratedSeries, generate
from anyquantile.training.cpu import native_bf16

INPUT, OUTPUT = 100, 20
SHARES = (
    "entropy",
    "gini",
    "diagonal",
    "horizontal",
    "vertical",
    "stripe",
    "stripe_share",
    "recency",
)  # per-head numbers averaged in the summary


@dataclass(frozen=True)
class StudySettings:
    length: int = 20_000
    steps: int = 1_500
    batch_size: int = 64
    learning_rate: float = 1e-3
    # train under bf16 autocast where the CPU has native bf16 (more steps in the time; docs/attention_study.md),
    # in fp32 where it would be emulated; attention is read in fp32 either way
    bf16: bool = field(default_factory=native_bf16)
    stride: int = 5  # between the starts of validation and held-out windows (training windows start at every point)
    held_out_windows: int = 512  # attention is read on (at most) this many held-out windows
    samples: int = 3  # single-window maps drawn per layer and head
    seed: int = 0
    adaptive_steps: int = 300  # training steps of our adaptive-attention model on the same series (0: not run)


QUICK = StudySettings(length=4_000, steps=150, held_out_windows=64, samples=2, adaptive_steps=0)
TRAIN_SHARE, VALIDATION_SHARE = 0.7, 0.1  # of the series, in time order; the last 20 % is held out


def windows_of(values: np.ndarray, stride: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).unfold(0, INPUT + OUTPUT, stride)  # [N, 120]


@dataclass
class HeldOut:
    windows: torch.Tensor  # [W, INPUT + OUTPUT]
    starts: np.ndarray  # [W] index of each window's first point in the series


@dataclass
class StudyWindows:
    train: torch.Tensor  # [N, INPUT + OUTPUT], a window at every point of the first 70 %
    validation: torch.Tensor  # [V, INPUT + OUTPUT] from the next 10 %: chooses which training state is kept
    held_out: HeldOut  # from the last 20 %: where attention is read


def split_windows(values: np.ndarray, settings: StudySettings) -> StudyWindows:
    """Windows of three consecutive stretches of the series, none crossing into the next."""
    train_end, validation_end = int(TRAIN_SHARE * len(values)), int((TRAIN_SHARE + VALIDATION_SHARE) * len(values))
    held = windows_of(values[validation_end:], settings.stride)[: settings.held_out_windows]
    return StudyWindows(
        train=windows_of(values[:train_end], 1),
        validation=windows_of(values[train_end:validation_end], settings.stride)[
            : settings.held_out_windows
        ],  # same cap as held out
        held_out=HeldOut(held, validation_end + np.arange(len(held)) * settings.stride),
    )


def train_reference(values: np.ndarray, settings: StudySettings) -> tuple[ReferenceTransformer, dict, HeldOut]:
    """The model at its best validation MSE, its loss curves (with ``best_step``) and the held-out windows."""
    torch.manual_seed(settings.seed)
    windows = split_windows(values, settings)
    model = ReferenceTransformer(INPUT, OUTPUT)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    generator = torch.Generator().manual_seed(settings.seed)
    curves: dict[str, list] = {"step": [], "train_mse": [], "validation_mse": [], "held_out_mse": []}
    best = (float("inf"), 0, copy.deepcopy(model.state_dict()))  # (validation MSE, step, state)
    every = max(settings.steps // 30, 1)
    for step in range(1, settings.steps + 1):
        batch = windows.train[torch.randint(len(windows.train), (settings.batch_size,), generator=generator)]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=settings.bf16):
            forecast = model(batch[:, :INPUT])
        loss = torch.nn.functional.mse_loss(forecast.float(), batch[:, INPUT:])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step % every == 0 or step == settings.steps:
            curves["step"].append(step)
            curves["train_mse"].append(loss.item())
            for name, part in (("validation_mse", windows.validation), ("held_out_mse", windows.held_out.windows)):
                curves[name].append(_mse(model, part))
            if curves["validation_mse"][-1] < best[0]:
                best = (curves["validation_mse"][-1], step, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[2])
    curves["best_step"] = best[1]
    return model.eval(), curves, windows.held_out


@torch.no_grad()
def _mse(model: ReferenceTransformer, windows: torch.Tensor) -> float:
    model.eval()
    mse = torch.nn.functional.mse_loss(model(windows[:, :INPUT]), windows[:, INPUT:]).item()
    model.train()
    return mse


@torch.no_grad()
def attention_of(model: ReferenceTransformer, held_out: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Attention [layers, windows, heads, T, T] on the held-out windows and each window's forecast MSE [windows]."""
    forecast, weights = model(held_out[:, :INPUT], return_attention=True)
    squared_error = (forecast - held_out[:, INPUT:]).pow(2).mean(dim=-1)
    return torch.stack(weights).numpy(), squared_error.numpy()


def row_focus(attention: np.ndarray) -> dict[str, np.ndarray]:
    """Entropy and Gini of the attention rows, averaged per window: each [layers, W, heads] from
    ``attention`` [layers, W, heads, T, T]. Computed once; the summary and the questions both read it."""
    return {"entropy": row_entropy(attention).mean(axis=-1), "gini": row_gini(attention).mean(axis=-1)}


def describe(attention: np.ndarray, focus: dict[str, np.ndarray]) -> list[dict]:
    """Per layer and head: mean entropy and Gini of the rows (``focus`` from :func:`row_focus`),
    pattern strengths of the mean map."""
    layers, _, heads = attention.shape[:3]
    rows = []
    for layer in range(layers):
        for head in range(heads):
            mean_map = attention[layer, :, head].mean(axis=0)  # [T, T]
            rows.append(
                {
                    "layer": layer + 1,
                    "head": head + 1,
                    **{name: float(values[layer, :, head].mean()) for name, values in focus.items()},
                    **pattern_strengths(mean_map),
                    "recency": recency(mean_map),
                    **dict(zip(("stripe_period", "stripe_share"), stripe_periodicity(mean_map))),
                }
            )
    return rows


# Spikes: the top 1 % of |shock| (AR(1)-t) or |return| (GARCH) over the whole series, jumps, outliers.
SPIKE_QUANTILE = 0.99


def spikes_of(series: GeneratedSeries) -> np.ndarray | None:
    """[L] bool: the points whose attention the spike question measures; None for generators without spikes."""
    if "shock" in series.state:
        size = np.abs(series.state["shock"])
    elif series.name == "garch":
        size = np.abs(series.values)
    else:
        marked = series.state.get("jump", series.state.get("outlier"))
        return None if marked is None else marked.astype(bool)
    return size > np.quantile(size, SPIKE_QUANTILE)


def changes_of(series: GeneratedSeries) -> np.ndarray | None:
    """[L] bool: where a new regime, slope or level starts (regime switches, slope breaks, jumps); None if none."""
    if "regime" in series.state:
        return np.concatenate([[False], np.diff(series.state["regime"]) != 0])
    marked = series.state.get("break", series.state.get("jump"))
    return None if marked is None else marked.astype(bool)


def ask_questions(
    series: GeneratedSeries,
    held: HeldOut,
    attention: np.ndarray,
    squared_error: np.ndarray,
    focus: dict[str, np.ndarray],
) -> dict:
    """The study's questions that this generator's hidden state can answer (analysis/questions.py),
    per layer, each a list over heads. ``attention`` [layers, W, heads, T, T], ``squared_error`` [W],
    ``focus`` from :func:`row_focus`."""
    inputs = held.starts[:, None] + np.arange(INPUT)  # [W, T] series index of every input point
    outputs = held.starts[:, None] + INPUT + np.arange(OUTPUT)  # [W, H]
    answers: dict = {}
    spikes = spikes_of(series)
    if spikes is not None:
        answers["spike_lift"] = [event_lift(layer, spikes[inputs]).tolist() for layer in attention]
        answers["spike_windows"] = int(spikes[inputs].any(axis=1).sum())
    if "volatility" in series.state:
        volatility = series.state["volatility"][inputs].mean(axis=1)  # [W]
        for name, per_window in focus.items():  # [layers, W, heads]
            answers |= calm_vs_turbulent(name, per_window.swapaxes(0, 1), volatility)  # -> [layers, heads] each
    changes = changes_of(series)
    if changes is not None:
        change_at = last_change(changes[inputs])  # [W]
        answers["post_change_lift"] = [
            {key: value.tolist() for key, value in post_change_lift(layer, change_at).items()} for layer in attention
        ]
        # A change inside the forecast horizon cannot be foreseen: those windows are left out of the error.
        foreseeable = ~changes[outputs].any(axis=1)
        if foreseeable.any():
            answers["error_after_change"] = error_by_time_since_change(
                squared_error[foreseeable], change_at[foreseeable], INPUT
            )
    return answers


MODEL_FILE = "reference_model.pt"
NOT_TRAINING = ("samples", "adaptive_steps")  # settings that do not change the reference model


def training_key(series: GeneratedSeries, settings: StudySettings) -> dict:
    """Everything the trained reference model depends on: the series itself, the window split, the
    training settings and the model's code (a hash of its module's source, so an edited architecture
    retrains even where its parameter shapes stay the same)."""
    key = {name: value for name, value in asdict(settings).items() if name not in NOT_TRAINING}
    architecture = hashlib.sha256(inspect.getsource(reference_transformer).encode()).hexdigest()[:16]
    return {
        **key,
        "series": series.fingerprint(),
        "input": INPUT,
        "output": OUTPUT,
        "train_share": TRAIN_SHARE,
        "validation_share": VALIDATION_SHARE,
        "architecture": architecture,
    }


def trained_reference(
    series: GeneratedSeries, settings: StudySettings, folder: Path, retrain: bool
) -> tuple[ReferenceTransformer, dict, HeldOut]:
    """Train, or load the model an earlier run saved in ``folder`` for the same :func:`training_key`."""
    saved = folder / MODEL_FILE
    key = training_key(series, settings)
    if saved.is_file() and not retrain:
        state = torch.load(saved, weights_only=True)
        if state.get("key") == key:
            model = ReferenceTransformer(INPUT, OUTPUT)
            model.load_state_dict(state["model"])
            return model.eval(), state["curves"], split_windows(series.values, settings).held_out
    model, curves, held = train_reference(series.values, settings)
    torch.save({"key": key, "model": model.state_dict(), "curves": curves}, saved)
    return model, curves, held


def study(name: str, settings: StudySettings, out: Path, retrain: bool = False) -> dict:
    """Everything for one generator; returns its summary."""
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    series = generate(name, settings.length, settings.seed)
    model, curves, held = trained_reference(series, settings, folder, retrain)
    attention, squared_error = attention_of(model, held.windows)
    focus = row_focus(attention)
    metrics = describe(attention, focus)
    _training_figure(curves, name).savefig(folder / "training_curves.png", dpi=90)
    _summary_figure(attention.mean(axis=1), name).savefig(folder / "attention_summary.png", dpi=90)
    _entropy_figure(metrics, name).savefig(folder / "entropy_analysis.png", dpi=90)
    for layer in range(attention.shape[0]):
        for head in range(attention.shape[2]):
            for sample in range(min(settings.samples, attention.shape[1])):
                figure = _map_figure(
                    attention[layer, sample, head], f"{name}: layer {layer + 1}, head {head + 1}, window {sample + 1}"
                )
                figure.savefig(folder / f"attention_L{layer + 1}_H{head + 1}_S{sample + 1}.png", dpi=80)
    (folder / "attention_metrics.json").write_text(json.dumps(json_safe(metrics), indent=2))
    summary = {
        "generator": name,
        "family": FAMILIES[name],
        "settings": asdict(settings),
        "held_out_windows": len(held.windows),
        "kept_step": curves["best_step"],
        "held_out_mse": float(squared_error.mean()),  # of the kept (best validation) state
        "held_out_variance": float(held.windows[:, INPUT:].var()),
        "mean": {key: float(np.mean([m[key] for m in metrics])) for key in SHARES},
        "most_periodic_head": max(metrics, key=lambda m: m["stripe_share"]),
        "questions": ask_questions(series, held, attention, squared_error, focus),
    }
    if settings.adaptive_steps:
        summary["adaptive"] = study_adaptive(series, settings.adaptive_steps, folder, retrain)
    (folder / "summary.json").write_text(json.dumps(json_safe(summary), indent=2))
    return summary


def json_safe(value):
    """``value`` with every NaN float replaced by None (JSON has no NaN): empty bins, maps without stripes."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def relative_mse(summary: dict) -> float:
    """Held-out MSE ÷ the variance of the held-out targets (1 = no better than their mean)."""
    return summary["held_out_mse"] / max(summary["held_out_variance"], 1e-12)


def comparison(summaries: list[dict], out: Path) -> str:
    """A markdown table of the per-generator means (over layers and heads) and the answers to the
    study's questions, and a figure of the means."""
    keys = SHARES
    lines = [
        "| generator | family | held-out MSE ÷ variance | " + " | ".join(keys) + " |",
        "|---|---|---:|" + "---:|" * len(keys),
    ]
    for s in summaries:
        lines.append(
            f"| {s['generator']} | {s['family']} | {relative_mse(s):.3f} | "
            + " | ".join(f"{s['mean'][k]:.3f}" for k in keys)
            + " |"
        )
    table = "\n".join(lines) + "\n\n" + questions_report(summaries)
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


def _number(value: float | None, digits: int = 2) -> str:
    return "–" if value is None or value != value else f"{value:.{digits}f}"


def _heads(values: list[float]) -> str:
    """'mean (min–max)' over heads, NaN-aware."""
    v = np.asarray(values, dtype=np.float64)
    if np.isnan(v).all():
        return "–"
    return f"{np.nanmean(v):.2f} ({np.nanmin(v):.2f}–{np.nanmax(v):.2f})"


def markdown_section(title: str, note: str, columns: list[str], align: str, rows: list[str]) -> str:
    """'### title', the note, and a table: ``align`` one character per column ('l' left, 'r' right)."""
    rule = "|" + "".join("---:|" if a == "r" else "---|" for a in align)
    return "\n".join([f"### {title}", "", note, "", "| " + " | ".join(columns) + " |", rule, *rows])


def questions_report(summaries: list[dict]) -> str:
    """Markdown sections answering the study's questions from the summaries (layer by layer, mean and
    range over heads); a question no generator could be asked has no section."""
    sections = [
        _spike_section(summaries),
        *(_turbulence_section(s) for s in summaries),
        _change_section(summaries),
        _stationarity_section(summaries),
        _adaptive_section(summaries),
        _stripe_section(summaries),
    ]
    return "\n\n".join(section for section in sections if section)


def _spike_section(summaries: list[dict]) -> str | None:
    spiky = [s for s in summaries if "spike_lift" in s["questions"]]
    if not spiky:
        return None
    rows = [
        f"| {s['generator']} | {s['questions']['spike_windows']} | "
        + " | ".join(_heads(l) for l in s["questions"]["spike_lift"])
        + " |"
        for s in spiky
    ]
    layers = len(spiky[0]["questions"]["spike_lift"])
    return markdown_section(
        "Do heads over-react to spikes?",
        "Attention received by spikes ÷ attention received at the same positions without one (1 = like any point).",
        ["generator", "windows with a spike", *(f"layer {l + 1}" for l in range(layers))],
        "lr" + "l" * layers,
        rows,
    )


def _turbulence_section(summary: dict) -> str | None:
    q = summary["questions"]
    if "entropy_calm" not in q:
        return None
    rows = []
    for layer in range(len(q["entropy_calm"])):
        calm, turbulent = np.array(q["entropy_calm"][layer]), np.array(q["entropy_turbulent"][layer])
        rows.append(
            f"| {layer + 1} | {_heads(calm)} | {_heads(turbulent)} | {_heads(q['gini_calm'][layer])} | "
            f"{_heads(q['gini_turbulent'][layer])} | {int((turbulent < calm).sum())} of {len(calm)} |"
        )
    return markdown_section(
        f"Is attention more concentrated in turbulent periods? ({summary['generator']})",
        "Calmest vs most turbulent quarter of held-out windows by mean volatility; entropy 1 = uniform.",
        [
            "layer",
            "entropy calm",
            "entropy turbulent",
            "Gini calm",
            "Gini turbulent",
            "heads lower-entropy when turbulent",
        ],
        "rllllr",
        rows,
    )


def _change_section(summaries: list[dict]) -> str | None:
    changing = [s for s in summaries if "post_change_lift" in s["questions"]]
    if not changing:
        return None
    bins = [key for key in changing[0]["questions"]["post_change_lift"][0] if not key.endswith("windows")]
    rows = []
    for s in changing:
        q = s["questions"]
        for layer, lift in enumerate(q["post_change_lift"]):
            rows.append(
                f"| {s['generator']} | attention lift, layer {layer + 1} | "
                + " | ".join(_heads(lift[b]) for b in bins)
                + " | |"
            )
        rows.append(
            f"| {s['generator']} | windows | "
            + " | ".join(str(int(q["post_change_lift"][0][f"{b} windows"])) for b in bins)
            + " | |"
        )
        if "error_after_change" in q:
            rows.append(
                f"| {s['generator']} | MSE ratio | "
                + " | ".join(_number(q["error_after_change"][b]) for b in [*bins, "none"])
                + " |"
            )
    note = (
        "Attention on the points since the last change ÷ the same span in windows without a change, and held-out MSE ÷ "
        "the mean of all windows (windows with a change in their forecast horizon left out), by points since the "
        "change "
        "(none: no change in the input)."
    )
    return markdown_section(
        "Does the model follow and recover after a change?",
        note,
        ["generator", "what", *bins, "none"],
        "ll" + "l" * (len(bins) + 1),
        rows,
    )


def _stationarity_section(summaries: list[dict]) -> str:
    rows = []
    for label, group in (
        ("stationary", [s for s in summaries if s["generator"] in STATIONARY]),
        ("non-stationary", [s for s in summaries if s["generator"] not in STATIONARY]),
    ):
        if group:
            rows.append(
                f"| {label} | {', '.join(s['generator'] for s in group)} | "
                f"{np.mean([relative_mse(s) for s in group]):.3f} | "
                + " | ".join(
                    f"{np.mean([s['mean'][k] for s in group]):.3f}" for k in ("entropy", "diagonal", "recency")
                )
                + " |"
            )
    return markdown_section(
        "Stationary vs non-stationary",
        "Means over the generators of each group (over layers and heads).",
        ["group", "generators", "held-out MSE ÷ variance", "entropy", "diagonal", "recency (last 10)"],
        "llrrrr",
        rows,
    )


def _adaptive_section(summaries: list[dict]) -> str | None:
    adaptive = [s for s in summaries if "adaptive" in s]
    if not adaptive:
        return None
    rows = []
    for s in adaptive:
        a = s["adaptive"]
        naive = a["seasonal_naive_crps"].get("seasonal_naive_168")
        ratio = f"{a['test_crps'] / naive:.3f}" if a["test_crps"] and naive else "–"
        gates = " \\| ".join(f"{np.mean(block):.2f}" for block in a["gate_per_head"])
        betas = " \\| ".join(", ".join(f"{b:.2f}" for b in block) for block in a["beta"])
        entropy = " \\| ".join(", ".join(f"{e:.2f}" for e in block) for block in a["entropy"])
        rows.append(f"| {s['generator']} | {a['steps']} | {ratio} | {gates} | {betas} | {entropy} |")
    for s in adaptive:
        if "turbulence" in s["adaptive"]:
            t = s["adaptive"]["turbulence"]
            rows += [
                "",
                f"Our model on {s['generator']}, calmest vs most turbulent quarter of {t['windows']} test windows:",
                "",
                "| block | entropy calm | entropy turbulent | gate α calm | gate α turbulent |",
                "|---:|---|---|---:|---:|",
            ]
            rows += [
                f"| {b + 1} | {_heads(t['entropy_calm'][b])} | {_heads(t['entropy_turbulent'][b])} | "
                f"{t['gate_calm'][b]:.3f} | {t['gate_turbulent'][b]:.3f} |"
                for b in range(len(t["gate_calm"]))
            ]
    note = (
        "Gate α = the local heads' share (global heads get 1 − α), mean over tokens and test windows; β = learnt "
        "locality bias per head; entropy per head (1 = uniform). Block 1 \\| block 2."
    )
    return markdown_section(
        "Our adaptive-attention model on the same series",
        note,
        ["generator", "steps", "test CRPS ÷ seasonal naive 168 h", "gate α", "β per head", "entropy per head"],
        "lrrlll",
        rows,
    )


def _stripe_section(summaries: list[dict]) -> str:
    rows = []
    for s in summaries:
        head = s["most_periodic_head"]
        rows.append(
            f"| {s['generator']} | {s['family']} | {s['mean']['stripe_share']:.2f} | L{head['layer']} "
            f"H{head['head']} | "
            f"{_number(head['stripe_period'], 1)} | {head['stripe_share']:.2f} |"
        )
    note = (
        "Stripe share = share of the detrended lag profile's variance (mean weight at each lag i − j of the mean "
        "map) in its "
        "strongest periodic component (1 = a pure cosine in the lag); mean over heads, and the most periodic head."
    )
    return markdown_section(
        "Do periodic series give striped maps?",
        note,
        ["generator", "family", "stripe share", "most periodic head", "its period (lags)", "its share"],
        "llrlrr",
        rows,
    )


def _training_figure(curves: dict, name: str) -> Figure:
    figure = Figure(figsize=(6, 3.5), layout="constrained")
    axes = figure.subplots()
    axes.plot(curves["step"], curves["train_mse"], label="train (batch)")
    axes.plot(curves["step"], curves["validation_mse"], label="validation")
    axes.plot(curves["step"], curves["held_out_mse"], label="held out")
    axes.axvline(curves["best_step"], color="grey", ls=":", lw=1, label="kept (best validation)")
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
    parser.add_argument(
        "--generators", nargs="+", default=sorted(GENERATORS), metavar="NAME", help=f"from {sorted(GENERATORS)}"
    )
    parser.add_argument("--quick", action="store_true", help="short series and few steps (minutes for all generators)")
    parser.add_argument("--out", type=Path, default=Path("results"), help="output folder (default: results)")
    parser.add_argument(
        "--adaptive-steps",
        type=int,
        metavar="N",
        help=f"train our adaptive-attention model N steps per generator too (default {StudySettings.adaptive_steps}; "
        "0 skips it; --quick skips it unless given)",
    )
    parser.add_argument(
        "--retrain",
        action="store_true",
        help=f"train even where OUT/<generator>/ holds a model of the same settings ({MODEL_FILE}, adaptive.json)",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.generators) - set(GENERATORS))
    if unknown:
        print(f"error: unknown generator(s) {unknown}; choose from {sorted(GENERATORS)}", file=sys.stderr)
        return 2
    if args.adaptive_steps is not None and args.adaptive_steps < 0:
        print(f"error: --adaptive-steps must be 0 or more, got {args.adaptive_steps}", file=sys.stderr)
        return 2
    settings = QUICK if args.quick else StudySettings()
    if args.adaptive_steps is not None:
        settings = replace(settings, adaptive_steps=args.adaptive_steps)
    summaries = [
        study(name, settings, args.out, args.retrain)
        for name in tqdm(args.generators, desc="generators", unit="generator")
    ]
    print(comparison(summaries, args.out))
    print(f"\nwritten: {args.out}/<generator>/ and {args.out}/comparison.md, comparison.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
