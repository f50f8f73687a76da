from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    # stdout and stderr go to a file, not a pipe: a pipe nobody reads fills up with
    # access-log lines and then blocks the server.
    log: Path | None = field(default=None, repr=False)

    def output(self) -> str:
        """Everything the server printed so far (uvicorn's log, JSON access lines)."""
        return self.log.read_text(errors="replace") if self.log is not None else ""


def start_server(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
    health_path: str = "/healthz",
    module: str = "app",
    preexec_fn: Callable[[], Any] | None = None,
) -> Server:
    """Start `xentropy serve` on a free loopback port and wait until ``health_path``
    answers 200 (``args`` are extra `serve` flags, ``env`` extra environment, ``module``
    what `python -m` runs, ``preexec_fn`` runs in the child before it starts)."""
    port = free_port()
    fd, log_name = tempfile.mkstemp(prefix="xentropy-e2e-", suffix=".log")
    process = subprocess.Popen(
        [sys.executable, "-m", module, "serve", "--host", "127.0.0.1", "--port", str(port),
         *args],
        env={**os.environ, **(env or {})},
        stdout=fd,
        stderr=subprocess.STDOUT,
        preexec_fn=preexec_fn,
    )
    os.close(fd)
    server = Server(f"http://127.0.0.1:{port}", process, Path(log_name))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(server.output() or "exited")
        try:
            if httpx.get(server.url + health_path, timeout=1.0).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    process.wait()
    raise RuntimeError("server did not become healthy:\n" + server.output())


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    if server.log is not None:
        server.log.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    s = start_server()
    yield s
    stop_server(s)


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns something truthy (returned), or fail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
