"""anyquantile serve: the HTTP service answers what ``Predictor.forecast_frame`` answers, refuses bad requests with
a 422 that names the field, batches concurrent requests into one forward pass, and runs as a real server.

    OMP_NUM_THREADS=1 python -m pytest -q tests/test_serve.py
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import httpx
import numpy as np
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient

from anyquantile.cli import serve as serve_cli
from anyquantile.inference.levels import OutputLevels
from anyquantile.inference.saved_model import open_predictor, write_calibration
from anyquantile.modules.conformal import LevelConformal
from anyquantile.serving import MicroBatcher, ServiceStopping, create_app, history_frame, request_model

SECOND_SERIES = "synthetic_01"
EARLIER_END = 5  # hours the second series' history ends before the first one's (see ``staggered``)
STARTUP_TIMEOUT_S = 180  # a real server imports torch and loads the model: generous for a loaded machine


def rows_of(frame: pd.DataFrame) -> list[dict]:
    """A long frame as the JSON rows of a request (NaN -> null)."""
    return [
        {"unique_id": name, "ds": pd.Timestamp(stamp).isoformat(), "y": None if np.isnan(y) else float(y)}
        for name, stamp, y in frame[["unique_id", "ds", "y"]].itertuples(index=False)
    ]


def frame_of(body: dict) -> pd.DataFrame:
    """A response body as the frame ``Predictor.forecast_frame`` returns (ds parsed back)."""
    frame = pd.DataFrame(body["forecasts"], columns=body["columns"])
    return frame.assign(ds=pd.to_datetime(frame["ds"]))


def expected_frame(predictor, history: pd.DataFrame, request: dict) -> pd.DataFrame:
    """What the library answers for ``request`` on ``history``: the service must answer the same."""
    output = OutputLevels.of(predictor.alias, request.get("level"), request.get("quantiles"))
    options = {key: request.get(key) for key in ("h", "series", "origin")}
    return predictor.forecast_frame(history, output, calibrated=request.get("calibrated", False), **options)


def assert_same_forecasts(got: pd.DataFrame, want: pd.DataFrame, exact: bool) -> None:
    """Equal names, hours and columns; forecasts bit for bit (``exact``) or to float32 rounding (a shared
    batch: the BLAS picks its kernel by the number of rows, so a row's last bits may change)."""
    assert list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(got[["unique_id", "ds"]], want[["unique_id", "ds"]], check_dtype=False)
    got_values, want_values = got.iloc[:, 2:].to_numpy(), want.iloc[:, 2:].to_numpy()
    if exact:
        np.testing.assert_array_equal(got_values, want_values)
    else:
        np.testing.assert_allclose(got_values, want_values, rtol=1e-5, atol=1e-5 * np.abs(want_values).max())


@pytest.fixture(scope="module")
def staggered(history_frame) -> pd.DataFrame:
    """The two series' history with the second one's last hours missing: its forecast starts earlier."""
    frame = history_frame.copy()
    last_rows = frame.index[frame["unique_id"] == SECOND_SERIES][-EARLIER_END:]
    frame.loc[last_rows, "y"] = np.nan
    return frame


@pytest.fixture(scope="module")
def predictor(saved_model_dir):
    return open_predictor(saved_model_dir)


@pytest.fixture(scope="module")
def calibrated_model_dir(saved_model_dir, tmp_path_factory) -> Path:
    """The saved model with a conformal calibration large enough to move every level (and the sort)."""
    folder = shutil.copytree(saved_model_dir, tmp_path_factory.mktemp("calibrated") / "model")
    state = {"kind": "level", "levels": [0.05, 0.5, 0.95], "delta": [[-300.0, 50.0, 400.0]]}
    write_calibration(folder, LevelConformal.from_state(state))
    return folder


@pytest.fixture(scope="module")
def calibrated_predictor(calibrated_model_dir):
    return open_predictor(calibrated_model_dir)


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app(predictor, max_wait_ms=0)) as client:
        yield client


@pytest.fixture(scope="module")
def staggered_rows(staggered) -> list[dict]:
    return rows_of(staggered)


