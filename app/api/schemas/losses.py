"""Request and response bodies of /v1/losses/*."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from app.api.schemas.common import (
    FloatMatrix,
    FloatScalarOrVector,
    FloatVector,
    FloatVectorOrMatrix,
    IntVector,
    MaskArray,
    Normalization,
    OutMatrix,
    OutVector,
    OutVectorOrMatrix,
    Reduction,
    RequestModel,
    ResponseEncoding,
    Units,
    option,
)
from app.core._checks import InputError
from app.core._numerics import FLOAT64_EPS

_EPSILON_DOC = (
    "With `probabilities`: clip to [epsilon, 1 - epsilon] before the log; in (0, 0.5). "
    "Default: the float64 machine epsilon. The gradient of a clipped entry is 0."
)
_REDUCTION_DOC = '`"mean"`, `"sum"` or `"none"` (per-sample values only), as in PyTorch.'
_NORMALIZATION_DOC = (
    '`"weights"`: `"mean"` divides by the sum of the effective weights of the counted '
    "samples (PyTorch index-target mode, scikit-learn `sample_weight`). `\"samples\"`: by the "
    "number of counted samples (Keras `sum_over_batch_size`). Note: with soft `targets`, "
    "PyTorch divides by N; we divide by Σ sample_weight × Σ_c target_c × class_weight_c, "
    "which is N without weights."
)
_UNITS_DOC = '`"nats"` (natural log) or `"bits"` (log base 2): losses and gradients alike.'
_GRADIENT_DOC = (
    "Include `gradient`: the derivative of the reduced loss (with `\"none\"`: of the sum of "
    "`losses`) with respect to the input that was sent."
)
_ENCODING_DOC = '`"base64"` writes every response array as an encoded float64 array.'


class _ExactlyOneInput(RequestModel):
    logits: object = None
    probabilities: object = None

    @model_validator(mode="after")
    def _one_input(self) -> _ExactlyOneInput:
        if self.logits is not None and self.probabilities is not None:
            raise InputError(
                "probabilities", "expected exactly one of logits and probabilities, got both",
                kind="exclusive",
            )
        if self.logits is None and self.probabilities is None:
            raise InputError(
                "logits", "expected one of logits or probabilities, got neither", kind="missing"
            )
        return self


class CategoricalLossRequest(_ExactlyOneInput):
    """Softmax cross-entropy, one class per sample (labels) or target distributions."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"logits": [[2.0, 1.0, 0.1], [0.5, 2.5, -0.5]], "labels": [0, 1]},
                {
                    "probabilities": [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]],
                    "targets": [[1.0, 0.0, 0.0], [0.0, 0.9, 0.1]],
                    "class_weights": [1.0, 2.0, 1.0],
                    "reduction": "sum",
                    "return_gradient": True,
                },
            ]
        }
    )

    logits: FloatMatrix | None = Field(None, description="N×C unnormalised scores.")
    probabilities: FloatMatrix | None = Field(
        None, description="N×C probability rows (each sums to 1 within 1e-6)."
    )
    labels: IntVector | None = Field(None, description="N class indices in [0, C).")
    targets: FloatMatrix | None = Field(
        None,
        description="N×C one-hot or soft target distributions (non-negative, rows sum to 1).",
    )
    class_weights: FloatVector | None = Field(
        None, description="C non-negative weights, one per class (PyTorch `weight`)."
    )
    sample_weights: FloatVector | None = Field(None, description="N non-negative sample weights.")
    ignore_index: Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)] | None = Field(
        None, description="With `labels`: samples with this label are left out (PyTorch)."
    )
    label_smoothing: float = option(
        0.0,
        "Uniform smoothing: targets become (1 - ε) t + ε/C (PyTorch semantics).",
        ge=0.0,
        lt=1.0,
    )
    focal_gamma: float = option(
        0.0, "Focal loss exponent γ ≥ 0 (Lin et al. 2017); 0 is plain cross-entropy.", ge=0.0
    )
    focal_alpha: FloatScalarOrVector | None = Field(
        None, description="Focal class balancing factor: one number, or C numbers; null: none."
    )
    reduction: Reduction = option(Reduction.mean, _REDUCTION_DOC)
    normalization: Normalization = option(Normalization.weights, _NORMALIZATION_DOC)
    epsilon: float = option(FLOAT64_EPS, _EPSILON_DOC, gt=0.0, lt=0.5)
    units: Units = option(Units.nats, _UNITS_DOC)
    return_gradient: StrictBool = Field(False, description=_GRADIENT_DOC)
    response_encoding: ResponseEncoding = option(ResponseEncoding.json, _ENCODING_DOC)

    @model_validator(mode="after")
    def _one_target(self) -> CategoricalLossRequest:
        if self.labels is not None and self.targets is not None:
            raise InputError(
                "targets", "expected exactly one of labels and targets, got both", kind="exclusive"
            )
        if self.labels is None and self.targets is None:
            raise InputError(
                "labels", "expected one of labels or targets, got neither", kind="missing"
            )
        if self.targets is not None and self.ignore_index is not None:
            raise InputError(
                "ignore_index", "expected null with targets: ignore_index applies to labels only",
                kind="not_applicable",
            )
        return self


