"""One self-contained HTML page of an evaluation: tables, charts (inline PNG) and a sortable per-series table.

The page opens offline: no external script, style sheet, font or image; the only script is the
table sorter below. Sections appear when their data exists (conformal, sampler, attention, training).
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from anyquantile.evaluation import figures
from anyquantile.evaluation.dashboard_data import AttentionSnapshot, FanWindow, TrainingLog
from anyquantile.experiment.files import write_text_atomic

HEADLINE_COLUMNS = (
    ("crps", "CRPS"),
    ("crps_paper_protocol", "CRPS (paper)"),
    ("ncrps", "nCRPS"),
    ("coverage_50", "cov 50"),
    ("coverage_80", "cov 80"),
    ("coverage_90", "cov 90"),
    ("coverage_95", "cov 95"),
    ("width_90", "width 90"),
    ("winkler_90", "Winkler 90"),
    ("calibration_error", "cal. error"),
    ("mae", "MAE"),
    ("mape", "MAPE %"),
    ("smape", "sMAPE %"),
    ("crossing_rate_raw", "crossing raw"),
    ("crossing_rate_final", "crossing final"),
)
SERIES_COLUMNS = (
    ("crps", "CRPS"),
    ("ncrps", "nCRPS"),
    ("coverage_90", "cov 90"),
    ("coverage_95", "cov 95"),
    ("calibration_error", "cal. error"),
    ("mae", "MAE"),
    ("mape", "MAPE %"),
    ("crossing_rate_raw", "crossing raw"),
    ("observed_targets", "targets"),
)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1180px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
th, td { padding: 3px 8px; border-bottom: 1px solid #e4e4e4; text-align: right; }
th:first-child, td:first-child { text-align: left; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[aria-sort=ascending]::after { content: " \\25B2"; }
table.sortable th[aria-sort=descending]::after { content: " \\25BC"; }
figure { margin: 0.8em 0; } figure img { max-width: 100%; }
figcaption, .note { font-size: 0.85em; color: #555; }
.fans { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 8px; }
code { background: #f3f3f3; padding: 1px 4px; }
"""