# -- good requests -------------------------------------------------------------------------------------------
def test_health_describes_the_model(client, predictor):
    body = client.get("/health").json()
    assert body == {
        "status": "ok",
        "alias": "AnyQuantile",
        "horizon": predictor.shape.horizon,
        "history_length": predictor.shape.history_length,
        "members": 1,
        "calibrated": False,
        "covariates": [],
    }


def test_forecasts_start_the_hour_after_each_series_last_observation_and_never_cross(client, staggered, staggered_rows):
    response = client.post("/forecast", json={"history": staggered_rows, "level": [80, 95], "h": 24})
    assert response.status_code == 200, response.text
    body = response.json()
    columns = ["AnyQuantile-median", "AnyQuantile-lo-95", "AnyQuantile-lo-80", "AnyQuantile-hi-80", "AnyQuantile-hi-95"]
    assert body["columns"] == ["unique_id", "ds", *columns]
    frame = frame_of(body)
    assert len(frame) == 2 * 24
    last = staggered.dropna(subset=["y"]).groupby("unique_id")["ds"].max()
    assert last["synthetic_00"] - last[SECOND_SERIES] == pd.Timedelta(hours=EARLIER_END)
    for name, rows in frame.groupby("unique_id"):
        hours = pd.date_range(last[name] + pd.Timedelta(hours=1), periods=24, freq="h")
        assert list(rows["ds"]) == list(hours)
    ascending = frame[["AnyQuantile-lo-95", "AnyQuantile-lo-80", "AnyQuantile-median"]].to_numpy()
    ascending = np.concatenate([ascending, frame[["AnyQuantile-hi-80", "AnyQuantile-hi-95"]].to_numpy()], axis=1)
    assert (np.diff(ascending, axis=1) >= 0).all()
    assert (np.diff(ascending, axis=1) > 0).any()  # the intervals have width: the check above can fail


@pytest.mark.parametrize(
    "request_options",
    [
        {},
        {"quantiles": [0.05, 0.37, 0.9]},
        {"level": [80], "h": 5, "series": [SECOND_SERIES]},
        {"quantiles": [0.5], "origin": "2015-04-20 00:00"},
    ],
    ids=["median", "quantiles", "one-series", "origin"],
)
def test_a_request_served_alone_is_forecast_frame_bit_for_bit(
    client, predictor, staggered, staggered_rows, request_options
):
    response = client.post("/forecast", json={"history": staggered_rows, **request_options})
    assert response.status_code == 200, response.text
    assert_same_forecasts(frame_of(response.json()), expected_frame(predictor, staggered, request_options), exact=True)


def test_calibrated_forecasts_apply_the_saved_calibration(calibrated_predictor, staggered, staggered_rows):
    with TestClient(create_app(calibrated_predictor, max_wait_ms=0)) as client:
        assert client.get("/health").json()["calibrated"] is True
        answers = {}
        for calibrated in (False, True):
            request = {"quantiles": [0.1, 0.5, 0.9], "calibrated": calibrated}
            response = client.post("/forecast", json={"history": staggered_rows, **request})
            assert response.status_code == 200, response.text
            answers[calibrated] = frame_of(response.json())
            assert_same_forecasts(answers[calibrated], expected_frame(calibrated_predictor, staggered, request), True)
    shift = answers[True].iloc[:, 2:].to_numpy() - answers[False].iloc[:, 2:].to_numpy()
    assert np.abs(shift).min() > 1.0  # the calibration moved every forecast


# -- bad requests --------------------------------------------------------------------------------------------
def _short(rows: list[dict]) -> list[dict]:
    return rows[-100:]  # the second series' last 100 hours: less than the 168 the model needs


def _all_missing(rows: list[dict]) -> list[dict]:
    return [{**row, "y": None} for row in rows]


def _bad_first(key: str, value) -> Callable[[list[dict]], list[dict]]:
    return lambda rows: [{**rows[0], key: value}, *rows[1:]]


