"""Request and response bodies of /v1/losses/*."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.api.schemas.common import (
    Convention,
    ExactlyOneInput,
    FloatMatrix,
    FloatVectorOrMatrix,
    IntVector,
    Normalization,
    OutMatrix,
    OutVector,
    OutVectorOrMatrix,
    ProbabilityMatrix,
    ProbabilityVectorOrMatrix,
    Reduction,
    ResponseEncoding,
    Units,
    option,
    request_model,
)
from app.api.schemas.states import BinaryLossState, CategoricalLossState
from xentropy.options import BINARY_PARAMS, CATEGORICAL_PARAMS

_ENCODING_DOC = '`"base64"` writes every response array as an encoded float64 array.'


class CategoricalLossData(ExactlyOneInput):
    """Softmax cross-entropy, one class per sample (labels) or target distributions."""

    exactly_one_of = (("logits", "probabilities"), ("labels", "targets"))
    not_with = (("ignore_index", "targets", "ignore_index applies to labels only"),)

    model_config = ConfigDict(
        title="CategoricalLossRequest",
        json_schema_extra={
            "examples": [
                {
                    "logits": [[2.0, 1.0, 0.1], [0.5, 2.5, -0.5]],
                    "labels": [0, 1],
                    "return_gradient": True,
                },
                {
                    "probabilities": [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]],
                    "targets": [[1.0, 0.0, 0.0], [0.0, 0.9, 0.1]],
                    "class_weights": [1.0, 2.0, 1.0],
                    "reduction": "sum",
                    "return_gradient": True,
                },
                {
                    "logits": [[2.0, 1.0, 0.1], [0.5, 2.5, -0.5]],
                    "labels": [0, -100],
                    "convention": "pytorch",
                },
            ]
        },
    )

    logits: FloatMatrix | None = Field(None, description="N×C unnormalised scores.")
    probabilities: ProbabilityMatrix | None = Field(
        None, description="N×C probability rows (each sums to 1 within 1e-6)."
    )
    labels: IntVector | None = Field(None, description="N class indices in [0, C).")
    targets: ProbabilityMatrix | None = Field(
        None,
        description="N×C one-hot or soft target distributions (non-negative, rows sum to 1).",
    )
    response_encoding: ResponseEncoding = option(ResponseEncoding.json, _ENCODING_DOC)


class BinaryLossData(ExactlyOneInput):
    """Sigmoid / binary cross-entropy, also multi-label (N×C)."""

    model_config = ConfigDict(
        title="BinaryLossRequest",
        json_schema_extra={
            "examples": [
                {"probabilities": [[0.6, 0.4], [0.4, 0.6]], "targets": [[0, 1], [0, 0]]},
                {
                    "logits": [1.5, -0.3, 2.2],
                    "targets": [1, 0, 1],
                    "pos_weight": 2.0,
                    "return_gradient": True,
                },
            ]
        },
    )

    logits: FloatVectorOrMatrix | None = Field(None, description="N or N×C scores.")
    probabilities: ProbabilityVectorOrMatrix | None = Field(
        None, description="N or N×C probabilities in [0, 1]."
    )
    targets: ProbabilityVectorOrMatrix = Field(
        description="Same shape as the input, in [0, 1]; soft targets allowed."
    )
    response_encoding: ResponseEncoding = option(ResponseEncoding.json, _ENCODING_DOC)


# The option fields come from the library's constraint tables (types, bounds, defaults,
# descriptions), so the OpenAPI document and the library cannot disagree.
CategoricalLossRequest = request_model(CategoricalLossData, CATEGORICAL_PARAMS)
BinaryLossRequest = request_model(BinaryLossData, BINARY_PARAMS)


class LossDiagnostics(BaseModel):
    """Numerics counts that explain the result (ignored entries: the top-level `n_ignored`)."""

    n_clipped: int = Field(description="Probabilities clipped to [epsilon, 1 - epsilon].")


class ResolvedOptions(BaseModel):
    """The effective value of every option the convention set (explicit options included)."""

    normalization: Normalization = Field(description='What `"mean"` divides by.')
    epsilon: float | None = Field(
        description="The clipping margin of probabilities; null: nothing is clipped."
    )
    clipping: str = Field(description="Where and how probabilities are clipped, in words.")
    ignore_index: int | None = Field(
        description="The label left out (with `labels`); null: none."
    )
    focal_gamma: float = Field(description="The focal exponent γ (0: plain cross-entropy).")
    focal_alpha: float | list[float] | None = Field(
        description="The focal balancing factor; null: none."
    )
    label_smoothing_form: str = Field(description="How `label_smoothing` moves the targets.")
    aggregation: str = Field(
        description='What one entry of `losses` is: "per sample", "per element", or "mean '
        'over the last axis per sample" (Keras binary losses).'
    )


class _LossResponse(BaseModel):
    loss: float | None = Field(description='The reduced loss; null with `"none"`.')
    losses: Any = None  # typed by each endpoint; here to fix the key order
    gradient: Any = None
    n_samples: int = Field(description="N.")
    n_classes: int = Field(description="C (1 for binary input of shape N).")
    n_ignored: int = Field(description="Ignored samples or masked-out elements.")
    weight_sum: float = Field(description='The denominator `"mean"` uses (reported always).')
    units: Units = Field(description="Units of `loss`, `losses` and `gradient`, as requested.")
    reduction: Reduction = Field(description="The reduction that was applied, as requested.")
    normalization: Normalization = Field(
        description='What `"mean"` divided by (`weight_sum`), as requested or as the '
        "convention sets it."
    )
    convention: Convention = Field(description="The convention of the request.")
    resolved: ResolvedOptions = Field(
        description="The effective value of every option the convention set."
    )
    diagnostics: LossDiagnostics = Field(description="Numerics counts (clipped entries).")


class CategoricalLossResponse(_LossResponse):
    """Result of /v1/losses/categorical."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "loss": 0.2934380179170596,
                    "losses": [0.41703001627783354, 0.16984601955628567],
                    "gradient": [
                        [-0.17049943055701605, 0.12121648535235696, 0.04928294520465909],
                        [0.057097599692297246, -0.07810263275933027, 0.021005033067033024],
                    ],
                    "n_samples": 2,
                    "n_classes": 3,
                    "n_ignored": 0,
                    "weight_sum": 2.0,
                    "units": "nats",
                    "reduction": "mean",
                    "normalization": "weights",
                    "convention": "xentropy",
                    "resolved": {
                        "normalization": "weights", "epsilon": None,
                        "clipping": "none: logits go through the exact log-softmax / "
                        "log-sigmoid",
                        "ignore_index": None, "focal_gamma": 0.0, "focal_alpha": None,
                        "label_smoothing_form": "(1 - ε) t + ε / C",
                        "aggregation": "per sample",
                    },
                    "diagnostics": {"n_clipped": 0},
                }
            ]
        }
    )

    losses: OutVector | None = Field(
        None, description='N per-sample losses; present with `"none"` or `return_gradient`.'
    )
    gradient: OutMatrix | None = Field(
        None, description="Present with `return_gradient`: d loss / d input, N×C."
    )
    state: CategoricalLossState | None = Field(
        None, description="With `return_state`: the batch's state, for `/v1/merge`."
    )


