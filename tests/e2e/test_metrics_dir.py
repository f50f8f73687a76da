"""PROMETHEUS_MULTIPROC_DIR faults, against real `xentropy serve --workers 2` processes.

FIX (severe): a full tmpfs there crashed a worker on every request (SIGBUS from a write
into an mmapped page that could not be allocated; 5 worker PIDs in 3 s); a read-only
directory made every request a 500, /healthz included; a path that is a regular file
ended start-up with a traceback; two services sharing a directory emptied it for each
other. Now the directory is checked and locked at start-up (a clear refusal, exit status
2, no traceback) and a metric that cannot be written is skipped and counted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.load import worker_pids
from tests.e2e.conftest import free_port, start_server, stop_server, wait_for

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

METRICS_OPEN = {"XENTROPY_METRICS_REQUIRE_KEY": "false"}


def serve_and_fail(directory: Path | str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """`xentropy serve --workers 2` with PROMETHEUS_MULTIPROC_DIR=directory, expected to
    refuse to start (if it starts, its whole process group is killed at ``timeout``)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(free_port()), "--workers", "2"],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@contextlib.contextmanager
def tmpfs(path: Path, *options: str) -> Iterator[Path]:
    path.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs",
                              str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_regular_file_is_refused_with_a_message(tmp_path):
    path = tmp_path / "metrics"
    path.write_text("not a directory")
    done = serve_and_fail(path)
    assert done.returncode == 2
    assert f"PROMETHEUS_MULTIPROC_DIR={path} is not a directory" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_a_read_only_directory_is_refused_with_a_message(tmp_path):
    # As root, permissions do not stop writes: a read-only mount does.
    with tmpfs(tmp_path / "ro", "ro", "size=1m") as path:
        done = serve_and_fail(path)
    assert done.returncode == 2
    assert "is not writable: Read-only file system" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_a_directory_in_use_by_another_service_is_refused(tmp_path):
    first = start_server("--workers", "2", env={
        **METRICS_OPEN, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    try:
        for _ in range(5):
            httpx.get(first.url + "/healthz", timeout=5)
        before = httpx.get(first.url + "/metrics", timeout=5).text
        assert 'route="/healthz"' in before
        done = serve_and_fail(tmp_path)
        assert done.returncode == 2
        assert f"is in use by another running service (pid {first.process.pid})" in done.stderr
        assert "Traceback" not in done.stderr + done.stdout
        # ... and the first service's counters are still there.
        assert list(tmp_path.glob("counter_*.db"))
        after = httpx.get(first.url + "/metrics", timeout=5).text
        assert 'route="/healthz"' in after
    finally:
        stop_server(first)


def test_a_full_tmpfs_costs_metrics_not_workers(tmp_path):
    with tmpfs(tmp_path / "full", "size=1m") as path:
        server = start_server("--workers", "2", env={
            **METRICS_OPEN, "PROMETHEUS_MULTIPROC_DIR": str(path)})
        try:
            workers = wait_for(lambda: len(w := worker_pids(server.process.pid)) == 2 and w,
                               20, "two workers")
            # Fill the filesystem, then ask for many new label sets (each a new entry in
            # the workers' metric files, which must grow).
            filler = os.open(path / "filler", os.O_WRONLY | os.O_CREAT)
            with contextlib.suppress(OSError):
                while True:
                    os.write(filler, b"\0" * 4096)
            os.close(filler)
            statuses = []
            t0 = time.monotonic()
            # "Connection: close": a new connection each time, so both workers get a share.
            with httpx.Client(base_url=server.url, timeout=5,
                              headers={"connection": "close"}) as http:
                for _ in range(2):
                    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
                        for route in ("/healthz", "/readyz", "/v1/info", "/", "/metrics",
                                      "/v1/divergences", "/v1/calibration", "/nowhere"):
                            r = http.request(method, route)
                            statuses.append((method, route, r.status_code))
                    assert http.get("/healthz").status_code == 200
            took = time.monotonic() - t0
            assert {s for _, _, s in statuses} <= {200, 404, 405, 415}, statuses
            assert took < 10, f"{len(statuses)} requests took {took:.1f} s"
            assert worker_pids(server.process.pid) == workers, "a worker died"
            log = server.output()
            assert "Child process" not in log and "died" not in log
            assert "metrics could not be written" in log
            text = httpx.get(server.url + "/metrics", timeout=5).text
            assert "xentropy_metrics_write_failures_total" in text
        finally:
            stop_server(server)
