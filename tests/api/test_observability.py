"""Request ids, JSON access logs and the Prometheus metrics, in-process."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.api.middleware import request_id_from
from app.api.routes.metrics import mark_dead_workers
from app.main import create_app
from app.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

CAT = "/v1/losses/categorical"
BODY = {"logits": [[2.0, 1.0, 0.1]], "labels": [0]}


def samples(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(client: TestClient, name: str, **labels: str) -> float:
    return samples(client).get((name, frozenset(labels.items())), 0.0)


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "xentropy.access"]


@pytest.fixture()
def failing_client() -> Iterator[TestClient]:
    app = create_app()

    @app.get("/boom", include_in_schema=False)
    def boom() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_request_id_is_generated_and_echoed(client):
    r = client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    assert client.get("/healthz").headers["x-request-id"] != r.headers["x-request-id"]


def test_sane_request_id_is_kept(client):
    rid = "req-2026.11:abc_DEF"
    assert client.get("/healthz", headers={"X-Request-ID": rid}).headers["x-request-id"] == rid


@pytest.mark.parametrize(
    "rid", ["a" * 129, "has space", "semi;colon", "quote\"", "ünï".encode()], ids=str
)
def test_insane_request_id_is_replaced(client, rid):
    got = client.get("/healthz", headers={"X-Request-ID": rid})
    assert re.fullmatch(r"[0-9a-f]{32}", got.headers["x-request-id"])


def test_request_id_from_scope():
    assert request_id_from({"headers": [(b"x-request-id", b"abc")]}) == "abc"
    assert len(request_id_from({"headers": []})) == 32


def test_one_json_access_line_per_request(client, caplog):
    caplog.set_level(logging.INFO, logger="xentropy.access")
    r = client.post(CAT, json=BODY, headers={"X-Request-ID": "trace-1"})
    (line,) = access_lines(caplog)
    assert line["method"] == "POST" and line["route"] == CAT and line["path"] == CAT
    assert line["status"] == 200 and line["request_id"] == "trace-1"
    assert line["bytes_in"] == len(r.request.content)
    assert line["bytes_out"] == len(r.content)
    assert line["duration_ms"] >= 0 and line["client"] == "testclient"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])


def test_access_log_never_holds_bodies_or_keys(caplog):
    caplog.set_level(logging.INFO, logger="xentropy")
    with TestClient(create_app(Settings(api_keys=["very-secret-key"]))) as c:
        c.post(CAT + "?token=query-secret", json={"logits": [[123.456, 1.0]], "labels": [0]},
               headers={"Authorization": "Bearer very-secret-key"})
        c.post(CAT, json=BODY, headers={"X-API-Key": "wrong-secret-key"})
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in ["very-secret-key", "wrong-secret-key", "123.456", "query-secret"]:
        assert secret not in text
    assert [line["status"] for line in access_lines(caplog)] == [200, 401]


def test_access_log_can_be_turned_off(caplog):
    caplog.set_level(logging.INFO, logger="xentropy.access")
    with TestClient(create_app(Settings(access_log=False))) as c:
        c.get("/healthz")
    assert access_lines(caplog) == []


def test_metrics_count_requests_per_route_template_and_status(client):
    labels = {"method": "POST", "route": CAT, "status": "200"}
    before = samples(client)
    sent = client.post(CAT, json=BODY).request.content
    client.post(CAT, json={"logits": [[1.0]], "labels": [5]})  # 422
    after = samples(client)

    def delta(name: str, **lab: str) -> float:
        key = (name, frozenset(lab.items()))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("xentropy_http_requests_total", **labels) == 1
    assert delta("xentropy_http_requests_total", **{**labels, "status": "422"}) == 1
    assert delta("xentropy_http_errors_total", **{**labels, "status": "422"}) == 1
    assert delta("xentropy_http_errors_total", **labels) == 0
    for histogram in ("request_duration_seconds", "request_size_bytes", "response_size_bytes"):
        name = f"xentropy_http_{histogram}"
        assert delta(f"{name}_count", **labels) == 1
        assert delta(f"{name}_bucket", **labels, le="+Inf") == 1
    assert delta("xentropy_http_request_size_bytes_sum", **labels) == len(sent)
    assert ("xentropy_http_requests_in_progress", frozenset({("method", "GET")})) in after


def test_unknown_paths_share_one_label(client):
    client.get("/no/such/path/12345")
    text = client.get("/metrics").text
    assert "12345" not in text
    assert value(client, "xentropy_http_requests_total", method="GET", route="<unmatched>",
                 status="404") >= 1


def test_odd_methods_share_one_label(client):
    client.request("PROPFIND", "/healthz")
    assert value(client, "xentropy_http_requests_total", method="OTHER", route="/healthz",
                 status="405") >= 1


def test_unhandled_error_is_a_500_with_request_id_and_counted(failing_client):
    r = failing_client.get("/boom", headers={"X-Request-ID": "boom-1"})
    assert r.status_code == 500
    assert r.json() == {"detail": "internal error"}
    assert r.headers["x-request-id"] == "boom-1"
    assert value(failing_client, "xentropy_http_errors_total", method="GET", route="/boom",
                 status="500") >= 1


def test_body_limit_still_applies(small_limits_client, caplog):
    caplog.set_level(logging.INFO, logger="xentropy.access")

    def chunks() -> Iterator[bytes]:
        yield b'{"logits": ['
        for _ in range(100):
            yield b"[1.0, 2.0, 3.0]," * 10

    r = small_limits_client.post(
        CAT, content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    (line,) = access_lines(caplog)
    assert line["status"] == 413 and line["bytes_in"] > 4096


def test_readyz_reports_draining(client):
    state = client.app.state
    try:
        state.draining = True
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json() == {"status": "draining"}
    finally:
        state.draining = False
    assert client.get("/readyz").json() == {"status": "ok"}


def test_dead_workers_leave_the_live_gauges(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = int(done.stdout)
    for pid in (dead, os.getpid()):
        (tmp_path / f"gauge_livesum_{pid}.db").write_bytes(b"")
        (tmp_path / f"counter_{pid}.db").write_bytes(b"")
    mark_dead_workers(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"counter_{dead}.db", f"counter_{os.getpid()}.db", f"gauge_livesum_{os.getpid()}.db"]
    )


def test_metrics_that_cannot_be_written_never_fail_a_request(client, monkeypatch, caplog):
    """FIX: an unwritable PROMETHEUS_MULTIPROC_DIR made every request a 500, /healthz
    included. A metric update that raises is skipped, counted and logged."""
    from app.api import metrics_store, middleware

    def unwritable(*labels: str) -> None:
        raise PermissionError(13, "Permission denied")

    before = metrics_store.failures()
    with monkeypatch.context() as patched:
        for metric in (middleware.REQUESTS, middleware.IN_PROGRESS, middleware.LATENCY):
            patched.setattr(metric, "labels", unwritable)
        # The label children are bound once per label set: none yet, so every update
        # goes through the failing .labels() again.
        patched.setattr(middleware, "_BOUND", {})
        patched.setattr(middleware, "_BOUND_IN_PROGRESS", {})
        patched.setattr(metrics_store, "_last_logged", float("-inf"))
        with caplog.at_level(logging.WARNING, logger="xentropy"):
            assert client.get("/healthz").status_code == 200
            assert client.get("/readyz").status_code == 200
            assert client.post(CAT, json=BODY).status_code == 200
    assert metrics_store.failures() >= before + 6
    assert any("metrics could not be written (PermissionError" in r.getMessage()
               for r in caplog.records)
    assert value(client, "xentropy_metrics_write_failures_total") >= before + 6


def test_metric_files_are_allocated_before_they_are_mapped(tmp_path, monkeypatch):
    """FIX: on a full tmpfs a write into an mmapped metric file was a SIGBUS; the storage
    is now allocated first, so a full filesystem is an ENOSPC at that call."""
    import errno

    from app.api import metrics_store

    allocated: list[int] = []
    real = os.posix_fallocate

    def fallocate(fd: int, offset: int, length: int) -> None:
        allocated.append(length)
        if len(allocated) > 1:  # the first file fits, its growth does not
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, offset, length)

    monkeypatch.setattr(os, "posix_fallocate", fallocate)
    store = metrics_store.PreallocatedMmapedDict(str(tmp_path / "counter_1.db"))
    store.write_value("small", 1.0, 0.0)
    assert allocated == [65536]
    with pytest.raises(OSError, match="No space"):
        for i in range(2000):  # 56 bytes each: the file must grow
            store.write_value(f"key-{i:04d}-" + "x" * 16, 1.0, 0.0)
    assert allocated[-1] == 131072
    store.close()
    with pytest.raises(OSError, match="No space"):
        metrics_store.PreallocatedMmapedDict(str(tmp_path / "counter_2.db"))
    assert not (tmp_path / "counter_2.db").exists()  # no empty file for /metrics to trip on


def test_access_log_time_is_utc_milliseconds_like_isoformat():
    """The access log's time field, formatted once per second, reads as
    ``datetime.isoformat(timespec="milliseconds")`` with a Z."""
    import re
    from datetime import UTC, datetime

    from app.api.middleware import _utc_now_ms

    before = datetime.now(UTC).replace(microsecond=0)
    text = _utc_now_ms()
    after = datetime.now(UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert before <= parsed <= after
