"""Score trained checkpoints on a split: metrics (overall, per step, per series), forecasts file,
conformal before/after and the dashboard.

``evaluate(...)`` is what ``evaluate.py`` calls. Several checkpoints form an ensemble whose quantile
forecasts are averaged level by level (as the any-quantile paper does with its 8 seeds).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from tqdm import tqdm

from dataset.windows import WindowBatches
from evaluation.conformal import IntervalConformal, LevelConformal
from evaluation.dashboard import DashboardInputs, write_dashboard
from evaluation.dashboard_data import attention_snapshot, choose_fan_windows, fan_windows, sampler_history, training_log
from evaluation.long_format import long_forecast_frame
from evaluation.references import reference_scores
from model.forecaster import AnyQuantileForecaster
from model.metrics import QuantileForecastMetrics, RandomLevelCRPS, headline
from modules.quantile_levels import EvaluationLevels, interval_ends
from modules.rearrangement import rearrange_quantiles
from training.builders import build_data, build_evaluation_levels, load_forecaster
from training.config import ConfigError

SPLITS = ("val", "test")
CONFORMAL_KINDS = ("none", "level", "level_per_step", "interval", "interval_per_step")
INTERVAL_METRICS = ("coverage_", "width_", "winkler_")  # what an interval (CQR) correction changes
Batch = dict[str, torch.Tensor]


@dataclass
class Ensemble:
    """Trained forecasters whose quantile forecasts are averaged level by level."""

    members: list[AnyQuantileForecaster]

    @torch.no_grad()
    def __call__(self, batch: Batch, levels: torch.Tensor) -> torch.Tensor:
        """levels [B, Q] -> forecasts [B, H, Q], in fp32 (as the models are evaluated in training)."""
        forecasts = [member(batch, levels).prediction.float() for member in self.members]
        return torch.stack(forecasts).mean(dim=0)


def load_ensemble(checkpoints: Sequence[str | Path], overrides: Sequence[str] = ()) -> tuple[Ensemble, DictConfig]:
    """The checkpoints' forecasters and the first one's config with ``key=value`` overrides applied."""
    if not checkpoints:
        raise ConfigError("give at least one --checkpoint")
    members, configs = [], []
    for path in checkpoints:
        if not Path(path).is_file():
            raise ConfigError(f"checkpoint not found: {path}")
        model, cfg = load_forecaster(path)
        members.append(model)
        configs.append(cfg)
    first = configs[0]
    for path, cfg in zip(checkpoints[1:], configs[1:]):
        if (cfg.dataset.history_length, cfg.dataset.horizon) != (first.dataset.history_length, first.dataset.horizon):
            raise ConfigError(f"{path} forecasts windows of another shape than {checkpoints[0]}; an ensemble needs one shape")
    try:
        cfg = OmegaConf.merge(first, OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as error:
        raise ConfigError(f"bad override: {error}") from None
    return Ensemble(members), cfg


def batches(windows: WindowBatches, batch_size: int, description: str) -> Iterator[Batch]:
    """The split's windows in order, with a progress bar."""
    starts = range(0, len(windows), batch_size)
    for start in tqdm(starts, desc=description, unit="batch", leave=False):
        yield windows[torch.arange(start, min(start + batch_size, len(windows)))]


def forecast_split(ensemble: Ensemble, windows: WindowBatches, levels: torch.Tensor, batch_size: int, name: str):
    """All forecasts of a split at ``levels`` [Q]: (prediction [N, H, Q], target [N, H], mask [N, H], series [N], origin [N])."""
    parts = []
    for batch in batches(windows, batch_size, f"forecasting {name}"):
        prediction = ensemble(batch, levels.float().expand(len(batch["series"]), -1))
        parts.append((prediction, batch["target"], batch["target_mask"], batch["series"], batch["origin"]))
    return tuple(torch.cat(column) for column in zip(*parts))


