"""States round-trip through a client generated from openapi/openapi.json, against a real
server: parts of a batch POSTed with `return_state`, their states (typed models of the
client) sent back to `/v1/merge`, the merged result equal to the whole batch's answer.

Modelled on tests/e2e/test_generated_client.py (generation once per module, into a
temporary directory, with the settings of openapi/client-config.yaml).
"""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from tests.e2e.conftest import Server, start_server, stop_server

ROOT = Path(__file__).parents[2]
SPEC = ROOT / "openapi" / "openapi.json"
CONFIG = ROOT / "openapi" / "client-config.yaml"
PACKAGE = "xentropy_client"


@pytest.fixture(scope="module")
def xc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    out = tmp_path_factory.mktemp("states_client")
    generator = Path(sys.executable).with_name("openapi-python-client")
    command = [str(generator)] if generator.exists() else [
        sys.executable, "-m", "openapi_python_client"]
    done = subprocess.run(
        [*command, "generate", "--path", str(SPEC), "--config", str(CONFIG), "--meta", "none",
         "--output-path", str(out / PACKAGE), "--fail-on-warning"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    stale = [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]
    saved = {name: sys.modules.pop(name) for name in stale}
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]
        sys.modules.update(saved)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = start_server()
    yield s
    stop_server(s)


@pytest.fixture()
def client(xc: ModuleType, server: Server) -> Any:
    return xc.Client(base_url=server.url, timeout=30.0)


def load(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


RNG = np.random.default_rng(4)
LOGITS = RNG.normal(scale=2.0, size=(30, 4))
LABELS = RNG.integers(0, 4, 30)
PARTS = [slice(0, 7), slice(7, 8), slice(8, 30)]


def test_loss_states_round_trip(xc: ModuleType, client: Any) -> None:
    m = load("models")
    categorical = load("api.losses.losses_categorical")
    merge = load("api.states.states_merge")
    states = []
    for part in PARTS:
        out = categorical.sync(client=client, body=m.CategoricalLossRequest(
            logits=LOGITS[part].tolist(), labels=LABELS[part].tolist(), label_smoothing=0.1,
            return_state=True))
        assert isinstance(out.state, m.CategoricalLossState)
        assert out.state.options.epsilon is None  # a null the client keeps
        states.append(out.state)
    whole = categorical.sync(client=client, body=m.CategoricalLossRequest(
        logits=LOGITS.tolist(), labels=LABELS.tolist(), label_smoothing=0.1))
    merged = merge.sync(client=client, body=m.MergeRequest(states=states))
    assert isinstance(merged, m.MergeResponse)
    assert isinstance(merged.state, m.CategoricalLossState)
    assert merged.result.loss == pytest.approx(whole.loss, rel=1e-12)
    assert (merged.result.n_samples, merged.result.weight_sum) == (30, 30.0)
    # the merged state goes back in, as a client would store and resend it
    again = asyncio.run(merge.asyncio(client=client, body=m.MergeRequest(
        states=[m.CategoricalLossState.from_dict(merged.state.to_dict())])))
    assert again.result.loss == merged.result.loss


def test_calibration_states_round_trip(xc: ModuleType, client: Any) -> None:
    m = load("models")
    report = load("api.calibration.calibration_report")
    merge = load("api.states.states_merge")
    probs = np.exp(LOGITS) / np.exp(LOGITS).sum(axis=1, keepdims=True)
    states = [
        report.sync(client=client, body=m.CalibrationRequest(
            probabilities=probs[part].tolist(), labels=LABELS[part].tolist(), n_bins=5,
            return_state=True)).state
        for part in PARTS
    ]
    assert all(isinstance(s, m.CalibrationState) for s in states)
    whole = report.sync(client=client, body=m.CalibrationRequest(
        probabilities=probs.tolist(), labels=LABELS.tolist(), n_bins=5))
    merged = merge.sync(client=client, body=m.MergeRequest(states=states))
    result = merged.result
    assert isinstance(result, m.CalibrationResponse)
    for name in ("accuracy", "nll", "brier", "ece", "mce", "rmsce"):
        assert getattr(result, name) == pytest.approx(getattr(whole, name), rel=1e-12,
                                                      abs=1e-14), name
    assert [b.count for b in result.bins] == [b.count for b in whole.bins]
    (ace,) = result.approximate
    assert ace.statistic == "ace" and abs(result.ace - whole.ace) <= ace.error_bound + 1e-14


def test_calibration_slices_round_trip(xc: ModuleType, client: Any) -> None:
    """Multi-label input with string groups: typed per_label, macro, micro and per_group,
    and their states merged back through /v1/merge."""
    m = load("models")
    report = load("api.calibration.calibration_report")
    merge = load("api.states.states_merge")
    probs = 1.0 / (1.0 + np.exp(-LOGITS))
    targets = (probs > 0.4).astype(int)
    targets[::3] = 1 - targets[::3]
    groups = [["north", "south"][i % 2] for i in range(len(LABELS))]

    def body(part: slice, **extra: Any) -> Any:
        return m.CalibrationRequest(probabilities=probs[part].tolist(),
                                    targets=targets[part].tolist(), multilabel=True,
                                    groups=groups[part], n_bins=5, **extra)

    whole = report.sync(client=client, body=body(slice(None)))
    assert isinstance(whole, m.CalibrationResponse)
    assert len(whole.per_label) == probs.shape[1] and whole.micro.ece == whole.ece
    assert [g.group for g in whole.per_group] == ["north", "south"]
    assert isinstance(whole.per_group[0].per_label[0], m.CalibrationResponse)
    states = [report.sync(client=client, body=body(part, return_state=True)).state
              for part in PARTS]
    merged = merge.sync(client=client, body=m.MergeRequest(states=states)).result
    assert [g.group for g in merged.per_group] == ["north", "south"]
    for got, want in zip(merged.per_group, whole.per_group, strict=True):
        assert got.macro.nll == pytest.approx(want.macro.nll, rel=1e-12)
        assert got.per_label[1].ece == pytest.approx(want.per_label[1].ece, rel=1e-12,
                                                     abs=1e-14)


def test_an_invalid_state_is_a_parsed_validation_error(xc: ModuleType, client: Any) -> None:
    m = load("models")
    categorical = load("api.losses.losses_categorical")
    merge = load("api.states.states_merge")
    state = categorical.sync(client=client, body=m.CategoricalLossRequest(
        logits=LOGITS.tolist(), labels=LABELS.tolist(), return_state=True)).state
    broken = state.to_dict()
    broken["n_counted"] = broken["n_samples"] + 1
    out = merge.sync(client=client, body=m.MergeRequest(
        states=[state, m.CategoricalLossState.from_dict(broken)]))
    assert isinstance(out, m.ValidationErrorBody)
    (item,) = out.detail
    assert item.loc == ["body", "states", 1, "n_counted"]
    assert item.type_ == "inconsistent_state"


def states_merge(m: ModuleType) -> tuple[Any, Callable[[Any], None]]:
    """``/v1/merge`` in the shape of tests/e2e/test_generated_client.py's OPERATIONS (a
    request and a check), for its test that every generated operation is exercised."""
    import xentropy

    parts = [xentropy.softmax_cross_entropy_with_integer_labels(
        LOGITS[part], LABELS[part], return_state=True).state for part in PARTS]
    whole = xentropy.softmax_cross_entropy_with_integer_labels(LOGITS, LABELS)
    body = m.MergeRequest(states=[m.CategoricalLossState.from_dict(s.to_json())
                                  for s in parts])

    def check(out: Any) -> None:
        assert isinstance(out, m.MergeResponse)
        assert isinstance(out.state, m.CategoricalLossState) and out.state.n_samples == 30
        assert out.result.loss == pytest.approx(whole.loss, rel=1e-12)

    return body, check


def test_the_operations_entry(xc: ModuleType, client: Any) -> None:
    m = load("models")
    body, check = states_merge(m)
    check(load("api.states.states_merge").sync(client=client, body=body))
