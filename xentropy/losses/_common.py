"""What both loss families share: the result, the per-call batch facts, and the reduction.

``"mean"`` divides the sum of the per-sample losses by the normalization: the sum of the
effective weights of the counted entries (``"weights"``) or their number (``"samples"``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from xentropy._numerics import to_units
from xentropy._validation import (
    InputError,
    as_float_array,
    check_range,
    check_scalar,
    check_weights,
    first_index,
)
from xentropy._wire import EXPAND, OPTIONAL_FIELD
from xentropy.options import LossOptions

if TYPE_CHECKING:
    from xentropy.states.losses import BinaryLossState, CategoricalLossState


@dataclass(frozen=True)
class LossDiagnostics:
    """Numerics counts that explain a result.

    Attributes:
      n_clipped: probabilities that were clipped to [epsilon, 1 - epsilon].
    """

    n_clipped: int


@dataclass(frozen=True)
class LossResult:
    """What every loss function returns.

    Attributes:
      loss: the reduced loss; ``None`` with reduction ``"none"``.
      losses: per-sample (categorical, shape (N,); binary under the Keras convention too)
        or per-element (binary, the input's shape) losses, every weight already applied,
        ignored/masked entries 0; ``None`` for a result finalized from a state.
      gradient: derivative of ``loss`` (of ``losses.sum()`` with ``"none"``) with respect
        to the input that was given, same shape as that input; ``None`` unless asked for.
      n_samples: N.
      n_classes: C (1 for binary input of shape (N,)).
      n_ignored: ignored samples (categorical) or masked-out elements (binary).
      weight_sum: the denominator of ``"mean"`` under the chosen normalization.
      options: the validated options of the call (echoed: ``units``, ``reduction``,
        ``normalization``, ``convention``, ``resolved``).
      diagnostics: numerics counts.
      state: the batch's state (:mod:`xentropy.states`) with ``return_state=True`` (and
        for a result finalized from a state, that state); else ``None``.
    """

    loss: float | None
    losses: np.ndarray | None = field(metadata=OPTIONAL_FIELD)
    gradient: np.ndarray | None = field(metadata=OPTIONAL_FIELD)
    n_samples: int
    n_classes: int
    n_ignored: int
    weight_sum: float
    # Written as the options the response echoes (xentropy._wire).
    options: LossOptions = field(metadata={EXPAND: (
        "units", "reduction", "normalization", "convention", "resolved")})
    diagnostics: LossDiagnostics
    state: CategoricalLossState | BinaryLossState | None = field(default=None, repr=False)

    @property
    def units(self) -> str:
        return self.options.reduction.units

    @property
    def reduction(self) -> str:
        return self.options.reduction.reduction

    @property
    def normalization(self) -> str:
        return self.options.reduction.normalization

    @property
    def convention(self) -> str:
        return self.options.convention

    @property
    def resolved(self) -> dict[str, Any]:
        return self.options.resolved

    @property
    def n_clipped(self) -> int:
        return self.diagnostics.n_clipped


@dataclass(frozen=True)
class Batch:
    """Facts of one call that the reduction needs.

    Attributes:
      field: the input's name (``"logits"`` or ``"probabilities"``), blamed for overflows.
      n_samples, n_classes: N and C.
      counted: boolean, True for each entry (sample or element) that counts.
      weights: the effective weight of each entry, 0 where not counted (same shape).
      weights_field: the argument blamed when the weights' sum overflows.
    """

    field: str
    n_samples: int
    n_classes: int
    counted: np.ndarray
    weights: np.ndarray
    weights_field: str

    @cached_property
    def n_counted(self) -> int:
        return int(np.count_nonzero(self.counted))

    @cached_property
    def weight_total(self) -> float:
        return float(self.weights.sum())

    def denominator(self, normalization: str) -> float:
        """What "mean" divides by: the sum of the effective weights, or the counted entries."""
        return self.weight_total if normalization == "weights" else float(self.n_counted)


def finish(
    losses: np.ndarray,
    gradient: np.ndarray | None,
    batch: Batch,
    options: LossOptions,
    *,
    n_clipped: int = 0,
    prescaled: bool = False,
) -> LossResult:
    """Apply units, reduce, and refuse results that overflowed float64.

    Args:
      losses: per-entry losses in nats, every weight applied.
      gradient: derivative of ``losses.sum()`` in nats, or None.
      batch, options: the call.
      n_clipped: probabilities clipped.
      prescaled: from the fast kernel: the losses are checked finite, the gradient is
        bounded, in the requested units and divided by the "mean" denominator already (it
        folds all of that into its passes).
    """
    units = options.reduction.units
    reduction = options.reduction.reduction
    losses = to_units(losses, units)
    if gradient is not None and not prescaled:
        gradient = to_units(gradient, units)
    # Overflow (huge weights or logits) is detected here, on the results, rather than
    # predicted from the inputs: it is rare, and this check is exact. It runs before the
    # reduction, where an inf/NaN would otherwise be misreported. A prescaled gradient
    # comes from the fast kernel, which bounds it instead (no pass over N×C here).
    if not prescaled:
        check_no_overflow(losses, batch.field, "loss")
        if gradient is not None:
            check_no_overflow(gradient, batch.field, "gradient")
    denominator = batch.denominator(options.reduction.normalization)
    # A weight sum that overflows float64 would give a silent mean of 0 (x / inf).
    if not np.isfinite(denominator):
        raise InputError(
            batch.weights_field,
            "the sum of the effective weights (weight_sum, the denominator of 'mean') "
            "overflows float64",
            kind="overflow",
        )
    total = float(losses.sum())
    loss: float | None = None if reduction == "none" else total
    if reduction == "mean":
        loss = _mean(losses, total, denominator, gradient, options, prescaled=prescaled)
        if gradient is not None and not prescaled and denominator < 1.0:
            # Dividing by a weight sum below 1 can overflow a gradient that was finite.
            check_no_overflow(gradient, batch.field, "gradient")
    if loss is not None and not math.isfinite(loss):
        raise InputError(batch.field, f"the reduced loss overflows float64 in {units}",
                         kind="overflow")
    return LossResult(
        loss=loss, losses=losses, gradient=gradient, n_samples=batch.n_samples,
        n_classes=batch.n_classes,
        n_ignored=batch.counted.size - batch.n_counted,
        weight_sum=denominator, options=options, diagnostics=LossDiagnostics(n_clipped),
    )


def with_state(
    result: LossResult, batch: Batch, *, from_logits: bool, labelled: bool
) -> LossResult:
    """``result`` with its state when the call asked for one (``return_state``)."""
    if not result.options.return_state:
        return result
    from xentropy.states.losses import loss_state  # the states build on this module

    state = loss_state(result, batch, from_logits=from_logits, labelled=labelled)
    return dataclasses.replace(result, state=state)


def _mean(
    losses: np.ndarray,
    total: float,
    denominator: float,
    gradient: np.ndarray | None,
    options: LossOptions,
    *,
    prescaled: bool,
) -> float:
    """The mean, dividing ``gradient`` in place unless ``prescaled``."""
    if denominator > 0:
        if gradient is not None and not prescaled:
            gradient /= denominator
        if math.isinf(total) and denominator > 1.0:
            # The sum of finite losses can overflow while their mean does not (two losses
            # of 1e308); dividing first keeps every term finite. With a denominator <= 1
            # the mean is at least the sum, so it truly overflows and stays inf.
            with np.errstate(over="ignore"):
                return float((losses / denominator).sum())
        return total / denominator
    return mean_over_nothing(total, gradient, options)


def mean_over_nothing(total: float, gradient: np.ndarray | None, options: LossOptions) -> float:
    """The "mean" when its denominator is 0 (every sample ignored, or of weight 0): the
    one rule for a batch's losses and for a finalized state.

    PyTorch answers NaN here, Keras 0 (divide_no_nan). We answer 0 when there is nothing
    to average, and refuse when the numerator is not 0, since no finite mean exists; under
    a convention whose library has no answer, we say what it returns.
    """
    behaviour = options.behaviour
    if behaviour.empty_mean is not None:
        raise InputError(
            "normalization",
            f"{behaviour.library} returns {behaviour.empty_mean} here: the mean is over no "
            "counted samples (every one ignored, or the weights sum to 0); use reduction "
            "'sum', or convention 'xentropy' (which answers 0)",
            kind="undefined_in_convention",
        )
    if total == 0.0 and (gradient is None or not gradient.any()):
        return 0.0
    raise InputError(
        "normalization",
        "the mean is undefined: the effective weights of the counted samples sum to 0 while "
        "the weighted losses do not; use reduction 'sum' or normalization 'samples'",
        kind="zero_denominator",
    )


def check_no_overflow(values: np.ndarray, field: str, what: str) -> None:
    """Raise ``overflow`` at the first non-finite entry of ``values``."""
    if not np.isfinite(values).all():
        pos = first_index(~np.isfinite(values))
        raise InputError(
            field,
            f"the {what} overflows float64 at this position: the input (or its weights) is "
            "too large in magnitude for the result to be represented",
            position=pos, kind="overflow",
        )


def per_class_value(
    field: str, value: Any, c: int, *, low: float, high: float | None, per: str
) -> np.ndarray:
    """An option given as one number or one value per class (column), as shape (C,)."""
    if np.ndim(value) == 0:
        v = check_scalar(float(value), field, low=low, high=high)
        return np.full(c, v)
    arr = check_weights(value, field, c, f"one per {per}")
    check_range(arr, field, low=low, high=high, what="a value")
    return arr


def sample_weight_vector(value: Any, n: int) -> np.ndarray:
    """Sample weights of shape (N,) (ones when not given)."""
    if value is None:
        return np.ones(n)
    return check_weights(value, "sample_weights", n, "one weight per sample")


def as_input(value: Any, field: str, ndim: int | tuple[int, ...]) -> np.ndarray:
    """The scores or probabilities as a C-ordered float64 array of an allowed rank.

    C order whatever the layout sent: ufunc results keep the input's layout, and sums then
    add in another order, so the same numbers in another layout would give answers that
    differ in the last bits.
    """
    return np.ascontiguousarray(as_float_array(value, field, ndim=ndim))
