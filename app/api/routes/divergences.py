"""POST /v1/divergences."""

from __future__ import annotations

from fastapi import APIRouter, Response

import xentropy
from app.api.body import JsonBody, SettingsDep, parse_request
from app.api.compute import run_sized
from app.api.openapi import json_request_body
from app.api.schemas.common import ERROR_RESPONSES
from app.api.schemas.divergences import DivergenceRequest, DivergenceResponse
from app.api.states import answer
from app.settings import Settings
from xentropy._divergences import DIVERGENCE_PARAMS

router = APIRouter(prefix="/v1", tags=["divergences"], responses=ERROR_RESPONSES)
_NO_ROWS = frozenset({"per_row"})


@router.post(
    "/divergences",
    name="divergences",
    summary="Entropy, cross-entropy, KL and Jensen-Shannon divergence",
    response_model=DivergenceResponse,
    openapi_extra=json_request_body(DivergenceRequest),
)
async def compute(body: JsonBody, settings: SettingsDep) -> Response:
    """Per-row H(p), H(p, q), KL(p‖q) and JS(p, q), reduced over rows, with the gradient
    of the reduced cross-entropy with respect to `q` or `q_logits`."""
    return await run_sized(body, lambda: _divergences(body, settings))


def _divergences(body: bytes | bytearray, settings: Settings) -> Response:
    req = parse_request(DivergenceRequest, body, settings)
    result = xentropy.divergences(
        req.p, req.q, q_logits=req.q_logits,
        **{name: getattr(req, name) for name in DIVERGENCE_PARAMS},
    )
    return answer(
        result, encoding=req.response_encoding,
        omit=frozenset() if result.reduction == "none" else _NO_ROWS,
    )
