"""Request and response bodies of /v1/calibration and /v1/calibration/diagram."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.api.schemas.common import (
    Binning,
    ClassIndexVector,
    ExactlyOneInput,
    FloatVectorOrMatrix,
    ProbabilityVectorOrMatrix,
    Units,
    WeightVector,
    request_model,
)
from app.api.schemas.states import CalibrationState
from xentropy.calibration import CALIBRATION_PARAMS

CALIBRATION_EXAMPLE: dict[str, Any] = {
    "n_samples": 4,
    "n_classes": 3,
    "accuracy": 0.75,
    "mean_confidence": 0.625,
    "nll": 0.6750205078632583,
    "brier": 0.39999999999999997,
    "ece": 0.425,
    "mce": 0.6,
    "rmsce": 0.4596194077712559,
    "ace": 0.425,
    "bins": [
        {"lower": 0.0, "upper": 0.2, "count": 0, "weight": 0.0, "mean_confidence": None,
         "accuracy": None},
        {"lower": 0.2, "upper": 0.4, "count": 1, "weight": 1.0, "mean_confidence": 0.4,
         "accuracy": 1.0},
        {"lower": 0.4, "upper": 0.6, "count": 1, "weight": 1.0, "mean_confidence": 0.6,
         "accuracy": 0.0},
        {"lower": 0.6, "upper": 0.8, "count": 2, "weight": 2.0, "mean_confidence": 0.75,
         "accuracy": 1.0},
        {"lower": 0.8, "upper": 1.0, "count": 0, "weight": 0.0, "mean_confidence": None,
         "accuracy": None},
    ],
    "per_class": [
        {"class": 0, "count": 1, "frequency": 0.25, "mean_probability": 0.42499999999999993,
         "recall": 1.0, "ece": 0.325},
        {"class": 1, "count": 2, "frequency": 0.5, "mean_probability": 0.4, "recall": 0.5,
         "ece": 0.2},
        {"class": 2, "count": 1, "frequency": 0.25, "mean_probability": 0.175, "recall": 1.0,
         "ece": 0.225},
    ],
    "temperature": None,
    "units": "nats",
    "binning": "uniform",
    "n_bins": 5,
}




class CalibrationData(ExactlyOneInput):
    """Predictions with the labels that arrived."""

    model_config = ConfigDict(
        title="CalibrationRequest",
        json_schema_extra={
            "examples": [
                {
                    "probabilities": [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4],
                                      [0.6, 0.3, 0.1]],
                    "labels": [0, 1, 2, 1],
                    "n_bins": 5,
                },
                {
                    "logits": [[3, 0, 0], [0, 3, 0], [0, 0, 3], [3, 0, 0]],
                    "labels": [0, 1, 2, 1],
                    "fit_temperature": True,
                },
                {"probabilities": [0.9, 0.2, 0.65, 0.4], "labels": [1, 0, 0, 1], "n_bins": 4},
            ]
        }
    )

    probabilities: ProbabilityVectorOrMatrix | None = Field(
        None,
        description="N (binary: probability of class 1) or N×C (rows sum to 1 within 1e-6).",
    )
    logits: FloatVectorOrMatrix | None = Field(
        None, description="N (binary: logit of class 1, sigmoid) or N×C (softmax)."
    )
    labels: ClassIndexVector = Field(description="N labels: 0/1 for N input, in [0, C) for N×C.")
    sample_weights: WeightVector | None = Field(
        None, description="N weights ≥ 0, acting as repeat counts (a bin's `count` stays a count)."
    )


# Options from the library's constraint table (see app.api.schemas.losses).
CalibrationRequest = request_model(CalibrationData, CALIBRATION_PARAMS)


class CalibrationBinOut(BaseModel):
    """One bin, covering (lower, upper]; the first bin also holds 0."""

    lower: float = Field(description="Lower edge (excluded, except 0 for the first bin).")
    upper: float = Field(description="Upper edge (included).")
    count: int = Field(description="Samples in the bin.")
    weight: float = Field(description="Sum of the sample weights in the bin (= count unweighted).")
    mean_confidence: float | None = Field(description="Null for an empty bin.")
    accuracy: float | None = Field(
        description="Top-label accuracy (binary input: observed frequency of class 1); "
        "null for an empty bin."
    )


class ClassCalibrationOut(BaseModel):
    """Calibration of one class's probability (multi-class input only)."""

    model_config = ConfigDict(populate_by_name=True)

    class_index: int = Field(alias="class", description="Class index k.")
    count: int = Field(description="Samples labelled k.")
    frequency: float = Field(description="count / N.")
    mean_probability: float = Field(description="Mean of p_k over all samples.")
    recall: float | None = Field(description="Share of class-k samples predicted as k.")
    ece: float = Field(description="Class-wise ECE of p_k against the indicator label == k.")


