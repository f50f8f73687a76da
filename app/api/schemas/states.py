"""The JSON form of states (``"return_state": true``, ``POST /v1/merge``), documented.

These models describe the objects :meth:`xentropy.states.State.to_json` writes, field by
field and in the same order (a test checks it), so that a generated client can hold a
state and send it back. They are documentation: the service reads states with
:func:`xentropy.states.from_json`, which checks every rule below and those JSON Schema
cannot state (sums consistent with the counts and with each other, normalised pairs).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

import xentropy
from app.api.schemas.common import Binning, Convention, Normalization, Units
from xentropy._divergences import DIVERGENCE_PARAMS
from xentropy._validation import Param
from xentropy.calibration import CALIBRATION_PARAMS, MAX_BINS
from xentropy.options import BINARY_PARAMS, CATEGORICAL_PARAMS


class StateReduction(StrEnum):
    """The reduction a state finalizes to (per-sample values do not merge)."""

    mean = "mean"
    sum = "sum"


class InputForm(StrEnum):
    """The input the batch was sent as."""

    logits = "logits"
    probabilities = "probabilities"


class TargetForm(StrEnum):
    """The targets the batch was sent with."""

    labels = "labels"
    targets = "targets"


class DivergenceInput(StrEnum):
    """The form of q the batch was sent with."""

    q = "q"
    q_logits = "q_logits"


_PAIR_DOC = (
    "A compensated sum [hi, lo]: the exact sum is hi + lo, hi is it rounded to float64 "
    "(hi + lo == hi in float64), lo keeps about 53 more bits."
)
Pair = Annotated[list[float], Field(min_length=2, max_length=2)]


# The bounds of the library's tables (checked below), as JSON Schema states them.
Epsilon = Annotated[float, Field(gt=0.0, lt=0.5)]
Smoothing = Annotated[float, Field(ge=0.0, lt=1.0)]
Gamma = Annotated[float, Field(ge=0.0)]
NonNegative = Annotated[float, Field(ge=0.0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


def _interval(param: Param) -> tuple[float | None, float | None, bool, bool]:
    return param.low, param.high, param.low_open, param.high_open


assert all(_interval(p) == (0.0, 0.5, True, True) for p in (
    CATEGORICAL_PARAMS["epsilon"], BINARY_PARAMS["epsilon"], DIVERGENCE_PARAMS["epsilon"],
    CALIBRATION_PARAMS["epsilon"]))
assert all(_interval(p) == (0.0, 1.0, False, True) for p in (
    CATEGORICAL_PARAMS["label_smoothing"], BINARY_PARAMS["label_smoothing"]))
assert _interval(CATEGORICAL_PARAMS["focal_gamma"]) == (0.0, None, False, False)
assert _interval(BINARY_PARAMS["focal_alpha"]) == (0.0, 1.0, False, False)
_INT64 = 2**63 - 1
Count = Annotated[int, Field(ge=0, le=_INT64)]
_STATE = ConfigDict(extra="forbid")


def _pair(description: str) -> Any:
    return Field(description=f"{description} {_PAIR_DOC}")


def _pairs(description: str, **default: Any) -> Any:
    return Field(**default, description=f"{description} Each entry a compensated sum [hi, lo].")


_NULL = " May be left out when null."


# --------------------------------------------------------------------------- losses


class CategoricalLossStateOptions(BaseModel):
    """What categorical loss states must share to merge: the call's options as it resolved
    them (a convention's defaults included). Per-sample data (sample weights) are not
    options."""

    model_config = _STATE

    input: InputForm = Field(description="`logits` or `probabilities`.")
    target: TargetForm = Field(description="`labels` (class indices) or `targets` (rows).")
    n_classes: int = Field(ge=1, le=_INT64, description="C.")
    units: Units = Field(description="Units of the loss sums.")
    reduction: StateReduction = Field(description="What the state finalizes to.")
    normalization: Normalization = Field(description='What `"mean"` divides by.')
    convention: Convention = Field(description="The convention of the calls.")
    epsilon: Epsilon | None = Field(
        None,
        description="The clipping margin of probabilities; null where nothing is clipped."
        + _NULL,
    )
    ignore_index: Annotated[int, Field(ge=-(2**63), le=_INT64)] | None = Field(
        None, description="The label left out (labels); null: none." + _NULL
    )
    label_smoothing: Smoothing = Field(description="ε of the label smoothing.")
    focal_gamma: Gamma = Field(description="The focal exponent γ (0: plain cross-entropy).")
    focal_alpha: NonNegative | list[NonNegative] | None = Field(
        None,
        description="The focal balancing factor: one number, C numbers, or null (none)." + _NULL,
    )
    class_weights: list[NonNegative] | None = Field(
        None, description="C class weights, or null." + _NULL
    )


class BinaryLossStateOptions(BaseModel):
    """What binary loss states must share to merge (see `CategoricalLossStateOptions`)."""

    model_config = _STATE

    input: InputForm = Field(description="`logits` or `probabilities`.")
    n_classes: int = Field(ge=1, le=_INT64, description="C (1 for input of shape N).")
    units: Units = Field(description="Units of the loss sums.")
    reduction: StateReduction = Field(description="What the state finalizes to.")
    normalization: Normalization = Field(description='What `"mean"` divides by.')
    convention: Convention = Field(description="The convention of the calls.")
    epsilon: Epsilon | None = Field(
        None,
        description="The clipping margin of probabilities; null where nothing is clipped."
        + _NULL,
    )
    label_smoothing: Smoothing = Field(description="ε of the label smoothing (toward 0.5).")
    focal_gamma: Gamma = Field(description="The focal exponent γ (0: plain BCE).")
    focal_alpha: Fraction | list[Fraction] | None = Field(
        None,
        description="Weight of positives (1 − α for negatives): one number, C, or null."
        + _NULL,
    )
    pos_weight: NonNegative | list[NonNegative] | None = Field(
        None, description="Weight of the positive term: one number, C, or null." + _NULL
    )
    class_weights: list[NonNegative] | None = Field(
        None, description="C column weights, or null." + _NULL
    )


_LOSS_COUNTS = {
    "n_samples": "N.",
    "n_counted": "Entries that count (samples; binary: elements, or samples under the "
    "Keras convention with N×C input). The `\"samples\"` normalization's denominator.",
    "n_ignored": "Ignored samples or masked-out elements.",
    "n_clipped": "Probabilities clipped to [epsilon, 1 − epsilon].",
}


class _LossStateFields(BaseModel):
    model_config = _STATE

    kind: str = Field(description="The kind of state.")
    version: Literal[1] = Field(description="The state format.")
    options: BaseModel = Field(description="What must agree to merge.")
    n_samples: Count = Field(description=_LOSS_COUNTS["n_samples"])
    n_counted: Count = Field(description=_LOSS_COUNTS["n_counted"])
    n_ignored: Count = Field(description=_LOSS_COUNTS["n_ignored"])
    n_clipped: Count = Field(description=_LOSS_COUNTS["n_clipped"])
    loss: Pair = _pair("Σ of the per-entry losses (every weight applied), in `units`.")
    weight: Pair = _pair(
        "Σ of the effective weights of the counted entries: the `\"weights\"` "
        "normalization's denominator (`weight_sum`)."
    )


def _example(state: xentropy.State) -> dict[str, Any]:
    return {"examples": [state.to_json()]}


#: Small batches whose states illustrate the documentation (and are its examples).
EXAMPLE_LOGITS = [[[2.0, 1.0, 0.1], [0.5, 2.5, -0.5]], [[0.3, 0.2, 0.1]]]
EXAMPLE_LABELS = [[0, 1], [2]]
LOSS_STATES = [
    xentropy.state(xentropy.softmax_cross_entropy_with_integer_labels(x, y, return_state=True))
    for x, y in zip(EXAMPLE_LOGITS, EXAMPLE_LABELS, strict=True)
]
BINARY_STATE = xentropy.state(xentropy.sigmoid_binary_cross_entropy(
    [1.5, -0.3, 2.2], [1, 0, 1], pos_weight=2.0, return_state=True))
DIVERGENCE_STATE = xentropy.state(xentropy.divergences(
    [[0.5, 0.5, 0.0], [0.1, 0.2, 0.7]], [[0.4, 0.4, 0.2], [0.2, 0.2, 0.6]], return_state=True,
))
EXAMPLE_PROBABILITIES = [[[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]], [[0.3, 0.3, 0.4], [0.6, 0.3, 0.1]]]
EXAMPLE_CLASSES = [[0, 1], [2, 1]]
CALIBRATION_STATES = [
    xentropy.state(xentropy.calibration_report(p, y, n_bins=5, return_state=True))
    for p, y in zip(EXAMPLE_PROBABILITIES, EXAMPLE_CLASSES, strict=True)
]


class CategoricalLossState(_LossStateFields):
    """Sufficient statistics of a batch of `/v1/losses/categorical`: counts and
    compensated sums, of fixed size. States whose `options` agree merge (`/v1/merge`)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_example(LOSS_STATES[0]))

    kind: Literal["categorical_loss"] = Field(description="The kind of state.")
    options: CategoricalLossStateOptions = Field(description="What must agree to merge.")


