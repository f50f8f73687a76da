"""A Python client generated from openapi/openapi.json calls every operation of a real
server, synchronously and with asyncio, and gets the right values back as typed models.

Generation (openapi-python-client, settings in openapi/client-config.yaml) happens once per
session into a temporary directory; `make client` writes the same client to
openapi/clients/python/.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from scipy import special, stats

from app import __version__
from tests.e2e.conftest import Server, start_server, stop_server
from tests.e2e.test_states_client import states_merge

ROOT = Path(__file__).parents[2]
SPEC = ROOT / "openapi" / "openapi.json"
CONFIG = ROOT / "openapi" / "client-config.yaml"
PACKAGE = "xentropy_client"
API_KEY = "generated-client-key"


@pytest.fixture(scope="session")
def xc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The generated package, importable as ``xentropy_client`` for the session."""
    out = tmp_path_factory.mktemp("client")
    generator = Path(sys.executable).with_name("openapi-python-client")
    command = [str(generator)]
    if not generator.exists():
        command = [sys.executable, "-m", "openapi_python_client"]
    done = subprocess.run(
        [*command, "generate", "--path", str(SPEC), "--config", str(CONFIG), "--meta", "none",
         "--output-path", str(out / PACKAGE), "--fail-on-warning"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def load(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[Server]:
    """The real service (`xentropy serve`), with an API key configured."""
    server = start_server(env={"XENTROPY_API_KEYS": API_KEY})
    yield server
    stop_server(server)


@pytest.fixture(params=["keys", "no-keys"])
def client(request: pytest.FixtureRequest, xc: ModuleType) -> Any:
    """The committed document serves both configurations: with keys configured, an
    ``AuthenticatedClient`` with the key; without, a plain ``Client``."""
    if request.param == "keys":
        keyed: Server = request.getfixturevalue("keyed_server")
        return xc.AuthenticatedClient(base_url=keyed.url, token=API_KEY, timeout=30.0)
    open_server: Server = request.getfixturevalue("server")  # no keys configured
    return xc.Client(base_url=open_server.url, timeout=30.0)


# ------------------------------------------------------------------------ expected values

LOGITS = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, -0.5]])
LABELS = np.array([0, 1])
TEMPERATURE_LOGITS = [[3, 0, 0], [0, 3, 0], [0, 0, 3], [3, 0, 0]]
TEMPERATURE_LABELS = [0, 1, 2, 1]  # the last is wrong: the NLL-optimal T is 3 / ln 6


def categorical(m: ModuleType) -> tuple[Any, Callable[[Any], None]]:
    body = m.CategoricalLossRequest(
        logits=LOGITS.tolist(), labels=LABELS.tolist(), return_gradient=True
    )

    def check(out: Any) -> None:
        assert isinstance(out, m.CategoricalLossResponse)
        log_p = special.log_softmax(LOGITS, axis=1)
        per_sample = -log_p[np.arange(2), LABELS]
        assert out.loss == pytest.approx(per_sample.mean(), rel=1e-12)
        np.testing.assert_allclose(out.losses, per_sample, rtol=1e-12)
        expected_grad = (np.exp(log_p) - np.eye(3)[LABELS]) / 2
        np.testing.assert_allclose(out.gradient, expected_grad, rtol=1e-12, atol=1e-15)
        assert out.reduction == m.Reduction.MEAN and out.units == m.Units.NATS
        assert (out.n_samples, out.n_classes, out.weight_sum) == (2, 3, 2.0)
        assert out.diagnostics.n_clipped == 0

    return body, check


def categorical_encoded(m: ModuleType) -> tuple[Any, Callable[[Any], None]]:
    """Encoded arrays both ways: float32 logits and int32 labels in, float64 out."""
    import base64

    logits32 = LOGITS.astype("<f4")
    body = m.CategoricalLossRequest(
        logits=m.EncodedMatrix(
            dtype=m.FloatDtype.FLOAT32, shape=[2, 3],
            data=base64.b64encode(logits32.tobytes()).decode(),
        ),
        labels=m.EncodedIntVector(
            dtype=m.IntDtype.INT32, shape=[2],
            data=base64.b64encode(LABELS.astype("<i4").tobytes()).decode(),
        ),
        reduction=m.Reduction.NONE,
        response_encoding=m.ResponseEncoding.BASE64,
    )

    def check(out: Any) -> None:
        assert out.loss is None
        assert isinstance(out.losses, m.EncodedVector) and out.losses.shape == [2]
        losses = np.frombuffer(base64.b64decode(out.losses.data), "<f8")
        log_p = special.log_softmax(logits32.astype(np.float64), axis=1)
        np.testing.assert_allclose(losses, -log_p[np.arange(2), LABELS], rtol=1e-12)

    return body, check


