"""Schema-driven fuzzing over real HTTP, the way an outsider would run it:
``schemathesis run URL/openapi.json --checks all`` against `xentropy serve` (uvicorn, its
HTTP parser and the middleware in front of the app), in both configurations:

* no API keys (the default): the served document declares no security, and every
  operation answers without a key;
* keys configured, sent by schemathesis with ``-H "Authorization: Bearer KEY"``: the
  document declares both schemes on every /v1 operation and /metrics, and
  ``ignored_auth`` checks that each refuses requests without a key or with a wrong one.

Every check runs except ``positive_data_acceptance``, replaced (through the hooks module
tests/fuzzing.py, loaded with SCHEMATHESIS_HOOKS) by its narrower version
``refused_only_beyond_the_schema``: schema-valid requests may be refused only for rules
JSON Schema cannot state. The budget per operation is small (XENTROPY_FUZZ_HTTP_EXAMPLES,
default 25, plus the examples and coverage phases); in-process fuzzing
(tests/api/test_schemathesis.py) has the larger one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import start_server, stop_server
from tests.fuzzing import API_KEY, EXCLUDED_CHECKS

ROOT = Path(__file__).parents[2]
SPEC = ROOT / "openapi" / "openapi.json"
MAX_EXAMPLES = int(os.environ.get("XENTROPY_FUZZ_HTTP_EXAMPLES", "25"))
CONFIGS = {
    "no-keys": {},
    "keys": {"XENTROPY_API_KEYS": API_KEY},
}
#: Hypothesis health checks that only say "this schema is big" (as in tests/fuzzing.py).
SUPPRESSED = "too_slow,filter_too_much,data_too_large"


def schemathesis_command(url: str, *, keyed: bool) -> list[str]:
    executable = Path(sys.executable).with_name("schemathesis")
    command = [str(executable)] if executable.exists() else [sys.executable, "-m",
                                                             "schemathesis.cli"]
    command += [
        "run", f"{url}/openapi.json",
        "--checks", "all",
        "--exclude-checks", ",".join(EXCLUDED_CHECKS),
        "--max-examples", str(MAX_EXAMPLES),
        "--suppress-health-check", SUPPRESSED,
        "--request-timeout", "30",
        "--no-color",
    ]
    # Deterministic in CI; elsewhere random, but without an example database in the tree.
    # (schemathesis refuses both together: deterministic implies no database.)
    if os.environ.get("CI"):
        command.append("--generation-deterministic")
    else:
        command += ["--generation-database", "none"]
    if keyed:
        command += ["--header", f"Authorization: Bearer {API_KEY}"]
    return command


def served_document(url: str) -> dict:
    return httpx.get(url + "/openapi.json", timeout=10).json()


def without_security(document: dict) -> dict:
    """The document with every operation's ``security`` taken out."""
    stripped = json.loads(json.dumps(document))
    for item in stripped["paths"].values():
        for operation in item.values():
            operation.pop("security", None)
    return stripped


@pytest.mark.parametrize("config", CONFIGS)
def test_schemathesis_checks_all_pass(config: str, tmp_path: Path) -> None:
    keyed = bool(CONFIGS[config])
    server = start_server(env={**CONFIGS[config], "XENTROPY_ACCESS_LOG": "false"})
    try:
        committed = json.loads(SPEC.read_text())
        served = served_document(server.url)
        if keyed:  # the same document, with the schemes declared where keys are enforced
            assert without_security(served) == committed
            secured = {path for path, item in served["paths"].items()
                       for op in item.values() if op.get("security")}
            assert secured == {p for p in served["paths"] if p.startswith("/v1")} | {"/metrics"}
        else:
            assert served == committed
        done = subprocess.run(
            schemathesis_command(server.url, keyed=keyed),
            cwd=tmp_path,  # its report directory and cassettes stay out of the tree
            env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzzing",
                 "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
            capture_output=True, text=True, timeout=600,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-8000:]
        assert "refused_only_beyond_the_schema" not in output  # the hook ran, and held
        # Warnings may remain: "mostly rejected generated data" for /v1/divergences, whose
        # rows must sum to 1 (a rule JSON Schema cannot state); they are not failures.
        assert " passed" in output and "failed" not in output.rsplit("SUMMARY", 1)[-1]
    finally:
        stop_server(server)