class BinaryLossResponse(_LossResponse):
    """Result of /v1/losses/binary."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "loss": 0.814924454847114,
                    "n_samples": 2,
                    "n_classes": 2,
                    "n_ignored": 0,
                    "weight_sum": 4.0,
                    "units": "nats",
                    "reduction": "mean",
                    "normalization": "weights",
                    "convention": "xentropy",
                    "resolved": {
                        "normalization": "weights", "epsilon": 2.220446049250313e-16,
                        "clipping": "clipped to [epsilon, 1 - epsilon]",
                        "ignore_index": None, "focal_gamma": 0.0, "focal_alpha": None,
                        "label_smoothing_form": "t (1 - ε) + ε / 2",
                        "aggregation": "per element",
                    },
                    "diagnostics": {"n_clipped": 0},
                }
            ]
        }
    )

    losses: OutVectorOrMatrix | None = Field(
        None,
        description='Per-element losses, the input\'s shape (per sample, shape N, under the '
        'Keras convention); with `"none"` or a gradient.',
    )
    gradient: OutVectorOrMatrix | None = Field(
        None, description="Present with `return_gradient`: d loss / d input, the input's shape."
    )
    state: BinaryLossState | None = Field(
        None, description="With `return_state`: the batch's state, for `/v1/merge`."
    )