BAD_REQUESTS = {
    # name: (how the history is spoilt or None, other fields, loc, a part of the message)
    "no history": (None, {"history": None}, ["body", "history"], "required"),
    "empty history": (lambda rows: [], {}, ["body", "history"], "at least 1 item"),
    "y not a number": (_bad_first("y", "abc"), {}, ["body", "history", 0, "y"], "valid number"),
    "row without ds": (lambda rows: [{"unique_id": "a", "y": 1.0}], {}, ["body", "history", 0, "ds"], "required"),
    "misspelt key": (None, {"quantile": [0.5]}, ["body", "quantile"], "not permitted"),
    "h not whole": (None, {"h": 2.5}, ["body", "h"], "valid integer"),
    "quantile outside (0, 1)": (None, {"quantiles": [0.5, 1.5]}, ["body", "quantiles"], "inside (0, 1)"),
    "level outside (0, 100)": (None, {"level": [80, 100]}, ["body", "level"], "inside (0, 100)"),
    "level and quantiles": (None, {"level": [80], "quantiles": [0.5]}, ["body"], "not both"),
    "h zero": (None, {"h": 0}, ["body", "h"], "in [1, 48]"),
    "h beyond the horizon": (None, {"h": 49}, ["body", "h"], "in [1, 48]"),
    "unknown series": (None, {"series": ["nowhere"]}, ["body", "series"], "unknown series ['nowhere']"),
    "short history": (_short, {}, ["body", "history"], "too short a history"),
    "every y missing": (_all_missing, {}, ["body", "history"], "every y is missing"),
    "unparseable ds": (_bad_first("ds", "yesterday"), {}, ["body", "history"], "unparseable timestamp 'yesterday'"),
    "ds twice": (lambda rows: [rows[0], *rows], {}, ["body", "history"], "synthetic_00"),
    "origin not a time": (None, {"origin": "soon"}, ["body", "origin"], "origin 'soon' is not a time"),
    "origin off the grid": (None, {"origin": "2015-04-20 00:30"}, ["body", "origin"], "not an hour of the data's grid"),
    "no calibration": (None, {"calibrated": True}, ["body", "calibrated"], "no conformal calibration"),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_a_bad_request_is_a_422_naming_the_field_and_the_service_goes_on(client, staggered_rows, name):
    spoil, fields, loc, message = BAD_REQUESTS[name]
    body = {"history": spoil(staggered_rows) if spoil else staggered_rows, "h": 2, **fields}
    response = client.post("/forecast", json={key: value for key, value in body.items() if value is not None})
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert [error["loc"] for error in errors] == [loc], errors
    assert message in errors[0]["msg"]
    assert "Traceback" not in response.text
    assert client.post("/forecast", json={"history": staggered_rows, "h": 2}).status_code == 200


def test_a_body_that_is_not_json_is_a_422(client):
    response = client.post("/forecast", content=b'{"history": [', headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body"]


class FailingOnce:
    """A network whose first forward pass raises, as a broken model or an out-of-memory would."""

    def __init__(self, network) -> None:
        self.network, self.failed = network, False

    def __call__(self, batch, levels):
        if not self.failed:
            self.failed = True
            raise RuntimeError("simulated failure deep in the network")
        return self.network(batch, levels)


def test_a_failed_forward_pass_is_a_500_without_a_traceback_and_the_service_goes_on(predictor, staggered_rows):
    failing = dataclasses.replace(predictor, network=FailingOnce(predictor.network))
    with TestClient(create_app(failing, max_wait_ms=0)) as client:
        response = client.post("/forecast", json={"history": staggered_rows, "h": 2})
        assert response.status_code == 500
        assert "RuntimeError" in response.json()["detail"]
        assert "simulated failure" not in response.text and "Traceback" not in response.text
        assert client.post("/forecast", json={"history": staggered_rows, "h": 2}).status_code == 200


def test_a_model_with_covariates_reads_them_from_each_history_row():
    model = request_model(["temperature", "price-eur"])
    row = {"unique_id": "a", "ds": "2015-01-01 00:00", "y": 1.0, "temperature": 3.5, "price-eur": None}
    request = model.model_validate({"history": [row, {**row, "ds": "2015-01-01 01:00", "temperature": 4.0}]})
    frame = history_frame(request.history, ["temperature", "price-eur"])
    assert list(frame.columns) == ["unique_id", "ds", "y", "temperature", "price-eur"]
    np.testing.assert_array_equal(frame["temperature"], [3.5, 4.0])
    assert frame["price-eur"].isna().all()
    with pytest.raises(ValueError, match="temperature"):  # a row without the covariate
        model.model_validate({"history": [{"unique_id": "a", "ds": "2015-01-01 00:00", "y": 1.0, "price-eur": 2}]})


# -- micro-batching ------------------------------------------------------------------------------------------
CONCURRENT_REQUESTS = [  # (history, request fields, windows)
    ("full", {"level": [80, 95], "calibrated": True}, 2),
    ("full", {"quantiles": [0.05, 0.5, 0.99]}, 2),
    ("full", {"series": ["synthetic_00"], "h": 6}, 1),
    ("staggered", {"level": [50], "calibrated": True, "h": 12}, 2),
]


def test_concurrent_requests_share_one_forward_pass_and_get_their_own_answers(
    calibrated_predictor, history_frame, staggered
):
    histories = {"full": history_frame, "staggered": staggered}
    bodies = [{"history": rows_of(histories[name]), **fields} for name, fields, _ in CONCURRENT_REQUESTS]
    windows = sum(count for _, _, count in CONCURRENT_REQUESTS)
    # The batch closes when it holds every window, never by the clock: a minute of waiting is a bound, not a wait.
    app = create_app(calibrated_predictor, max_batch_windows=windows, max_wait_ms=60_000)

    async def post_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://serve", timeout=120) as c,
        ):
            posts = asyncio.gather(*(c.post("/forecast", json=body) for body in bodies))
            return await asyncio.wait_for(posts, timeout=120)  # a lost request fails, never hangs

    responses = asyncio.run(post_all())
    stats = app.state.service.batcher.stats
    assert (stats.batches, stats.requests, stats.windows) == (1, len(bodies), windows)
    for response, (name, fields, _) in zip(responses, CONCURRENT_REQUESTS):
        assert response.status_code == 200, response.text
        expected = expected_frame(calibrated_predictor, histories[name], fields)
        assert_same_forecasts(frame_of(response.json()), expected, exact=False)


def test_a_request_that_would_overflow_a_batch_opens_the_next_one(predictor, history_frame):
    panel = predictor.panel(history_frame)
    # 2 and 1 windows; the one is the second series, so that reading the wrong rows of a batch shows
    both, second = predictor.prepare(panel), predictor.prepare(panel, [SECOND_SERIES])
    requests = (both, both, second)
    with torch.no_grad():
        alone = [predictor.reference_forecast(windows.batch) for windows in requests]

    async def forecast_all() -> tuple[list[torch.Tensor], MicroBatcher]:
        batcher = MicroBatcher(predictor, max_batch_windows=3, max_wait_ms=60_000)
        await batcher.start()
        try:  # queued in this order: [2] (the next 2 would overflow it), then [2, 1] (full)
            grids = asyncio.gather(*(batcher.forecast(windows) for windows in requests))
            return await asyncio.wait_for(grids, timeout=120), batcher  # a lost request fails, never hangs
        finally:
            await batcher.stop()

    grids, batcher = asyncio.run(forecast_all())
    stats = batcher.stats
    assert (stats.batches, stats.requests, stats.windows, stats.largest_batch_windows) == (2, 3, 5, 3)
    for grid, reference in zip(grids, alone):
        assert grid.shape == reference.shape  # [B, H, G]
        torch.testing.assert_close(grid, reference, rtol=1e-5, atol=1e-5 * float(reference.abs().max()))


def test_a_stop_answers_the_request_being_gathered_and_every_later_one(predictor, history_frame):
    windows = predictor.prepare(predictor.panel(history_frame))

    async def stop_while_gathering() -> tuple[BaseException | None, BaseException | None]:
        batcher = MicroBatcher(predictor, max_batch_windows=100, max_wait_ms=60_000)  # it would wait a minute
        await batcher.start()
        pending = asyncio.ensure_future(batcher.forecast(windows))
        await asyncio.sleep(0.2)  # the worker takes it and waits for more (if not, it is still queued: alike)
        await batcher.stop()
        gathered = await asyncio.wait_for(asyncio.gather(pending, return_exceptions=True), timeout=60)
        try:
            await asyncio.wait_for(batcher.forecast(windows), timeout=60)
            later = None
        except ServiceStopping as error:
            later = error
        return gathered[0], later

    gathered, later = asyncio.run(stop_while_gathering())
    assert isinstance(gathered, ServiceStopping) and isinstance(later, ServiceStopping)


def test_a_dead_worker_fails_the_waiting_requests_and_stop_still_returns(predictor, history_frame, monkeypatch):
    windows = predictor.prepare(predictor.panel(history_frame))

    async def die(self):
        await asyncio.sleep(0.1)
        raise RuntimeError("broken")

    monkeypatch.setattr(MicroBatcher, "_collect", die)

    async def run() -> BaseException | None:
        batcher = MicroBatcher(predictor, max_batch_windows=100, max_wait_ms=10)
        await batcher.start()
        (outcome,) = await asyncio.wait_for(asyncio.gather(batcher.forecast(windows), return_exceptions=True), 60)
        await asyncio.wait_for(batcher.stop(), 60)  # raises nothing: the worker's error was reported once
        return outcome

    outcome = asyncio.run(run())
    assert type(outcome).__name__ == "ForecastFailed" and "RuntimeError" in str(outcome)


# -- the command line and a real server ----------------------------------------------------------------------
def test_the_command_line_refuses_a_bad_model_or_setting_without_a_traceback(saved_model_dir, tmp_path, capsys):
    assert serve_cli.main(["--model", str(tmp_path / "missing")]) == 2
    assert "error: not found" in capsys.readouterr().err
    assert serve_cli.main(["--model", str(tmp_path)]) == 2
    assert "is not a saved model" in capsys.readouterr().err
    assert serve_cli.main(["--model", str(saved_model_dir), "--max-batch-windows", "0"]) == 2
    assert "max_batch_windows must be" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert serve_cli.main(["--model", str(saved_model_dir), "--port", str(port)]) == 2
    error = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in error and "Traceback" not in error


def _wait_for_url(process: subprocess.Popen, log: Path, deadline: float) -> str:
    """The server's address, from the line it prints once it has a port (``--port 0``: a free one)."""
    while time.monotonic() < deadline:
        match = re.search(r"on (http://127\.0\.0\.1:\d+)", log.read_text())
        if match:
            return match.group(1)
        assert process.poll() is None, f"the server exited with {process.returncode}"
        time.sleep(0.2)
    raise AssertionError(f"the server printed no address in {STARTUP_TIMEOUT_S} s")


def _wait_until_healthy(process: subprocess.Popen, url: str, deadline: float) -> dict:
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the server exited with {process.returncode}"
        try:
            response = httpx.get(f"{url}/health", timeout=5)
            if response.status_code == 200:
                return response.json()
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(0.2)
    raise AssertionError(f"the server did not answer /health in {STARTUP_TIMEOUT_S} s")


def test_a_real_server_answers_and_stops_cleanly(saved_model_dir, predictor, staggered, staggered_rows, tmp_path):
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    # What ``anyquantile serve`` runs: the command dispatcher, in a process of its own.
    command = [sys.executable, "-m", "anyquantile.cli", "serve", "--model", str(saved_model_dir), "--port", "0"]
    command += ["--max-wait-ms", "1"]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=environment)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        url = _wait_for_url(process, out, deadline)
        assert _wait_until_healthy(process, url, deadline)["horizon"] == predictor.shape.horizon
        request = {"quantiles": [0.1, 0.9], "h": 3, "series": [SECOND_SERIES]}
        response = httpx.post(f"{url}/forecast", json={"history": staggered_rows, **request}, timeout=120)
        assert response.status_code == 200, response.text
        assert_same_forecasts(frame_of(response.json()), expected_frame(predictor, staggered, request), exact=False)
        assert httpx.get(f"{url}/stats", timeout=5).json()["batches"] == 1
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        assert process.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it shut down on
        assert "requests served: 1, forward passes: 1" in err.read_text()  # the lifespan's shutdown ran
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
