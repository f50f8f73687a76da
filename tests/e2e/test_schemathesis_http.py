"""Schema-driven fuzzing over real HTTP: the same checks as tests/api/test_schemathesis.py,
against `xentropy serve` (uvicorn, its HTTP parser and the middleware in front of the app),
with a smaller budget.

The operations come from the committed openapi/openapi.json (tests/test_openapi.py holds
it equal to the app's; the first test here, to what the server serves): schemathesis'
lazy fixture loader does not work with this pytest, and collection must not start servers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis

from tests.e2e.conftest import Server, start_server, stop_server
from tests.fuzzing import API_KEY, AUTH, EXCLUDED_CHECKS, fuzz_settings

SPEC = Path(__file__).parents[2] / "openapi" / "openapi.json"
MAX_EXAMPLES = 40

schema = schemathesis.openapi.from_path(SPEC)
schema.config.checks.update(excluded_check_names=EXCLUDED_CHECKS)


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[Server]:
    server = start_server(env={"XENTROPY_API_KEYS": API_KEY, "XENTROPY_ACCESS_LOG": "false"})
    yield server
    stop_server(server)


def test_the_server_serves_the_committed_document(keyed_server: Server) -> None:
    served = httpx.get(keyed_server.url + "/openapi.json", timeout=10).json()
    assert served == json.loads(SPEC.read_text())


@schema.parametrize()
@fuzz_settings(MAX_EXAMPLES)
def test_every_operation_over_http(case: schemathesis.Case, keyed_server: Server) -> None:
    case.call_and_validate(base_url=keyed_server.url, headers=AUTH, timeout=30)
