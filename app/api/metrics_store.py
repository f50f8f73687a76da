"""Where Prometheus values are written, and what happens when writing them fails.

With one worker the values live in memory. With several, prometheus_client's
multi-process mode keeps them in files under PROMETHEUS_MULTIPROC_DIR, one mmapped file
per worker and metric type, and files fail in ways memory does not:

* a full tmpfs turned the first write into a new page of a mapping into SIGBUS (the page
  cannot be allocated), a worker killed on every request;
* an unwritable directory made every metric update raise, so every request was a 500,
  ``/healthz`` included;
* a path that is a regular file ended start-up with a traceback;
* two services given one directory emptied it for each other at start-up.

So:

* ``claim_directory`` (called by ``xentropy serve`` before the workers start) checks the
  directory (a directory, creatable, writable, room for the workers' first files) and takes
  an exclusive lock file in it for the life of the serving process; a second service gets
  a clear refusal instead of wiping the first one's counters.
* The files prometheus_client maps are allocated with ``posix_fallocate`` before they are
  mapped or grown: a full filesystem is an ``ENOSPC`` at that call, never a SIGBUS later.
* ``safely`` runs a metric update and, when it fails, skips it, counts it
  (``xentropy_metrics_write_failures_total``) and logs a warning at most once a minute:
  metrics never take the service down.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import values
from prometheus_client.core import CounterMetricFamily
from prometheus_client.mmap_dict import _INITIAL_MMAP_SIZE, MmapedDict
from prometheus_client.registry import Collector

logger = logging.getLogger("xentropy")

LOCK_NAME = "xentropy.lock"
# Files each worker creates at its first requests: counter, histogram, gauge (livesum).
_FILES_PER_WORKER = 3
_LOG_EVERY = 60.0  # seconds between two warnings about failed metric writes


class MetricsDirError(Exception):
    """PROMETHEUS_MULTIPROC_DIR cannot be used; the message says why and what to do."""


# ------------------------------------------------------------------ start-up checks


def _preallocate(path: str, size: int) -> None:
    """Give ``path`` (created if missing) ``size`` bytes of real storage, or raise OSError
    (ENOSPC on a full filesystem) and leave no empty file behind."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        created = os.fstat(fd).st_size == 0
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError:
            if created:
                # An empty .db file would break the aggregation of /metrics.
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise
    finally:
        os.close(fd)


def claim_directory(path: str, workers: int) -> int:
    """Check that ``path`` can hold the metrics of ``workers`` workers of one service, lock
    it and empty it of old ``*.db`` files. Returns the lock file's descriptor: keep it open
    while serving (closing it, or exiting, releases the lock).

    Raises:
      MetricsDirError: not a directory, not creatable or writable, too little room, or in
        use by another running service.
    """
    name = f"PROMETHEUS_MULTIPROC_DIR={path}"
    need = workers * _FILES_PER_WORKER * _INITIAL_MMAP_SIZE
    if os.path.lexists(path) and not os.path.isdir(path):
        raise MetricsDirError(f"{name} is not a directory; give the path of a directory")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise MetricsDirError(f"cannot create {name}: {exc.strerror}") from None
    try:
        lock = os.open(os.path.join(path, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise MetricsDirError(f"{name} is not writable: {exc.strerror}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(lock, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(lock)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise MetricsDirError(
                f"{name} is in use by another running service (pid {holder}); each service "
                "needs a directory of its own, or their counters overwrite each other"
            ) from None
        raise MetricsDirError(f"cannot lock {name}: {exc.strerror}") from None
    try:
        os.ftruncate(lock, 0)
        os.pwrite(lock, f"{os.getpid()}\n".encode(), 0)
        # Old values of an earlier run would be added to the new ones.
        for stale in glob.glob(os.path.join(path, "*.db")):
            os.remove(stale)
        probe = os.path.join(path, f"xentropy-probe-{os.getpid()}.tmp")
        try:
            _preallocate(probe, need)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(probe)
    except OSError as exc:
        os.close(lock)
        if exc.errno == errno.ENOSPC:
            raise MetricsDirError(
                f"{name} has less than the {need // 1024} KiB free that {workers} worker(s) "
                "need for their metric files"
            ) from None
        raise MetricsDirError(f"{name} is not writable: {exc.strerror}") from None
    return lock


# --------------------------------------------------------- preallocated metric files


class PreallocatedMmapedDict(MmapedDict):
    """prometheus_client's mmapped dict, with its file's storage allocated before each map
    (creation and every doubling), so that writing into the map cannot fault."""

    def __init__(self, filename: str, read_mode: bool = False) -> None:
        if not read_mode:
            _preallocate(filename, _INITIAL_MMAP_SIZE)
        super().__init__(filename, read_mode)

    def _init_value(self, key: str) -> None:
        encoded = len(key.encode("utf-8"))
        size = 4 + encoded + (8 - (encoded + 4) % 8) + 16  # as MmapedDict packs an entry
        capacity = self._capacity
        while self._used + size > capacity:
            capacity *= 2
        if capacity != self._capacity:
            os.posix_fallocate(self._f.fileno(), 0, capacity)  # ENOSPC here, not SIGBUS later
        super()._init_value(key)


values.MmapedDict = PreallocatedMmapedDict  # type: ignore[misc]  # looked up at each new file


# ------------------------------------------------------------------ failures at run time

_lock = threading.Lock()
_failures = 0
_last_logged = float("-inf")


def failures() -> int:
    """Metric updates this process skipped because they could not be written."""
    return _failures


def _count_failure(exc: BaseException) -> None:
    global _failures, _last_logged
    with _lock:
        _failures += 1
        now = time.monotonic()
        due = now - _last_logged >= _LOG_EVERY
        if due:
            _last_logged = now
        count = _failures
    if due:
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "memory")
        logger.warning(
            "metrics could not be written (%s: %s) in %s; serving goes on without them "
            "(%d updates skipped so far, xentropy_metrics_write_failures_total)",
            type(exc).__name__, exc, directory, count,
        )


def safely(update: Callable[..., Any], *args: Any) -> Any:
    """``update(*args)``, or None when it fails (the failure is counted and logged)."""
    try:
        return update(*args)
    except Exception as exc:  # OSError (ENOSPC, EACCES, EROFS), ValueError, struct.error
        _count_failure(exc)
        return None


class FailureCollector(Collector):
    """``xentropy_metrics_write_failures_total`` of this process (kept in memory: the
    files are what failed)."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "xentropy_metrics_write_failures",
            "Metric updates skipped because they could not be written (full or unwritable "
            "PROMETHEUS_MULTIPROC_DIR), in the worker that answers.",
            value=_failures,
        )


FAILURES = FailureCollector()
