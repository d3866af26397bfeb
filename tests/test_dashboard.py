"""dashboard.html: written by evaluate.py, self-contained, every figure present, and it opens cleanly in
headless Chromium (Debian's ``chromium``; .ci/run installs it, elsewhere the browser test is skipped
with the reason)."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from anyquantile.dataset.windows import WindowBatches
from anyquantile.evaluation.dashboard import central_coverage
from anyquantile.evaluation.dashboard_data import attention_snapshot, choose_fan_windows, training_log
from anyquantile.evaluation.ensemble import load_ensemble
from anyquantile.evaluation.report import evaluate
from anyquantile.experiment.builders import build_data, build_forecaster
from anyquantile.experiment.errors import UsageError
from anyquantile.training.train import train

ADAPTIVE = (
    "model.architecture=adaptive_attention",
    "model.conditioning=out",
    "model.attention.d_model=16",
    "model.attention.num_heads=2",
    "sampler=adaptive",
    "sampler.levels_per_sample=4",
)
# 40 steps of 256 windows: past two epoch ends, so the sampler has history to draw
SHORT_RUN = ("trainer.max_steps=40", "trainer.val_every_n_steps=20", "dataset.batch_size=256")
ALWAYS = ("fig-crps-by-step", "fig-reliability", "fig-coverage", "fig-pit", "fig-fan-1", "fig-training")
WITH_ATTENTION = ("fig-sampler", "fig-attention-maps", "fig-gates")


@pytest.fixture(scope="module")
def adaptive_run(tmp_path_factory, tiny_config_in):
    summary = train(tiny_config_in(tmp_path_factory.mktemp("runs"), *ADAPTIVE, *SHORT_RUN))
    out = tmp_path_factory.mktemp("evaluation")
    results = evaluate([summary["checkpoint"]], out, conformal="level")
    return summary["checkpoint"], results, out / "dashboard.html"


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, tiny_config_in):
    summary = train(tiny_config_in(tmp_path_factory.mktemp("runs"), *SHORT_RUN))
    out = tmp_path_factory.mktemp("evaluation")
    results = evaluate([summary["checkpoint"]], out, conformal="interval")
    return summary["checkpoint"], results, out / "dashboard.html"


def _figure_ids(page: str) -> set[str]:
    return set(re.findall(r'<figure id="([^"]+)"><img alt="[^"]*" src="data:image/png;base64,', page))


def test_dashboard_is_self_contained_with_every_figure(adaptive_run):
    _, results, path = adaptive_run
    page = path.read_text()
    assert _figure_ids(page) >= set(ALWAYS + WITH_ATTENTION)
    # nothing is fetched: no external script, style sheet, link or image
    assert not re.search(r'(src|href)="(?!data:)', page) and "<link" not in page and "@import" not in page
    assert "http://" not in page and "https://" not in page
    # the per-series table has one row per series, the headline the model, references and conformal
    series_table = page[page.index('<table id="per-series"') :]
    series_table = series_table[: series_table.index("</table>")]
    assert series_table.count("<tr>") == 1 + len(results["per_series"])
    for row in ("model", "model before rearrangement", "model after conformal (level)", "seasonal_naive_168", "oracle"):
        assert f">{row}</td>" in page


def test_base_model_dashboard_says_what_it_cannot_show(base_run):
    _, results, path = base_run
    page = path.read_text()
    assert _figure_ids(page) >= set(ALWAYS)
    assert not _figure_ids(page) & set(WITH_ATTENTION)
    assert "keeps no learnt state" in page and 'id="attention"' not in page
    # interval (CQR) conformal: only interval scores are reported after it
    after = results["conformal"]["after"]
    assert after and all(name.startswith(("coverage_", "width_", "winkler_")) for name in after)


def test_central_coverage_by_hand():
    levels = [0.05, 0.25, 0.5, 0.75, 0.95, 0.99]  # 0.99 has no partner 0.01: left out
    share_below = [0.10, 0.30, 0.50, 0.70, 0.90, 0.98]
    nominal, observed = central_coverage(levels, share_below)
    assert nominal == pytest.approx([0.5, 0.9])
    assert observed == pytest.approx([0.70 - 0.30, 0.90 - 0.10])


def test_reliability_and_per_step_scores_agree_with_the_headline(adaptive_run):
    _, results, path = adaptive_run
    written = json.loads(path.with_name("metrics.json").read_text())
    reliability = written["reliability"]
    for q in (0.01, 0.05, 0.95, 0.99):
        at = int(np.argmin(np.abs(np.array(reliability["levels"]) - q)))
        assert reliability["share_below"][at] == pytest.approx(written["model"][f"below_{q:g}"], abs=1e-12)
    per_step = written["per_step"]
    assert len(per_step) == 48
    counts = np.array([step["observed_targets"] for step in per_step])
    crps = np.array([step["crps"] for step in per_step])
    assert float(crps @ counts / counts.sum()) == pytest.approx(written["model"]["crps"], rel=1e-9)
    for h in (0, 47):
        assert per_step[h]["crps"] == pytest.approx(written["model"][f"crps_step_{h + 1}"], rel=1e-12)


def test_sampler_history_and_attention_come_from_the_checkpoint(adaptive_run):
    checkpoint, _, _ = adaptive_run
    ensemble, cfg = load_ensemble([checkpoint])
    model = ensemble.members[0]
    assert len(model.level_sampler.history) >= 2
    data = build_data(cfg)
    windows = WindowBatches(data.panel, data.shape, data.splits["test"])
    snapshot = attention_snapshot(model, windows, map_window=3, label="window 3", gate_windows=8)
    L = (cfg.dataset.history_length + cfg.dataset.horizon) // cfg.model.attention.patch_length
    assert [m.shape for m in snapshot.maps] == [(2, L, L)] * cfg.model.attention.num_blocks
    for weights in snapshot.maps:  # each attending token's weights are a distribution
        np.testing.assert_allclose(weights.sum(axis=-1), 1.0, atol=1e-5)
    assert all(((g >= 0) & (g <= 1)).all() and g.shape == (2, L) for g in snapshot.gates)
    assert snapshot.gate_windows == 8
    log = training_log(checkpoint)
    assert "train/loss" in log.curves and len(log.curves["val/crps"][0]) == 2  # validated at steps 20 and 40


def test_no_attention_panels_without_attention_blocks(tiny_config):
    cfg = tiny_config(*ADAPTIVE, "model.attention.num_blocks=0")
    data = build_data(cfg)
    windows = WindowBatches(data.panel, data.shape, data.splits["test"])
    assert attention_snapshot(build_forecaster(cfg), windows, map_window=0, label="w") is None


def test_fan_windows_default_to_best_median_worst_and_check_what_is_asked(adaptive_run):
    checkpoint, _, _ = adaptive_run
    _, cfg = load_ensemble([checkpoint])
    data = build_data(cfg)
    split = data.splits["test"]
    names = data.panel.series_ids
    score = {names[0]: 0.3, names[1]: 0.1}
    chosen = choose_fan_windows(data.panel, split.series, split.origin, score)
    # best (series 1) then worst (series 0); each at its last origin in the split
    assert [int(split.series[i]) for i in chosen] == [1, 0]
    for i in chosen:
        assert split.origin[i] == split.origin[split.series == split.series[i]].max()
    first_origin = data.panel.timestamps[split.origin[split.series == 0].min()]
    chosen = choose_fan_windows(data.panel, split.series, split.origin, score, [names[0]], [str(first_origin)])
    assert len(chosen) == 1 and data.panel.timestamps[split.origin[chosen[0]]] == first_origin
    with pytest.raises(UsageError, match="no windows of series 'nowhere'"):
        choose_fan_windows(data.panel, split.series, split.origin, score, ["nowhere"])
    with pytest.raises(UsageError, match="origins run from"):
        choose_fan_windows(data.panel, split.series, split.origin, score, [names[0]], ["1999-01-01"])


# --------------------------------------------------------------------------------------------
# In a real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("headless Chromium not found: install Debian's chromium (apt-get install chromium; .ci/run does)")
    playwright_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright (in requirements.txt) drives Chromium"
    )
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def test_dashboard_opens_in_headless_chromium_without_errors(adaptive_run, browser, tmp_path):
    _, results, path = adaptive_run
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    messages, requests = [], []
    page.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: messages.append(f"page error: {error}"))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(path.as_uri(), wait_until="load")
    assert messages == []
    assert all(url == path.as_uri() or url.startswith("data:") for url in requests), requests

    figures = page.evaluate("""() => Array.from(document.querySelectorAll("figure")).map(f => {
        const image = f.querySelector("img");
        return [f.id, image.complete, image.naturalWidth, image.naturalHeight];
    })""")
    assert {figure_id for figure_id, *_ in figures} >= set(ALWAYS + WITH_ATTENTION)
    for figure_id, complete, width, height in figures:
        assert complete and width > 200 and height > 100, figure_id

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    pixels = np.asarray(_read_png(shot), dtype=np.float64)
    assert pixels.shape[0] > 2000  # the whole page, not a viewport
    not_white = (pixels[..., :3] < 245).any(axis=-1).mean()
    assert 0.05 < not_white < 0.9 and pixels.std() > 20  # drawn on, neither blank nor one colour

    # the per-series table sorts by CRPS on a click, then reverses
    def crps_column() -> list[float]:
        return [
            float(v)
            for v in page.eval_on_selector_all(
                "#per-series tbody tr", "rows => rows.map(r => r.cells[1].dataset.value)"
            )
        ]

    page.click("#per-series thead th:nth-child(2)")
    ascending = crps_column()
    assert ascending == sorted(ascending) and len(ascending) == len(results["per_series"])
    page.click("#per-series thead th:nth-child(2)")
    assert crps_column() == sorted(ascending, reverse=True)
    assert messages == []
    page.close()


def _read_png(path) -> np.ndarray:
    from matplotlib.image import imread

    return (imread(path) * 255).astype(np.uint8)