def binary(m: ModuleType) -> tuple[Any, Callable[[Any], None]]:
    x, t = np.array([1.5, -0.3, 2.2]), np.array([1.0, 0.0, 1.0])
    body = m.BinaryLossRequest(logits=x.tolist(), targets=t.tolist(), pos_weight=2.0,
                               return_gradient=True)

    def check(out: Any) -> None:
        assert isinstance(out, m.BinaryLossResponse)
        # PyTorch BCEWithLogits with pos_weight: -(w t log σ(x) + (1 - t) log(1 - σ(x)))
        per_element = -(2.0 * t * special.log_expit(x) + (1 - t) * special.log_expit(-x))
        assert out.loss == pytest.approx(per_element.mean(), rel=1e-12)
        grad = (2.0 * t * (special.expit(x) - 1) + (1 - t) * special.expit(x)) / 3
        np.testing.assert_allclose(out.gradient, grad, rtol=1e-12)
        assert (out.n_samples, out.n_classes) == (3, 1)

    return body, check


def divergences(m: ModuleType) -> tuple[Any, Callable[[Any], None]]:
    p = np.array([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7]])
    q = np.array([[0.4, 0.4, 0.2], [0.2, 0.2, 0.6]])
    body = m.DivergenceRequest(p=p.tolist(), q=q.tolist(), reduction=m.Reduction.NONE)

    def check(out: Any) -> None:
        assert isinstance(out, m.DivergenceResponse) and out.entropy is None
        rows = out.per_row
        np.testing.assert_allclose(rows.entropy, stats.entropy(p, axis=1), rtol=1e-12)
        np.testing.assert_allclose(rows.kl_divergence, stats.entropy(p, q, axis=1), rtol=1e-12)
        np.testing.assert_allclose(
            rows.cross_entropy, np.add(rows.entropy, rows.kl_divergence), rtol=1e-12
        )
        assert all(0 <= js <= math.log(2) for js in rows.js_divergence)

    return body, check


def calibration(m: ModuleType) -> tuple[Any, Callable[[Any], None]]:
    body = m.CalibrationRequest(
        logits=TEMPERATURE_LOGITS, labels=TEMPERATURE_LABELS, fit_temperature=True, n_bins=5
    )

    def check(out: Any) -> None:
        assert isinstance(out, m.CalibrationResponse)
        assert out.temperature.temperature == pytest.approx(3 / math.log(6), rel=1e-6)
        assert out.temperature.nll_after < out.temperature.nll_before
        assert out.accuracy == 0.75 and out.n_classes == 3 and len(out.bins) == 5
        assert [c.class_ for c in out.per_class] == [0, 1, 2]
        assert out.binning == m.Binning.UNIFORM

    return body, check


def diagram(m: ModuleType) -> tuple[Any, Callable[[Any], None]]:
    body = m.CalibrationRequest(logits=TEMPERATURE_LOGITS, labels=TEMPERATURE_LABELS)

    def check(out: Any) -> None:
        svg = out.payload.read()
        root = ET.fromstring(svg)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert b"ECE = " in svg

    return body, check


def health(m: ModuleType) -> tuple[Any, Callable[[Any], None]]:
    def check(out: Any) -> None:
        assert isinstance(out, m.Health) and out.status == "ok"

    return None, check


def info(m: ModuleType) -> tuple[Any, Callable[[Any], None]]:
    def check(out: Any) -> None:
        assert isinstance(out, m.Info) and out.version == __version__
        assert out.limits.max_body_bytes > 0 and out.limits.max_elements > 0
        assert "numpy" in out.libraries.additional_properties

    return None, check


# operation module (api/<tag>/<operationId>) -> (request and check, parsed or raw content)
OPERATIONS: dict[str, Callable[[ModuleType], tuple[Any, Callable[[Any], None]]]] = {
    "losses.losses_categorical": categorical,
    "losses.losses_binary": binary,
    "divergences.divergences_divergences": divergences,
    "calibration.calibration_report": calibration,
    "calibration.calibration_diagram": diagram,
    "service.service_healthz": health,
    "service.service_readyz": health,
    "service.service_info": info,
    "states.states_merge": states_merge,
}
# Operations whose body is not a JSON model: checked on the raw response.
RAW = {"service.service_metrics": lambda content: b"xentropy_http_requests" in content}


def test_every_operation_takes_a_plain_or_an_authenticated_client(xc: ModuleType) -> None:
    """The committed document declares security only where the default configuration
    (no keys) enforces it: nowhere, so no operation demands an AuthenticatedClient."""
    for name in [*OPERATIONS, *RAW]:
        annotation = str(inspect.signature(load(f"api.{name}").sync_detailed)
                         .parameters["client"].annotation)
        assert {"AuthenticatedClient", "Client"} <= {part.strip().rsplit(".", 1)[-1]
                                                   for part in annotation.split("|")}, annotation


