"""The HTTP forecasting service: a saved model behind FastAPI, concurrent requests batched into one forward pass.

    anyquantile serve --model DIR [--host 127.0.0.1] [--port 8000] [--max-batch-windows 64] [--max-wait-ms 5]

    GET  /health    {"status": "ok", "alias", "horizon", "history_length", "members", "calibrated", "covariates"}
    GET  /stats     {"batches", "requests", "windows", ...}: how many forward passes served how many requests
    POST /forecast  {"history": [{"unique_id": "a", "ds": "2017-12-31 23:00", "y": 512.0}, ...],
                     "level": [80, 95] | "quantiles": [0.1, 0.5], "h": 24, "series": ["a"], "origin": null,
                     "calibrated": false}
                    -> {"columns": ["unique_id", "ds", "AnyQuantile-median", ...],
                        "forecasts": [{"unique_id": "a", "ds": "2018-01-01T00:00:00", "AnyQuantile-median": ...}]}

A request is the production path of ``Predictor.forecast_frame`` (``inference/predictor.py``) cut in three,
so that its middle can be shared: *prepare* (parse the body, check it, one window per series; in a thread),
*forward* (the network's forecast of the fixed reference grid, for the windows of every request waiting:
:class:`MicroBatcher`), *answer* (the request's calibration, the sort, its levels, its hours; in a thread).
The service always rearranges, so every window is forecast at the same grid whatever its request asked,
and a batch is one forward pass. The answers equal those of ``Predictor.forecast_frame`` on the same
history, bit for bit when the batch holds the request alone; in a larger batch to float32 rounding (the BLAS
chooses its kernel by matrix size, so a row's last bits may depend on how many rows share the product).

A body of the wrong shape is a 422 with pydantic's errors; a body the library refuses (an unknown series,
too short a history, a level outside (0, 1), ``h`` beyond the horizon) is a 422 in the same form, naming the
field (``loc: ["body", "history"]``) and the library's message. No answer carries a traceback; a failed
forward pass is a 500 whose details go to the server's log, and the service keeps serving.
"""

# No ``from __future__ import annotations``: pydantic reads the request models' annotations at run time.

import asyncio
import contextlib
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, AsyncIterator, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, create_model

from anyquantile.dataset.errors import DataValidationError
from anyquantile.experiment.errors import UsageError
from anyquantile.inference.levels import OutputLevels
from anyquantile.inference.predictor import Predictor, PreparedWindows, concat_windows

logger = logging.getLogger(__name__)

DEFAULT_MAX_BATCH_WINDOWS = 64
DEFAULT_MAX_WAIT_MS = 5.0


# -- the request body ----------------------------------------------------------------------------------------
class HistoryRow(BaseModel):
    """One observed hour of one series (``y`` null: missing); a model trained with covariates adds its columns."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)  # unique_id 7 reads as "7"

    unique_id: str
    ds: str  # a timestamp, parsed (and checked) by the data loader like a file's
    y: float | None


class ForecastRequest(BaseModel):
    """The body of ``POST /forecast``: a history, the levels and hours asked, and which series."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key ("quantile") is an error, not a default

    history: list[HistoryRow] = Field(min_length=1)
    level: list[float] | None = None  # central interval coverages in %, e.g. [80, 95]
    quantiles: list[float] | None = None  # levels in (0, 1), e.g. [0.1, 0.5, 0.9]
    h: StrictInt | None = None  # hours to forecast; null: the trained horizon
    series: list[str] | None = None  # the series to forecast; null: all of the history's
    origin: str | None = None  # the first forecast hour of every series; null: after each one's last observation
    calibrated: StrictBool = False  # apply the conformal calibration saved with the model


