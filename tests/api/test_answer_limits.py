"""The element limit counts the answer's elements too (app/api/limits.py)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator

import pytest

from app.api.body import parse_request
from app.api.errors import BodyError
from app.api.limits import check_answer_elements, loss_answer_elements, request_elements
from app.api.schemas.losses import BinaryLossRequest, CategoricalLossRequest
from app.main import create_app
from app.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

ROWS, COLS = 10, 5
LOGITS = [[0.1 * (i + j) for j in range(COLS)] for i in range(ROWS)]
LIMIT = Settings(max_elements=2 * ROWS * COLS)  # 100 elements


def categorical(**options: object) -> CategoricalLossRequest:
    body = json.dumps({"logits": LOGITS, "labels": [0] * ROWS, **options}).encode()
    return parse_request(CategoricalLossRequest, body, LIMIT)


def binary(**options: object) -> BinaryLossRequest:
    body = json.dumps({"logits": LOGITS, "targets": [[0] * COLS] * ROWS, **options}).encode()
    return parse_request(BinaryLossRequest, body, LIMIT)


@pytest.mark.parametrize(
    ("options", "answer"),
    [
        ({}, 0),
        ({"reduction": "sum"}, 0),
        ({"reduction": "none"}, ROWS),  # one loss per row
        ({"return_gradient": True}, ROWS + ROWS * COLS),  # losses and the gradient
        ({"reduction": "none", "return_gradient": True}, ROWS + ROWS * COLS),
    ],
)
def test_categorical_answer_elements(options, answer):
    assert loss_answer_elements(categorical(**options), per_element_losses=False) == answer


@pytest.mark.parametrize(
    ("options", "answer"),
    [({}, 0), ({"reduction": "none"}, ROWS * COLS),
     ({"reduction": "none", "return_gradient": True}, 2 * ROWS * COLS)],
)
def test_binary_answer_elements(options, answer):
    assert loss_answer_elements(binary(**options), per_element_losses=True) == answer


def test_request_and_answer_together_are_bounded():
    small = categorical()  # 50 logits + 10 labels
    assert request_elements(small) == ROWS * COLS + ROWS
    check_answer_elements(small, LIMIT, loss_answer_elements(small, per_element_losses=False))
    doubled = binary(reduction="none", return_gradient=True)  # 100 in, 100 out
    with pytest.raises(BodyError) as exc:
        check_answer_elements(doubled, LIMIT, loss_answer_elements(doubled,
                                                                    per_element_losses=True))
    assert exc.value.status_code == 413
    assert "its answer would hold 100" in exc.value.detail and "at most 100" in exc.value.detail


@pytest.fixture(scope="module")
def limited() -> Iterator[TestClient]:
    with TestClient(create_app(LIMIT), raise_server_exceptions=False) as c:
        yield c


def test_a_loss_answer_over_the_element_limit_is_413(limited):
    body = {"logits": LOGITS, "targets": [[0] * COLS] * ROWS, "reduction": "none",
            "return_gradient": True}
    r = limited.post("/v1/losses/binary", json=body)
    assert r.status_code == 413 and "answer would hold" in r.json()["detail"]
