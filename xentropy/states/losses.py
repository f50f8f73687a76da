"""States of the loss functions: ``"categorical_loss"`` and ``"binary_loss"``.

A loss state holds what every reduction of the losses needs: the number of samples, of
counted entries (samples, or elements for binary input) and of ignored or masked ones, of
clipped probabilities, and two compensated sums: Σ losses (every weight applied, in the
state's units) and Σ effective weights (the ``"weights"`` normalization's denominator).
``"mean"`` divides the first by the second (or by the counted entries with
``normalization: "samples"``), ``"sum"`` is the first.

``options`` hold every option that defines the per-sample loss (the input and target
forms, C, units, the reduction, normalization, convention, clipping, smoothing, focal
terms, class weights, ``pos_weight``, ``ignore_index``), as the call resolved them:
states merge only when all of them agree. Per-sample data (``sample_weights``, ``mask``)
are not options. A state's reduction is ``"mean"`` or ``"sum"``: per-sample values
(``"none"``) do not merge, so ``return_state`` with ``"none"`` is refused.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from xentropy import _compensated
from xentropy._validation import InputError
from xentropy.losses._common import Batch, LossDiagnostics, LossResult, mean_over_nothing
from xentropy.options import (
    BINARY_PARAMS,
    CATEGORICAL_PARAMS,
    CONVENTIONS,
    NORMALIZATIONS,
    LossOptions,
)
from xentropy.states._base import (
    VERSION,
    Path,
    State,
    StateError,
    check_agree,
    check_non_negative,
    inconsistent,
    json_type,
    pair_json,
    read_choice,
    read_int,
    read_number,
    read_numbers,
    read_object,
    read_pair,
)

#: The reductions a state can have (per-sample values do not merge).
STATE_REDUCTIONS = ("mean", "sum")
_UNITS = CATEGORICAL_PARAMS["units"].choices
_INPUTS = ("logits", "probabilities")
_TARGETS = ("labels", "targets")

Values = float | tuple[float, ...] | None


@dataclass(frozen=True)
class CategoricalLossOptions:
    """What two categorical loss states must share to merge (the call's resolved options).

    Attributes:
      input: ``"logits"`` or ``"probabilities"``; target: ``"labels"`` or ``"targets"``.
      n_classes: C.
      units, reduction (``"mean"`` or ``"sum"``), normalization, convention: as requested.
      epsilon: the clipping margin of probabilities; ``None`` where nothing is clipped.
      ignore_index: the label left out (labels only), or ``None``.
      label_smoothing, focal_gamma: as resolved.
      focal_alpha: ``None``, one number, or C numbers.
      class_weights: ``None`` or C numbers.
    """

    input: str
    target: str
    n_classes: int
    units: str
    reduction: str
    normalization: str
    convention: str
    epsilon: float | None
    ignore_index: int | None
    label_smoothing: float
    focal_gamma: float
    focal_alpha: Values
    class_weights: tuple[float, ...] | None


@dataclass(frozen=True)
class BinaryLossOptions:
    """What two binary loss states must share to merge (see :class:`CategoricalLossOptions`).

    Attributes:
      pos_weight: ``None``, one number, or C numbers; n_classes: C (1 for input of shape N).
    """

    input: str
    n_classes: int
    units: str
    reduction: str
    normalization: str
    convention: str
    epsilon: float | None
    label_smoothing: float
    focal_gamma: float
    focal_alpha: Values
    pos_weight: Values
    class_weights: tuple[float, ...] | None


@dataclass(frozen=True, kw_only=True, eq=False)
class _LossState(State):
    """Fields shared by both loss kinds (see the module docstring).

    Attributes:
      n_samples: N.
      n_counted: entries that count (samples; binary: elements, or samples under the
        Keras convention with N×C input).
      n_ignored: ignored samples or masked-out elements (entries that do not count).
      n_clipped: probabilities clipped to [epsilon, 1 - epsilon].
      loss: compensated Σ of the per-entry losses, in ``options.units``: ``[hi, lo]``.
      weight: compensated Σ of the effective weights of the counted entries.
    """

    family: ClassVar[str]
    version: int = field(default=VERSION, init=False)
    n_samples: int
    n_counted: int
    n_ignored: int
    n_clipped: int
    loss: np.ndarray
    weight: np.ndarray

    options: Any = None  # typed by each kind

    # ------------------------------------------------------------------ JSON

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "version": self.version,
            "options": _options_json(self.options),
            "n_samples": self.n_samples,
            "n_counted": self.n_counted,
            "n_ignored": self.n_ignored,
            "n_clipped": self.n_clipped,
            "loss": pair_json(self.loss),
            "weight": pair_json(self.weight),
        }

    @classmethod
    def read(cls, obj: dict[str, Any]) -> _LossState:
        read_object(obj, (), _STATE_FIELDS)
        options, rebuilt = _read_options(cls.family, obj["options"])
        state = cls(
            options=options,
            n_samples=read_int(obj["n_samples"], ("n_samples",)),
            n_counted=read_int(obj["n_counted"], ("n_counted",)),
            n_ignored=read_int(obj["n_ignored"], ("n_ignored",)),
            n_clipped=read_int(obj["n_clipped"], ("n_clipped",)),
            loss=read_pair(obj["loss"], ("loss",)),
            weight=read_pair(obj["weight"], ("weight",)),
        )
        state._check(rebuilt)
        return state

    def _check(self, rebuilt: LossOptions) -> None:
        """Counts and sums that contradict each other or the options."""
        o = self.options
        sample_mean = rebuilt.behaviour.sample_mean and o.n_classes > 1
        entries = self.n_samples if self.family == "categorical" or sample_mean else (
            self.n_samples * o.n_classes
        )
        if self.n_counted + self.n_ignored != entries:
            raise inconsistent(
                f"expected n_counted + n_ignored = {entries} (the entries of "
                f"{self.n_samples} samples), got {self.n_counted + self.n_ignored}",
                ("n_counted",),
            )
        no_ignoring = (self.family == "categorical" and o.ignore_index is None) or sample_mean
        if no_ignoring and self.n_ignored:
            raise inconsistent("expected 0: nothing is left out with these options",
                               ("n_ignored",))
        if self.n_clipped > self.n_samples * o.n_classes:
            raise inconsistent(
                f"expected at most {self.n_samples * o.n_classes} clipped values (N×C)",
                ("n_clipped",),
            )
        if o.epsilon is None and self.n_clipped:
            raise inconsistent("expected 0: nothing is clipped with these options",
                               ("n_clipped",))
        check_non_negative(self.loss, ("loss",), "the sum of losses")
        check_non_negative(self.weight, ("weight",), "the sum of weights")
        if self.n_counted == 0:
            for name in ("loss", "weight"):
                if getattr(self, name)[0] != 0:
                    raise inconsistent("expected 0: no entry is counted (n_counted = 0)",
                                       (name,))

    # ------------------------------------------------------------------ algebra

    def empty(self) -> _LossState:
        return dataclasses.replace(
            self, n_samples=0, n_counted=0, n_ignored=0, n_clipped=0,
            loss=np.zeros(2), weight=np.zeros(2),
        )

    @classmethod
    def merge_all(cls, states: Sequence[Any]) -> _LossState:
        check_agree(states)
        first = states[0]
        return dataclasses.replace(
            first,
            n_samples=sum(s.n_samples for s in states),
            n_counted=sum(s.n_counted for s in states),
            n_ignored=sum(s.n_ignored for s in states),
            n_clipped=sum(s.n_clipped for s in states),
            loss=_checked(_compensated.merge_pairs(np.stack([s.loss for s in states])),
                          "the sum of losses"),
            weight=_checked(_compensated.merge_pairs(np.stack([s.weight for s in states])),
                            "the sum of weights"),
        )

    def finalize(self) -> LossResult:
        """The :class:`LossResult` of the batch the state describes (no per-sample fields:
        ``losses`` and ``gradient`` are ``None``)."""
        options = _rebuild(self.family, self.options)
        normalization = self.options.normalization
        total = float(self.loss[0])
        denominator = float(self.weight[0]) if normalization == "weights" else float(
            self.n_counted
        )
        loss = total
        if self.options.reduction == "mean":
            loss = _mean(total, denominator, options)
        if not math.isfinite(loss):
            raise InputError("states", f"the merged mean loss overflows float64 in "
                             f"{self.options.units}", kind="overflow")
        return LossResult(
            loss=loss, losses=None, gradient=None, n_samples=self.n_samples,
            n_classes=self.options.n_classes, n_ignored=self.n_ignored,
            weight_sum=denominator, options=options,
            diagnostics=LossDiagnostics(self.n_clipped),
            state=self if isinstance(self, CategoricalLossState | BinaryLossState) else None,
        )


_STATE_FIELDS = (
    "kind", "version", "options", "n_samples", "n_counted", "n_ignored", "n_clipped",
    "loss", "weight",
)


@dataclass(frozen=True, kw_only=True, eq=False)
class CategoricalLossState(_LossState):
    """State of a categorical (softmax) loss: ``kind`` ``"categorical_loss"``."""

    kind: ClassVar[str] = "categorical_loss"
    family: ClassVar[str] = "categorical"
    options: CategoricalLossOptions


@dataclass(frozen=True, kw_only=True, eq=False)
class BinaryLossState(_LossState):
    """State of a binary / multi-label (sigmoid) loss: ``kind`` ``"binary_loss"``."""

    kind: ClassVar[str] = "binary_loss"
    family: ClassVar[str] = "binary"
    options: BinaryLossOptions


def _checked(pair: np.ndarray, what: str) -> np.ndarray:
    if not np.isfinite(pair).all():
        raise InputError("states", f"{what} of the merged states overflows float64",
                         kind="overflow")
    return pair


def _mean(total: float, denominator: float, options: LossOptions) -> float:
    """As the loss functions reduce (``losses._common``), from the sums."""
    if denominator > 0:
        return total / denominator
    return mean_over_nothing(total, None, options)


# --------------------------------------------------------------------------- building


def _as_values(value: Any) -> Values:
    """An option array as the state holds it: None, one number, or a tuple of numbers."""
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return float(arr)
    return tuple(float(v) for v in arr.ravel())


def loss_state(
    result: LossResult, batch: Batch, *, from_logits: bool, labelled: bool
) -> CategoricalLossState | BinaryLossState:
    """The state of one call's result (``batch``: the entries and weights it reduced)."""
    options = result.options
    family = options.family
    resolved = options.resolved
    if result.reduction not in STATE_REDUCTIONS:  # LossOptions.build refuses it first
        raise InputError("return_state", "a state holds sums: use 'mean' or 'sum'",
                         kind="not_applicable")
    common: dict[str, Any] = {
        "input": "logits" if from_logits else "probabilities",
        "n_classes": result.n_classes,
        "units": result.units,
        "reduction": result.reduction,
        "normalization": result.normalization,
        "convention": result.convention,
        "epsilon": resolved["epsilon"],
        "label_smoothing": float(options.smoothing.label_smoothing),
        "focal_gamma": float(options.focal.focal_gamma),
        "focal_alpha": _as_values(options.focal.focal_alpha),
        "class_weights": _as_values(options.weights.class_weights),
    }
    counted = int(np.count_nonzero(batch.counted))
    sums = {
        "loss": _compensated.total(np.asarray(result.losses)),
        "weight": _compensated.total(batch.weights),
    }
    for name, pair in sums.items():
        if not np.isfinite(pair).all():
            what = "losses" if name == "loss" else "effective weights"
            raise InputError(
                batch.field if name == "loss" else batch.weights_field,
                f"the sum of the {what} of this batch overflows float64, so it has no "
                "state (a state holds sums); split the batch",
                kind="overflow",
            )
    counts: dict[str, Any] = {
        "n_samples": result.n_samples, "n_counted": counted,
        "n_ignored": int(batch.counted.size - counted), "n_clipped": result.n_clipped,
        **sums,
    }
    if family == "categorical":
        return CategoricalLossState(
            options=CategoricalLossOptions(
                target="labels" if labelled else "targets",
                ignore_index=resolved["ignore_index"], **common,
            ),
            **counts,
        )
    return BinaryLossState(
        options=BinaryLossOptions(pos_weight=_as_values(options.weights.pos_weight), **common),
        **counts,
    )


# --------------------------------------------------------------------------- options


def _options_json(options: Any) -> dict[str, Any]:
    out = {}
    for name in options.__dataclass_fields__:
        value = getattr(options, name)
        out[name] = list(value) if isinstance(value, tuple) else value
    return out


_OPTION_FIELDS = {
    "categorical": tuple(CategoricalLossOptions.__dataclass_fields__),
    "binary": tuple(BinaryLossOptions.__dataclass_fields__),
}


def _read_values(value: Any, path: Path, *, scalar: bool) -> Values:
    if value is None:
        return None
    if isinstance(value, list):
        return tuple(float(v) for v in read_numbers(value, path))
    if scalar:
        return read_number(value, path)
    raise StateError(f"expected an array of numbers or null, got {json_type(value)}",
                     path=path, kind="type_error")


def _read_options(family: str, value: Any) -> tuple[Any, LossOptions]:
    """The options of a state from JSON, checked as a call's options are, and the
    :class:`LossOptions` they resolve to."""
    path: Path = ("options",)
    obj = read_object(value, path, _OPTION_FIELDS[family],
                      ("epsilon", "ignore_index", "focal_alpha", "class_weights", "pos_weight"))
    params = CATEGORICAL_PARAMS if family == "categorical" else BINARY_PARAMS

    def at(name: str) -> Path:
        return (*path, name)

    def number(name: str) -> float:
        return read_number(obj[name], at(name))

    fields: dict[str, Any] = {
        "input": read_choice(obj["input"], at("input"), _INPUTS),
        "n_classes": read_int(obj["n_classes"], at("n_classes"), low=1),
        "units": read_choice(obj["units"], at("units"), _UNITS),
        "reduction": read_choice(obj["reduction"], at("reduction"), STATE_REDUCTIONS),
        "normalization": read_choice(obj["normalization"], at("normalization"),
                                     NORMALIZATIONS),
        "convention": read_choice(obj["convention"], at("convention"), CONVENTIONS),
        "epsilon": None if obj["epsilon"] is None else number("epsilon"),
        "label_smoothing": number("label_smoothing"),
        "focal_gamma": number("focal_gamma"),
        "focal_alpha": _read_values(obj["focal_alpha"], at("focal_alpha"), scalar=True),
        "class_weights": _read_values(obj["class_weights"], at("class_weights"), scalar=False),
    }
    if family == "categorical":
        fields["target"] = read_choice(obj["target"], at("target"), _TARGETS)
        fields["ignore_index"] = None if obj["ignore_index"] is None else read_int(
            obj["ignore_index"], at("ignore_index"), low=-(2**63)
        )
        options: Any = CategoricalLossOptions(**fields)
    else:
        fields["pos_weight"] = _read_values(obj["pos_weight"], at("pos_weight"), scalar=True)
        options = BinaryLossOptions(**fields)
    for name in ("class_weights", "focal_alpha", "pos_weight"):
        values = getattr(options, name, None)
        if values is None:
            continue
        arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
        if isinstance(values, tuple) and arr.shape[0] != options.n_classes:
            raise StateError(f"expected {options.n_classes} values (one per class), got "
                             f"{arr.shape[0]}", path=at(name), kind="shape_mismatch")
        param = params[name]
        bad = (arr < (param.low if param.low is not None else -np.inf)) | (
            arr > (param.high if param.high is not None else np.inf))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            where = at(name) if not isinstance(values, tuple) else (*at(name), i)
            raise StateError(f"expected a value in {param.interval()}, got {arr[i]!r}",
                             path=where, kind="out_of_range")
    if family == "categorical" and options.target == "targets" and (
        options.ignore_index is not None
    ):
        raise StateError("expected null with targets: ignore_index applies to labels only",
                         path=at("ignore_index"), kind="not_applicable")
    rebuilt = _rebuild(family, options)
    _check_resolved(options, rebuilt)
    return options, rebuilt


def _rebuild(family: str, options: Any) -> LossOptions:
    """The :class:`LossOptions` of a call with these (resolved) options."""
    given: dict[str, Any] = {
        name: getattr(options, name)
        for name in ("units", "reduction", "normalization", "convention", "label_smoothing",
                     "focal_gamma", "epsilon")
    }
    for name in ("focal_alpha", "class_weights", "pos_weight", "ignore_index"):
        value = getattr(options, name, None)
        given[name] = np.asarray(value) if isinstance(value, tuple) else value
    given = {name: value for name, value in given.items() if value is not None}
    labelled = family == "categorical" and options.target == "labels"
    try:
        return LossOptions.build(family, given, from_logits=options.input == "logits",
                                 labelled=labelled)
    except InputError as error:
        name = error.field if error.field in _OPTION_FIELDS[family] else (
            "target" if error.field == "targets" else "convention"
        )
        raise StateError(error.message, path=("options", name), kind=error.kind) from None


def _check_resolved(options: Any, rebuilt: LossOptions) -> None:
    """Options that a call with them would have resolved otherwise (a convention's default
    that the state does not hold, or an epsilon where nothing is clipped)."""
    resolved = rebuilt.resolved
    stored = {"epsilon": options.epsilon, "focal_gamma": options.focal_gamma,
              "focal_alpha": options.focal_alpha, "normalization": options.normalization}
    if isinstance(options, CategoricalLossOptions):
        stored["ignore_index"] = options.ignore_index
    for name, value in stored.items():
        expected = resolved[name]
        if isinstance(expected, list):
            expected = tuple(float(v) for v in expected)
        if value != expected:
            raise StateError(
                f"expected {expected!r}: a call with these options resolves {name} to it "
                f"(convention {options.convention!r}, {options.input})",
                path=("options", name), kind="inconsistent_state",
            )
    binary = isinstance(options, BinaryLossOptions)
    if binary and rebuilt.behaviour.hard_targets and options.n_classes != 1:
        raise StateError("expected 1: scikit-learn's log_loss takes binary input of shape N",
                         path=("options", "n_classes"), kind="not_in_convention")