def request_model(covariates: Sequence[str] = ()) -> type[ForecastRequest]:
    """The request body of a model trained with ``covariates``: each history row carries them (null: missing)."""
    if not covariates:
        return ForecastRequest
    # Field names are Python names; the columns' own names (any string) are the aliases the JSON uses.
    row_fields: dict[str, Any] = {
        f"covariate_{index}": (float | None, Field(alias=name)) for index, name in enumerate(covariates)
    }
    row = create_model("HistoryRowWithCovariates", __base__=HistoryRow, **row_fields)
    return create_model(
        "ForecastRequestWithCovariates", __base__=ForecastRequest, history=(list[row], Field(min_length=1))
    )


def history_frame(rows: Sequence[HistoryRow], covariates: Sequence[str] = ()) -> pd.DataFrame:
    """The rows as the long frame (``unique_id, ds, y``, covariates) that ``Predictor.panel`` checks."""
    columns: dict[str, Any] = {
        "unique_id": [row.unique_id for row in rows],
        "ds": [row.ds for row in rows],
        "y": np.array([row.y for row in rows], dtype=np.float64),  # null -> NaN: a missing hour
    }
    for index, name in enumerate(covariates):
        columns[name] = np.array([getattr(row, f"covariate_{index}") for row in rows], dtype=np.float64)
    return pd.DataFrame(columns)


# -- errors --------------------------------------------------------------------------------------------------
class FieldError(Exception):
    """A request the library refused: the body field it concerns (``loc``), the library's message and kind."""

    def __init__(self, loc: tuple[str, ...], message: str, kind: str) -> None:
        super().__init__(message)
        self.loc, self.message, self.kind = loc, message, kind

    def detail(self) -> dict[str, Any]:
        """One entry of a 422's ``detail`` list, in the form of pydantic's errors."""
        return {"type": self.kind, "loc": list(self.loc), "msg": self.message}


class ForecastFailed(Exception):
    """The forward pass of a batch raised: every request in it is answered 500 (the log has the traceback)."""


class ServiceStopping(Exception):
    """The service shut down before the request's batch ran."""


REFUSALS = (UsageError, DataValidationError)  # what the library raises for a request it cannot serve


def refusal(loc: tuple[str, ...], error: Exception) -> FieldError:
    """The library's refusal ``error`` as a FieldError at ``loc``."""
    kind = "data_validation_error" if isinstance(error, DataValidationError) else "usage_error"
    return FieldError(loc, str(error), kind)


@contextlib.contextmanager
def refused_as(*loc: str) -> Iterator[None]:
    """The library's refusals inside, raised as FieldErrors at ``loc``."""
    try:
        yield
    except REFUSALS as error:
        raise refusal(loc, error) from None


def _levels_field(request: ForecastRequest) -> tuple[str, ...]:
    if request.level is not None and request.quantiles is not None:
        return ("body",)  # the problem is giving both
    return ("body", "quantiles") if request.quantiles is not None else ("body", "level")


def _windows_field(error: Exception) -> tuple[str, str]:
    """The field of a ``Predictor.prepare`` refusal: the one the library names (``series``, ``origin``), else the
    history (too short, a series without a holiday country, a covariate gap)."""
    return ("body", getattr(error, "field", None) or "history")


# -- micro-batching ------------------------------------------------------------------------------------------
@dataclass
class BatchStats:
    """What the batcher has done: ``batches`` forward passes for ``requests`` requests of ``windows`` windows."""

    batches: int = 0
    requests: int = 0
    windows: int = 0
    largest_batch_windows: int = 0
    forward_seconds: float = 0.0  # the forward passes' wall time, the sorting of each request included

    def count(self, requests: int, windows: int, seconds: float) -> None:
        self.batches += 1
        self.requests += requests
        self.windows += windows
        self.largest_batch_windows = max(self.largest_batch_windows, windows)
        self.forward_seconds += seconds


