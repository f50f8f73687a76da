"""The loss core against PyTorch reference vectors (float64, autograd).

tests/reference/pytorch-vectors.json holds request/answer pairs for POST /v1/losses/*
computed by PyTorch where its semantics equal the contract's. Here every request is mapped
onto the core function the HTTP layer must call (logits vs probabilities, labels vs
targets) and its options passed through under their contract names; loss, losses and
gradient must match to float64 round-off.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from xentropy import losses as L

VECTORS = Path(__file__).resolve().parents[1] / "reference" / "pytorch-vectors.json"
CASES = json.loads(VECTORS.read_text())["cases"]

RTOL = 1e-10
ATOL = 1e-12

# Request fields that are data rather than options.
_DATA_FIELDS = {"logits", "probabilities", "labels", "targets"}
# Options every loss function takes, under the contract's (and the core's) names.
_OPTION_FIELDS = {
    "/v1/losses/categorical": {
        "class_weights", "sample_weights", "ignore_index", "label_smoothing", "focal_gamma",
        "focal_alpha", "reduction", "normalization", "epsilon", "units",
    },
    "/v1/losses/binary": {
        "pos_weight", "class_weights", "sample_weights", "mask", "label_smoothing",
        "focal_gamma", "focal_alpha", "reduction", "normalization", "epsilon", "units",
    },
}


def _function_for(endpoint: str, request: dict):
    """The core function and its two positional arguments for one request."""
    from_logits = "logits" in request
    assert from_logits != ("probabilities" in request), "exactly one of logits/probabilities"
    scores = np.asarray(request["logits" if from_logits else "probabilities"], dtype=np.float64)
    if endpoint == "/v1/losses/categorical":
        with_labels = "labels" in request
        assert with_labels != ("targets" in request), "exactly one of labels/targets"
        if with_labels:
            fn = (
                L.softmax_cross_entropy_with_integer_labels
                if from_logits
                else L.categorical_cross_entropy_with_integer_labels
            )
            return fn, scores, np.asarray(request["labels"], dtype=np.int64)
        fn = L.softmax_cross_entropy if from_logits else L.categorical_cross_entropy
        return fn, scores, np.asarray(request["targets"], dtype=np.float64)
    assert endpoint == "/v1/losses/binary", endpoint
    fn = L.sigmoid_binary_cross_entropy if from_logits else L.binary_cross_entropy
    return fn, scores, np.asarray(request["targets"], dtype=np.float64)


def _options(endpoint: str, request: dict) -> dict:
    unknown = set(request) - _DATA_FIELDS - _OPTION_FIELDS[endpoint]
    assert not unknown, f"request field(s) this test does not map: {sorted(unknown)}"
    opts = {}
    for key in _OPTION_FIELDS[endpoint] & set(request):
        value = request[key]
        opts[key] = np.asarray(value, dtype=np.float64) if isinstance(value, list) else value
    return opts


def test_the_reference_file_covers_both_endpoints_and_all_reductions():
    assert len(CASES) >= 20
    assert {c["endpoint"] for c in CASES} == set(_OPTION_FIELDS)
    assert {c["request"].get("reduction", "mean") for c in CASES} == {"mean", "sum", "none"}
    notes = [c["note"] for c in CASES]
    assert len(set(notes)) == len(notes), "notes are used as test ids and must be unique"


@pytest.mark.parametrize("case", CASES, ids=[c["note"] for c in CASES])
def test_core_matches_pytorch(case):
    request, expected = case["request"], case["expected"]
    fn, scores, labels_or_targets = _function_for(case["endpoint"], request)
    result = fn(
        scores, labels_or_targets, return_gradient=True, **_options(case["endpoint"], request)
    )

    reduction = request.get("reduction", "mean")
    assert result.reduction == reduction
    assert result.units == request.get("units", "nats")
    if expected["loss"] is None:
        assert reduction == "none"
        assert result.loss is None
    else:
        assert result.loss is not None
        assert math.isclose(result.loss, expected["loss"], rel_tol=RTOL, abs_tol=ATOL)
        # weight_sum is the denominator PyTorch used: Σ w_y over counted samples, or N.
        denominator = 1.0 if reduction == "sum" else result.weight_sum
        assert math.isclose(
            float(np.sum(expected["losses"])) / denominator, expected["loss"], rel_tol=RTOL
        )
    np.testing.assert_allclose(result.losses, expected["losses"], rtol=RTOL, atol=ATOL)
    assert result.gradient is not None
    assert result.gradient.shape == scores.shape
    np.testing.assert_allclose(result.gradient, expected["gradient"], rtol=RTOL, atol=ATOL)
    assert result.n_samples == scores.shape[0]
    assert result.n_classes == (scores.shape[1] if scores.ndim == 2 else 1)
    if "ignore_index" in request:
        n_ignored = sum(label == request["ignore_index"] for label in request["labels"])
        assert n_ignored > 0
        assert result.n_ignored == n_ignored
