"""Request and response bodies of /v1/divergences."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.api.schemas.common import (
    FloatMatrix,
    OutMatrix,
    OutVector,
    ProbabilityMatrix,
    Reduction,
    RequestModel,
    ResponseEncoding,
    Units,
    option,
    request_model,
)
from app.api.schemas.states import DivergenceState
from xentropy._divergences import DIVERGENCE_PARAMS


class DivergenceData(RequestModel):
    """Entropy, cross-entropy, KL and Jensen-Shannon divergence between probability rows."""

    exactly_one_of = (("q", "q_logits"),)

    model_config = ConfigDict(
        title="DivergenceRequest",
        json_schema_extra={
            "examples": [
                {"p": [[0.5, 0.5, 0.0], [0.1, 0.2, 0.7]], "q": [[0.4, 0.4, 0.2], [0.2, 0.2, 0.6]]},
                {"p": [[0.2, 0.8]], "q_logits": [[0.0, 1.5]], "return_gradient": True},
            ]
        },
    )

    p: ProbabilityMatrix = Field(description="N×C probability rows (0·log 0 = 0).")
    q: ProbabilityMatrix | None = Field(
        None, description="N×C probability rows, clipped to [epsilon, 1] before the log."
    )
    q_logits: FloatMatrix | None = Field(
        None, description="N×C logits of q instead of `q` (log q by log-softmax, exact)."
    )
    response_encoding: ResponseEncoding = option(
        ResponseEncoding.json, '`"base64"` writes arrays as encoded float64 arrays.'
    )


# Options from the library's constraint table (see app.api.schemas.losses).
DivergenceRequest = request_model(DivergenceData, DIVERGENCE_PARAMS)


class DivergenceRows(BaseModel):
    """Per-row values (with reduction "none")."""

    entropy: OutVector = Field(description="N values of H(p).")
    cross_entropy: OutVector = Field(description="N values of H(p, q).")
    kl_divergence: OutVector = Field(description="N values of KL(p‖q).")
    js_divergence: OutVector = Field(description="N values of JS(p, q).")


class DivergenceResponse(BaseModel):
    """H(p, q) = H(p) + KL(p‖q); JS is symmetric and at most ln 2 nats (1 bit)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "entropy": 0.7474828665516413,
                    "cross_entropy": 0.8783500211202894,
                    "kl_divergence": 0.13086715456864806,
                    "js_divergence": 0.04265084570693301,
                    "n_samples": 2,
                    "n_classes": 3,
                    "units": "nats",
                    "reduction": "mean",
                }
            ]
        }
    )

    entropy: float | None = Field(description='H(p), reduced; null with `"none"`.')
    cross_entropy: float | None = Field(description="H(p, q), reduced.")
    kl_divergence: float | None = Field(description="KL(p‖q), reduced.")
    js_divergence: float | None = Field(description="Jensen-Shannon divergence, reduced.")
    per_row: DivergenceRows | None = Field(None, description='Present with `"none"`.')
    gradient: OutMatrix | None = Field(None, description="Present with `return_gradient`.")
    n_samples: int = Field(description="N, the number of rows.")
    n_classes: int = Field(description="C, the length of each row.")
    units: Units = Field(description="Units of every value, as requested.")
    reduction: Reduction = Field(description="The reduction over rows, as requested.")
    state: DivergenceState | None = Field(
        None, description="With `return_state`: the batch's state, for `/v1/merge`."
    )
