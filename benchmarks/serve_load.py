"""Load test of the HTTP service on loopback: throughput, latency and memory at 1, 8 and 32 concurrent clients.

    python -m benchmarks.serve_load [--config nbeatsaq-synthetic] [--clients 1 8 32] [--requests 240]
        [--series 4] [--hours 336] [--max-batch-windows 64] [--max-wait-ms 5] [--threads 1] [key=value ...]

It saves the config's model with fresh weights (untrained weights forecast as fast as trained ones) in a
temporary folder, starts one real ``anyquantile serve`` process on 127.0.0.1, and posts the same request
(``--series`` synthetic series of ``--hours`` hours each, ``level=[80, 95]``) from ``--clients`` concurrent
clients, ``--requests`` requests per level after ``--warmup`` untimed ones. Per level it prints the
throughput, the latency's median and 99th percentile (from sending a request to its whole answer), the
requests that failed, the server's resident memory (VmRSS) before and after (flat: nothing accumulates per
request) and the forward passes per request that ``/stats`` counted (below 1: requests shared batches).

The clients run in this process: each request body is encoded once, beforehand, so that they cost the
server's CPU little. On a machine with few cores the clients and the server still share them; the table's
numbers are the service's on this machine, not a bound. ``key=value`` overrides apply to the model's config.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

STARTUP_TIMEOUT_S = 300


@dataclass(frozen=True)
class LevelResult:
    """One concurrency level's measurements."""

    clients: int
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int
    rss_before_mib: float
    rss_after_mib: float
    forward_passes: int
    windows: int

    def row(self) -> str:
        p50, p99 = np.percentile(self.latencies_ms, [50, 99]) if self.latencies_ms else (float("nan"),) * 2
        per_request = self.forward_passes / max(self.requests, 1)
        per_pass = self.windows / max(self.forward_passes, 1)
        return (
            f"| {self.clients} | {self.requests} | {self.requests / self.seconds:.1f} | {p50:.0f} | {p99:.0f} | "
            f"{self.errors} | {self.rss_before_mib:.0f} | {self.rss_after_mib:.0f} | {per_request:.2f} | "
            f"{per_pass:.1f} |"
        )


def save_untrained_model(config: str, overrides: list[str], folder: Path) -> tuple[Path, int]:
    """The config's model with fresh weights, saved as a model folder; and its parameter count."""
    import torch

    from anyquantile.experiment.builders import build_forecaster
    from anyquantile.experiment.config import load_config
    from anyquantile.inference.saved_model import SavedModel, save_model

    torch.manual_seed(0)
    cfg = load_config(config, overrides)
    forecaster = build_forecaster(cfg).eval()
    parameters = sum(parameter.numel() for parameter in forecaster.parameters())
    return save_model(SavedModel([forecaster], [cfg]), folder / "model"), parameters


def request_body(series: int, hours: int) -> bytes:
    """A request for ``series`` synthetic series of ``hours`` observed hours each, as JSON bytes."""
    from anyquantile.dataset.synthetic import SyntheticLoad, SyntheticLoadSpec

    spec = SyntheticLoadSpec(num_series=series, num_hours=hours, start="2017-01-01", gaps_per_series=0)
    frame = SyntheticLoad(spec).panel.to_long_frame()
    rows = [
        {"unique_id": name, "ds": stamp.isoformat(), "y": float(y)}
        for name, stamp, y in frame[["unique_id", "ds", "y"]].itertuples(index=False)
    ]
    return json.dumps({"history": rows, "level": [80, 95]}).encode()


