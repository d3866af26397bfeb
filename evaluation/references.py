"""Reference forecasters (seasonal naive, the synthetic oracle) scored on the model's own windows.

:func:`add_references` is the evaluation step after training: it scores the references on the
split the run was tested on and adds them to the run's ``metrics.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from anyquantile.baselines.reference import ReferenceForecaster
from anyquantile.baselines.seasonal_naive import SeasonalNaive
from anyquantile.dataset.windows import WindowBatches
from anyquantile.experiment.builders import ForecastData, build_data, build_evaluation_levels
from anyquantile.experiment.files import write_text_atomic
from anyquantile.model.scoring import ForecastScorer
from anyquantile.modules.quantile_levels import EvaluationLevels


def score_reference(
    forecaster: ReferenceForecaster,
    windows: WindowBatches,
    levels: EvaluationLevels,
    rearrange: bool = True,
    batch_size: int = 1024,
) -> dict[str, float]:
    """The scores the model gets (the final forecast's), on exactly the same windows and observed targets."""
    scorer = ForecastScorer(levels, windows.shape.horizon, rearrange)
    for batch in windows.batches(batch_size):
        prediction = forecaster(batch.series.numpy(), batch.origin.numpy(), windows.shape.horizon, levels.levels)
        scorer.update(prediction, batch.target, batch.target_mask)
    return scorer.compute().final


def reference_scores(
    cfg: DictConfig, data: ForecastData, windows: WindowBatches, levels: EvaluationLevels
) -> dict[str, dict[str, float]]:
    """Seasonal naive (and, on synthetic data, the oracle) scored on the very windows and levels the model was."""
    forecasters: dict[str, ReferenceForecaster] = {
        f"seasonal_naive_{lag}": SeasonalNaive(data.panel, lag, cfg.evaluation.residual_window)
        for lag in cfg.evaluation.seasonal_naive_lags
    }
    if data.oracle is not None:
        forecasters["oracle"] = data.oracle
    rearrange = cfg.evaluation.rearrange
    return {name: score_reference(forecaster, windows, levels, rearrange) for name, forecaster in forecasters.items()}


def add_references(cfg: DictConfig, summary: dict[str, Any]) -> dict[str, Any]:
    """``summary`` of ``training.train.train`` with the references scored on its split (``references``),
    also written into its ``metrics.json``. A run that wrote no metrics (a fast-dev-run, a DDP rank
    other than 0) is returned as it is."""
    if summary.get("metrics_file") is None:
        return summary
    data = build_data(cfg)
    split = summary["split"]
    windows = WindowBatches(data.panel, data.shape, data.splits[split])
    references = reference_scores(cfg, data, windows, build_evaluation_levels(cfg))
    metrics_file = Path(summary["metrics_file"])
    metrics = json.loads(metrics_file.read_text())
    metrics["references"] = references
    write_text_atomic(metrics_file, json.dumps(metrics, indent=2))
    return {**summary, "references": references}