class BinaryLossRequest(_ExactlyOneInput):
    """Sigmoid / binary cross-entropy, also multi-label (N×C)."""

    model_config = ConfigDict(
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
        }
    )

    logits: FloatVectorOrMatrix | None = Field(None, description="N or N×C scores.")
    probabilities: FloatVectorOrMatrix | None = Field(
        None, description="N or N×C probabilities in [0, 1]."
    )
    targets: FloatVectorOrMatrix = Field(
        description="Same shape as the input, in [0, 1]; soft targets allowed."
    )
    pos_weight: FloatScalarOrVector | None = Field(
        None, description="Weight of the positive term (PyTorch `pos_weight`): one number or C."
    )
    class_weights: FloatVector | None = Field(
        None, description="C per-column weights (N×C input only)."
    )
    sample_weights: FloatVector | None = Field(None, description="N per-sample weights.")
    mask: MaskArray | None = Field(
        None, description="Same shape as the input, 0/1 (or booleans): 0 leaves an element out."
    )
    label_smoothing: float = option(
        0.0, "Targets move toward 0.5: t (1 - ε) + ε/2 (Keras semantics).", ge=0.0, lt=1.0
    )
    focal_gamma: float = option(0.0, "Binary focal loss exponent γ ≥ 0; 0: plain BCE.", ge=0.0)
    focal_alpha: FloatScalarOrVector | None = Field(
        None,
        description="Weight of positives, 1 - alpha for negatives (RetinaNet), in [0, 1]: "
        "one number or C; null: no balancing.",
    )
    reduction: Reduction = option(Reduction.mean, _REDUCTION_DOC)
    normalization: Normalization = option(Normalization.weights, _NORMALIZATION_DOC)
    epsilon: float = option(FLOAT64_EPS, _EPSILON_DOC, gt=0.0, lt=0.5)
    units: Units = option(Units.nats, _UNITS_DOC)
    return_gradient: StrictBool = Field(False, description=_GRADIENT_DOC)
    response_encoding: ResponseEncoding = option(ResponseEncoding.json, _ENCODING_DOC)


class LossDiagnostics(BaseModel):
    """Counts that explain the result."""

    n_clipped: int = Field(description="Probabilities clipped to [epsilon, 1 - epsilon].")
    n_ignored: int = Field(description="Ignored samples (categorical) or masked elements (binary).")


class _LossResponse(BaseModel):
    loss: float | None = Field(description='The reduced loss; null with `"none"`.')
    gradient: OutMatrix | None = Field(
        None, description="Present with `return_gradient`: d loss / d input, the input's shape."
    )
    n_samples: int = Field(description="N.")
    n_classes: int = Field(description="C (1 for binary input of shape N).")
    n_ignored: int = Field(description="Ignored samples or masked-out elements.")
    weight_sum: float = Field(description='The denominator `"mean"` uses (reported always).')
    units: Units
    reduction: Reduction
    normalization: Normalization
    diagnostics: LossDiagnostics


class CategoricalLossResponse(_LossResponse):
    """Result of /v1/losses/categorical."""

    losses: OutVector | None = Field(
        None, description='N per-sample losses; present with `"none"` or `return_gradient`.'
    )


class BinaryLossResponse(_LossResponse):
    """Result of /v1/losses/binary."""

    losses: OutVectorOrMatrix | None = Field(
        None, description='Per-element losses, the input\'s shape; with `"none"` or a gradient.'
    )
    gradient: OutVectorOrMatrix | None = Field(
        None, description="Present with `return_gradient`: d loss / d input, the input's shape."
    )
