"""Numerically stable building blocks, each written once and used by every module.

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

#: Units of every loss, entropy and divergence.
UNITS = ("nats", "bits")

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
    """Row-wise log-softmax, shape (N, C) -> (N, C): ``z - logsumexp(z, axis=1)``.

    Entries whose true value is below -float64 max (logits of one row spread wider than
    the float64 range) come out as -inf; callers decide whether that matters (it does not
    where the entry's coefficient is 0).

    >>> log_softmax(np.array([[0.0, 0.0]]))
    array([[-0.69314718, -0.69314718]])
    >>> float(-log_softmax(np.array([[40.0, 0.0]]))[0, 0])  # log(1 + e^-40), not 0
    4.248354255291589e-18
    """
    rows = np.arange(logits.shape[0])
    top = logits.argmax(axis=1)
    # Subtracting the row maximum first keeps every exponent <= 0, so exp never
    # overflows, and the maximum's own term is exactly 1: log S = log1p(S - 1) with S - 1
    # summed without that 1, so a dominant class keeps the relative precision of its tiny
    # -log p (log(1 + 4e-18) would round to 0).
    with np.errstate(over="ignore"):  # z - max beyond the float64 range: -inf, see above
        out = logits - logits[rows, top][:, None]
    rest = np.exp(out)
    rest[rows, top] = 0.0
    out -= np.log1p(rest.sum(axis=1, keepdims=True))
    return out


def logsumexp(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-sum-exp, shape (N, C) -> (N,), with max subtraction for stability.

    >>> logsumexp(np.array([[1000.0, 1000.0]])) - 1000.0
    array([0.69314718])
    """
    row_max = logits.max(axis=1)
    # Same max-subtraction as in log_softmax: exp of non-positive numbers cannot overflow.
    return row_max + np.log(np.exp(logits - row_max[:, None]).sum(axis=1))


def softplus(x: np.ndarray) -> np.ndarray:
    """``log(1 + exp(x))`` elementwise, any shape.

    ``logaddexp(0, x)`` never overflows (it factors out ``max(0, x)``) and keeps full
    precision for large negative ``x``, where ``log1p(exp(x))`` is already exact too.

    >>> softplus(np.array([-800.0, 0.0, 30.0]))
    array([ 0.        ,  0.69314718, 30.        ])
    """
    return np.logaddexp(0.0, x)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function elementwise, any shape, without overflow.

    Evaluated as ``exp(-softplus(-x))``: the exponent is never positive, so nothing
    overflows, and for very negative ``x`` the tiny result keeps its relative precision
    (``1 / (1 + exp(-x))`` would overflow in ``exp(-x)`` there).

    >>> sigmoid(np.array([-800.0, 0.0]))
    array([0. , 0.5])
    """
    return np.exp(-softplus(-x))
