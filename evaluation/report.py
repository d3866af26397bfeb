"""Score trained checkpoints on a split and write the report: ``metrics.json`` (overall, per step, per
series, the raw forecast's scores, conformal before/after, the references), ``forecasts.parquet``
and ``dashboard.html``.

``evaluate(...)`` is what ``evaluate.py`` calls. Every score comes from the one scoring path
(``model/scoring.py``), on raw forecasts; the final (rearranged) forecast is what is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from anyquantile.dataset.long_format import long_forecast_frame
from anyquantile.dataset.windows import WindowBatches
from anyquantile.evaluation.dashboard import DashboardInputs, write_dashboard
from anyquantile.evaluation.dashboard_data import (
    attention_snapshot,
    choose_fan_windows,
    fan_windows,
    sampler_history,
    training_log,
)
from anyquantile.evaluation.ensemble import SplitForecasts, batches, forecast_split, load_ensemble
from anyquantile.evaluation.references import reference_scores
from anyquantile.experiment.builders import build_data, build_evaluation_levels
from anyquantile.experiment.config import config_to_dict, merge_config
from anyquantile.experiment.errors import UsageError
from anyquantile.experiment.files import atomic_path, write_text_atomic
from anyquantile.model.ensemble import Ensemble
from anyquantile.model.metrics import RandomLevelCRPS, headline
from anyquantile.model.scoring import final_forecast, score_forecasts
from anyquantile.modules.conformal import ConformalKind, IntervalConformal, LevelConformal
from anyquantile.modules.options import choose
from anyquantile.modules.quantile_levels import EvaluationLevels, interval_ends

INTERVAL_METRICS = ("coverage_", "width_", "winkler_")  # what an interval (CQR) correction changes


def evaluate(
    checkpoints: Sequence[str | Path],
    out_dir: str | Path,
    data: str | None = None,
    split: str | None = None,
    conformal: ConformalKind | str = ConformalKind.none,
    overrides: Sequence[str] = (),
    fan_series: Sequence[str] = (),
    fan_origins: Sequence[str] = (),
    dashboard: bool = True,
    loaded: tuple[Ensemble, DictConfig] | None = None,
) -> dict[str, Any]:
    """Score the (ensemble of) checkpoint(s) on ``split``; write ``metrics.json``, ``forecasts.parquet``
    and ``dashboard.html``.

    Args:
        data: a data file replacing the config's ``dataset.path``.
        split: ``val`` or ``test``; default test when the config has a test split, else val.
        conformal: fit a split-conformal correction on val and report the split's scores after it too
            (:class:`ConformalKind`).
        fan_series, fan_origins: the windows drawn as fan charts (default: the best, median and worst
            series by nCRPS, at their last origin).
        loaded: an ensemble already loaded (a saved model's members) and its config, in place of loading
            ``checkpoints`` (which then only name it in the results).

    With a ``level*`` conformal kind, ``results["conformal"]["calibration"]`` holds the fitted correction
    (``LevelConformal.state()``: what a saved model keeps), when every correction is finite.
    """
    try:
        conformal = choose(ConformalKind, conformal, "conformal")
    except ValueError as error:
        raise UsageError(str(error)) from None
    data_overrides = ["dataset.source=file", f"dataset.path={data}"] if data else []
    if loaded is None:
        ensemble, cfg = load_ensemble(checkpoints, [*overrides, *data_overrides])
    else:
        ensemble, stored = loaded
        cfg = merge_config(config_to_dict(stored), [*overrides, *data_overrides], source=f"{checkpoints[0]}")
    # a --data file may hold some of the model's series only: its holiday map is not checked whole
    forecast_data = build_data(cfg, strict_holiday_map=data is None)
    split = split or ("test" if "test" in forecast_data.splits else "val")
    if split not in forecast_data.splits:
        raise UsageError(f"split '{split}' does not exist for this config; it has {sorted(forecast_data.splits)}")
    if conformal != ConformalKind.none and split == "val":
        raise UsageError("conformal calibration is fitted on val; evaluate another split (--split test)")
    refits = OmegaConf.to_object(cfg.dataset).split_boundaries().refits  # trained on the validation months
    if conformal != ConformalKind.none and refits:
        raise UsageError(
            "this model trained on the validation months (a refit: dataset.train_end after dataset.val_start): "
            "a conformal correction fitted there would be fitted in-sample; use the model chosen on val"
        )
    levels = build_evaluation_levels(cfg)
    rearrange = cfg.evaluation.rearrange
    batch_size = cfg.dataset.eval_batch_size

    windows = WindowBatches(forecast_data.panel, forecast_data.shape, forecast_data.splits[split])
    raw = forecast_split(ensemble, windows, levels.levels, batch_size, split)
    scores = score_forecasts(levels, raw.prediction, raw.target, raw.mask, rearrange)
    final = final_forecast(raw.prediction, rearrange)  # what is written and drawn
    results: dict[str, Any] = {
        "checkpoints": [str(path) for path in checkpoints],
        "split": split,
        "windows": len(windows),
        "in_sample": refits and split == "val",  # the scores are of months the model trained on
        "model": scores.final,
    }
    if scores.raw is not None:
        results["model_before_rearrangement"] = headline(scores.raw)
    results["per_step"] = per_step_scores(levels, raw, rearrange)
    results["reliability"] = {"levels": levels.levels.tolist(), "share_below": scores.share_below}
    results["model"].update(paper_protocol_crps(ensemble, windows, cfg.evaluation.paper_protocol_levels, batch_size))
    results["per_series"] = {
        forecast_data.panel.series_ids[row]: per_series_scores(levels, raw, row, rearrange)
        for row in raw.series.unique().tolist()
    }
    results["references"] = reference_scores(cfg, forecast_data, windows, levels)
    if conformal != ConformalKind.none:
        val = WindowBatches(forecast_data.panel, forecast_data.shape, forecast_data.splits["val"])
        val_forecasts = forecast_split(ensemble, val, levels.levels, batch_size, "val")
        results["conformal"] = {
            "kind": str(conformal),
            "before": headline(results["model"]),
            **conformal_scores(conformal, levels, val_forecasts, raw, rearrange),
        }

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "metrics.json", json.dumps(results, indent=2))
    with atomic_path(out / "forecasts.parquet") as staging:
        forecast_frame(forecast_data.panel, levels, final, raw).to_parquet(staging)
    if dashboard:
        write_dashboard(
            out / "dashboard.html",
            dashboard_inputs(
                results,
                ensemble,
                checkpoints if loaded is None else [],  # a saved model's folder holds no training log
                forecast_data.panel,
                windows,
                levels,
                final,
                raw,
                fan_series,
                fan_origins,
            ),
        )
    return results


def per_step_scores(levels: EvaluationLevels, raw: SplitForecasts, rearrange: bool) -> list[dict[str, float]]:
    """The headline scores of each horizon step on its own (step 1 first)."""
    steps = range(raw.prediction.shape[1])
    return [
        headline(
            score_forecasts(
                levels, raw.prediction[:, h : h + 1], raw.target[:, h : h + 1], raw.mask[:, h : h + 1], rearrange
            ).final
        )
        for h in steps
    ]


def per_series_scores(levels: EvaluationLevels, raw: SplitForecasts, row: int, rearrange: bool) -> dict[str, float]:
    """The headline scores of one series' windows (``row`` of the panel)."""
    own = raw.series == row
    return headline(score_forecasts(levels, raw.prediction[own], raw.target[own], raw.mask[own], rearrange).final)


def conformal_scores(
    kind: ConformalKind, levels: EvaluationLevels, val: SplitForecasts, raw: SplitForecasts, rearrange: bool
) -> dict[str, Any]:
    """The scores ``after`` a conformal correction fitted on the val forecasts and applied to the split's."""
    if kind in (ConformalKind.level, ConformalKind.level_per_step):  # every level moves: the whole forecast is rescored
        correction = level_conformal(kind, levels, val)
        after = score_forecasts(levels, correction.apply(raw.prediction), raw.target, raw.mask, rearrange)
        scores = {"after": headline(after.final), "reliability_after": after.share_below}
        if bool(torch.isfinite(correction.delta).all()):  # an infinite correction cannot be saved with a model
            scores["calibration"] = correction.state()
        return scores
    # Only the interval ends move (and may cross other levels), so only the interval scores are kept,
    # of the final forecasts with their ends corrected, not rearranged again.
    finished = SplitForecasts(final_forecast(val.prediction, rearrange), val.target, val.mask, val.series, val.origin)
    calibrated = conformal_calibration(kind, levels, finished, final_forecast(raw.prediction, rearrange))
    after = headline(score_forecasts(levels, calibrated, raw.target, raw.mask, rearrange=False).final)
    return {"after": {name: value for name, value in after.items() if name.startswith(INTERVAL_METRICS)}}


def conformal_calibration(
    kind: ConformalKind, levels: EvaluationLevels, val: SplitForecasts, prediction: torch.Tensor
) -> torch.Tensor:
    """``prediction`` [N, H, Q] corrected by a conformal ``kind`` fitted on the ``val`` forecasts.

    ``level*`` shifts every level; ``interval*`` (CQR) moves only the ends of each central interval,
    the other levels keep their forecasts (so the result is for interval scores, not a quantile
    curve: sorting it would mix the moved ends with other levels).
    """
    per_step = kind in (ConformalKind.level_per_step, ConformalKind.interval_per_step)
    if kind in (ConformalKind.level, ConformalKind.level_per_step):
        return level_conformal(kind, levels, val).apply(prediction)
    ends = torch.tensor([[levels.index(end) for end in interval_ends(c)] for c in levels.intervals])  # [I, 2]
    correction = IntervalConformal(levels.intervals, per_step=per_step)
    correction.fit(val.prediction[..., ends[:, 0]], val.prediction[..., ends[:, 1]], val.target, val.mask)
    lower, upper = correction.apply(prediction[..., ends[:, 0]], prediction[..., ends[:, 1]])  # [N, H, I] each
    calibrated = prediction.clone()
    calibrated[..., ends[:, 0]], calibrated[..., ends[:, 1]] = lower, upper
    return calibrated


def level_conformal(kind: ConformalKind, levels: EvaluationLevels, val: SplitForecasts) -> LevelConformal:
    """The per-level correction of a ``level*`` kind, fitted on the ``val`` forecasts at ``levels``."""
    per_step = kind == ConformalKind.level_per_step
    return LevelConformal(levels.levels, per_step=per_step).fit(val.prediction, val.target, val.mask)


def dashboard_inputs(
    results: dict[str, Any],
    ensemble: Ensemble,
    checkpoints: Sequence[str | Path],
    panel,
    windows: WindowBatches,
    levels: EvaluationLevels,
    final: torch.Tensor,
    raw: SplitForecasts,
    fan_series: Sequence[str],
    fan_origins: Sequence[str],
) -> DashboardInputs:
    """What the dashboard draws besides metrics.json: fan windows, the first member's sampler history
    and attention, and the first checkpoint's training log (none without ``checkpoints``)."""
    split_series, split_origin = windows.windows.series, windows.windows.origin
    per_series_ncrps = {name: scores["ncrps"] for name, scores in results["per_series"].items()}
    chosen = choose_fan_windows(panel, split_series, split_origin, per_series_ncrps, fan_series, fan_origins)
    crps = [
        score_forecasts(levels, final[i : i + 1], raw.target[i : i + 1], raw.mask[i : i + 1], rearrange=False).final[
            "crps"
        ]
        for i in chosen
    ]
    fans = fan_windows(panel, windows, chosen, levels, final, crps, history_hours=2 * windows.shape.horizon)
    first = ensemble.members[0]
    label = f"{fans[0].series}, origin {fans[0].origin:%Y-%m-%d %H:%M}"
    return DashboardInputs(
        results=results,
        fans=fans,
        sampler_history=sampler_history(first),
        sampler_kind=type(first.level_sampler).__name__,
        attention=attention_snapshot(first, windows, chosen[0], label),
        training=training_log(checkpoints[0]) if checkpoints else None,
    )


def paper_protocol_crps(ensemble: Ensemble, windows: WindowBatches, count: int, batch_size: int) -> dict[str, float]:
    """CRPS by the any-quantile paper's protocol (``count`` levels drawn per window); {} when count = 0."""
    if not count:
        return {}
    metric = RandomLevelCRPS(windows.shape.horizon)
    for batch in batches(windows, batch_size, "paper-protocol CRPS"):
        metric.update_batch(ensemble, batch, count)
    return {name: float(value) for name, value in metric.compute().items()}


def forecast_frame(panel, levels: EvaluationLevels, final: torch.Tensor, raw: SplitForecasts) -> pd.DataFrame:
    """Long format (series, origin, step, level, value, actual) at the median, interval ends and calibration levels."""
    named = [0.5, *levels.extra_levels, *(end for c in levels.intervals for end in interval_ends(c))]
    columns = sorted({levels.index(q) for q in named})  # by position: 0.05 and (1 - 0.9) / 2 are one level
    wanted = levels.levels[columns].tolist()
    frame = long_forecast_frame(
        per_window={
            "series": np.asarray(panel.series_ids, dtype=object)[raw.series.numpy()],
            "origin": panel.timestamps[raw.origin.numpy()].values,
        },
        per_step={"actual": np.where(raw.mask.numpy(), raw.target.numpy(), np.nan)},  # NaN where unobserved
        levels=wanted,
        values=final[..., columns].numpy(),  # [N, H, L]
    )
    return frame[["series", "origin", "step", "level", "value", "actual"]]