class TemperatureOut(BaseModel):
    """Temperature scaling: softmax(logits / T) with T minimising the NLL."""

    temperature: float = Field(description="The fitted T > 0 (T > 1 softens, T < 1 sharpens).")
    nll_before: float = Field(description="Mean NLL of the logits as sent (T = 1), in `units`.")
    nll_after: float = Field(description="Mean NLL of softmax(logits / T), in `units`.")
    ece_before: float = Field(description="ECE of the logits as sent.")
    ece_after: float = Field(description="ECE after temperature scaling.")
    note: str | None = Field(
        description="Why T is not an interior optimum (a bound of the search interval, or "
        "constant logits); null otherwise."
    )


class ApproximationOut(BaseModel):
    """A statistic that a result finalized from states gives approximately: quantile bins
    come from the states' confidence histogram, whose cells hold many samples."""

    statistic: str = Field(
        description='`"ace"`, `"ece"`, `"mce"`, `"rmsce"`, `"bins"` or `"per_class.ece"`.'
    )
    error_bound: float = Field(
        description="A rigorous bound on |this value − the exact one| (for `bins`: the "
        "largest share of the total weight that may lie in another bin; for "
        "`per_class.ece`: the largest bound over the classes)."
    )


class CalibrationResponse(BaseModel):
    """How good and how honest the probabilities are."""

    model_config = ConfigDict(json_schema_extra={"examples": [CALIBRATION_EXAMPLE]})

    n_samples: int = Field(description="N.")
    n_classes: int = Field(description="C; 2 for binary input of shape N.")
    accuracy: float = Field(
        description="Top-label accuracy (binary input: share of correct p > 0.5 decisions)."
    )
    mean_confidence: float = Field(
        description="Mean top-label confidence (binary input: mean probability of class 1)."
    )
    nll: float = Field(description="Mean negative log-likelihood of the label, in `units`.")
    brier: float = Field(description="Binary: mean (p − y)²; multi-class: mean Σ_c (p_c − y_c)².")
    ece: float = Field(description="Expected calibration error: Σ_b (n_b / N) |acc_b − conf_b|.")
    mce: float = Field(description="Maximum calibration error over non-empty bins.")
    rmsce: float = Field(description="Root-mean-square calibration error over the bins.")
    ace: float = Field(description="ECE over `n_bins` equal-mass bins.")
    bins: list[CalibrationBinOut] = Field(description="Every bin, in order; empty ones too.")
    per_class: list[ClassCalibrationOut] | None = Field(
        description="Per class (multi-class input); null for binary input."
    )
    temperature: TemperatureOut | None = Field(
        description="With `fit_temperature`; null otherwise."
    )
    units: Units = Field(description="Units of `nll`, as requested.")
    binning: Binning = Field(description="The binning that was used, as requested.")
    n_bins: int = Field(description="The number of bins, as requested.")
    approximate: list[ApproximationOut] | None = Field(
        None,
        description="Only in a result finalized from states (`/v1/merge`): the statistics "
        "that states give approximately (`ace`; with quantile binning also `ece`, `mce`, "
        "`rmsce`, `bins` and `per_class.ece`), each with a bound on its error. Absent "
        "when every number is exact.",
    )
    state: CalibrationState | None = Field(
        None, description="With `return_state`: the batch's state, for `/v1/merge`."
    )
