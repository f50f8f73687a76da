"""POST /v1/merge: states of batches in, the state and the result of all of them out."""

from __future__ import annotations

from fastapi import APIRouter, Response

import xentropy
from app.api.body import JsonBody, SettingsDep
from app.api.openapi import json_request_body
from app.api.responses import json_response
from app.api.schemas.common import ERROR_RESPONSES
from app.api.schemas.merge import MergeRequest, MergeResponse
from app.api.states import input_error_at_states, read_states
from xentropy.states import merged_json

router = APIRouter(prefix="/v1", tags=["states"], responses=ERROR_RESPONSES)

@router.post(
    "/merge",
    name="merge",
    summary="Merge states of batches into the answer for all of them",
    response_model=MergeResponse,
    openapi_extra=json_request_body(MergeRequest),
)
def merge(body: JsonBody, settings: SettingsDep) -> Response:
    """Merge 1 to 10 000 states (from `"return_state": true` on any POST endpoint, or
    from earlier merges) of one kind whose `options` agree. Answers the merged `state`
    and the `result` the endpoint would give for the concatenated batches, without the
    per-sample fields: counts exactly, every float within 1e-12 (compensated sums).
    Calibration results list under `approximate` what states give only approximately
    (quantile bins and ACE), with error bounds, and have no temperature fit."""
    states = read_states(body, settings)
    try:
        # The library's JSON of a merged state, which `xentropy evaluate --output` writes too.
        content = merged_json(xentropy.merge(states))
    except xentropy.InputError as error:
        input_error_at_states(error)
    return json_response(content)