def test_every_operation_is_exercised(xc: ModuleType) -> None:
    api = Path(xc.__file__).parent / "api"
    generated = {f"{p.parent.name}.{p.stem}" for p in api.glob("*/*.py") if p.stem != "__init__"}
    assert generated == set(OPERATIONS) | set(RAW)


def _call(xc: ModuleType, client: Any, name: str, *, use_asyncio: bool) -> Any:
    operation = load(f"api.{name}")
    body, check = OPERATIONS[name](load("models"))
    kwargs = {"client": client} if body is None else {"client": client, "body": body}
    if use_asyncio:
        out = asyncio.run(operation.asyncio(**kwargs))
    else:
        out = operation.sync(**kwargs)
    check(out)
    return out


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_sync(xc: ModuleType, client: Any, name: str) -> None:
    _call(xc, client, name, use_asyncio=False)


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_asyncio(xc: ModuleType, client: Any, name: str) -> None:
    _call(xc, client, name, use_asyncio=True)


def test_encoded_arrays(xc: ModuleType, client: Any) -> None:
    body, check = categorical_encoded(load("models"))
    check(load("api.losses.losses_categorical").sync(client=client, body=body))


@pytest.mark.parametrize("name", sorted(RAW))
def test_raw_operations(xc: ModuleType, client: Any, name: str) -> None:
    operation = load(f"api.{name}")
    response = operation.sync_detailed(client=client)
    assert response.status_code == 200 and RAW[name](response.content)
    response = asyncio.run(operation.asyncio_detailed(client=client))
    assert response.status_code == 200 and RAW[name](response.content)


def test_invalid_body_is_a_parsed_validation_error(xc: ModuleType, client: Any) -> None:
    m = load("models")
    operation = load("api.losses.losses_categorical")
    body = m.CategoricalLossRequest(logits=[[1.0, 2.0, 3.0]], labels=[7])
    for out in (operation.sync(client=client, body=body),
                asyncio.run(operation.asyncio(client=client, body=body))):
        assert isinstance(out, m.ValidationErrorBody)
        (item,) = out.detail
        assert isinstance(item, m.ErrorItem)
        assert item.loc == ["body", "labels", 0] and item.type_ == "out_of_range"
        assert item.msg == "label 7 is outside [0, 3)"


def test_missing_api_key_is_a_parsed_401(xc: ModuleType, keyed_server: Server) -> None:
    m = load("models")
    anonymous = xc.Client(base_url=keyed_server.url)
    body, _ = categorical(m)
    response = load("api.losses.losses_categorical").sync_detailed(client=anonymous, body=body)
    assert response.status_code == 401 and isinstance(response.parsed, m.ErrorBody)
    assert response.headers["www-authenticate"].startswith("Bearer")
    _, check = health(m)
    check(load("api.service.service_healthz").sync(client=anonymous))  # health stays open


def test_calibration_extras_round_trip(xc: ModuleType, server: Server) -> None:
    """Issue 13's request fields (an enum list, nested option objects, true-or-object)
    are typed models of the generated client, and every new response field parses into
    one and back to the JSON the service sent."""
    import httpx

    m = load("models")
    probs = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.6, 0.3, 0.1]]
    body = m.CalibrationRequest(
        probabilities=probs, labels=[0, 1, 2, 1], n_bins=2,
        mode=m.CalibrationMode.CLASSWISE,
        estimators=[m.Estimator.ECE_DEBIASED, m.Estimator.SMOOTH_ECE],
        confidence_level=0.9,
        bootstrap=m.BootstrapOptions(n_resamples=50, seed=3,
                                     method=m.BootstrapMethod.POISSON),
        risk_coverage=m.RiskCoverageOptions(n_points=3),
    )
    client = xc.Client(base_url=server.url, timeout=30.0)
    out = load("api.calibration.calibration_report").sync(client=client, body=body)
    assert isinstance(out, m.CalibrationResponse)
    raw = httpx.post(server.url + "/v1/calibration", json=body.to_dict(), timeout=30).json()
    assert out.to_dict() == raw
    assert out.classwise_ece == pytest.approx(np.mean([c.ece for c in out.per_class]),
                                              abs=1e-15)
    assert isinstance(out.estimates, m.EstimatesOut) and out.estimates.smooth_ece > 0
    assert isinstance(out.intervals, m.IntervalsOut)
    lo, hi = out.intervals.ece
    assert lo <= hi
    assert isinstance(out.selective, m.SelectiveOut) and len(out.selective.curve) <= 3
    first = out.per_class[0]
    assert first.nll > 0 and len(first.bins) == 2 and len(first.bins[0].accuracy_interval) == 2
    plain = load("api.calibration.calibration_report").sync(
        client=client, body=m.CalibrationRequest(probabilities=probs, labels=[0, 1, 2, 1],
                                                 risk_coverage=True))
    assert plain.selective.optimal_aurc == pytest.approx(0.25 + 0.75 * math.log(0.75))
