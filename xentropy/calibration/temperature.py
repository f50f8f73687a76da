"""Temperature scaling (Guo et al. 2017): the T minimising the NLL of ``softmax(logits / T)``.

With β = 1/T the weighted NLL is convex in β, so its minimum is the root of its derivative,
found by a safeguarded Newton iteration in log β within [TEMPERATURE_MIN, TEMPERATURE_MAX].
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from xentropy._numerics import logsumexp
from xentropy._validation import InputError, as_float_array, check_labels, number_text
from xentropy.calibration.metrics import _check_sample_weights

#: Bounds of the fitted temperature. The optimum is searched in [TEMPERATURE_MIN,
#: TEMPERATURE_MAX]; an optimum outside is returned clamped, with a note.
TEMPERATURE_MIN = 1e-3
TEMPERATURE_MAX = 1e3
#: Largest accepted range (max − min) of a logit row when fitting a temperature: the fit
#: evaluates squared logit differences (the variance term of the Newton step) and logits
#: divided by TEMPERATURE_MIN, and both must stay finite in float64.
MAX_LOGIT_RANGE = 1e150

_MAX_ITERATIONS = 200
_LOG_T_TOLERANCE = 1e-13


def fit_temperature(
    logits: ArrayLike, labels: ArrayLike, *, sample_weights: ArrayLike | None = None
) -> tuple[float, str | None]:
    """Temperature T minimising the weighted NLL of ``softmax(logits / T)`` (Guo et al. 2017).

    NLL(T) = Σ_i w_i (logsumexp(z_i / T) − z_{i,y_i} / T) / Σ_i w_i. With β = 1/T it is
    convex in β: dNLL/dβ = mean(E_p[z] − z_y) and d²NLL/dβ² = mean(Var_p[z]) >= 0,
    p = softmax(βz). The root of the first derivative is found by Newton's method in
    log β (= −log T), safeguarded by bisection of a bracket, in [TEMPERATURE_MIN,
    TEMPERATURE_MAX], to a relative accuracy of about 1e-13 in T.

    Args:
      logits: shape (N, C), or (N,) for binary logits of class 1 (treated as [0, z]); each
        row's range at most MAX_LOGIT_RANGE.
      labels: shape (N,), ints in [0, C) (binary: 0/1).
      sample_weights: shape (N,), >= 0 with a positive sum.

    Returns:
      ``(temperature, note)``. ``note`` is ``None`` for an interior optimum; otherwise it says
      why T sits on a bound (the NLL still falls there: at TEMPERATURE_MIN when the predictions
      are separable, at TEMPERATURE_MAX when the logits are no better than uniform guessing) or
      why T = 1 is returned (every row constant: the NLL does not depend on T).

    >>> t, note = fit_temperature([[3, 0, 0], [0, 3, 0], [0, 0, 3], [3, 0, 0]], [0, 1, 2, 1])
    >>> round(t, 12), round(3 / math.log(6), 12), note
    (1.67433187965, 1.67433187965, None)
    """
    z = as_float_array(logits, "logits", ndim=(1, 2))
    binary = z.ndim == 1
    y = check_labels(labels, z.shape[0], 2 if binary else z.shape[1])
    w = _check_sample_weights(sample_weights, z.shape[0])
    zc = _centred_logits(z)
    return _solve_temperature(zc, y, w / w.sum())


def _centred_logits(z: np.ndarray) -> np.ndarray:
    """Logits with each row's maximum subtracted (binary (N,) -> the rows [0, z]), checked.

    Shape (N,) or (N, C) -> (N,) for binary, (N, C) otherwise. Softmax is shift invariant, so
    this changes no probability; it keeps β·z <= 0 in the fit and makes MAX_LOGIT_RANGE the
    only bound needed for every intermediate of the fit to be finite.
    """
    rows = _two_columns(z) if z.ndim == 1 else z
    with np.errstate(over="ignore"):
        spread = rows.max(axis=1) - rows.min(axis=1)
    too_wide = ~(spread <= MAX_LOGIT_RANGE)
    if too_wide.any():
        i = int(np.flatnonzero(too_wide)[0])
        what = "|logit|" if z.ndim == 1 else "a logit range (max − min of a row)"
        raise InputError(
            "logits",
            f"expected {what} of at most {MAX_LOGIT_RANGE:g} for temperature fitting, got "
            f"{number_text(spread[i])}: the fit would overflow float64",
            position=(i,),
            kind="overflow",
        )
    if z.ndim == 1:
        return z
    return z - z.max(axis=1, keepdims=True)


def _two_columns(z: np.ndarray) -> np.ndarray:
    """Binary logits (N,) as the rows [0, z] of two-class logits, shape (N, 2)."""
    return np.stack([np.zeros_like(z), z], axis=1)


def _nll_terms(
    z: np.ndarray, zs: np.ndarray, y: np.ndarray, wn: np.ndarray, beta: float
) -> tuple[float, float]:
    """First and second derivative of the weighted NLL of softmax(β z) with respect to β.

    z: (N, C) row-centred logits (binary already as [0, z] rows); zs: the same times 2**k
    (exact); y: (N,); wn: (N,) summing to 1. Returns (Σ wn (E_p[zs] − zs_y),
    Σ wn Var_p[zs]), i.e. the derivatives times 2**k and 2**2k: the moments are taken of
    zs so that tiny (subnormal) logits keep their significant bits in the products p·z.
    """
    first, second = _per_sample_terms(z, zs, y, beta)
    return float(wn @ first), float(wn @ second)


def _per_sample_terms(
    z: np.ndarray, zs: np.ndarray, y: np.ndarray, beta: float
) -> tuple[np.ndarray, np.ndarray]:
    """The per-sample terms of :func:`_nll_terms`, shapes (N,): E_p[zs] − zs_y and Var_p[zs]
    (the Dask adapter sums them per partition)."""
    s = beta * z
    # exp(s − logsumexp(s)): the max-shifted softmax, no overflow.
    p = np.exp(s - logsumexp(s)[:, None])
    mean_z = (p * zs).sum(axis=1)
    # The variance as the mean squared deviation (not E[z²] − E[z]², which cancels).
    var = (p * (zs - mean_z[:, None]) ** 2).sum(axis=1)
    return mean_z - zs[np.arange(zs.shape[0]), y], var


#: Why T = 1 when no row (of positive weight) has two different logits.
CONSTANT_NOTE = (
    "every logit row (of positive weight) is constant, so the NLL does not depend on "
    "the temperature; T = 1 is returned"
)


def _solve_temperature(
    zc: np.ndarray, y: np.ndarray, wn: np.ndarray
) -> tuple[float, str | None]:
    """Fit T on row-centred logits zc ((N,) binary or (N, C)), labels y, weights wn (sum 1)."""
    z = _two_columns(zc) if zc.ndim == 1 else zc
    live = wn > 0
    if not (z[live].max(axis=1) > z[live].min(axis=1)).any():
        return 1.0, CONSTANT_NOTE
    k = _scale_exponent(float(np.abs(z).max()))
    zs = np.ldexp(z, k)
    return _newton(lambda beta: _nll_terms(z, zs, y, wn, beta), k)


def _scale_exponent(largest: float) -> int:
    """k >= 0 with 2**k · largest >= 1/2, for the largest |logit| (see :func:`_newton`)."""
    # FIX: logits below 1/2 in magnitude are scaled up by 2**k (exact) for the moments of
    # the Newton step. Subnormal logits (1e-310) lost their few bits in p·z, so the sign of
    # dNLL/dβ, which decides the bound T is clamped to, came out wrong. In the normal range
    # the scaling changes no bit of any decision (every term scales by a power of two).
    return max(0, -int(np.frexp(largest)[1]))


def _newton(
    terms: Callable[[float], tuple[float, float]], k: int
) -> tuple[float, str | None]:
    """The temperature from ``terms(β)`` = (2**k dNLL/dβ, 2**2k d²NLL/dβ²) (one pass over
    the data each: :func:`_nll_terms` in memory, a map-reduce on Dask)."""
    # Root of h(u) = dNLL/dβ at β = e^u = 1/T; h is non-decreasing (NLL convex in β).
    u_lo, u_hi = -math.log(TEMPERATURE_MAX), -math.log(TEMPERATURE_MIN)
    if terms(math.exp(u_lo))[0] >= 0:
        return TEMPERATURE_MAX, (
            f"the NLL still decreases at the largest temperature allowed, "
            f"{TEMPERATURE_MAX:g}: the logits predict no better than uniform guessing; "
            f"T is clamped to {TEMPERATURE_MAX:g}"
        )
    if terms(math.exp(u_hi))[0] <= 0:
        return TEMPERATURE_MIN, (
            f"the NLL still decreases at the smallest temperature allowed, "
            f"{TEMPERATURE_MIN:g}: the predictions are (nearly) separable, so sharpening "
            f"them lowers the NLL without limit; T is clamped to {TEMPERATURE_MIN:g}"
        )
    # Safeguarded Newton (Numerical Recipes' rtsafe) in u = log β, starting at T = 1:
    # dh/du = β · Var term > 0. A Newton step that leaves the bracket, or that does not at
    # least halve the step before last, is replaced by bisection, so the bracket shrinks
    # geometrically and the loop ends well within _MAX_ITERATIONS. grad and slope are both
    # 2**k times the derivatives of the NLL, so their ratio is unscaled.
    u = 0.0
    step_before_last = step = u_hi - u_lo
    for _ in range(_MAX_ITERATIONS):
        grad, curvature = terms(math.exp(u))
        if grad == 0.0:
            break
        if grad < 0:
            u_lo = u
        else:
            u_hi = u
        slope = math.ldexp(math.exp(u) * curvature, -k)
        newton = u - grad / slope if slope > 0 else math.inf
        if abs(newton - u) <= _LOG_T_TOLERANCE:
            # FIX: converged. A last Newton step below the spacing of u leaves newton == u
            # on the bracket's edge, which the test below rejected: ~35 bisections of the
            # bracket followed (40 passes over the data instead of 8).
            u = min(max(newton, u_lo), u_hi)
            break
        if not u_lo < newton < u_hi or abs(2.0 * grad) > abs(step_before_last * slope):
            step_before_last, step = step, 0.5 * (u_hi - u_lo)
            u = u_lo + step
        else:
            step_before_last, step = step, u - newton
            u = newton
        if abs(step) <= _LOG_T_TOLERANCE or u_hi - u_lo <= _LOG_T_TOLERANCE:
            break
    return math.exp(-u), None