class BinaryLossState(_LossStateFields):
    """Sufficient statistics of a batch of `/v1/losses/binary` (see
    `CategoricalLossState`)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_example(BINARY_STATE))

    kind: Literal["binary_loss"] = Field(description="The kind of state.")
    options: BinaryLossStateOptions = Field(description="What must agree to merge.")


# --------------------------------------------------------------------------- divergences


class DivergenceStateOptions(BaseModel):
    """What divergence states must share to merge."""

    model_config = _STATE

    input: DivergenceInput = Field(description="`q` or `q_logits`.")
    n_classes: int = Field(ge=1, le=_INT64, description="C.")
    units: Units = Field(description="Units of the sums.")
    reduction: StateReduction = Field(description="What the state finalizes to.")
    epsilon: Epsilon | None = Field(
        None, description="The clipping margin of q; null with q_logits." + _NULL
    )


class DivergenceState(BaseModel):
    """Sufficient statistics of a batch of `/v1/divergences`: the number of rows and the
    sums of the four per-row values."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_example(DIVERGENCE_STATE))

    kind: Literal["divergences"] = Field(description="The kind of state.")
    version: Literal[1] = Field(description="The state format.")
    options: DivergenceStateOptions = Field(description="What must agree to merge.")
    n_samples: Count = Field(description="N, the number of rows.")
    entropy: Pair = _pair("Σ of H(p) over the rows, in `units`.")
    cross_entropy: Pair = _pair("Σ of H(p, q) over the rows.")
    kl_divergence: Pair = _pair("Σ of KL(p‖q) over the rows.")
    js_divergence: Pair = _pair("Σ of JS(p, q) over the rows.")


