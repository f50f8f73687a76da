"""Reductions shared by every loss: none / sum / mean, and what "mean" divides by."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from xentropy._numerics import LN2
from xentropy._validation import InputError, check_choice

REDUCTIONS = ("mean", "sum", "none")
NORMALIZATIONS = ("weights", "samples")
UNITS = ("nats", "bits")


@dataclass(frozen=True)
class LossResult:
    """What every loss function returns.

    Attributes:
      loss: the reduced loss; ``None`` with reduction ``"none"``.
      losses: per-sample (categorical, shape (N,)) or per-element (binary, the input's
        shape) losses, every weight already applied, ignored/masked entries 0.
      gradient: derivative of ``loss`` (of ``losses.sum()`` with ``"none"``) with respect
        to the input that was given, same shape as that input; ``None`` unless asked for.
      n_samples: N.
      n_classes: C (1 for binary input of shape (N,)).
      n_ignored: ignored samples (categorical) or masked-out elements (binary).
      n_clipped: probabilities that were clipped to [epsilon, 1 - epsilon].
      weight_sum: the denominator of ``"mean"`` under the chosen normalization.
      units, reduction, normalization: echoed options.
    """

    loss: float | None
    losses: np.ndarray
    gradient: np.ndarray | None
    n_samples: int
    n_classes: int
    n_ignored: int
    n_clipped: int
    weight_sum: float
    units: str
    reduction: str
    normalization: str


def check_reduction_options(reduction: str, normalization: str, units: str) -> None:
    """Validate the three options every loss shares."""
    check_choice(reduction, "reduction", REDUCTIONS)
    check_choice(normalization, "normalization", NORMALIZATIONS)
    check_choice(units, "units", UNITS)


def unit_scale(units: str) -> float:
    """Factor that converts nats to ``units``: 1 for nats, 1/ln 2 for bits."""
    return 1.0 / LN2 if units == "bits" else 1.0


def denominator(effective_weights: np.ndarray, n_counted: int, normalization: str) -> float:
    """What "mean" divides by: the sum of the effective weights, or the counted entries."""
    if normalization == "weights":
        return float(effective_weights.sum())
    return float(n_counted)


def reduce_losses(
    losses: np.ndarray,
    gradient: np.ndarray | None,
    *,
    effective_weights: np.ndarray,
    n_counted: int,
    reduction: str,
    normalization: str,
) -> tuple[float | None, float]:
    """Reduce ``losses`` and scale ``gradient`` (in place) to match.

    Args:
      losses: per-sample or per-element losses, any shape, weights already applied.
      gradient: derivative of ``losses.sum()`` w.r.t. the input, or None; scaled in place
        by 1/denominator for ``"mean"``.
      effective_weights: weight of each counted entry (0 for ignored ones), any shape.
      n_counted: number of entries that are not ignored or masked.
      reduction: "mean", "sum" or "none".
      normalization: "weights" (divide by the sum of effective weights) or "samples"
        (divide by ``n_counted``).

    Returns:
      (loss, denominator): loss is None for "none"; denominator is what "mean" divides by.
    """
    denom = denominator(effective_weights, n_counted, normalization)
    total = float(losses.sum())
    if reduction == "none":
        return None, denom
    if reduction == "sum":
        return total, denom
    if denom > 0:
        if gradient is not None:
            gradient /= denom
        mean = total / denom
        if math.isinf(total) and denom > 1.0:
            # FIX: the sum of finite losses can overflow while their mean does not (two
            # losses of 1e308); dividing first keeps every term finite. With a denominator
            # <= 1 the mean is at least the sum, so it truly overflows and stays inf.
            with np.errstate(over="ignore"):
                mean = float((losses / denom).sum())
        return mean, denom
    # Nothing counted (every sample ignored or of weight 0): PyTorch answers NaN here,
    # Keras 0 (divide_no_nan). We answer 0 when there is nothing to average, and refuse
    # when the numerator is not 0, since no finite mean exists.
    if total == 0.0 and (gradient is None or not gradient.any()):
        return 0.0, denom
    raise InputError(
        "normalization",
        "the mean is undefined: the effective weights of the counted samples sum to 0 while "
        "the weighted losses do not; use reduction 'sum' or normalization 'samples'",
        kind="zero_denominator",
    )