def resident_mib(pid: int) -> float:
    """The process's resident memory (VmRSS) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no VmRSS for process {pid}")


def start_server(model: Path, args: argparse.Namespace, log_dir: Path) -> tuple[subprocess.Popen, str]:
    """One ``anyquantile serve`` process on a free port of 127.0.0.1, and its address once /health answers."""
    out, err = log_dir / "serve.out", log_dir / "serve.err"
    command = [sys.executable, "-m", "anyquantile.cli", "serve", "--model", str(model), "--port", "0"]
    command += ["--max-batch-windows", str(args.max_batch_windows), "--max-wait-ms", str(args.max_wait_ms)]
    command += ["--log-level", "warning"]  # no access log line per request
    environment = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=environment)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}: {err.read_text()[-2000:]}")
        match = re.search(r"on (http://127\.0\.0\.1:\d+)", out.read_text())
        if match:
            try:
                if httpx.get(f"{match.group(1)}/health", timeout=5).status_code == 200:
                    return process, match.group(1)
            except httpx.TransportError:
                pass  # not listening yet
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the server did not answer /health within {STARTUP_TIMEOUT_S} s")


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def post_concurrently(url: str, body: bytes, clients: int, requests: int) -> tuple[float, list[float], int]:
    """``requests`` posts of ``body`` from ``clients`` concurrent clients: (seconds, latencies in ms, errors)."""
    remaining = iter(range(requests))
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=300) as client:

        async def one_client() -> None:
            nonlocal errors
            for _ in remaining:  # shared: the clients together send ``requests``
                start = time.perf_counter()
                try:
                    response = await client.post("/forecast", content=body, headers=headers)
                    failed = response.status_code != 200
                except httpx.HTTPError:
                    failed = True
                latencies.append((time.perf_counter() - start) * 1000)
                errors += failed

        start = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        return time.perf_counter() - start, latencies, errors


def measure_level(process: subprocess.Popen, url: str, body: bytes, clients: int, requests: int) -> LevelResult:
    before = httpx.get(f"{url}/stats", timeout=30).json()
    rss_before = resident_mib(process.pid)
    seconds, latencies, errors = asyncio.run(post_concurrently(url, body, clients, requests))
    rss_after = resident_mib(process.pid)
    after = httpx.get(f"{url}/stats", timeout=30).json()
    return LevelResult(
        clients=clients,
        requests=requests,
        seconds=seconds,
        latencies_ms=latencies,
        errors=errors,
        rss_before_mib=rss_before,
        rss_after_mib=rss_after,
        forward_passes=after["batches"] - before["batches"],
        windows=after["windows"] - before["windows"],
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="nbeatsaq-synthetic", help="a shipped config's name or a YAML file")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32], help="concurrency levels")
    parser.add_argument("--requests", type=int, default=240, help="timed requests per concurrency level")
    parser.add_argument("--warmup", type=int, default=4, help="untimed requests before the first level")
    parser.add_argument("--series", type=int, default=4, help="series per request (windows per request)")
    parser.add_argument("--hours", type=int, default=336, help="hours of history per series")
    parser.add_argument("--max-batch-windows", type=int, default=64, help="the server's --max-batch-windows")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="the server's --max-wait-ms")
    parser.add_argument("--threads", type=int, default=1, help="the server's OMP_NUM_THREADS (torch's threads)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the model's config")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="serve-load-") as scratch:
        folder = Path(scratch)
        model, parameters = save_untrained_model(args.config, args.overrides, folder)
        body = request_body(args.series, args.hours)
        process, url = start_server(model, args, folder)
        try:
            health = httpx.get(f"{url}/health", timeout=30).json()
            print(
                f"model {args.config} ({parameters / 1e6:.2f} M parameters, history {health['history_length']} h, "
                f"horizon {health['horizon']} h); request: {args.series} series x {args.hours} h "
                f"({len(body) / 1024:.0f} KiB), level [80, 95]; server: --max-batch-windows {args.max_batch_windows} "
                f"--max-wait-ms {args.max_wait_ms:g}, {args.threads} torch thread(s); {os.cpu_count()} CPUs"
            )
            asyncio.run(post_concurrently(url, body, 1, args.warmup))
            print()
            print(
                "| clients | requests | req/s | p50 ms | p99 ms | errors | server RSS before MiB | "
                "server RSS after MiB | forward passes / request | windows / pass |"
            )
            print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
            for clients in args.clients:
                print(measure_level(process, url, body, clients, args.requests).row(), flush=True)
        finally:
            stop_server(process)


if __name__ == "__main__":
    main()
