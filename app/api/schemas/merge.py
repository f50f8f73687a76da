"""Request and response bodies of POST /v1/merge."""

from __future__ import annotations

from typing import Any, cast

import orjson
from pydantic import BaseModel, ConfigDict, Field

import xentropy
from app.api.codec import dumps
from app.api.schemas.calibration import CalibrationResponse
from app.api.schemas.divergences import DivergenceResponse
from app.api.schemas.losses import BinaryLossResponse, CategoricalLossResponse
from app.api.schemas.states import CALIBRATION_STATES, LOSS_STATES, AnyState
from xentropy.states import merged_json

#: The response model of the endpoint each kind of state comes from (documentation; the
#: keys come from the library, tests/api/test_wire_agreement.py checks they agree).
RESULT_MODELS: dict[str, type[BaseModel]] = {
    "categorical_loss": CategoricalLossResponse,
    "binary_loss": BinaryLossResponse,
    "divergences": DivergenceResponse,
    "calibration": CalibrationResponse,
}


def merge_answer(states: list[dict[str, Any]]) -> dict[str, Any]:
    """What the endpoint answers for these states (for the documented examples)."""
    merged = xentropy.merge([xentropy.state_from_json(s) for s in states])
    out: dict[str, Any] = orjson.loads(dumps(merged_json(merged)))
    return out


EXAMPLES: list[dict[str, Any]] = [
    {"states": [s.to_json() for s in LOSS_STATES]},
    {"states": [s.to_json() for s in CALIBRATION_STATES]},
]


class MergeRequest(BaseModel):
    """States of batches to merge: one kind, options that agree."""

    model_config = ConfigDict(title="MergeRequest", extra="forbid",
                              json_schema_extra={"examples": cast(Any, EXAMPLES)})

    states: list[AnyState] = Field(
        min_length=1, max_length=10_000,
        description="1 to 10 000 states, as `return_state` (or an earlier merge) gave them. "
        "Each is checked: a broken rule is a 422 at `[\"body\", \"states\", i, ...]`.",
    )


class MergeResponse(BaseModel):
    """The merged state, and the endpoint's answer for the concatenated batches."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [merge_answer(EXAMPLES[0]["states"])]}
    )

    state: AnyState = Field(description="The merged state (merge it again with others).")
    result: (
        CategoricalLossResponse | BinaryLossResponse | DivergenceResponse | CalibrationResponse
    ) = Field(
        description="The response of the endpoint the states come from, for all their "
        "samples, without the per-sample fields (`losses`, `gradient`, `per_row`); "
        "calibration: without `temperature`, with `approximate`."
    )
