"""POST /v1/divergences."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from app.api.body import JsonBody, SettingsDep, parse_request
from app.api.codec import encode_array
from app.api.openapi import json_request_body
from app.api.responses import json_response
from app.api.schemas.common import ERROR_RESPONSES
from app.api.schemas.divergences import DivergenceRequest, DivergenceResponse
from xentropy._divergences import divergences

router = APIRouter(prefix="/v1", tags=["divergences"], responses=ERROR_RESPONSES)


@router.post(
    "/divergences",
    name="divergences",
    summary="Entropy, cross-entropy, KL and Jensen-Shannon divergence",
    response_model=DivergenceResponse,
    openapi_extra=json_request_body(DivergenceRequest),
)
def compute(body: JsonBody, settings: SettingsDep) -> Response:
    """Per-row H(p), H(p, q), KL(p‖q) and JS(p, q), reduced over rows, with the gradient
    of the reduced cross-entropy with respect to `q` or `q_logits`."""
    req = parse_request(DivergenceRequest, body, settings)
    result = divergences(
        req.p,
        req.q,
        q_logits=req.q_logits,
        epsilon=req.epsilon,
        reduction=req.reduction,
        units=req.units,
        return_gradient=req.return_gradient,
    )
    encoding = req.response_encoding
    content: dict[str, Any] = {
        "entropy": result.entropy,
        "cross_entropy": result.cross_entropy,
        "kl_divergence": result.kl_divergence,
        "js_divergence": result.js_divergence,
    }
    if result.reduction == "none":
        rows = result.per_row
        content["per_row"] = {
            "entropy": encode_array(rows.entropy, encoding),
            "cross_entropy": encode_array(rows.cross_entropy, encoding),
            "kl_divergence": encode_array(rows.kl_divergence, encoding),
            "js_divergence": encode_array(rows.js_divergence, encoding),
        }
    if result.gradient is not None:
        content["gradient"] = encode_array(result.gradient, encoding)
    content.update(
        n_samples=result.n_samples, n_classes=result.n_classes, units=result.units,
        reduction=result.reduction,
    )
    return json_response(content)
