"""The README's examples print what the README says they print: every curl command,
every `python -c` command and every Python session."""

from __future__ import annotations

import doctest
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

README = (Path(__file__).parents[1] / "README.md").read_text()
# [^`]: a block's output never spans into the next block.
EXAMPLES = re.findall(r"```console\n\$ (curl [^\n]+)\n([^`]*?)\n```", README)
PYTHON_COMMANDS = re.findall(r"```console\n\$ (python -c [^\n]+)\n([^`]*?)\n```", README)
SESSIONS = re.findall(r"```pycon\n(.*?)```", README, re.S)
# Shell transcripts run in a fresh directory: the commands, then what the last one prints.
TRANSCRIPTS = re.findall(r'```console\n\$ cd "\$\(mktemp -d\)"\n((?:\$ [^\n]+\n)+)([^`]*?)\n```',
                         README)


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


@pytest.mark.parametrize(("command", "printed"), PYTHON_COMMANDS)
def test_readme_python_command(command, printed):
    """Run in a fresh interpreter, as a newcomer would after `pip install .`."""
    args = shlex.split(command)
    out = subprocess.run([sys.executable, *args[1:]], capture_output=True, text=True,
                         check=True)
    assert out.stdout.rstrip("\n") == printed


def test_readme_has_an_evaluate_transcript():
    assert any("xentropy evaluate" in commands for commands, _ in TRANSCRIPTS)


@pytest.mark.parametrize(("commands", "printed"), TRANSCRIPTS)
def test_readme_transcript(tmp_path, commands, printed):
    """`python` is this interpreter and `xentropy` this checkout's entry point."""
    root = str(Path(__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": root}
    out = ""
    for line in commands.splitlines():
        args = shlex.split(line.removeprefix("$ "))
        if args[0] == "python":
            args = [sys.executable, *args[1:]]
        elif args[0] == "xentropy":
            args = [sys.executable, "-m", "app", *args[1:]]
        out = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                             check=True).stdout
    assert out.rstrip("\n") == printed


def test_readme_has_a_library_example_and_a_session():
    assert PYTHON_COMMANDS and SESSIONS


@pytest.mark.parametrize("session", SESSIONS)
def test_readme_python_session(session):
    test = doctest.DocTestParser().get_doctest(session, {}, "README", "README.md", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.failures == 0 and runner.tries > 0


def test_readme_pytorch_convention_example_is_what_pytorch_computes():
    torch = pytest.importorskip("torch", reason="PyTorch oracle not installed (oracles extra)")
    command, printed = next((c, p) for c, p in EXAMPLES if '"convention": "pytorch"' in c)
    body = json.loads(shlex.split(command)[shlex.split(command).index("-d") + 1])
    expected = torch.nn.functional.cross_entropy(
        torch.tensor(body["logits"], dtype=torch.float64), torch.tensor(body["labels"]),
        label_smoothing=body["label_smoothing"],
    ).item()
    assert json.loads(printed)["loss"] == pytest.approx(expected, rel=1e-12)
    assert np.isfinite(expected)
