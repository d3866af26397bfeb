"""Our adaptive-attention model on one of the study's generated series: what its gates and locality
biases learn there.

The series becomes an hourly long-format file (one series from 2015-01-01); the shipped CPU config
``config/nbeatsaq-adaptive-attention-synthetic.yaml`` trains on it through ``training.train`` (its
own window shape: 168 h in, 48 h out; first 80 % of the hours train, the next 10 % validate, the
last 10 % test) for a given number of steps. On up to 256 test windows, read at the median:

- per block, the local-head gate alpha (mean over windows; per head and token) and the locality
  bias beta per head;
- per block and head, the mean normalised entropy of the attention rows (1 = uniform);
- for a series with hidden volatility (GARCH), entropy and gate in the calmest vs the most turbulent
  quarter of those windows;
- the maps of one window and the gate profiles, drawn with the dashboard's figures.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analysis.attention_metrics import row_entropy
from analysis.questions import calm_vs_turbulent
from anyquantile.dataset.generators import GeneratedSeries
from anyquantile.dataset.windows import WindowBatches
from anyquantile.evaluation import figures
from anyquantile.evaluation.dashboard_data import attention_snapshot, spread_indices
from anyquantile.evaluation.references import add_references
from anyquantile.experiment.builders import build_data
from anyquantile.experiment.checkpoints import load_forecaster
from anyquantile.experiment.config import config_to_dict, load_config
from anyquantile.model.quiet import quiet_lightning
from anyquantile.training.cpu import native_bf16
from anyquantile.training.train import train

CONFIG = Path(__file__).resolve().parents[1] / "config" / "nbeatsaq-adaptive-attention-synthetic.yaml"
START = pd.Timestamp("2015-01-01")
READ_WINDOWS = 256


def hourly_frame(series: GeneratedSeries) -> pd.DataFrame:
    """The series as one hourly series in long format (unique_id, ds, y)."""
    hours = pd.date_range(START, periods=len(series.values), freq="h")
    return pd.DataFrame({"unique_id": series.name, "ds": hours, "y": series.values})


def split_dates(length: int) -> tuple[str, str]:
    """Validation and test start: the midnights at or before 80 % and 90 % of the hours."""
    return tuple(str((START + pd.Timedelta(hours=int(share * length))).normalize().date()) for share in (0.8, 0.9))


def adaptive_config(data_file: Path, length: int, steps: int, output_dir: Path):
    val_start, test_start = split_dates(length)
    return load_config(
        CONFIG,
        [
            "dataset.source=file",
            f"dataset.path={data_file}",
            "dataset.name=generated",
            f"dataset.val_start={val_start}",
            f"dataset.test_start={test_start}",
            f"trainer.max_steps={steps}",
            f"trainer.val_every_n_steps={steps}",
            f"optimizer.warmup_steps={max(steps // 10, 1)}",
            "trainer.enable_progress_bar=false",
            f"output_dir={output_dir}",
            # the config's bf16 autocast where the CPU has native bf16, as the reference model trains; fp32 elsewhere
            f"trainer.precision={'bf16-mixed' if native_bf16() else '32-true'}",
        ],
    )


SUMMARY_FILE = "adaptive.json"


def config_key(cfg) -> str:
    """A short hash of the resolved config, without where the data and runs live (they do not change the model)."""
    plain = config_to_dict(cfg)
    plain["dataset"]["path"] = plain["output_dir"] = None
    return hashlib.sha1(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:16]


def study_adaptive(series: GeneratedSeries, steps: int, folder: Path, retrain: bool = False) -> dict:
    """Train our adaptive-attention model on ``series`` for ``steps`` and describe its gates, betas and
    attention; writes ``adaptive.json``, ``adaptive_maps.png``, ``adaptive_gates.png`` and
    ``adaptive_training.log`` (the resolved config and run folder) in ``folder``. An ``adaptive.json``
    there of the same series, resolved config and read-out is returned as it is unless ``retrain``."""
    data_file = folder / "series.parquet"
    cfg = adaptive_config(data_file, len(series.values), steps, folder / "adaptive_runs")
    key = {"config": config_key(cfg), "series": series.fingerprint(), "read_windows": READ_WINDOWS}
    saved = folder / SUMMARY_FILE
    if saved.is_file() and not retrain:
        result = json.loads(saved.read_text())
        if result.get("key") == key:
            return result
    hourly_frame(series).to_parquet(data_file)
    log = folder / "adaptive_training.log"
    with log.open("w") as stream, contextlib.redirect_stdout(stream), quiet_lightning():
        summary = add_references(cfg, train(cfg))
    model, cfg = load_forecaster(summary["checkpoint"])
    data = build_data(cfg)
    windows = WindowBatches(data.panel, data.shape, data.splits["test"])
    snapshot = attention_snapshot(
        model, windows, map_window=len(windows) - 1, label="last test window", gate_windows=READ_WINDOWS
    )
    (folder / "adaptive_maps.png").write_bytes(figures.attention_maps(snapshot.maps, snapshot.history_tokens))
    (folder / "adaptive_gates.png").write_bytes(figures.gate_profiles(snapshot.gates, snapshot.history_tokens))
    reading = read_attention(model, windows)
    result = {
        "key": key,
        "steps": summary["global_step"],
        "test_crps": summary["model"].get("crps"),
        "seasonal_naive_crps": {name: scores.get("crps") for name, scores in summary.get("references", {}).items()},
        "gate_per_head": [gates.mean(axis=1).tolist() for gates in snapshot.gates],  # per block [N]: alpha over tokens
        "gate_history_vs_future": [
            [float(g[:, : snapshot.history_tokens].mean()), float(g[:, snapshot.history_tokens :].mean())]
            for g in snapshot.gates
        ],
        "beta": snapshot.betas,
        "entropy": reading.entropy.mean(axis=0).tolist(),  # per block, per head
    }
    contrast = turbulence_contrast(series, reading, data.shape.history_length)
    if contrast is not None:
        result["turbulence"] = contrast
    saved.write_text(json.dumps(result, indent=2))
    return result


@dataclass
class AttentionReading:
    entropy: np.ndarray  # [W, blocks, heads]: mean normalised row entropy of each window's attention
    gate: np.ndarray  # [W, blocks]: mean local-head gate alpha of each window
    origins: np.ndarray  # [W] the hour (= series index) each window's forecast starts at


@torch.no_grad()
def read_attention(model, windows: WindowBatches) -> AttentionReading:
    """Attention entropy and gates at the median on up to ``READ_WINDOWS`` test windows spread over the split."""
    indices = torch.from_numpy(spread_indices(len(windows), READ_WINDOWS))
    batch = windows[indices]
    analysis = model.attention_maps(batch, torch.full((len(indices), 1), 0.5))
    entropy, gate = [], []
    for weights, alpha in zip(
        analysis["attention"], analysis["gates"]
    ):  # per block: [W, N, L, L], broadcastable to [W, N, L, 1]
        entropy.append(row_entropy(weights.float().numpy()).mean(axis=-1))  # [W, N]
        gate.append(alpha.float().expand(*weights.shape[:3], 1).mean(dim=(1, 2, 3)).numpy())  # [W]
    return AttentionReading(np.stack(entropy, axis=1), np.stack(gate, axis=1), batch.origin.numpy())


def turbulence_contrast(series: GeneratedSeries, reading: AttentionReading, history_length: int) -> dict | None:
    """Entropy per block and head, and gate per block, in the calmest vs the most turbulent quarter of the
    read windows by the mean hidden volatility of their history; None for series without volatility."""
    if "volatility" not in series.state:
        return None
    history = reading.origins[:, None] - history_length + np.arange(history_length)  # [W, T] series index
    volatility = series.state["volatility"][history].mean(axis=1)
    return (
        calm_vs_turbulent("entropy", reading.entropy, volatility)
        | calm_vs_turbulent("gate", reading.gate, volatility)
        | {"windows": len(volatility)}
    )
