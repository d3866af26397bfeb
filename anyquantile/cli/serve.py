"""Serve a saved model over HTTP: quantile forecasts for the histories clients post (``anyquantile/serving.py``).

    anyquantile serve --model DIR|F.onnx [--host 127.0.0.1] [--port 8000] [--max-batch-windows 64]
        [--max-wait-ms 5] [--log-level info]

    curl -s localhost:8000/health
    curl -s localhost:8000/forecast -H 'content-type: application/json' \\
        -d '{"history": [{"unique_id": "a", "ds": "2017-12-31 23:00", "y": 512.0}, ...], "level": [80]}'

Concurrent requests share one forward pass: the batch closes when it holds ``--max-batch-windows`` windows
(one per series asked) or ``--max-wait-ms`` after its first request, whichever comes first; ``/stats`` counts
the forward passes. ``--port 0`` listens on a free port (the line printed at start says which).
SIGINT / SIGTERM stop the server after the requests in flight are answered.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from pathlib import Path

from anyquantile.dataset.errors import DataValidationError
from anyquantile.experiment.errors import ConfigError, UsageError


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="a saved model folder (anyquantile export) or an .onnx file")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on; 0: a free one (default: 8000)")
    parser.add_argument(
        "--max-batch-windows", type=int, default=64, help="windows (series) per forward pass at most (default: 64)"
    )
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="how long a batch waits for more requests after its first one, in ms (default: 5)",
    )
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    args = parser.parse_args(argv)
    try:
        if not 0 <= args.port <= 65535:
            raise UsageError(f"--port must be in [0, 65535], got {args.port}")
        if not Path(args.model).exists():
            raise UsageError(f"not found: {args.model}")
        # imported late: argument errors come first, and fast
        from anyquantile.inference.saved_model import open_predictor
        from anyquantile.serving import create_app

        predictor = open_predictor(args.model)
        app = create_app(predictor, args.max_batch_windows, args.max_wait_ms)
        listener = _listen(args.host, args.port)
    except (ConfigError, UsageError, DataValidationError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    import uvicorn

    _log_to_stderr(args.log_level)
    host, port = listener.getsockname()[:2]
    print(f"serving '{predictor.alias}' from {args.model} on http://{_url_host(host)}:{port}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level=args.log_level, timeout_graceful_shutdown=30))
    server.run(sockets=[listener])  # returns (or re-raises SIGTERM, uvicorn's habit) once shut down
    return 0 if server.started else 1


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (uvicorn listens on it): a port in use is a UsageError, not a traceback."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as error:
        raise UsageError(f"--host {host!r} is not an address of this machine: {error.strerror}") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart need not wait
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _log_to_stderr(level: str) -> None:
    """The service's own messages (a failed forward pass, the requests served) beside uvicorn's."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
    package = logging.getLogger("anyquantile")
    package.addHandler(handler)
    package.setLevel(level.upper())


if __name__ == "__main__":
    sys.exit(main())
