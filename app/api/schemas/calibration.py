"""Request and response bodies of /v1/calibration and /v1/calibration/diagram."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, create_model

from app.api.schemas.common import (
    Binning,
    ClassIndexVector,
    ExactlyOneInput,
    FloatVectorOrMatrix,
    GroupVector,
    MaskArray,
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
         "recall": 1.0, "ece": 0.325, "nll": 0.35667494393873245,
         "brier": 0.14000000000000004},
        {"class": 1, "count": 2, "frequency": 0.5, "mean_probability": 0.4, "recall": 0.5,
         "ece": 0.2, "nll": 0.7135581778200729, "brier": 0.4599999999999999},
        {"class": 2, "count": 1, "frequency": 0.25, "mean_probability": 0.175, "recall": 1.0,
         "ece": 0.225, "nll": 0.916290731874155, "brier": 0.54},
    ],
    "temperature": None,
    "units": "nats",
    "binning": "uniform",
    "n_bins": 5,
}




class CalibrationData(ExactlyOneInput):
    """Predictions with the labels that arrived."""

    exactly_one_of: ClassVar[tuple[tuple[str, str], ...]] = (
        ("logits", "probabilities"), ("labels", "targets"),
    )

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
                {
                    "probabilities": [[0.9, 0.2], [0.3, 0.6], [0.8, 0.1]],
                    "targets": [[1, 0], [0, 1], [1, 1]],
                    "multilabel": True,
                    "n_bins": 2,
                },
                {
                    "probabilities": [0.9, 0.2, 0.65, 0.4],
                    "labels": [1, 0, 0, 1],
                    "groups": ["v1", "v2", "v1", "v2"],
                    "n_bins": 2,
                },
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
    labels: ClassIndexVector | None = Field(
        None, description="N labels: 0/1 for N input, in [0, C) for N×C. Exactly one of "
        "`labels` and `targets`."
    )
    targets: MaskArray | None = Field(
        None,
        description="With `multilabel: true`: N×C 0/1 labels of N×C independent "
        "probabilities (or logits, through the sigmoid), each column a binary problem.",
    )
    sample_weights: WeightVector | None = Field(
        None, description="N weights ≥ 0, acting as repeat counts (a bin's `count` stays a count)."
    )
    groups: GroupVector | None = Field(
        None,
        description="N integers or N strings (all of one type), at most 10000 distinct: adds "
        "`per_group`, the full report of each group's rows alone, in first-appearance "
        "order. Each is exactly (to the last bit) the answer to a request holding that "
        "group's rows, with the same options; with `multilabel`, each is the multi-label "
        "report of the group's rows.",
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
    accuracy_interval: Interval | None = Field(
        None,
        description="With `confidence_level`: the Clopper–Pearson interval (Clopper & "
        "Pearson 1934) of the bin's unweighted count k of correct predictions (binary: "
        "positives) among its n = `count` samples: [B⁻¹(α/2; k, n − k + 1), "
        "B⁻¹(1 − α/2; k + 1, n − k)], B⁻¹ the beta quantile, α = 1 − confidence_level "
        '(`scipy.stats.binomtest(k, n).proportion_ci(confidence_level, method="exact")`). '
        "Absent for an empty bin or without `confidence_level`.",
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
    nll: float | None = Field(
        description="Mean NLL (in `units`) of the samples labelled k, so that "
        "Σ_k count_k · nll_k / N = `nll` (weighted: Σ_k W_k nll_k / W); null when they weigh "
        "0 (and in a result merged from a state written before per-class NLL was added).",
    )
    brier: float | None = Field(
        description="Mean Brier score of the samples labelled k "
        "(Σ_k count_k · brier_k / N = `brier`); null when they weigh 0.",
    )
    mce: float | None = Field(
        None, description='With `mode: "classwise"`: MCE of p_k against label == k.'
    )
    rmsce: float | None = Field(
        None, description='With `mode: "classwise"`: RMSCE of p_k against label == k.'
    )
    bins: list[CalibrationBinOut] | None = Field(
        None,
        description='With `mode: "classwise"`: every bin of p_k against label == k (same '
        "binning as the request; quantile edges are those of p_k).",
    )


class EstimatesOut(BaseModel):
    """The requested estimators, each computed on the top-label confidence (binary: p)."""

    ece_debiased: float | None = Field(
        None,
        description="Kumar, Liang & Ma (2019), “Verified uncertainty calibration”: "
        "sqrt(max(Σ_b (n_b/N)[(conf_b − acc_b)² − acc_b(1 − acc_b)/(n_b − 1)], 0)) over the "
        "request's bins with n_b ≥ 2 (N counts every bin): the plug-in squared gap minus "
        "the variance of acc_b. Oracle: `calibration.get_calibration_error(probs, labels, "
        "p=2, debias=True)` of `uncertainty-calibration` on the same bins.",
    )
    ece_sweep: float | None = Field(
        None,
        description="Roelofs, Cain, Shlens & Mozer (2022), “Mitigating bias in calibration "
        "error estimation”: Σ_j (n_j/N)|acc_j − conf_j| over b equal-mass bins, b the "
        "largest count (at most 1000) such that the bin accuracies are non-decreasing for "
        "every count 1..b (the sweep stops at the first count that breaks monotonicity).",
    )
    smooth_ece: float | None = Field(
        None,
        description="Błasiok & Nakkiran (2023), “Smooth ECE: principled reliability diagrams "
        "via kernel smoothing”: Σ_t |r̂(t)| δ(t) / Σ_t δ(t) over t in [0, 1], with "
        "δ(t) = Σ_i K_σ(t, c_i) + 10⁻⁴ and r̂(t) = Σ_i K_σ(t, c_i)(c_i − y_i) / δ(t) for the "
        "Gaussian kernel K_σ reflected at 0 and 1, at relplot's bandwidth (the smallest σ "
        "of its bisection with σ ≥ smECE_σ). Oracle: `relplot.smECE`.",
    )


Interval = Annotated[list[float], Field(min_length=2, max_length=2)]


class IntervalsOut(BaseModel):
    """Percentile bootstrap intervals [lower, upper] (Efron & Tibshirani 1993): the
    α/2 and 1 − α/2 quantiles (linear interpolation) of the statistic over the replicates,
    each recomputing it on the reweighted samples over the whole sample's bin edges.
    A statistic without a replicate of positive weight has none."""

    nll: Interval | None = Field(None, description="Of `nll`, in `units`.")
    brier: Interval | None = Field(None, description="Of `brier`.")
    accuracy: Interval | None = Field(None, description="Of `accuracy`.")
    ece: Interval | None = Field(None, description="Of `ece`.")
    mce: Interval | None = Field(None, description="Of `mce`.")
    rmsce: Interval | None = Field(None, description="Of `rmsce`.")
    ace: Interval | None = Field(None, description="Of `ace`.")
    ece_debiased: Interval | None = Field(None, description="With that estimator.")
    ece_sweep: Interval | None = Field(None, description="With that estimator.")
    smooth_ece: Interval | None = Field(None, description="With that estimator.")


class RiskCoveragePointOut(BaseModel):
    """Keeping the samples whose confidence is at least `threshold`."""

    coverage: float = Field(description="The (weighted) share of the samples kept.")
    risk: float = Field(description="The top-label error rate of the samples kept.")
    threshold: float = Field(description="The lowest confidence kept.")


class SelectiveOut(BaseModel):
    """Selective prediction (Geifman & El-Yaniv 2017): samples ranked by top-label
    confidence, descending, tied confidences entering together."""

    aurc: float = Field(
        description="Σ over tie groups g, in that order, of (n_g / N) × the error rate of "
        "every sample retained up to and including g (Geifman, Uziel & El-Yaniv 2019)."
    )
    e_aurc: float = Field(description="`aurc` − `optimal_aurc`.")
    optimal_aurc: float = Field(
        description="r + (1 − r) ln(1 − r) for the overall error rate r: the AURC of a "
        "perfect ranking (Geifman et al. 2019)."
    )
    curve: list[RiskCoveragePointOut] = Field(
        description="At most `n_points` points, coverage increasing to 1: every tie group, "
        "or the first group reaching each of `n_points` evenly spaced coverages."
    )


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
    classwise_ece: float | None = Field(
        None,
        description='With `mode: "classwise"`: (1/C) Σ_k `per_class[k].ece` (Kull et al. '
        "2019; Kumar et al. 2019's marginal calibration error).",
    )
    estimates: EstimatesOut | None = Field(None, description="With `estimators`.")
    intervals: IntervalsOut | None = Field(None, description="With `confidence_level`.")
    selective: SelectiveOut | None = Field(None, description="With `risk_coverage`.")
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
    per_label: list[CalibrationResponse] | None = Field(
        None,
        description="With `multilabel`: per label (column), exactly the report of a "
        "request with that column as shape-N binary input (`probabilities` or `logits` of "
        "the column, its targets as `labels`). With `multilabel` the top-level statistics "
        "are those of `micro`. Absent otherwise.",
    )
    macro: MacroCalibrationOut | None = Field(
        None, description="With `multilabel`: the mean over labels of each scalar metric "
        "of `per_label`. Absent otherwise."
    )
    micro: CalibrationResponse | None = Field(
        None,
        description="With `multilabel`: the binary report of all N·C (probability, "
        "target) pairs pooled, row-major (each row's weight repeated C times); equal to the "
        "top level. Absent otherwise.",
    )
    per_group: list[GroupCalibrationOut] | None = Field(
        None,
        description="With `groups`: per group, in order of first appearance, `group` and "
        "the full report of that group's rows alone (every option applies per group; "
        "temperature scaling fits a T per group). Absent otherwise.",
    )


class MacroCalibrationOut(BaseModel):
    """The mean over labels of the per-label metrics (unweighted: every label counts once)."""

    accuracy: float = Field(description="Mean of `per_label[k].accuracy`.")
    mean_confidence: float = Field(description="Mean of `per_label[k].mean_confidence`.")
    nll: float = Field(description="Mean of `per_label[k].nll`, in `units`.")
    brier: float = Field(description="Mean of `per_label[k].brier`.")
    ece: float = Field(description="Mean of `per_label[k].ece`.")
    mce: float = Field(description="Mean of `per_label[k].mce`.")
    rmsce: float = Field(description="Mean of `per_label[k].rmsce`.")
    ace: float = Field(description="Mean of `per_label[k].ace`.")


# `group` first, then every field of the report (whatever fields it gains later).
GroupCalibrationOut = create_model(  # type: ignore[call-overload]
    "GroupCalibration",
    __doc__="One group: its value, then the report of the group's rows alone.",
    group=(int | str, Field(description="The group value, as sent.")),
    **{name: (info.annotation, info) for name, info in CalibrationResponse.model_fields.items()},
)
CalibrationResponse.model_rebuild()
GroupCalibrationOut.model_rebuild()
