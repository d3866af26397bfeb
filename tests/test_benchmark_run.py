"""benchmarks/run.py end to end on a tiny synthetic budget, and the neuralforecast baselines' forecasting path."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from anyquantile.baselines.neuralforecast_models import NeuralForecastBaseline
from anyquantile.experiment.builders import build_data, build_evaluation_levels
from benchmarks import run as benchmark

# The step cap ends every trained contender; the time budget is far above what 6 steps take even on a
# busy machine, so that it never binds (a test must not depend on the machine's speed).
BUDGET_MINUTES, STEPS = "30", "6"


@pytest.fixture(scope="module")
def tiny_benchmark(tmp_path_factory, tiny_overrides):
    out = tmp_path_factory.mktemp("benchmark")
    code = benchmark.main(
        [
            "--data",
            "synthetic",
            "--budget-minutes",
            BUDGET_MINUTES,
            "--max-steps",
            STEPS,
            "--json",
            str(out / "records.json"),
            *tiny_overrides,
            f"output_dir={out / 'runs'}",
        ]
    )
    assert code == 0
    return json.loads((out / "records.json").read_text())


def test_every_contender_gives_finite_metrics_on_the_same_targets(tiny_benchmark, tiny_overrides):
    names = [record["variant"] for record in tiny_benchmark]
    bench, base, attention = benchmark.build_bench("synthetic", 1, 6, tiny_overrides)
    assert names == [c.name for c in benchmark.contenders(base, attention, synthetic=True)]
    observed = {record["model"]["observed_targets"] for record in tiny_benchmark}
    assert observed == {float(bench.windows.all().target_mask.sum())}
    for record in tiny_benchmark:
        for name in (
            "crps",
            "coverage_90",
            "coverage_95",
            "calibration_error",
            "mape",
            "crossing_rate_raw",
            "crossing_rate_final",
        ):
            assert math.isfinite(record["model"][name]), (record["variant"], name)
        assert record["model"]["crossing_rate_final"] == 0.0  # every contender's forecast is rearranged
        trained = record["train_seconds"] is not None
        assert trained == (record["variant"] not in ("seasonal_naive_24", "seasonal_naive_168", "oracle"))
        if trained:
            assert record["train_steps"] == int(STEPS), record["variant"]
        # our models are also scored by the paper's protocol (levels drawn per window)
        assert ("crps_paper_protocol" in record["model"]) == record["variant"].startswith(("nbeatsaq", "adaptive"))


def test_the_oracle_beats_every_contender(tiny_benchmark):
    crps = {record["variant"]: record["model"]["crps"] for record in tiny_benchmark}
    oracle = crps.pop("oracle")
    assert all(oracle < value for value in crps.values()), crps


def test_bad_arguments_are_refused(capsys, tiny_overrides):
    assert benchmark.main(["--data", "nowhere.csv"]) == 2
    assert "neither synthetic, mhl nor an existing file" in capsys.readouterr().err
    assert benchmark.main(["--only", "nbeats_typo", *tiny_overrides]) == 2
    assert "unknown contender" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, tiny_config_in):
    cfg = tiny_config_in(tmp_path_factory.mktemp("runs"))
    return cfg, build_data(cfg), build_evaluation_levels(cfg)


@pytest.mark.parametrize("loss", ["mq", "iq"])
def test_window_forecasts_equal_neuralforecast_predict_on_each_history(tiny_data, loss):
    """Our one-dataset-for-all-windows path gives what NeuralForecast.predict(df=history) gives."""
    cfg, data, levels = tiny_data
    T, H = cfg.dataset.history_length, cfg.dataset.horizon
    wanted = (0.05, 0.5, 0.95) if loss == "mq" else tuple(levels.levels.tolist())
    baseline = NeuralForecastBaseline("NBEATS", loss, T, H, levels=wanted, max_steps=5)
    baseline.fit(data.panel, data.panel.hour_index(cfg.dataset.val_start))
    test = data.splits["test"]
    pick = np.array([0, len(test) - 1])
    series, origin = test.series[pick], test.origin[pick]
    asked = torch.tensor(wanted if loss == "mq" else (0.5,), dtype=torch.float64)
    ours = baseline(series, origin, H, asked)  # [2, H, Q]

    histories = pd.concat(
        [
            pd.DataFrame(
                {
                    "unique_id": f"window{i}",
                    "ds": data.panel.timestamps[o - T : o],
                    "y": data.panel.values[s, o - T : o].astype(np.float64),
                }
            )
            for i, (s, o) in enumerate(zip(series, origin))
        ]
    )
    assert histories["y"].notna().all()  # synthetic histories have no gaps: the two inputs are the same
    expected = baseline.neuralforecast.predict(df=histories)
    columns = [c for c in expected.columns if c.startswith("NBEATS")]
    if loss == "iq":
        columns = ["NBEATS_ql0.5"] if "NBEATS_ql0.5" in expected.columns else columns[:1]
    values = expected[columns].to_numpy().reshape(2, H, len(columns))
    np.testing.assert_allclose(ours.numpy(), values, rtol=1e-5, atol=1e-3)


def test_mqloss_forecasts_only_its_trained_levels(tiny_data):
    cfg, data, _ = tiny_data
    baseline = NeuralForecastBaseline(
        "NHITS", "mq", cfg.dataset.history_length, cfg.dataset.horizon, levels=(0.1, 0.5, 0.9), max_steps=2
    )
    baseline.fit(data.panel, data.panel.hour_index(cfg.dataset.val_start))
    test = data.splits["test"]
    with pytest.raises(ValueError, match="forecasts only those"):
        baseline(test.series[:1], test.origin[:1], cfg.dataset.horizon, torch.tensor([0.2, 0.5, 0.8]))
    with pytest.raises(ValueError, match="forecasts only those"):
        baseline(test.series[:1], test.origin[:1], cfg.dataset.horizon, torch.tensor([0.5]))
    with pytest.raises(ValueError, match="unknown loss"):
        NeuralForecastBaseline("NBEATS", "crps", 168, 48, levels=(0.5,))


def test_a_results_file_from_before_the_crossing_rates_were_named_still_makes_a_table():
    old = {
        "variant": "seasonal_naive_168",
        "seed": 0,
        "train_seconds": None,
        "train_samples_per_second": None,
        "eval_seconds": 0.1,
        "model": {
            "crps": 341.42,
            "coverage_90": 0.88,
            "coverage_95": 0.93,
            "calibration_error": 0.017,
            "mape": 4.47,
            "crossing_rate": 0.25,
        },
    }
    (contender,) = [c for c in benchmark.contenders("a", "b", synthetic=False) if c.name == "seasonal_naive_168"]
    row = benchmark.report([old], [contender]).splitlines()[-1]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[0] == "seasonal_naive_168" and cells[3] == "341.42"
    assert cells[9:11] == ["0.250", "–"]  # the old crossing_rate was the raw one; the final one was not recorded


def test_refit_bench_trains_every_contender_up_to_the_test_start(tmp_path, capsys):
    hours = pd.date_range("2017-01-01", "2017-12-31 23:00", freq="h")
    frame = pd.concat(
        pd.DataFrame({"unique_id": country, "ds": hours, "y": 1000.0 + np.arange(len(hours)) % 24})
        for country in ("DE", "FR")
    )
    path = tmp_path / "mhl-like.csv"
    frame.to_csv(path, index=False)
    bench, _, _ = benchmark.build_bench(str(path), 0, 1, [], refit=True)
    assert bench.cfg.dataset.train_end == benchmark.MHL_TEST_START == bench.cfg.dataset.test_start
    assert bench.cfg.trainer.test_checkpoint == "last"
    assert bench.train_end == bench.data.panel.hour_index(benchmark.MHL_TEST_START)  # neuralforecast's data too
    plain, _, _ = benchmark.build_bench(str(path), 0, 1, [])
    assert plain.train_end == plain.data.panel.hour_index(plain.cfg.dataset.val_start)
    assert benchmark.main(["--data", "synthetic", "--refit"]) == 2
    assert "--refit is for MHL data" in capsys.readouterr().err


def test_a_later_benchmark_appends_to_the_results_file_and_skips_the_runs_it_holds(
    tiny_benchmark, tiny_overrides, tmp_path, capsys
):
    results = tmp_path / "records.json"
    results.write_text(json.dumps(tiny_benchmark))  # seed 0 of every contender
    common = ["--data", "synthetic", "--budget-minutes", BUDGET_MINUTES, "--max-steps", STEPS]
    tail = [*tiny_overrides, f"output_dir={tmp_path / 'runs'}"]
    asked = ["--only", "seasonal_naive_24", "nbeatsaq_cat", "--seeds", "0", "1"]
    assert benchmark.main([*common, *asked, "--json", str(results), *tail]) == 0
    out = capsys.readouterr().out
    assert "seasonal_naive_24, seed 0: already in" in out  # one run of a contender that does not train
    assert "nbeatsaq_cat, seed 0: already in" in out
    appended = json.loads(results.read_text())
    assert appended[:-1] == tiny_benchmark
    assert (appended[-1]["variant"], appended[-1]["seed"], appended[-1]["train_steps"]) == ("nbeatsaq_cat", 1, 6)
    assert "| nbeatsaq_cat | our N-BEATS-AQ, level concatenated to the input | 2 |" in out  # both seeds tabulated

    other = tmp_path / "other.json"
    other.write_text(json.dumps([{**tiny_benchmark[0], "window_fingerprint": "0123456789ab"}]))
    assert benchmark.main([*common, "--only", "nbeatsaq_cat", "--json", str(other), *tail]) == 2
    assert "records of other test windows" in capsys.readouterr().err
    fewer_steps = [*common[:-1], "5", "--only", "nbeatsaq_cat", "--seeds", "2", "--json", str(results), *tail]
    assert benchmark.main(fewer_steps) == 2
    assert "made with other settings (max_steps: 6 there, 5 here)" in capsys.readouterr().err
    assert json.loads(results.read_text()) == appended  # refused before anything ran or was written


def test_a_conformal_benchmark_scores_each_contender_after_a_correction_fitted_on_its_val_forecasts(
    tiny_overrides, tmp_path
):
    from anyquantile.baselines.seasonal_naive import SeasonalNaive
    from anyquantile.model.metrics import headline
    from anyquantile.model.scoring import score_forecasts
    from anyquantile.modules.conformal import LevelConformal

    results = tmp_path / "records.json"
    args = ["--data", "synthetic", "--only", "seasonal_naive_168", "--conformal", "level", "--json", str(results)]
    assert benchmark.main([*args, *tiny_overrides, f"output_dir={tmp_path / 'runs'}"]) == 0
    (record,) = json.loads(results.read_text())
    assert record["conformal"]["kind"] == "level"

    # the same correction by hand: fitted on the val windows' forecasts, applied to the test windows'
    bench, _, _ = benchmark.build_bench("synthetic", 1, None, tiny_overrides)
    naive = SeasonalNaive(bench.data.panel, 168, bench.cfg.evaluation.residual_window)
    val, test = (bench.data.splits[name] for name in ("val", "test"))
    H, levels = bench.windows.shape.horizon, bench.levels
    val_batch = benchmark.WindowBatches(bench.data.panel, bench.data.shape, val).all()
    correction = LevelConformal(levels.levels).fit(
        naive(val.series, val.origin, H, levels.levels).float(), val_batch.target, val_batch.target_mask
    )
    corrected = correction.apply(naive(test.series, test.origin, H, levels.levels).float())
    test_batch = bench.windows.all()
    expected = headline(score_forecasts(levels, corrected, test_batch.target, test_batch.target_mask, True).final)
    for name in ("crps", "coverage_95", "calibration_error"):
        assert record["conformal"][name] == pytest.approx(expected[name], rel=1e-9), name
    assert record["conformal"]["crps"] != pytest.approx(record["model"]["crps"], rel=1e-6)  # the correction moved it


def test_a_refit_benchmark_refuses_a_conformal_correction(capsys):
    assert benchmark.main(["--data", "mhl", "--refit", "--conformal", "level"]) == 2
    assert "in-sample" in capsys.readouterr().err
