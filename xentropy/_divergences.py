"""Entropy, cross-entropy, Kullback-Leibler and Jensen-Shannon divergences of probability rows.

The pure-NumPy core of ``POST /v1/divergences``, in the style of optax's ``losses`` module:
one function, data first and keyword-only options, float64 throughout, no Python loop over
rows or classes.

Conventions (the HTTP contract, "POST /v1/divergences"):

* ``p`` and ``q`` are (N, C) arrays whose rows are probability distributions (entries in
  [0, 1], rows summing to 1 within 1e-6). Rows are never renormalised.
* ``0 · log 0 = 0`` for ``p``: a class with ``p = 0`` contributes nothing, whatever ``q`` is.
* ``q`` is clipped to ``[ε, 1]`` before the log, exactly as probabilities are for the losses,
  so ``p > 0`` where ``q = 0`` gives the large but finite ``-p log ε`` instead of infinity.
* With ``q_logits`` instead of ``q``, ``log q`` is the exact ``log_softmax(q_logits)`` and is
  **not** clipped: it is finite for every finite input, and the gradient with respect to the
  logits (``softmax · Σp − p``) is the derivative of exactly that unclipped function, like the
  logits path of the losses. ``epsilon`` is still validated but has no effect there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from xentropy._numerics import FLOAT64_EPS, LN2, log_softmax, to_units
from xentropy._validation import (
    InputError,
    Param,
    as_float_array,
    check_distributions,
    check_exactly_one,
    check_same_shape,
    first_index,
)
from xentropy._wire import OPTIONAL_FIELD
from xentropy.options import CATEGORICAL_PARAMS

if TYPE_CHECKING:
    from xentropy.states.divergences import DivergenceState

__all__ = ["DIVERGENCE_PARAMS", "DivergenceResult", "DivergenceRows", "divergences"]

#: The options of :func:`divergences` (``/v1/divergences``).
DIVERGENCE_PARAMS: dict[str, Param] = {
    "reduction": Param(
        "choice", "mean", '`"mean"` over rows, `"sum"` or `"none"`.',
        choices=CATEGORICAL_PARAMS["reduction"].choices,
    ),
    "units": Param(
        "choice", "nats", "nats or bits, for every value.",
        choices=CATEGORICAL_PARAMS["units"].choices,
    ),
    "epsilon": Param(
        "number", FLOAT64_EPS, "q is clipped to [epsilon, 1] before the log; in (0, 0.5).",
        low=0.0, high=0.5, low_open=True, high_open=True,
    ),
    "return_gradient": Param(
        "boolean", False,
        "Include the derivative of the reduced cross-entropy with respect to `q` (plain "
        "partial derivative, 0 where clipped) or `q_logits`.",
    ),
    "return_state": Param(
        "boolean", False,
        "Include `state`: the number of rows and the compensated sums of the four per-row "
        "values, which `POST /v1/merge` combines with those of other batches. Needs "
        'reduction `"mean"` or `"sum"`.',
    ),
}


@dataclass(frozen=True)
class DivergenceRows:
    """Per-row values, each of shape (N,), in the requested units.

    ``cross_entropy == entropy + kl_divergence`` holds row by row (see :func:`divergences`).
    """

    entropy: np.ndarray
    cross_entropy: np.ndarray
    kl_divergence: np.ndarray
    js_divergence: np.ndarray


@dataclass(frozen=True)
class DivergenceResult:
    """Result of :func:`divergences`.

    Attributes:
      entropy: reduced H(p), or ``None`` with ``reduction="none"``.
      cross_entropy: reduced H(p, q), or ``None``.
      kl_divergence: reduced KL(p‖q), or ``None``.
      js_divergence: reduced JS(p, q), or ``None``.
      per_row: the four per-row arrays, shape (N,) each, always computed (``None`` for a
        result finalized from a state).
      gradient: shape (N, C), derivative of the reduced cross-entropy with respect to the
        input that was sent (``q`` or ``q_logits``); ``None`` unless asked for.
      n_samples: N.
      n_classes: C.
      units: ``"nats"`` or ``"bits"``.
      reduction: ``"mean"``, ``"sum"`` or ``"none"``.
      state: the batch's :class:`~xentropy.states.DivergenceState` with
        ``return_state=True`` (for a finalized result, the state it comes from).
    """

    entropy: float | None
    cross_entropy: float | None
    kl_divergence: float | None
    js_divergence: float | None
    per_row: DivergenceRows | None = field(metadata=OPTIONAL_FIELD)
    gradient: np.ndarray | None = field(metadata=OPTIONAL_FIELD)
    n_samples: int
    n_classes: int
    units: str
    reduction: str
    state: DivergenceState | None = field(default=None, repr=False)


def divergences(
    p: ArrayLike,
    q: ArrayLike | None = None,
    *,
    q_logits: ArrayLike | None = None,
    epsilon: float = FLOAT64_EPS,
    reduction: str = "mean",
    units: str = "nats",
    return_gradient: bool = False,
    return_state: bool = False,
) -> DivergenceResult:
    """Entropy, cross-entropy, KL and JS divergence of the rows of ``p`` against ``q``.

    Per row ``i`` (sums over the C classes; ``q̃ = clip(q, ε, 1)``):

    * ``H(p) = −Σ p log p`` with ``0 · log 0 = 0``;
    * ``KL(p‖q) = Σ p (log p − log q̃)``, summed directly (not as a difference of two
      entropies, which would cancel catastrophically when p ≈ q);
    * ``H(p, q) = H(p) + KL(p‖q)``, which equals ``−Σ p log q̃`` and makes the contract's
      identity hold in the returned numbers up to one rounding per row;
    * ``JS(p, q) = ½ KL(p‖m) + ½ KL(q‖m)`` with ``m = (p + q)/2`` and the *unclipped* ``q``
      (``softmax(q_logits)`` for logits); ``0 ≤ JS ≤ ln 2``.

    Args:
      p: shape (N, C), probability rows.
      q: shape (N, C), probability rows; exactly one of ``q`` and ``q_logits``.
      q_logits: shape (N, C), unnormalised scores; ``log q = log_softmax(q_logits)``, exact
        and not clipped (see the module docstring).
      epsilon: clipping margin for ``q``, in (0, 0.5).
      reduction: ``"mean"`` over rows (default), ``"sum"`` or ``"none"``.
      units: ``"nats"`` (default) or ``"bits"`` (every value and the gradient divided by ln 2).
      return_gradient: also return the gradient of the reduced cross-entropy, shape (N, C):
        with ``q`` the plain partial derivative ``−p/q`` (not projected onto the simplex),
        exactly 0 where ``q < ε`` was clipped; with ``q_logits`` ``softmax(q_logits)·Σp − p``.
        Divided by N for ``"mean"``; ``"none"`` gives the gradient of the sum of the rows.
      return_state: also return ``state`` (:mod:`xentropy.states`): the rows' sums, which
        merge with those of other batches; needs ``"mean"`` or ``"sum"``.

    Returns:
      A :class:`DivergenceResult`.

    Raises:
      InputError: on invalid input, naming the field (``"p"``, ``"q"``, ``"q_logits"``,
        ``"epsilon"``, ``"reduction"``, ``"units"``), and on ``q_logits`` whose range within
        a row is so large that a probability with ``p > 0`` underflows to 0 (the
        cross-entropy would be infinite: "overflows float64").

    >>> r = divergences([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7]], [[0.4, 0.4, 0.2], [0.2, 0.2, 0.6]])
    >>> round(r.cross_entropy, 12) == round(r.entropy + r.kl_divergence, 12)
    True
    >>> round(r.kl_divergence, 6), round(r.js_divergence, 6)
    (0.130867, 0.042651)
    """
    # C order whatever the layout sent: row sums then add the same terms in the same
    # order, so that results are bit-identical for C, Fortran and strided input (FIX:
    # they differed in the last ulp beyond 8 classes, numpy summing pairwise along the
    # contiguous axis only).
    p_arr = np.ascontiguousarray(as_float_array(p, "p", ndim=2))
    check_distributions(p_arr, "p")
    check_exactly_one("q", q, "q_logits", q_logits)
    if q is not None:
        q_arr = np.ascontiguousarray(as_float_array(q, "q", ndim=2))
        check_same_shape(q_arr, "q", p_arr.shape, "p")
        check_distributions(q_arr, "q")
    else:
        z = np.ascontiguousarray(as_float_array(q_logits, "q_logits", ndim=2))
        check_same_shape(z, "q_logits", p_arr.shape, "p")
    eps = DIVERGENCE_PARAMS["epsilon"].check(epsilon, "epsilon")
    DIVERGENCE_PARAMS["reduction"].check(reduction, "reduction")
    DIVERGENCE_PARAMS["units"].check(units, "units")
    return_gradient = DIVERGENCE_PARAMS["return_gradient"].check(return_gradient, "return_gradient")
    return_state = DIVERGENCE_PARAMS["return_state"].check(return_state, "return_state")
    if return_state and reduction == "none":
        raise InputError(
            "return_state",
            "expected reduction 'mean' or 'sum' with return_state: a state holds sums, and "
            "per-row values ('none') do not merge",
            kind="not_applicable",
        )

    n, c = p_arr.shape
    p_pos = p_arr > 0

    entropy = _entropy_rows(p_arr, p_pos)
    if q is not None:
        kl, q_prob = _kl_against_probabilities(p_arr, q_arr, eps, p_pos), q_arr
    else:
        kl, q_prob = _kl_against_logits(p_arr, z, p_pos)
    # Mathematically KL >= −log Σ_{p>0} q̃ (Gibbs), which is 0 for exact distributions. A
    # negative value can only come from rounding or from the admitted slack of the inputs
    # (rows sum to 1 within 1e-6; clipping adds < ε per entry), i.e. it is below the
    # resolution of the data: clamp it so that KL(p‖q) >= 0 as a divergence must be. H(p, q)
    # is then defined as H + KL, so the identity H(p, q) = H(p) + KL(p‖q) is kept; it differs
    # from −Σ p log q̃ by at most that clamped amount (<= 1e-6 + C·ε).
    kl = np.maximum(kl, 0.0)
    with np.errstate(over="ignore"):
        cross_entropy = entropy + kl
    js = _js_rows(p_arr, q_prob, p_pos)

    with np.errstate(over="ignore"):
        rows = DivergenceRows(
            entropy=to_units(entropy, units),
            cross_entropy=to_units(cross_entropy, units),
            kl_divergence=to_units(kl, units),
            js_divergence=to_units(js, units),
        )
    # FIX: a KL near the float64 maximum in nats (q_logits 1.8e308 apart) is beyond it in
    # bits (÷ ln 2): it used to be sent as null. Like every other overflow, a 422.
    for values in (rows.cross_entropy, rows.kl_divergence):
        if not np.isfinite(values).all():
            row = int(np.flatnonzero(~np.isfinite(values))[0])
            raise InputError(
                "q" if q is not None else "q_logits",
                f"the divergence of row {row} overflows float64 in {units}",
                position=(row,),
                kind="overflow",
            )

    gradient = None
    if return_gradient:
        gradient = _cross_entropy_gradient(p_arr, q_prob, p_pos, eps, from_logits=q is None)
        gradient = to_units(gradient, units)
        if reduction == "mean":
            gradient /= n
        # FIX: −p/q overflows for a subnormal ε (a q in [ε, 1/DBL_MAX)); it used to be sent
        # as null. Like the losses, such a gradient is a 422 "overflow" at its position.
        if not np.isfinite(gradient).all():
            pos = first_index(~np.isfinite(gradient))
            raise InputError(
                "q_logits" if q is None else "q",
                "the gradient overflows float64 at this position: q is below 1/DBL_MAX "
                "(raise epsilon to at least 1e-308 to clip it)",
                position=pos,
                kind="overflow",
            )

    if reduction == "none":
        reduced: list[float | None] = [None, None, None, None]
    else:
        field = "q" if q is not None else "q_logits"
        reduced = [
            _reduce(v, reduction, field)
            for v in (rows.entropy, rows.cross_entropy, rows.kl_divergence, rows.js_divergence)
        ]
    state = None
    if return_state:
        from xentropy.states.divergences import divergence_state  # builds on this module

        state = divergence_state(rows, n_classes=c, from_logits=q is None, units=units,
                                 reduction=reduction, epsilon=eps)
    return DivergenceResult(
        entropy=reduced[0],
        cross_entropy=reduced[1],
        kl_divergence=reduced[2],
        js_divergence=reduced[3],
        per_row=rows,
        gradient=gradient,
        n_samples=n,
        n_classes=c,
        units=units,
        reduction=reduction,
        state=state,
    )


def _kl_against_probabilities(
    p: np.ndarray, q: np.ndarray, eps: float, p_pos: np.ndarray
) -> np.ndarray:
    """KL(p‖clip(q, ε, 1)) per row, shape (N, C) -> (N,), before the clamp at 0."""
    # q <= 1 is validated, so clipping to [ε, 1] only lifts the small entries.
    q_clipped = np.maximum(q, eps)
    # log(p/q̃) as one correctly rounded ratio: exact 0 for p == q, and no cancellation
    # between two large logs as in log p − log q̃. p/q̃ <= 1/ε, which overflows only for
    # a subnormal ε (below 1/DBL_MAX ≈ 5.6e-309).
    with np.errstate(over="ignore"):
        ratio = np.divide(p, q_clipped, out=np.ones_like(p), where=p_pos)
    log_ratio = np.log(ratio)
    huge = np.isinf(ratio)
    if huge.any():
        # FIX: there the ratio overflowed to inf and KL, H(p, q) came out infinite (sent
        # as null); the difference of the two logs is finite (at most −log ε <= 745).
        log_ratio[huge] = np.log(p[huge]) - np.log(q_clipped[huge])
    with np.errstate(over="ignore"):  # beyond float64: a 422, checked by the caller
        return (p * log_ratio).sum(axis=1)


def _kl_against_logits(
    p: np.ndarray, z: np.ndarray, p_pos: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """KL(p‖softmax(z)) per row (before the clamp at 0), and softmax(z)."""
    # A row range beyond the float64 range makes (z − max) overflow to −inf: log q = −inf
    # there, which is harmless where p = 0 and reported as overflow where p > 0 below.
    log_q = log_softmax(z)
    bad = p_pos & ~np.isfinite(log_q)
    if bad.any():
        pos = first_index(bad)
        raise InputError(
            "q_logits",
            "expected logits whose softmax is representable in float64 where p > 0, "
            f"got a probability that underflows to 0 (log q = {log_q[pos]}): the "
            "cross-entropy overflows float64",
            position=pos,
            kind="overflow",
        )
    log_p = np.log(np.where(p_pos, p, 1.0))
    # Where p = 0 both logs are replaced by 0, so the term is 0 even if log q = −inf.
    with np.errstate(over="ignore"):  # beyond float64: a 422, checked by the caller
        kl = (p * (log_p - np.where(p_pos, log_q, 0.0))).sum(axis=1)
    return kl, np.exp(log_q)


def _cross_entropy_gradient(
    p: np.ndarray, q: np.ndarray, p_pos: np.ndarray, eps: float, *, from_logits: bool
) -> np.ndarray:
    """d/dq (or d/dz) of Σ_rows H(p, q), in nats, shape (N, C)."""
    if from_logits:
        # d/dz of −Σ p log_softmax(z) = softmax(z) Σp − p.
        return q * p.sum(axis=1, keepdims=True) - p
    # d/dq of −p log clip(q, ε, 1): −p/q where q >= ε, 0 where the clip is active.
    # q >= ε > 0 on the mask, so −p/q is bounded by 1/ε.
    live = p_pos & (q >= eps)
    with np.errstate(over="ignore"):
        return np.divide(-p, q, out=np.zeros_like(p), where=live)


def _reduce(values: np.ndarray, reduction: str, field: str) -> float:
    """Mean or sum of finite per-row values, refused when it is beyond float64.

    FIX: rows of 1e308 each (q_logits a float64 range apart) made the sum, and so the mean,
    overflow to inf, sent as null. The mean is then taken of the rows divided by N first
    (every term finite); a sum that overflows is a 422 "overflow"."""
    with np.errstate(over="ignore"):
        total = float(values.sum())
        if reduction == "mean":
            mean = total / values.size
            if math.isinf(total):
                mean = float((values / values.size).sum())
            total = mean
    if not math.isfinite(total):
        raise InputError(
            field, f"the {reduction} over the rows overflows float64", kind="overflow"
        )
    return total


def _entropy_rows(p: np.ndarray, p_pos: np.ndarray) -> np.ndarray:
    """``−Σ p log p`` per row, shape (N, C) -> (N,), with ``0 · log 0 = 0``."""
    # log is taken only where p > 0 (log(1) = 0 stands in elsewhere): no log(0) warning, and
    # 0 · log 0 never becomes 0 · (−inf) = nan.
    return -(p * np.log(np.where(p_pos, p, 1.0))).sum(axis=1)


def _js_rows(p: np.ndarray, q: np.ndarray, p_pos: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence per row, shape (N, C) -> (N,), in nats.

    ``p`` and ``q`` are unclipped probability rows.
    """
    q_pos = q > 0
    total = p + q
    # KL(p‖m) term by term as p·log(2p / (p + q)) instead of p·log(p / m): halving a subnormal
    # p + q can round m to 0, whereas p + q >= p > 0 wherever the term is taken, and 2p is
    # exact. The ratio lies in (0, 2], so every term is finite and at most p·ln 2; for p == q
    # the ratio is exactly 1. p + q == q + p bit for bit, so JS is exactly symmetric.
    # Where p = 0 the ratio is set to 1, so the term is 0 · log 1 = 0 (0 · log 0 = 0).
    kl_pm = p * np.log(np.divide(2 * p, total, out=np.ones_like(p), where=p_pos))
    kl_qm = q * np.log(np.divide(2 * q, total, out=np.ones_like(q), where=q_pos))
    js = 0.5 * (kl_pm.sum(axis=1) + kl_qm.sum(axis=1))
    # 0 <= JS <= ln 2 for exact distributions; excursions beyond come only from rounding and
    # the 1e-6 row-sum slack of the inputs (as for KL above), so they are clamped.
    return np.clip(js, 0.0, LN2)
