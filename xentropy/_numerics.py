"""Numerically stable building blocks shared by the losses, divergences and calibration.

Every function takes and returns float64 arrays; none of them allocates more than the
result it returns unless a comment says why.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np

LN2 = math.log(2.0)

#: The float64 machine epsilon: the default clipping margin for probabilities.
FLOAT64_EPS = float(np.finfo(np.float64).eps)

_Values = TypeVar("_Values", float, np.ndarray)


def to_units(values: _Values, units: str) -> _Values:
    """Convert nats to ``units``: unchanged for ``"nats"``, divided by ln 2 for ``"bits"``.

    One correctly rounded division (not a multiplication by a rounded 1/ln 2), the same
    in every module, so that a value in bits is the same float wherever it is computed.

    >>> to_units(math.log(4.0), "bits")
    2.0
    """
    return values / LN2 if units == "bits" else values


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax.

    Args:
      logits: shape (N, C), float64.

    Returns:
      shape (N, C): ``logits - logsumexp(logits, axis=1)``.
    """
    # Subtracting the row maximum first keeps every exponent <= 0, so exp never
    # overflows and at least one term of each row's sum is exactly 1 (no log(0)).
    out = logits - logits.max(axis=1, keepdims=True)
    out -= np.log(np.exp(out).sum(axis=1, keepdims=True))
    return out


def logsumexp(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-sum-exp, shape (N, C) -> (N,), with max subtraction for stability."""
    row_max = logits.max(axis=1)
    # Same max-subtraction as in log_softmax: exp of non-positive numbers cannot overflow.
    return row_max + np.log(np.exp(logits - row_max[:, None]).sum(axis=1))


def softplus(x: np.ndarray) -> np.ndarray:
    """``log(1 + exp(x))`` elementwise, any shape.

    ``logaddexp(0, x)`` never overflows (it factors out ``max(0, x)``) and keeps full
    precision for large negative ``x``, where ``log1p(exp(x))`` is already exact too.
    """
    return np.logaddexp(0.0, x)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function elementwise, any shape, without overflow.

    Evaluated as ``exp(-softplus(-x))``: the exponent is never positive, so nothing
    overflows, and for very negative ``x`` the tiny result keeps its relative precision
    (``1 / (1 + exp(-x))`` would overflow in ``exp(-x)`` there).
    """
    return np.exp(-softplus(-x))
