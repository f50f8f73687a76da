"""Settings from the environment and from `xentropy serve` flags."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from app import cli
from app.settings import Settings, get_settings

ENV_NAMES = [
    "PORT",
    "PROMETHEUS_MULTIPROC_DIR",
    *(
        f"XENTROPY_{name.upper()}"
        for name in [*Settings.model_fields, "api_keys_file"]
    ),
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_defaults():
    s = Settings()
    assert (s.host, s.port, s.workers, s.log_level) == ("127.0.0.1", 8000, 1, "info")
    assert (s.graceful_timeout, s.drain_delay, s.access_log) == (20, 0.0, True)
    assert s.api_keys == [] and s.api_keys_file is None and not s.auth_enabled
    assert s.metrics_require_key is True
    assert (s.max_header_bytes, s.max_header_count, s.max_url_bytes) == (65536, 100, 8192)
    assert (s.header_timeout, s.write_timeout, s.max_connections) == (10.0, 30.0, 1000)


def test_every_setting_from_the_environment(monkeypatch, tmp_path):
    keys_file = tmp_path / "keys"
    keys_file.write_text("# rotated 2026-01\nfile-key\n\n  other-key  \n")
    for name, value in {
        "HOST": "0.0.0.0", "PORT": "9001", "WORKERS": "3", "LOG_LEVEL": "WARNING",
        "ACCESS_LOG": "false", "GRACEFUL_TIMEOUT": "7", "DRAIN_DELAY": "2.5",
        "MAX_BODY_BYTES": "4096", "MAX_ELEMENTS": "10", "API_KEYS": " a, b ,,",
        "API_KEYS_FILE": str(keys_file), "METRICS_REQUIRE_KEY": "0",
        "MAX_HEADER_BYTES": "4096", "MAX_HEADER_COUNT": "20", "MAX_URL_BYTES": "1024",
        "HEADER_TIMEOUT": "2.5", "WRITE_TIMEOUT": "4", "MAX_CONNECTIONS": "50",
    }.items():
        monkeypatch.setenv(f"XENTROPY_{name}", value)
    s = Settings()
    assert (s.host, s.port, s.workers, s.log_level) == ("0.0.0.0", 9001, 3, "warning")
    assert (s.access_log, s.graceful_timeout, s.drain_delay) == (False, 7, 2.5)
    assert (s.max_body_bytes, s.max_elements) == (4096, 10)
    assert s.api_keys == ["a", "b"]
    assert len(s.api_key_digests) == 4  # a, b, file-key, other-key
    assert s.metrics_require_key is False
    assert (s.max_header_bytes, s.max_header_count, s.max_url_bytes) == (4096, 20, 1024)
    assert (s.header_timeout, s.write_timeout, s.max_connections) == (2.5, 4.0, 50)


def test_port_falls_back_to_platform_port(monkeypatch):
    monkeypatch.setenv("PORT", "9100")
    assert Settings().port == 9100
    monkeypatch.setenv("XENTROPY_PORT", "9200")
    assert Settings().port == 9200
    assert Settings(port=9300).port == 9300


@pytest.mark.parametrize(
    ("name", "value"),
    [("WORKERS", "0"), ("PORT", "70000"), ("LOG_LEVEL", "loud"), ("GRACEFUL_TIMEOUT", "-1"),
     ("DRAIN_DELAY", "-1"), ("MAX_HEADER_BYTES", "100"), ("HEADER_TIMEOUT", "0"),
     ("WRITE_TIMEOUT", "-1"), ("MAX_CONNECTIONS", "0"), ("MAX_URL_BYTES", "10")],
)
def test_invalid_values_are_refused(monkeypatch, name, value):
    monkeypatch.setenv(f"XENTROPY_{name}", value)
    with pytest.raises(ValidationError):
        Settings()


def test_a_key_file_without_keys_or_missing_is_an_error(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("# no keys yet\n\n")
    with pytest.raises(ValidationError, match="holds no key"):
        Settings(api_keys_file=empty)
    with pytest.raises(ValidationError, match="cannot read"):
        Settings(api_keys_file=tmp_path / "missing")


def test_keys_never_appear_in_repr():
    s = Settings(api_keys=["s3cret-key"])
    assert "s3cret-key" not in repr(s) and "s3cret-key" not in str(s)


@pytest.fixture()
def fake_uvicorn(monkeypatch):
    """Run `serve` with uvicorn.run replaced; restore the environment and SIGTERM."""
    import uvicorn

    calls: list[dict[str, Any]] = []
    seen: dict[str, Any] = {}

    def run(app: str, **kwargs: Any) -> None:
        calls.append({"app": app, **kwargs})
        seen["multiproc_dir"] = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        seen["settings"] = get_settings()

    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.setattr(os, "environ", dict(os.environ))
    previous = signal.getsignal(signal.SIGTERM)
    yield calls, seen
    signal.signal(signal.SIGTERM, previous)


def test_flags_override_the_environment_and_reach_the_workers(monkeypatch, fake_uvicorn):
    calls, seen = fake_uvicorn
    os.environ["XENTROPY_PORT"] = "9001"
    os.environ["XENTROPY_LOG_LEVEL"] = "debug"
    assert cli.main(["serve", "--port", "9002", "--workers", "2", "--graceful-timeout", "5"]) == 0
    (call,) = calls
    assert call["app"] == "app.main:app"
    assert (call["port"], call["workers"], call["log_level"]) == (9002, 2, "debug")
    assert call["timeout_graceful_shutdown"] == 5
    assert call["access_log"] is False  # the JSON access log replaces uvicorn's
    # workers re-read the environment: it now says what the flags said
    assert (seen["settings"].port, seen["settings"].workers) == (9002, 2)
    # several workers: a fresh Prometheus multi-process directory, removed afterwards
    path = seen["multiproc_dir"]
    assert path and "xentropy-metrics-" in path and not Path(path).exists()


def test_one_worker_needs_no_multiprocess_metrics(fake_uvicorn):
    calls, seen = fake_uvicorn
    assert cli.main(["serve"]) == 0
    assert seen["multiproc_dir"] is None and calls[0]["workers"] == 1


def test_a_given_multiprocess_dir_is_used_and_emptied(fake_uvicorn, tmp_path):
    _, seen = fake_uvicorn
    (tmp_path / "counter_123.db").write_bytes(b"stale")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    assert cli.main(["serve", "--workers", "2"]) == 0
    assert seen["multiproc_dir"] == str(tmp_path)
    assert tmp_path.exists() and not list(tmp_path.glob("*.db"))


def test_bad_flags_are_a_usage_error(fake_uvicorn, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["serve", "--workers", "0"])
    assert exc.value.code == 2
    assert not fake_uvicorn[0]


def test_logging_config_adds_the_json_access_logger():
    config = cli.logging_config("warning", access_log=True)
    assert config["loggers"]["xentropy.access"]["handlers"] == ["json_access"]
    assert config["handlers"]["json_access"]["stream"] == "ext://sys.stdout"
    assert config["handlers"]["json_access"]["class"] == "app.cli.BackgroundStreamHandler"
    assert cli.logging_config("info", access_log=False)["loggers"]["xentropy.access"][
        "handlers"] == []


def test_access_lines_are_written_by_a_thread_in_order_and_flushed_at_the_end():
    import io
    import logging
    import time

    stream = io.StringIO()
    handler = cli.BackgroundStreamHandler(stream, max_queued=50)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("xentropy.test-background-handler")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        for i in range(120):  # past max_queued: some written in the caller's thread
            log.info('{"n":%d}', i)
        deadline = time.monotonic() + 5
        while stream.getvalue().count("\n") < 120 and time.monotonic() < deadline:
            time.sleep(0.01)
        log.info('{"n":120}')
        handler.flush()  # what logging.shutdown() and app.main's exit path call
        assert stream.getvalue() == "".join(f'{{"n":{i}}}\n' for i in range(121))
    finally:
        log.removeHandler(handler)
        handler.close()


def test_healthcheck_fails_when_nothing_listens():
    from tests.e2e.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}/healthz"
    assert cli.main(["healthcheck", "--url", url, "--timeout", "1"]) == 1


def test_serve_runs_uvicorn_with_the_socket_closing_supervisor(monkeypatch):
    """With workers, uvicorn.run() finds the supervisor that closes its listening socket at
    shutdown (tests/e2e/test_faults.py shows why), and uvicorn is left as it was after."""
    import importlib

    import uvicorn

    uvicorn_main = importlib.import_module("uvicorn.main")
    original = uvicorn_main.Multiprocess
    seen: list[type] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.append(uvicorn_main.Multiprocess))
    monkeypatch.setattr(os, "environ", dict(os.environ))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert cli.main(["serve", "--workers", "2"]) == 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    (supervisor,) = seen
    assert issubclass(supervisor, original) and supervisor is not original
    assert uvicorn_main.Multiprocess is original


def test_serve_runs_the_bounded_http_protocol(fake_uvicorn):
    calls, _ = fake_uvicorn
    assert cli.main(["serve"]) == 0
    assert calls[0]["http"] == "app.protocol:XentropyHttpProtocol"


def test_a_metrics_path_that_is_a_file_is_a_clear_refusal(fake_uvicorn, tmp_path, capsys):
    path = tmp_path / "metrics"
    path.write_text("")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    assert cli.main(["serve", "--workers", "2"]) == 2
    assert not fake_uvicorn[0]
    assert f"cannot serve: PROMETHEUS_MULTIPROC_DIR={path} is not a directory" in (
        capsys.readouterr().err)


def test_a_metrics_directory_is_locked_while_serving(fake_uvicorn, tmp_path):
    from app.api.metrics_store import MetricsDirError, claim_directory

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    lock = claim_directory(str(tmp_path), 2)  # as another running service would
    try:
        with pytest.raises(MetricsDirError, match=f"in use by another running service "
                           f"\\(pid {os.getpid()}\\)"):
            claim_directory(str(tmp_path), 2)
        assert cli.main(["serve", "--workers", "2"]) == 2
    finally:
        os.close(lock)
    assert cli.main(["serve", "--workers", "2"]) == 0  # released: usable again
    assert (tmp_path / "xentropy.lock").exists()


def test_the_connection_limit_fits_the_descriptor_limit(monkeypatch, capsys):
    import resource

    limits = {"soft": 1024, "hard": 4096}
    monkeypatch.setattr(resource, "getrlimit", lambda _: (limits["soft"], limits["hard"]))

    def setrlimit(_: int, value: tuple[int, int]) -> None:
        limits["soft"] = value[0]

    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    assert cli.fit_connection_limit(1000) == 1000 and limits["soft"] == 1064  # raised
    limits.update(soft=1024, hard=1024)
    assert cli.fit_connection_limit(1000) == 960  # cannot be raised: the limit is lowered
    assert "serving at most 960 connections per worker" in capsys.readouterr().err