# --------------------------------------------------------------------------- calibration

_SCALED = " Weights are divided by 2**weight_exponent."


class CalibrationStateOptions(BaseModel):
    """What calibration states must share to merge."""

    model_config = _STATE

    input: InputForm = Field(description="`probabilities` or `logits`.")
    binary: bool = Field(description="Input of shape N (probability of class 1), not N×C.")
    n_classes: int = Field(ge=2, le=_INT64, description="C (2 for binary input).")
    n_bins: int = Field(ge=1, le=MAX_BINS, description="The number of bins.")
    binning: Binning = Field(description="The binning.")
    units: Units = Field(description="Units of the NLL of the finalized result.")
    epsilon: Epsilon | None = Field(
        None,
        description="The NLL's clipping margin of probabilities; null with logits." + _NULL,
    )
    mode: Literal["classwise"] | None = Field(
        None,
        description='`"classwise"` when the state holds the class-wise bins and per-class '
        "NLL and Brier sums (uniform binning only); absent: top-label." + _NULL,
    )
    estimators: Annotated[list[Literal["ece_debiased"]],
                          Field(min_length=1, max_length=1)] | None = Field(
        None,
        description="The estimators the state gives exactly (from its uniform bins): "
        "`ece_debiased`. `ece_sweep` and `smooth_ece` re-bin or smooth the samples "
        "themselves, so a merged result has none." + _NULL,
    )
    bootstrap: CalibrationStateBootstrap | None = Field(
        None, description="Poisson bootstrap replicates held (uniform binning)." + _NULL
    )


class CalibrationStateBootstrap(BaseModel):
    """What Poisson replicates must share to merge (each batch has its own stream)."""

    model_config = _STATE

    confidence_level: float = Field(gt=0.0, lt=1.0, description="Coverage of the intervals.")
    n_resamples: int = Field(ge=1, le=10_000, description="R, the replicates.")
    seed: Count = Field(description="The resampling seed.")