def score(levels: EvaluationLevels, horizon: int, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    return _floats(_scored(levels, horizon, prediction, target, mask))


def score_with_reliability(
    levels: EvaluationLevels, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Every metric, and every evaluated level with the observed share of targets below its forecast
    (the reliability diagram), from one pass over the forecasts."""
    metric = _scored(levels, prediction.shape[1], prediction, target, mask)
    return _floats(metric), {"levels": levels.levels.tolist(), "share_below": metric.share_below().tolist()}


def _floats(metric: QuantileForecastMetrics) -> dict[str, float]:
    return {name: float(value) for name, value in metric.compute().items()}


def per_step_scores(levels: EvaluationLevels, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> list[dict[str, float]]:
    """The headline metrics of each horizon step on its own (step 1 first)."""
    steps = range(prediction.shape[1])
    return [headline(score(levels, 1, prediction[:, h : h + 1], target[:, h : h + 1], mask[:, h : h + 1])) for h in steps]


def _scored(levels, horizon, prediction, target, mask) -> QuantileForecastMetrics:
    metric = QuantileForecastMetrics(levels, horizon)
    metric.update(prediction, target, mask)
    return metric


def evaluate(
    checkpoints: Sequence[str | Path],
    out_dir: str | Path,
    data: str | None = None,
    split: str | None = None,
    conformal: str = "none",
    overrides: Sequence[str] = (),
    fan_series: Sequence[str] = (),
    fan_origins: Sequence[str] = (),
    dashboard: bool = True,
) -> dict[str, Any]:
    """Score the (ensemble of) checkpoint(s) on ``split``; write ``metrics.json``, ``forecasts.parquet``
    and ``dashboard.html``.

    Args:
        data: a data file replacing the config's ``dataset.path``.
        split: ``val`` or ``test``; default test when the config has a test split, else val.
        conformal: fit a split-conformal correction on val and report the split's scores after it too:
            ``level`` / ``level_per_step`` shift every level (pooled over the horizon or per step),
            ``interval`` / ``interval_per_step`` widen the central intervals (CQR).
        fan_series, fan_origins: the windows drawn as fan charts (default: the best, median and worst
            series by nCRPS, at their last origin).
    """
    if conformal not in CONFORMAL_KINDS:
        raise ConfigError(f"unknown conformal '{conformal}'; choose one of {CONFORMAL_KINDS}")
    ensemble, cfg = load_ensemble(checkpoints, [*overrides, *([f"dataset.path={data}"] if data else [])])
    if data:
        cfg.dataset.source = "file"
    forecast_data = build_data(cfg)
    split = split or ("test" if "test" in forecast_data.splits else "val")
    if split not in forecast_data.splits:
        raise ConfigError(f"split '{split}' does not exist for this config; it has {sorted(forecast_data.splits)}")
    if conformal != "none" and split == "val":
        raise ConfigError("conformal calibration is fitted on val; evaluate another split (--split test)")
    levels = build_evaluation_levels(cfg)
    horizon = cfg.dataset.horizon
    batch_size = cfg.dataset.eval_batch_size

    windows = WindowBatches(forecast_data.panel, forecast_data.shape, forecast_data.splits[split])
    prediction, target, mask, series, origin = forecast_split(ensemble, windows, levels.levels, batch_size, split)
    finish = rearrange_quantiles if cfg.evaluation.rearrange else (lambda forecasts: forecasts)
    final = finish(prediction)  # what is scored and written
    model_scores, model_reliability = score_with_reliability(levels, final, target, mask)
    results: dict[str, Any] = {
        "checkpoints": [str(path) for path in checkpoints],
        "split": split,
        "windows": len(windows),
        "model": model_scores,
        "model_before_rearrangement": headline(score(levels, horizon, prediction, target, mask)),
        "per_step": per_step_scores(levels, final, target, mask),
        "reliability": model_reliability,
    }
    results["model"].update(paper_protocol_crps(ensemble, windows, cfg.evaluation.paper_protocol_levels, batch_size))
    results["per_series"] = {
        forecast_data.panel.series_ids[row]: headline(score(levels, horizon, final[series == row], target[series == row], mask[series == row]))
        for row in series.unique().tolist()
    }
    results["references"] = reference_scores(cfg, forecast_data, windows, levels)
    if conformal != "none":
        val = WindowBatches(forecast_data.panel, forecast_data.shape, forecast_data.splits["val"])
        val_forecasts = forecast_split(ensemble, val, levels.levels, batch_size, "val")[:3]  # prediction, target, mask
        results["conformal"] = {"kind": conformal, "before": headline(results["model"]),
                                **conformal_scores(conformal, levels, val_forecasts, prediction, target, mask, finish)}

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(results, indent=2))
    forecast_frame(forecast_data.panel, levels, final, target, mask, series, origin).to_parquet(out / "forecasts.parquet")
    if dashboard:
        write_dashboard(out / "dashboard.html", dashboard_inputs(
            results, ensemble, checkpoints, forecast_data.panel, windows, levels, final, target, mask, fan_series, fan_origins))
    return results


def conformal_scores(
    kind: str, levels: EvaluationLevels, val_forecasts: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, finish: Callable[[torch.Tensor], torch.Tensor],
) -> dict[str, Any]:
    """The scores ``after`` a conformal correction fitted on ``val_forecasts`` (raw prediction, target,
    mask) and applied to the split's raw ``prediction``; ``finish`` is the rearrangement (or identity)."""
    val_prediction, val_target, val_mask = val_forecasts
    horizon = prediction.shape[1]
    if kind.startswith("level"):  # every level moves: the whole forecast is rescored
        calibrated = finish(conformal_calibration(kind, levels, val_prediction, val_target, val_mask, prediction))
        after, after_reliability = score_with_reliability(levels, calibrated, target, mask)
        return {"after": headline(after), "reliability_after": after_reliability["share_below"]}
    # only the interval ends move (and may cross other levels): only the interval scores change
    calibrated = conformal_calibration(kind, levels, finish(val_prediction), val_target, val_mask, finish(prediction))
    after = headline(score(levels, horizon, calibrated, target, mask))
    return {"after": {name: value for name, value in after.items() if name.startswith(INTERVAL_METRICS)}}


def conformal_calibration(
    kind: str, levels: EvaluationLevels, val_prediction: torch.Tensor, val_target: torch.Tensor, val_mask: torch.Tensor,
    prediction: torch.Tensor,
) -> torch.Tensor:
    """``prediction`` [N, H, Q] corrected by a conformal ``kind`` fitted on the val forecasts.

    ``level*`` shifts every level; ``interval*`` (CQR) moves only the ends of each central interval,
    the other levels keep their forecasts (so the result is for interval scores, not a quantile
    curve: sorting it would mix the moved ends with other levels).
    """
    per_step = kind.endswith("_per_step")
    if kind.startswith("level"):
        return LevelConformal(levels.levels, per_step=per_step).fit(val_prediction, val_target, val_mask).apply(prediction)
    ends = torch.tensor([[levels.index(end) for end in interval_ends(c)] for c in levels.intervals])  # [I, 2]
    correction = IntervalConformal(levels.intervals, per_step=per_step)
    correction.fit(val_prediction[..., ends[:, 0]], val_prediction[..., ends[:, 1]], val_target, val_mask)
    lower, upper = correction.apply(prediction[..., ends[:, 0]], prediction[..., ends[:, 1]])  # [N, H, I] each
    calibrated = prediction.clone()
    calibrated[..., ends[:, 0]], calibrated[..., ends[:, 1]] = lower, upper
    return calibrated


def dashboard_inputs(
    results: dict[str, Any], ensemble: Ensemble, checkpoints: Sequence[str | Path], panel, windows: WindowBatches,
    levels: EvaluationLevels, final: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
    fan_series: Sequence[str], fan_origins: Sequence[str],
) -> DashboardInputs:
    """What the dashboard draws besides metrics.json: fan windows, the first member's sampler history
    and attention, and the first checkpoint's training log."""
    split_series, split_origin = windows.windows.series, windows.windows.origin
    per_series_ncrps = {name: scores["ncrps"] for name, scores in results["per_series"].items()}
    chosen = choose_fan_windows(panel, split_series, split_origin, per_series_ncrps, fan_series, fan_origins)
    horizon = windows.shape.horizon
    crps = [score(levels, horizon, final[i : i + 1], target[i : i + 1], mask[i : i + 1])["crps"] for i in chosen]
    fans = fan_windows(panel, windows, chosen, levels, final, crps, history_hours=2 * horizon)
    first = ensemble.members[0]
    label = f"{fans[0].series}, origin {fans[0].origin:%Y-%m-%d %H:%M}"
    return DashboardInputs(
        results=results,
        fans=fans,
        sampler_history=sampler_history(first),
        sampler_kind=type(first.level_sampler).__name__,
        attention=attention_snapshot(first, windows, chosen[0], label),
        training=training_log(checkpoints[0]),
    )


def paper_protocol_crps(ensemble: Ensemble, windows: WindowBatches, count: int, batch_size: int) -> dict[str, float]:
    """CRPS by the any-quantile paper's protocol (``count`` levels drawn per window); {} when count = 0."""
    if not count:
        return {}
    metric = RandomLevelCRPS(windows.shape.horizon)
    for batch in batches(windows, batch_size, "paper-protocol CRPS"):
        metric.update_batch(ensemble, batch, count)
    return {name: float(value) for name, value in metric.compute().items()}


def forecast_frame(
    panel, levels: EvaluationLevels, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
    series: torch.Tensor, origin: torch.Tensor,
) -> pd.DataFrame:
    """Long format (series, origin, step, level, value, actual) at the median, interval ends and calibration levels."""
    named = [0.5, *levels.extra_levels, *(end for c in levels.intervals for end in interval_ends(c))]
    columns = sorted({levels.index(q) for q in named})  # by position: 0.05 and (1 - 0.9) / 2 are one level
    wanted = levels.levels[columns].tolist()
    frame = long_forecast_frame(
        per_window={"series": np.asarray(panel.series_ids, dtype=object)[series.numpy()],
                    "origin": panel.timestamps[origin.numpy()].values},
        per_step={"actual": np.where(mask.numpy(), target.numpy(), np.nan)},  # NaN where unobserved
        levels=wanted,
        values=prediction[..., columns].numpy(),  # [N, H, L]
    )
    return frame[["series", "origin", "step", "level", "value", "actual"]]