@dataclass
class _Waiting:
    """A request's windows in the queue, and the future its handler awaits (the sorted grid ``[B, H, G]``)."""

    windows: PreparedWindows
    calibrated: bool
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Forecasts the windows of concurrent requests in one forward pass of the reference grid.

    One worker task takes the first request waiting, then more until the batch holds ``max_batch_windows``
    windows or ``max_wait_ms`` have passed since that first one; a request that would overflow the batch
    opens the next one (a request larger than the limit runs alone). The forward pass runs in a thread of
    its own, so the event loop keeps accepting requests meanwhile.
    """

    def __init__(
        self,
        predictor: Predictor,
        max_batch_windows: int = DEFAULT_MAX_BATCH_WINDOWS,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
    ) -> None:
        if isinstance(max_batch_windows, bool) or not isinstance(max_batch_windows, int) or max_batch_windows < 1:
            raise UsageError(f"max_batch_windows must be a whole number >= 1, got {max_batch_windows!r}")
        if not (isinstance(max_wait_ms, (int, float)) and math.isfinite(max_wait_ms) and max_wait_ms >= 0):
            raise UsageError(f"max_wait_ms must be a number of milliseconds >= 0, got {max_wait_ms!r}")
        self.predictor = predictor
        self.max_batch_windows = max_batch_windows
        self.max_wait_ms = float(max_wait_ms)
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Waiting] | None = None
        self._held: _Waiting | None = None  # taken from the queue, but it would have overflowed the last batch
        self._collecting: list[_Waiting] = []  # the batch being gathered
        self._running: list[_Waiting] = []  # the batch in the forward pass
        self._stopped = False
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def queued(self) -> int:
        """Requests waiting for a batch."""
        return (0 if self._queue is None else self._queue.qsize()) + (self._held is not None)

    async def start(self) -> None:
        """Start the worker on the running event loop (the service's lifespan does)."""
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="anyquantile-forward")
        self._stopped = False
        self._worker = asyncio.create_task(self._work(), name="anyquantile-batcher")
        self._worker.add_done_callback(self._worker_ended)

    async def stop(self) -> None:
        """Stop the worker; requests still waiting are answered ServiceStopping, later ones at once."""
        self._stopped = True
        if self._worker is not None:
            if not self._worker.done():
                self._worker.cancel()
            # a worker that died of an error was reported when it ended (_worker_ended): not raised again here
            await asyncio.gather(self._worker, return_exceptions=True)
        self._fail_waiting(ServiceStopping("the service is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _worker_ended(self, worker: asyncio.Task) -> None:
        """A worker that died of an error (not a stop) must not leave requests waiting forever."""
        if worker.cancelled() or worker.exception() is None:
            return
        logger.error("the batcher stopped", exc_info=worker.exception())
        self._stopped = True
        self._fail_waiting(ForecastFailed(f"the batcher stopped ({type(worker.exception()).__name__})"))

    def _fail_waiting(self, error: Exception) -> None:
        """Answer ``error`` to every request not answered yet: queued, held over, being gathered or running."""
        waiting = self._running + self._collecting + ([self._held] if self._held is not None else [])
        while self._queue is not None and not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for request in waiting:
            _fail(request.future, error)
        self._held, self._collecting, self._running = None, [], []

    async def forecast(self, windows: PreparedWindows, calibrated: bool = False) -> torch.Tensor:
        """The sorted reference-grid forecasts ``[B, H, G]`` of ``windows``, from the next batch."""
        if self._queue is None or self._stopped:
            raise ServiceStopping("the batcher is not running (the service's lifespan starts it)")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Waiting(windows, calibrated, future))
        return await future

    async def _work(self) -> None:
        while True:
            batch = self._running = await self._collect()
            self._collecting = []
            loop = asyncio.get_running_loop()
            started = time.perf_counter()
            try:
                outcomes = await loop.run_in_executor(self._executor, self._forward, batch)
            except Exception as error:  # the network raised: every request of the batch gets a 500
                logger.exception("the forward pass of %d requests failed", len(batch))
                outcomes = [ForecastFailed(f"the forecast failed ({type(error).__name__})")] * len(batch)
            self.stats.count(len(batch), sum(len(request.windows) for request in batch), time.perf_counter() - started)
            for request, outcome in zip(batch, outcomes):
                if isinstance(outcome, Exception):
                    _fail(request.future, outcome)
                elif not request.future.done():  # done: its handler went away
                    request.future.set_result(outcome)
            self._running = []

    async def _collect(self) -> list[_Waiting]:
        """The next batch: the first request waiting, then more until the batch is full or the wait is over."""
        assert self._queue is not None
        if self._held is not None:
            first, self._held = self._held, None
        else:
            first = await self._queue.get()
        if self._stopped:  # Python < 3.12's wait_for may swallow a cancel that lands as an item arrives
            raise asyncio.CancelledError
        batch = self._collecting = [first]  # kept on the batcher: a stop while gathering answers them too
        windows = len(first.windows)
        deadline = time.monotonic() + self.max_wait_ms / 1000.0
        while windows < self.max_batch_windows:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:  # the wait is over: only requests already queued join
                    request = self._queue.get_nowait()
                else:
                    request = await asyncio.wait_for(self._queue.get(), remaining)
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
            if windows + len(request.windows) > self.max_batch_windows:
                self._held = request  # it opens the next batch
                break
            batch.append(request)
            windows += len(request.windows)
        return batch

    def _forward(self, batch: Sequence[_Waiting]) -> list[torch.Tensor | Exception]:
        """One forward pass for every window of ``batch``, then each request's own calibration and sort."""
        with torch.no_grad():  # grad mode is per thread: this is the forward thread's
            grid = self.predictor.grid_forecast(concat_windows([request.windows for request in batch]))  # [B, H, G]
            outcomes: list[torch.Tensor | Exception] = []
            start = 0
            for request in batch:
                rows = grid[start : start + len(request.windows)]  # [b, H, G], this request's windows
                start += len(request.windows)
                try:
                    outcomes.append(self.predictor.finish_grid(rows, request.calibrated))
                except REFUSALS as error:  # calibrated asked of a model without a calibration
                    outcomes.append(refusal(("body", "calibrated"), error))
        return outcomes


def _fail(future: asyncio.Future, error: Exception) -> None:
    if not future.done():
        future.set_exception(error)


# -- the service ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Prepared:
    """A checked request: its windows and what its answer needs."""

    windows: PreparedWindows
    output: OutputLevels
    hours: int
    calibrated: bool


class ForecastService:
    """The three steps of a request around the batcher: prepare, (batched forward), answer."""

    def __init__(self, predictor: Predictor, batcher: MicroBatcher) -> None:
        self.predictor = predictor
        self.batcher = batcher
        self.covariates = predictor.dataset.covariates().names
        self.request_model = request_model(self.covariates)

    def prepare(self, body: bytes) -> _Prepared:
        """Parse and check ``body`` and make its windows: a RequestValidationError or a FieldError if refused."""
        try:
            request = self.request_model.model_validate_json(body)
        except ValidationError as error:
            errors = error.errors(include_url=False)
            raise RequestValidationError([{**entry, "loc": ("body", *entry["loc"])} for entry in errors]) from None
        predictor = self.predictor
        if request.calibrated and predictor.calibration is None:  # refused before it takes room in a batch
            message = "this model has no conformal calibration: fit one with anyquantile evaluate --model DIR"
            raise FieldError(("body", "calibrated"), message, "usage_error")
        with refused_as("body", "h"):
            hours = predictor.horizon(request.h)
        with refused_as(*_levels_field(request)):
            output = OutputLevels.of(predictor.alias, request.level, request.quantiles)
        with refused_as("body", "history"):
            panel = predictor.panel(history_frame(request.history, self.covariates))
        try:
            windows = predictor.prepare(panel, request.series, request.origin)
        except REFUSALS as error:
            raise refusal(_windows_field(error), error) from None
        return _Prepared(windows, output, hours, request.calibrated)

    def answer(self, prepared: _Prepared, grid: torch.Tensor) -> dict[str, Any]:
        """The request's levels read off its sorted grid forecasts ``[B, H, G]``, as the response body."""
        levels = torch.tensor(prepared.output.levels, dtype=torch.float64)
        forecast = self.predictor.at_levels(grid, levels)  # [B, H, Q]
        frame = self.predictor.frame(prepared.windows, forecast, prepared.hours, prepared.output)
        return {"columns": list(frame.columns), "forecasts": json_rows(frame)}

    async def forecast(self, body: bytes) -> dict[str, Any]:
        prepared = await asyncio.to_thread(self.prepare, body)  # pandas parsing, off the event loop
        grid = await self.batcher.forecast(prepared.windows, prepared.calibrated)  # [B, H, G]
        return await asyncio.to_thread(self.answer, prepared, grid)

    def health(self) -> dict[str, Any]:
        predictor = self.predictor
        members = getattr(predictor.network, "members", None)  # an Ensemble has them; an ONNX session does not say
        return {
            "status": "ok",
            "alias": predictor.alias,
            "horizon": predictor.shape.horizon,
            "history_length": predictor.shape.history_length,
            "members": None if members is None else len(members),
            "calibrated": predictor.calibration is not None,
            "covariates": list(self.covariates),
        }

    def stats(self) -> dict[str, Any]:
        batcher = self.batcher
        return {
            **asdict(batcher.stats),
            "queued": batcher.queued,
            "max_batch_windows": batcher.max_batch_windows,
            "max_wait_ms": batcher.max_wait_ms,
        }


def json_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of a forecast frame (``unique_id, ds, <forecasts>``) as JSON objects: ``ds`` an ISO timestamp,
    a non-finite forecast null (JSON has no NaN)."""
    columns = list(frame.columns)
    stamps = [stamp.isoformat() for stamp in frame["ds"]]
    values = frame[columns[2:]].to_numpy(dtype=np.float64)  # [rows, Q]
    finite = np.isfinite(values)
    cells = values.tolist() if finite.all() else np.where(finite, values, None).tolist()
    names = frame["unique_id"].tolist()
    return [dict(zip(columns, (name, stamp, *row))) for name, stamp, row in zip(names, stamps, cells)]


def create_app(
    predictor: Predictor,
    max_batch_windows: int = DEFAULT_MAX_BATCH_WINDOWS,
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
) -> FastAPI:
    """The FastAPI application serving ``predictor`` (see the module's doc); its lifespan runs the batcher,
    which is ``app.state.service.batcher`` (its ``stats`` count the forward passes)."""
    service = ForecastService(predictor, MicroBatcher(predictor, max_batch_windows, max_wait_ms))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.batcher.start()
        try:
            yield
        finally:
            await service.batcher.stop()
            stats = service.batcher.stats
            logger.info("requests served: %d, forward passes: %d", stats.requests, stats.batches)

    app = FastAPI(title="anyquantile", summary="any-quantile probabilistic forecasts", lifespan=lifespan)
    app.state.service = service

    @app.exception_handler(FieldError)
    async def refused(request: Request, error: FieldError) -> JSONResponse:
        return JSONResponse({"detail": [error.detail()]}, status_code=422)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """The model served: its alias, horizon, history length, members, calibration and covariates."""
        return service.health()

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        """The batcher's counters: forward passes (``batches``), requests and windows served, ..."""
        return service.stats()

    @app.post("/forecast")
    async def forecast(request: Request) -> JSONResponse:
        """Quantile forecasts of the hours after each series' history (the body: see the module's doc)."""
        # The body is parsed by the service (in a thread: a history is thousands of rows), not by FastAPI.
        try:
            return JSONResponse(await service.forecast(await request.body()))
        except ForecastFailed as error:
            return JSONResponse({"detail": f"{error}; the server log has the details"}, status_code=500)
        except ServiceStopping as error:
            return JSONResponse({"detail": str(error)}, status_code=503)

    return app
