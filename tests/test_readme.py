"""The README's curl examples print what the README says they print."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

README = (Path(__file__).parents[1] / "README.md").read_text()
EXAMPLES = re.findall(r"```console\n\$ (curl [^\n]+)\n(.*?)\n```", README, re.S)


def _request(command: str) -> tuple[str, str, bytes | None]:
    args = shlex.split(command)
    url = next(a for a in args if a.startswith("localhost:"))
    path = url.removeprefix("localhost:8000")
    body = args[args.index("-d") + 1].encode() if "-d" in args else None
    return ("POST" if "-X" in args else "GET"), path, body


def test_readme_has_examples():
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize(("command", "printed"), EXAMPLES, ids=[c[:60] for c, _ in EXAMPLES])
def test_readme_example_output(client, command, printed):
    method, path, body = _request(command)
    if method == "POST":
        r = client.post(path, content=body, headers={"content-type": "application/json"})
    else:
        r = client.get(path)
    # The bytes, not just the parsed JSON: key order is part of what the README shows.
    assert r.content.decode() == printed


def test_readme_diagram_is_what_the_service_draws(client):
    root = Path(__file__).parents[1]
    body = (root / "docs" / "diagram-request.json").read_bytes()
    r = client.post("/v1/calibration/diagram", content=body,
                    headers={"content-type": "application/json"})
    assert r.status_code == 200
    assert r.text == (root / "docs" / "reliability-diagram.svg").read_text()
