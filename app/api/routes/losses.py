"""POST /v1/losses/categorical and /v1/losses/binary."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel

import xentropy
from app.api.body import JsonBody, SettingsDep, parse_request
from app.api.compute import run_sized
from app.api.limits import check_answer_elements, loss_answer_elements
from app.api.openapi import json_request_body
from app.api.schemas.common import ERROR_RESPONSES
from app.api.schemas.losses import (
    BinaryLossRequest,
    BinaryLossResponse,
    CategoricalLossRequest,
    CategoricalLossResponse,
)
from app.api.states import answer
from app.settings import Settings
from xentropy.options import PARAMS

# (from logits, with integer labels) -> library function
_CATEGORICAL: dict[tuple[bool, bool], Callable[..., xentropy.LossResult]] = {
    (True, True): xentropy.softmax_cross_entropy_with_integer_labels,
    (True, False): xentropy.softmax_cross_entropy,
    (False, True): xentropy.categorical_cross_entropy_with_integer_labels,
    (False, False): xentropy.categorical_cross_entropy,
}
_BINARY: dict[bool, Callable[..., xentropy.LossResult]] = {
    True: xentropy.sigmoid_binary_cross_entropy,
    False: xentropy.binary_cross_entropy,
}
_NO_LOSSES = frozenset({"losses"})


def _sent_options(req: BaseModel, family: str) -> dict[str, Any]:
    """The options the request set explicitly (the convention supplies the rest)."""
    return {name: getattr(req, name) for name in PARAMS[family] if name in req.model_fields_set}


def _answer(result: xentropy.LossResult, encoding: str) -> Response:
    """Per-sample losses only with reduction "none" or a gradient."""
    wanted = result.reduction == "none" or result.gradient is not None
    return answer(result, encoding=encoding, omit=frozenset() if wanted else _NO_LOSSES)


router = APIRouter(prefix="/v1/losses", tags=["losses"], responses=ERROR_RESPONSES)


@router.post(
    "/categorical",
    name="categorical",
    summary="Softmax cross-entropy, one class per sample",
    response_model=CategoricalLossResponse,
    openapi_extra=json_request_body(CategoricalLossRequest),
)
async def categorical(body: JsonBody, settings: SettingsDep) -> Response:
    """Cross-entropy of logits (softmax) or probability rows against integer labels or
    target distributions, with class and sample weights, ignore_index, label smoothing,
    focal loss, a convention (PyTorch, Keras, scikit-learn), and the analytic gradient
    with respect to the input that was sent."""
    return await run_sized(body, lambda: _categorical(body, settings))


def _categorical(body: bytes | bytearray, settings: Settings) -> Response:
    req = parse_request(CategoricalLossRequest, body, settings)
    check_answer_elements(req, settings, loss_answer_elements(req, per_element_losses=False))
    from_logits = req.logits is not None
    labelled = req.labels is not None
    result = _CATEGORICAL[from_logits, labelled](
        req.logits if from_logits else req.probabilities,
        req.labels if labelled else req.targets,
        **_sent_options(req, "categorical"),
    )
    return _answer(result, req.response_encoding)


@router.post(
    "/binary",
    name="binary",
    summary="Sigmoid / binary cross-entropy, also multi-label",
    response_model=BinaryLossResponse,
    openapi_extra=json_request_body(BinaryLossRequest),
)
async def binary(body: JsonBody, settings: SettingsDep) -> Response:
    """Binary cross-entropy of logits (sigmoid) or probabilities, shape N or N×C, with
    pos_weight, class and sample weights, a mask, label smoothing toward 0.5, binary focal
    loss, a convention (PyTorch, Keras, scikit-learn), and the analytic gradient with
    respect to the input that was sent."""
    return await run_sized(body, lambda: _binary(body, settings))


def _binary(body: bytes | bytearray, settings: Settings) -> Response:
    req = parse_request(BinaryLossRequest, body, settings)
    check_answer_elements(req, settings, loss_answer_elements(req, per_element_losses=True))
    from_logits = req.logits is not None
    result = _BINARY[from_logits](
        req.logits if from_logits else req.probabilities, req.targets,
        **_sent_options(req, "binary"),
    )
    return _answer(result, req.response_encoding)