# Sorts a table with class "sortable" by the clicked column: numbers numerically, text otherwise.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var headers = table.querySelectorAll("thead th");
  headers.forEach(function (header, column) {
    header.addEventListener("click", function () {
      var ascending = header.getAttribute("aria-sort") !== "ascending";
      headers.forEach(function (other) { other.removeAttribute("aria-sort"); });
      header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[column].dataset.value, y = b.cells[column].dataset.value;
        var order = isNaN(x) || isNaN(y) ? x.localeCompare(y) : Number(x) - Number(y);
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


@dataclass
class DashboardInputs:
    results: dict[str, Any]  # the content of metrics.json
    fans: list[FanWindow] = field(default_factory=list)
    sampler_history: list[dict[str, Any]] = field(default_factory=list)
    sampler_kind: str = "uniform"
    attention: AttentionSnapshot | None = None
    training: TrainingLog | None = None


def write_dashboard(path: str | Path, inputs: DashboardInputs) -> Path:
    path = Path(path)
    write_text_atomic(path, render_dashboard(inputs))
    return path


def render_dashboard(inputs: DashboardInputs) -> str:
    results = inputs.results
    sections = [
        _header(results),
        _headline_section(results),
        _by_step_section(results),
        _calibration_section(results),
        _fan_section(inputs.fans),
        _series_section(results["per_series"]),
        _sampler_section(inputs.sampler_history, inputs.sampler_kind),
        _attention_section(inputs.attention),
        _training_section(inputs.training),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Evaluation: {_escape(results['split'])} split</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(section for section in sections if section)
        + f"\n<script>{SORT_SCRIPT}</script>\n</body></html>\n"
    )


# -- sections ------------------------------------------------------------------------------------


def _header(results: dict[str, Any]) -> str:
    checkpoints = "".join(f"<li><code>{_escape(path)}</code></li>" for path in results["checkpoints"])
    ensemble = (
        f"an ensemble of {len(results['checkpoints'])} checkpoints (quantiles averaged)"
        if len(results["checkpoints"]) > 1
        else "one checkpoint"
    )
    return (
        f"<h1>Any-quantile forecast evaluation — {_escape(results['split'])} split</h1>"
        f"<p>{results['windows']:,} windows, {int(results['model']['observed_targets']):,} observed targets; "
        f"{ensemble}:</p>"
        f"<ul>{checkpoints}</ul>"
    )


def _headline_section(results: dict[str, Any]) -> str:
    rows = {"model": results["model"], "model before rearrangement": results.get("model_before_rearrangement")}
    if "conformal" in results:
        rows[f"model after conformal ({results['conformal']['kind']})"] = results["conformal"]["after"]
    rows.update(results.get("references", {}))
    table = _table(
        [name for name, _ in HEADLINE_COLUMNS],
        [label for _, label in HEADLINE_COLUMNS],
        {name: row for name, row in rows.items() if row},
        table_id="headline",
    )
    return (
        '<h2 id="headline">Headline</h2>'
        + table
        + '<p class="note">CRPS = 2 × mean pinball loss over the dense level grid; CRPS (paper) = the any-quantile '
        "paper's protocol (levels drawn uniformly per window); nCRPS = summed CRPS ÷ summed |target| (scale-free). "
        "Coverage = share of observed targets inside the "
        "central interval; calibration error = mean |share below the q forecast − q| over the grid. References "
        "are scored on the very same windows and targets.</p>"
    )


def _by_step_section(results: dict[str, Any]) -> str:
    per_step = results["per_step"]
    references = {name: _steps(scores, "crps_step_") for name, scores in results.get("references", {}).items()}
    coverage = {
        c: [step[f"coverage_{c}"] for step in per_step] for c in ("50", "90", "95") if f"coverage_{c}" in per_step[0]
    }
    chart = figures.crps_by_step([step["crps"] for step in per_step], references, coverage)
    return '<h2 id="by-step">By horizon step</h2>' + _figure(
        "fig-crps-by-step", chart, "CRPS and interval coverage per horizon step."
    )


def _calibration_section(results: dict[str, Any]) -> str:
    reliability = results["reliability"]
    levels, below = reliability["levels"], reliability["share_below"]
    conformal = results.get("conformal", {})
    after = conformal.get("reliability_after")  # level corrections: the whole curve moved
    nominal, observed = central_coverage(levels, below)
    if after:
        coverage_after = central_coverage(levels, after)
    elif conformal:  # interval corrections: only the configured intervals moved
        names = sorted(
            (name for name in conformal["after"] if name.startswith("coverage_")), key=lambda n: int(n.split("_")[1])
        )
        coverage_after = ([int(n.split("_")[1]) / 100 for n in names], [conformal["after"][n] for n in names])
    else:
        coverage_after = None
    parts = [
        '<h2 id="calibration">Calibration</h2>',
        _figure(
            "fig-reliability",
            figures.reliability_diagram(levels, below, after),
            "Share of observed targets below each level's forecast (all evaluated levels).",
        ),
        '<div class="fans">',
        _figure(
            "fig-coverage",
            figures.coverage_vs_nominal(nominal, observed, coverage_after),
            "Central intervals [q, 1 − q] of the evaluated levels: observed share inside against 1 − 2q.",
        ),
        _figure(
            "fig-pit",
            figures.pit_histogram(_steps(results["model"], "pit_")),
            "Probability integral transform in tenths; a U shape means intervals too narrow, a hump too wide.",
        ),
        "</div>",
    ]
    if conformal:
        rows = {"before": conformal["before"], f"after ({conformal['kind']})": conformal["after"]}
        parts.append(
            "<h3>Conformal calibration (fitted on val)</h3>"
            + _table(
                [name for name, _ in HEADLINE_COLUMNS],
                [label for _, label in HEADLINE_COLUMNS],
                rows,
                table_id="conformal",
            )
        )
    return "\n".join(parts)


def _fan_section(fans: list[FanWindow]) -> str:
    if not fans:
        return ""
    charts = []
    for number, fan in enumerate(fans):
        title = f"{fan.series}, origin {fan.origin:%Y-%m-%d %H:%M} (window CRPS {fan.crps:.4g})"
        chart = figures.fan_chart(title, fan.history_time, fan.history, fan.time, fan.actual, fan.bands, fan.median)
        charts.append(_figure(f"fig-fan-{number + 1}", chart, _escape(title)))
    return (
        '<h2 id="fans">Fan charts</h2><p class="note">Central intervals and median over the horizon, '
        "actuals dashed, history solid. By default the best, median and worst series by nCRPS at their last "
        "origin; choose with <code>--fan-series</code> and <code>--fan-origins</code>.</p>"
        '<div class="fans">' + "".join(charts) + "</div>"
    )


def _series_section(per_series: dict[str, dict[str, float]]) -> str:
    return '<h2 id="series">Per series</h2><p class="note">Click a column to sort.</p>' + _table(
        [name for name, _ in SERIES_COLUMNS],
        [label for _, label in SERIES_COLUMNS],
        per_series,
        table_id="per-series",
        sortable=True,
        first="series",
    )


def _sampler_section(history: list[dict[str, Any]], kind: str) -> str:
    title = '<h2 id="sampler">Quantile-level sampler</h2>'
    if not history:
        return (
            title
            + f'<p class="note">The checkpoint\'s level sampler ({_escape(kind)}) keeps no learnt state to show.</p>'
        )
    probabilities = np.array([snapshot["probabilities"] for snapshot in history])  # [snapshots, bins]
    chart = figures.sampler_evolution(
        [s["step"] for s in history], history[-1]["bin_centres"], probabilities, history[-1]["weakness"]
    )
    return title + _figure(
        "fig-sampler", chart, f"Adaptive sampler, {len(history)} snapshots (one per training epoch end)."
    )


def _attention_section(snapshot: AttentionSnapshot | None) -> str:
    if snapshot is None:
        return ""
    betas = {
        f"block {b + 1}": {f"head {h + 1}": value for h, value in enumerate(values)}
        for b, values in enumerate(snapshot.betas)
    }
    heads = [f"head {h + 1}" for h in range(max((len(v) for v in snapshot.betas), default=0))]
    beta_table = (
        _table(heads, heads, betas, table_id="locality-bias") if heads else '<p class="note">No locality bias.</p>'
    )
    return (
        '<h2 id="attention">Attention</h2>'
        + _figure(
            "fig-attention-maps",
            figures.attention_maps(snapshot.maps, snapshot.history_tokens),
            f"Attention weights at the median level, {_escape(snapshot.window)}.",
        )
        + _figure(
            "fig-gates",
            figures.gate_profiles(snapshot.gates, snapshot.history_tokens),
            f"Gate α per token (share given to the local heads), mean over {snapshot.gate_windows} windows.",
        )
        + "<h3>Learned locality bias β per head</h3>"
        + beta_table
    )


def _training_section(log: TrainingLog | None) -> str:
    title = '<h2 id="training">Training</h2>'
    if log is None:
        return title + '<p class="note">No TensorBoard log beside the checkpoint.</p>'
    command = f"<p>Full curves: <code>tensorboard --logdir {_escape(log.folder)}</code></p>"
    if not log.curves:
        return title + command
    return title + command + _figure("fig-training", figures.training_curves(log.curves), "Logged during training.")


# -- helpers -------------------------------------------------------------------------------------


def central_coverage(levels: Sequence[float], share_below: Sequence[float]) -> tuple[list[float], list[float]]:
    """Nominal (1 - 2q) and observed coverage of [f_q, f_(1-q)) for every pair of levels q < 0.5 and 1 - q.

    The observed share inside is share_below(1 - q) - share_below(q): targets at or above the lower
    and below the upper forecast.
    """
    position = {round(q, 9): i for i, q in enumerate(levels)}
    nominal, observed = [], []
    for q in sorted((q for q in levels if q < 0.5), reverse=True):
        upper = position.get(round(1 - q, 9))
        if upper is not None:
            nominal.append(1 - 2 * q)
            observed.append(share_below[upper] - share_below[position[round(q, 9)]])
    return nominal, observed


def _steps(scores: dict[str, float], prefix: str) -> list[float]:
    """Values of ``<prefix>1``, ``<prefix>2``, ... in order."""
    count = sum(1 for name in scores if name.startswith(prefix))
    return [scores[f"{prefix}{i}"] for i in range(1, count + 1)]


def _figure(figure_id: str, png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure id="{figure_id}"><img alt="{_escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _table(
    columns: Sequence[str],
    labels: Sequence[str],
    rows: dict[str, dict[str, float]],
    table_id: str,
    sortable: bool = False,
    first: str = "",
) -> str:
    head = "".join(f"<th>{_escape(label)}</th>" for label in [first, *labels])
    body = []
    for name, values in rows.items():
        cells = [f'<td data-value="{_escape(name)}">{_escape(name)}</td>']
        for column in columns:
            value = values.get(column)
            shown = "" if value is None else _number(value)
            cells.append(f'<td data-value="{"" if value is None else repr(float(value))}">{shown}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    css = ' class="sortable"' if sortable else ""
    return f'<table id="{table_id}"{css}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.2f}"
    return f"{value:.4f}"


def _escape(text: Any) -> str:
    return html.escape(str(text), quote=True)