class CalibrationReplicates(BaseModel):
    """Sums of R Poisson bootstrap replicates over the uniform bins (weights divided by
    2**weight_exponent): replicate r of merged states is the sum of their replicates r.
    Plain numbers (not compensated: percentiles of replicates need no more)."""

    model_config = _STATE

    streams: list[Count] = Field(
        description="The resampling streams (`bootstrap.stream`) of the batches merged, "
        "distinct: give each batch its own (its index, a day number...); merging states "
        "that share one is a 422."
    )
    weight: list[float] = Field(description="Σ v per replicate (R).")
    nll: list[float] = Field(description="Σ v·NLL (nats) per replicate.")
    brier: list[float] = Field(description="Σ v·Brier per replicate.")
    correct: list[float] = Field(description="Σ v·correct per replicate.")
    bin_weight: list[list[float]] = Field(description="Σ v per replicate and bin (R×B).")
    bin_confidence: list[list[float]] = Field(description="Σ v·confidence per replicate and bin.")
    bin_outcome: list[list[float]] = Field(description="Σ v·outcome per replicate and bin.")
    hits: list[Count] = Field(
        description="Unweighted count of outcomes 1 per bin (the bins' Clopper–Pearson "
        "intervals)."
    )


class CalibrationTotals(BaseModel):
    """Weighted sums over every sample."""

    model_config = _STATE

    weight: Pair = _pair("Σw." + _SCALED)
    correct: Pair = _pair("Σw·correct (top label; binary: p > 0.5 against the label).")
    confidence: Pair = _pair("Σw·confidence (top label; binary: p).")
    nll: Pair = _pair("Σw·NLL, in nats.")
    brier: Pair = _pair("Σw·Brier score.")


class ConfidenceHistogram(BaseModel):
    """The non-empty cells of a fine histogram of the binned value (top-label confidence;
    binary: p), in cell order: the exact uniform bins are sums of cells, quantile bins and
    ACE come from them with a bound on the error. The cells are (lower, upper] intervals
    that refine the n_bins uniform bins (at least 1024 equal cells, and 4 cells per
    halving of the distance to 0 and to 1 below them)."""

    model_config = _STATE

    index: list[Count] = Field(description="The cells, increasing.")
    count: list[Annotated[int, Field(ge=1, le=_INT64)]] = Field(
        description="Samples per cell."
    )
    weight: list[Pair] = _pairs("Σw per cell." + _SCALED)
    confidence: list[Pair] = _pairs("Σw·value per cell.")
    outcome: list[Pair] = _pairs("Σw·outcome (correctness; binary: the label) per cell.")
    abs_gap: list[Pair] = _pairs("Σw·|outcome − value| per cell (for the error bounds).")
    min: list[float] = Field(description="The smallest value in each cell.")
    max: list[float] = Field(description="The largest value in each cell.")


class ClassCells(BaseModel):
    """Per (class k, uniform bin b) cells that hold a p_k, at index k·n_bins + b. With
    quantile binning, `gap`, `weight` and `abs_gap` feed only approximate statistics:
    they are plain numbers rounded to 6 significant digits, with `rounding` (states
    written before held compensated pairs and `min`/`max` there: still read)."""

    model_config = _STATE

    index: list[Count] = Field(description="k·n_bins + b, increasing.")
    gap: list[Pair] | list[float] = Field(
        description="Σw·(1[y = k] − p_k) per cell: compensated sums [hi, lo]; with quantile "
        "binning, rounded numbers."
    )
    weight: list[Pair] | list[float] | None = Field(
        None,
        description='Σw per cell; quantile binning (rounded numbers) or mode "classwise" '
        "(compensated sums [hi, lo]) only, else null." + _NULL,
    )
    abs_gap: list[float] | list[Pair] | None = Field(
        None,
        description="Σw·|1[y = k] − p_k| per cell; quantile binning only (rounded numbers), "
        "else null." + _NULL,
    )
    rounding: Annotated[float, Field(ge=0.0, le=1e-3)] | None = Field(
        None,
        description="Quantile binning only: a bound ρ on the relative error of the rounded "
        "`gap`, `weight` and `abs_gap` (|error| <= ρ × the exact Σw, resp. Σw·|1[y = k] − "
        "p_k|), counted by the error bound of `per_class.ece`." + _NULL,
    )
    min: list[float] | None = Field(
        None,
        description="States written before the rounded cells, quantile binning: the "
        "smallest p_k per cell (with `gap`, `weight`, `abs_gap` as pairs); else null." + _NULL,
    )
    max: list[float] | None = Field(
        None,
        description="States written before the rounded cells, quantile binning: the "
        "largest p_k per cell; else null." + _NULL,
    )
    count: list[Count] | None = Field(
        None, description='Samples per cell; mode "classwise" only.' + _NULL
    )
    confidence: list[Pair] | None = _pairs(
        'Σw·p_k per cell; mode "classwise" only.' + _NULL, default=None
    )
    hits: list[Count] | None = Field(
        None, description='Samples with y = k per cell; mode "classwise" only.' + _NULL
    )


