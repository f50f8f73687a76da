"""Command line: `xentropy serve`, `xentropy healthcheck`, `xentropy export-openapi`, and the
library's `xentropy evaluate` (built and run by xentropy.cli)."""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import importlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import ValidationError

from app.settings import Settings, get_settings
from xentropy.cli import add_commands

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
HTTP_PROTOCOL = "app.protocol:XentropyHttpProtocol"

# flag -> setting, for `serve`; the values are written back to XENTROPY_* so that every
# worker process (which reads the environment) sees the same settings as the flags.
_SERVE_FLAGS = ("host", "port", "workers", "log_level", "graceful_timeout", "drain_delay")


class BackgroundStreamHandler(logging.StreamHandler):
    """A StreamHandler whose writes happen in a thread of its own: the event loop only
    formats the line (``%(message)s``: the JSON the middleware serialised) and appends it
    to a queue; a daemon thread writes what has queued up in one write and one flush,
    at most every ``gather_seconds``.
    Nothing is lost: flush() (called by logging.shutdown() at exit, and by the
    shutdown path of app.main before it ends the process) writes what is still queued.
    When the stream cannot keep up (``max_queued`` lines waiting: a pipe nobody reads),
    emit() writes in the caller's thread, which then waits as a StreamHandler would."""

    def __init__(self, stream: Any = None, max_queued: int = 10_000) -> None:
        super().__init__(stream)
        self.max_queued = max_queued
        self._lines: collections.deque[str] = collections.deque()
        self._wake = threading.Event()
        self._write_lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._writer_pid = -1

    def handle(self, record: logging.LogRecord) -> bool:
        # Handler.handle() holds the handler's lock around emit(); a deque append needs
        # none, and the event loop must not wait while the writer thread writes.
        rv = bool(self.filter(record))
        if rv:
            self.emit(record)
        return rv

    def writes_lines_as_is(self) -> bool:
        """Whether an INFO record's line would be written exactly as its message (no
        filter, the message-only format): then ``write_line`` may take the line itself,
        without a LogRecord (app.api.middleware does, a few µs per request)."""
        formatter = self.formatter
        return (not self.filters and self.level <= logging.INFO and formatter is not None
                and type(formatter) is logging.Formatter and formatter._fmt == "%(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.write_line(line)

    def write_line(self, line: str) -> None:
        """Queue one line for the writer thread."""
        self._lines.append(line)
        if len(self._lines) >= self.max_queued:
            self.flush()
            return
        if self._writer_pid != os.getpid():  # first line, or a forked child
            self._start_writer()
        if not self._wake.is_set():  # set() takes a lock and notifies, even when set
            self._wake.set()  # (the writer clears it before it takes the queued lines)

    def _start_writer(self) -> None:
        self._writer_pid = os.getpid()
        self._writer = threading.Thread(
            target=self._write_forever, name="xentropy-access-log", daemon=True
        )
        self._writer.start()

    #: Once woken, the writer lets lines gather this long before it writes them: one
    #: wake-up (and one GIL hand-off with the event loop) per batch, not per request.
    gather_seconds = 0.02

    def _write_forever(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(self.gather_seconds)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Write every queued line now (one write, one flush of the stream)."""
        with self._write_lock:
            lines = []
            with contextlib.suppress(IndexError):
                while True:
                    lines.append(self._lines.popleft())
            try:
                if lines:
                    self.stream.write(self.terminator.join(lines) + self.terminator)
                if self.stream is not None and hasattr(self.stream, "flush"):
                    self.stream.flush()
            except Exception:  # a closed or broken stdout: as StreamHandler, no crash
                if lines and logging.raiseExceptions:
                    sys.stderr.write(f"xentropy: {len(lines)} access-log line(s) could not "
                                     "be written\n")


def logging_config(level: str, access_log: bool) -> dict[str, Any]:
    """uvicorn's logging, plus the service's loggers: ``xentropy`` (errors, as uvicorn's
    on stderr) and ``xentropy.access`` (one JSON object per line on stdout, written by
    a thread of its own: BackgroundStreamHandler)."""
    from uvicorn.config import LOG_LEVELS, LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    numeric = LOG_LEVELS[level]
    config["formatters"]["json_lines"] = {"format": "%(message)s"}
    config["handlers"]["json_access"] = {
        "formatter": "json_lines",
        "class": "app.cli.BackgroundStreamHandler",
        "stream": "ext://sys.stdout",
    }
    config["loggers"]["xentropy"] = {"handlers": ["default"], "level": numeric, "propagate": False}
    config["loggers"]["xentropy.access"] = {
        "handlers": ["json_access"] if access_log else [],
        "level": numeric,
        "propagate": False,
    }
    return config


def prepare_metrics_dir(workers: int) -> tuple[str | None, int | None]:
    """With several workers, Prometheus metrics go through files in a directory shared by
    the workers (PROMETHEUS_MULTIPROC_DIR), set before they start. Returns the directory
    this process created (to remove at exit) or None, and the descriptor of the lock that
    keeps the directory this service's while it runs (None with one worker and no
    directory: the metrics stay in memory).

    A directory given in the environment is checked (a writable directory with room for
    the workers' files, used by no other running service), locked and emptied of old
    ``*.db`` files (stale values from an earlier run would be added to the new ones).

    Raises:
      MetricsDirError: the given directory cannot be used (the message says why).
    """
    from app.api.metrics_store import claim_directory

    given = os.environ.get(MULTIPROC_ENV)
    if given:
        return None, claim_directory(given, workers)
    if workers <= 1:
        return None, None
    path = tempfile.mkdtemp(prefix="xentropy-metrics-")  # $TMPDIR, else /tmp
    os.environ[MULTIPROC_ENV] = path
    try:
        return path, claim_directory(path, workers)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise


# Descriptors a worker needs besides its connections: the listening socket, logs, metric
# files, the event loop's own, imported libraries.
FD_RESERVE = 64


def fit_connection_limit(max_connections: int) -> int:
    """The per-worker connection limit the process's descriptor limit can hold: the soft
    RLIMIT_NOFILE is raised (up to the hard limit) to fit ``max_connections`` plus a
    reserve; if it cannot be, the connection limit is lowered to fit, with a warning, so
    that the limit (an answer) is reached before the descriptors run out (no answer)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max_connections + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft != resource.RLIM_INFINITY and soft < want:
        fitted = max(1, soft - FD_RESERVE)
        print(
            f"xentropy: warning: the descriptor limit ({soft}) cannot hold "
            f"XENTROPY_MAX_CONNECTIONS={max_connections}; serving at most {fitted} "
            "connections per worker",
            file=sys.stderr,
        )
        return fitted
    return max_connections


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve(settings: Settings) -> int:
    import uvicorn

    # The module, not the `main` command that the uvicorn package exports under that name.
    uvicorn_main: Any = importlib.import_module("uvicorn.main")

    from app.api.metrics_store import MetricsDirError

    for name in _SERVE_FLAGS:
        os.environ[f"XENTROPY_{name.upper()}"] = str(getattr(settings, name))
    connections = fit_connection_limit(settings.max_connections)
    if connections != settings.max_connections:
        os.environ["XENTROPY_MAX_CONNECTIONS"] = str(connections)
    get_settings.cache_clear()
    try:
        created, lock = prepare_metrics_dir(settings.workers)
    except MetricsDirError as exc:
        print(f"xentropy: cannot serve: {exc}", file=sys.stderr)
        return 2
    # uvicorn re-raises SIGTERM once it has shut down gracefully (which would end the
    # process "killed by SIGTERM"); a stop that was asked for and done is exit status 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    options: dict[str, Any] = dict(
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        log_config=logging_config(settings.log_level, settings.access_log),
        access_log=False,  # ours is the JSON one (app.api.middleware)
        server_header=False,
        timeout_graceful_shutdown=settings.graceful_timeout,
        lifespan="on",
        # uvicorn's httptools protocol with bounded request heads, header and write
        # timeouts and a connection limit (app/protocol.py)
        http=HTTP_PROTOCOL,
    )
    supervisor = uvicorn_main.Multiprocess
    uvicorn_main.Multiprocess = _closing_supervisor(supervisor)
    try:
        uvicorn.run("app.main:app", **options)
    finally:
        uvicorn_main.Multiprocess = supervisor
        if lock is not None:
            os.close(lock)
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
    return 0


def _closing_supervisor(base: Any) -> Any:
    """uvicorn's multi-worker supervisor, changed in one thing: at shutdown it closes its
    own copy of the listening socket before it stops the workers (uvicorn.run() looks the
    class up in uvicorn.main, where serve() puts this one for the time of the run).

    FIX: the supervisor kept the socket open until every worker had exited. Once the
    workers stopped accepting (after the drain delay), the kernel still completed new
    connections into that socket's backlog, where nobody would serve them: clients waited
    for the last in-flight request to finish (up to the graceful timeout) and were then
    reset, a POST sent and no answer. Now the socket closes with the workers' last copy,
    and new connections are refused at once."""

    class ClosingSupervisor(base):
        def terminate_all(self) -> None:
            for sock in self.sockets:
                sock.close()
            super().terminate_all()

    return ClosingSupervisor


def healthcheck(settings: Settings, url: str | None, timeout: float) -> int:
    """GET /healthz of the local server (the container's HEALTHCHECK: slim images have
    no curl). Exit status 0 when it answers 200."""
    if url is None:
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(
            settings.host, settings.host
        )
        netloc = f"[{host}]" if ":" in host else host
        url = f"http://{netloc}:{settings.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            ok = response.status == 200
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    try:
        settings = get_settings()
    except ValidationError as exc:
        print(f"xentropy: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="xentropy", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve_cmd = commands.add_parser("serve", help="run the HTTP service with uvicorn")
    serve_cmd.add_argument("--host", default=settings.host, help="XENTROPY_HOST")
    serve_cmd.add_argument("--port", type=int, default=settings.port, help="XENTROPY_PORT")
    serve_cmd.add_argument(
        "--workers", type=int, default=settings.workers, help="XENTROPY_WORKERS"
    )
    serve_cmd.add_argument("--log-level", default=settings.log_level, help="XENTROPY_LOG_LEVEL")
    serve_cmd.add_argument(
        "--graceful-timeout",
        type=int,
        default=settings.graceful_timeout,
        help="XENTROPY_GRACEFUL_TIMEOUT: seconds in-flight requests get after SIGTERM",
    )
    serve_cmd.add_argument(
        "--drain-delay",
        type=float,
        default=settings.drain_delay,
        help="XENTROPY_DRAIN_DELAY: seconds /readyz answers 503 before the listener closes",
    )

    health_cmd = commands.add_parser("healthcheck", help="exit 0 if the local /healthz is 200")
    health_cmd.add_argument("--url", default=None, help="default: the configured host and port")
    health_cmd.add_argument("--timeout", type=float, default=3.0)

    export = commands.add_parser("export-openapi", help="write the OpenAPI document")
    export.add_argument("path", nargs="?", default="-", help="output file (default: stdout)")
    add_commands(commands)  # evaluate

    args = parser.parse_args(argv)
    if getattr(args, "run", None) is not None:
        return int(args.run(args))
    if args.command == "serve":
        overrides = {name: getattr(args, name) for name in _SERVE_FLAGS}
        try:
            settings = Settings(**overrides)  # flags over the environment
        except ValidationError as exc:
            parser.error(str(exc))
        return serve(settings)
    if args.command == "healthcheck":
        return healthcheck(settings, args.url, args.timeout)
    from app.main import app

    text = json.dumps(app.openapi(), indent=2, ensure_ascii=False) + "\n"
    if args.path == "-":
        sys.stdout.write(text)
    else:
        Path(args.path).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
