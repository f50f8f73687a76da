"""POST /v1/losses/categorical and /v1/losses/binary."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel

from app.api.body import JsonBody, SettingsDep, parse_request
from app.api.openapi import json_request_body
from app.api.responses import loss_response
from app.api.schemas.common import ERROR_RESPONSES
from app.api.schemas.losses import (
    BinaryLossRequest,
    BinaryLossResponse,
    CategoricalLossRequest,
    CategoricalLossResponse,
)
from xentropy import losses
from xentropy.reductions import LossResult

# (from logits, with integer labels) -> core function
_CATEGORICAL: dict[tuple[bool, bool], Callable[..., LossResult]] = {
    (True, True): losses.softmax_cross_entropy_with_integer_labels,
    (True, False): losses.softmax_cross_entropy,
    (False, True): losses.categorical_cross_entropy_with_integer_labels,
    (False, False): losses.categorical_cross_entropy,
}
_BINARY: dict[bool, Callable[..., LossResult]] = {
    True: losses.sigmoid_binary_cross_entropy,
    False: losses.binary_cross_entropy,
}

# Request fields passed to the core under the same name by both endpoints.
_SHARED_OPTIONS = (
    "class_weights", "sample_weights", "label_smoothing", "focal_gamma", "focal_alpha",
    "reduction", "normalization", "units", "return_gradient",
)


def _options(req: BaseModel, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(req, name) for name in names}


router = APIRouter(prefix="/v1/losses", tags=["losses"], responses=ERROR_RESPONSES)


@router.post(
    "/categorical",
    name="categorical",
    summary="Softmax cross-entropy, one class per sample",
    response_model=CategoricalLossResponse,
    openapi_extra=json_request_body(CategoricalLossRequest),
)
def categorical(body: JsonBody, settings: SettingsDep) -> Response:
    """Cross-entropy of logits (softmax) or probability rows against integer labels or
    target distributions, with class and sample weights, ignore_index, label smoothing,
    focal loss, and the analytic gradient with respect to the input that was sent."""
    req = parse_request(CategoricalLossRequest, body, settings)
    options = _options(req, _SHARED_OPTIONS)
    from_logits = req.logits is not None
    labelled = req.labels is not None
    if labelled:
        options["ignore_index"] = req.ignore_index
    if not from_logits:
        options["epsilon"] = req.epsilon
    result = _CATEGORICAL[from_logits, labelled](
        req.logits if from_logits else req.probabilities,
        req.labels if labelled else req.targets,
        **options,
    )
    return loss_response(
        result, return_gradient=req.return_gradient, encoding=req.response_encoding
    )


@router.post(
    "/binary",
    name="binary",
    summary="Sigmoid / binary cross-entropy, also multi-label",
    response_model=BinaryLossResponse,
    openapi_extra=json_request_body(BinaryLossRequest),
)
def binary(body: JsonBody, settings: SettingsDep) -> Response:
    """Binary cross-entropy of logits (sigmoid) or probabilities, shape N or N×C, with
    pos_weight, class and sample weights, a mask, label smoothing toward 0.5, binary focal
    loss, and the analytic gradient with respect to the input that was sent."""
    req = parse_request(BinaryLossRequest, body, settings)
    options = _options(req, (*_SHARED_OPTIONS, "pos_weight", "mask"))
    from_logits = req.logits is not None
    if not from_logits:
        options["epsilon"] = req.epsilon
    result = _BINARY[from_logits](
        req.logits if from_logits else req.probabilities, req.targets, **options
    )
    return loss_response(
        result, return_gradient=req.return_gradient, encoding=req.response_encoding
    )
