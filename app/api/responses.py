"""Building JSON responses from core results (arrays written by orjson, no NaN ever)."""

from __future__ import annotations

from typing import Any

from fastapi import Response

from app.api.codec import dumps, encode_array
from xentropy.reductions import LossResult


class JSONBytes(Response):
    """A response whose body was already serialised by the codec."""

    media_type = "application/json"


def json_response(content: dict[str, Any]) -> Response:
    return JSONBytes(dumps(content))


def loss_response(result: LossResult, *, return_gradient: bool, encoding: str) -> Response:
    """The body of /v1/losses/*: per-sample values and gradient only when asked for."""
    content: dict[str, Any] = {"loss": result.loss}
    if result.reduction == "none" or return_gradient:
        content["losses"] = encode_array(result.losses, encoding)
    if result.gradient is not None:
        content["gradient"] = encode_array(result.gradient, encoding)
    content.update(
        n_samples=result.n_samples,
        n_classes=result.n_classes,
        n_ignored=result.n_ignored,
        weight_sum=result.weight_sum,
        units=result.units,
        reduction=result.reduction,
        normalization=result.normalization,
        diagnostics={"n_clipped": result.n_clipped, "n_ignored": result.n_ignored},
    )
    return json_response(content)
