"""Request and response bodies of /v1/losses/*."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from app.api.schemas.common import (
    ExactlyOneInput,
    FloatMatrix,
    FloatVectorOrMatrix,
    FractionScalarOrVector,
    IntVector,
    MaskArray,
    Normalization,
    OutMatrix,
    OutVector,
    OutVectorOrMatrix,
    ProbabilityMatrix,
    ProbabilityVectorOrMatrix,
    Reduction,
    ResponseEncoding,
    Units,
    WeightScalarOrVector,
    WeightVector,
    WholeFloats,
    option,
)
from xentropy._numerics import FLOAT64_EPS

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


class CategoricalLossRequest(ExactlyOneInput):
    """Softmax cross-entropy, one class per sample (labels) or target distributions."""

    exactly_one_of = (("logits", "probabilities"), ("labels", "targets"))
    not_with = (("ignore_index", "targets", "ignore_index applies to labels only"),)

    model_config = ConfigDict(
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
            ]
        }
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
    class_weights: WeightVector | None = Field(
        None, description="C non-negative weights, one per class (PyTorch `weight`)."
    )
    sample_weights: WeightVector | None = Field(None, description="N non-negative sample weights.")
    ignore_index: Annotated[int, Field(ge=-(2**63), le=2**63 - 1), WholeFloats] | None = Field(
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
    focal_alpha: WeightScalarOrVector | None = Field(
        None, description="Focal class balancing factor: one number, or C numbers; null: none."
    )
    reduction: Reduction = option(Reduction.mean, _REDUCTION_DOC)
    normalization: Normalization = option(Normalization.weights, _NORMALIZATION_DOC)
    epsilon: float = option(FLOAT64_EPS, _EPSILON_DOC, gt=0.0, lt=0.5)
    units: Units = option(Units.nats, _UNITS_DOC)
    return_gradient: StrictBool = Field(False, description=_GRADIENT_DOC)
    response_encoding: ResponseEncoding = option(ResponseEncoding.json, _ENCODING_DOC)


class BinaryLossRequest(ExactlyOneInput):
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
    probabilities: ProbabilityVectorOrMatrix | None = Field(
        None, description="N or N×C probabilities in [0, 1]."
    )
    targets: ProbabilityVectorOrMatrix = Field(
        description="Same shape as the input, in [0, 1]; soft targets allowed."
    )
    pos_weight: WeightScalarOrVector | None = Field(
        None, description="Weight of the positive term (PyTorch `pos_weight`): one number or C."
    )
    class_weights: WeightVector | None = Field(
        None, description="C per-column weights (N×C input only)."
    )
    sample_weights: WeightVector | None = Field(None, description="N per-sample weights.")
    mask: MaskArray | None = Field(
        None, description="Same shape as the input, 0/1 (or booleans): 0 leaves an element out."
    )
    label_smoothing: float = option(
        0.0, "Targets move toward 0.5: t (1 - ε) + ε/2 (Keras semantics).", ge=0.0, lt=1.0
    )
    focal_gamma: float = option(0.0, "Binary focal loss exponent γ ≥ 0; 0: plain BCE.", ge=0.0)
    focal_alpha: FractionScalarOrVector | None = Field(
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
    units: Units = Field(description="Units of `loss`, `losses` and `gradient`, as requested.")
    reduction: Reduction = Field(description="The reduction that was applied, as requested.")
    normalization: Normalization = Field(
        description='What `"mean"` divided by, as requested (`weight_sum`).'
    )
    diagnostics: LossDiagnostics = Field(description="Clipped and ignored counts.")


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
                    "diagnostics": {"n_clipped": 0, "n_ignored": 0},
                }
            ]
        }
    )

    losses: OutVector | None = Field(
        None, description='N per-sample losses; present with `"none"` or `return_gradient`.'
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
                    "diagnostics": {"n_clipped": 0, "n_ignored": 0},
                }
            ]
        }
    )

    losses: OutVectorOrMatrix | None = Field(
        None, description='Per-element losses, the input\'s shape; with `"none"` or a gradient.'
    )
    gradient: OutVectorOrMatrix | None = Field(
        None, description="Present with `return_gradient`: d loss / d input, the input's shape."
    )