class PerClassSums(BaseModel):
    """Per-class sums of multi-class input (C entries each)."""

    model_config = _STATE

    count: list[Count] = Field(description="Samples labelled k.")
    weight: list[Pair] = _pairs("Σw of the samples labelled k.")
    correct: list[Pair] = _pairs("Σw·correct of the samples labelled k.")
    probability: list[Pair] = _pairs("Σw·p_k over all samples.")
    cells: ClassCells = Field(description="The class-wise bins.")
    nll: list[Pair] | None = _pairs(
        'Σw·NLL (nats) of the samples labelled k (required with mode "classwise"; absent '
        "from states written before it was added, whose per-class nll is then null)."
        + _NULL,
        default=None,
    )
    brier: list[Pair] | None = _pairs(
        "Σw·Brier of the samples labelled k (as `nll`)." + _NULL, default=None
    )


class CalibrationState(BaseModel):
    """Sufficient statistics of a batch of `/v1/calibration`: totals, a fine confidence
    histogram and per-class sums, of size O(C × n_bins) whatever N. Temperature scaling
    is not part of a state."""

    model_config = ConfigDict(extra="forbid",
                              json_schema_extra=_example(CALIBRATION_STATES[0]))

    kind: Literal["calibration"] = Field(description="The kind of state.")
    version: Literal[1] = Field(description="The state format.")
    options: CalibrationStateOptions = Field(description="What must agree to merge.")
    n_samples: Count = Field(description="N.")
    weight_exponent: int = Field(
        ge=-1074, le=1024,
        description="Weighted sums are of the weights divided by 2**weight_exponent (which "
        "puts the largest weight in [1, 2)), so that tiny and huge weights keep every bit.",
    )
    totals: CalibrationTotals = Field(description="Sums over every sample.")
    histogram: ConfidenceHistogram = Field(description="The confidence histogram.")
    per_class: PerClassSums | None = Field(
        None, description="Multi-class input; null for binary." + _NULL
    )
    replicates: CalibrationReplicates | None = Field(
        None, description="With `confidence_level`: the Poisson bootstrap replicates." + _NULL
    )
    per_label: list[CalibrationSliceState] | None = Field(
        None,
        description="Multi-label input (`multilabel`): one binary state per label, in "
        "column order (the state itself is the micro pool of all N·C pairs); merged label "
        "by label. Absent otherwise.",
    )
    per_group: list[GroupState] | None = Field(
        None,
        description="With `groups`: the state of each group's rows, in first-appearance "
        "order; merging adds the states of equal group values and appends groups first "
        "seen in later states, in their order. Absent otherwise.",
    )


class CalibrationSliceState(BaseModel):
    """The state of one slice (a label, or a group): the fields of a calibration state
    without `kind`, `version` and `options`, which are the enclosing state's."""

    model_config = ConfigDict(extra="forbid")

    n_samples: Count = Field(description="Samples (or pairs) of the slice.")
    weight_exponent: int = Field(ge=-1074, le=1024, description="As in the enclosing state.")
    totals: CalibrationTotals = Field(description="Sums over the slice.")
    histogram: ConfidenceHistogram = Field(description="The slice's confidence histogram.")
    per_class: PerClassSums | None = Field(
        None, description="Multi-class input; null for binary." + _NULL
    )
    per_label: list[CalibrationSliceState] | None = Field(
        None, description="A group's state of multi-label input: per label. Absent otherwise."
    )


class GroupState(BaseModel):
    """One group of a state with `groups`."""

    model_config = ConfigDict(extra="forbid")

    group: int | str = Field(description="The group value, as sent.")
    state: CalibrationSliceState = Field(description="The state of the group's rows.")


CalibrationState.model_rebuild()

#: Each kind's documentation model.
STATE_MODELS: dict[str, type[BaseModel]] = {
    "categorical_loss": CategoricalLossState,
    "binary_loss": BinaryLossState,
    "divergences": DivergenceState,
    "calibration": CalibrationState,
}

AnyState = CategoricalLossState | BinaryLossState | DivergenceState | CalibrationState
