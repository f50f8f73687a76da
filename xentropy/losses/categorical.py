"""Categorical (softmax) cross-entropy and focal loss, with analytic gradients.

Two kernels: :func:`_softmax_with_labels`, the common case (logits with integer labels,
no focal term) in few passes over memory, and the general kernel, which handles every
option: a *link* turns the input into the log-probabilities the loss sees (exact
log-softmax, or clipped probabilities), the cross-entropy terms are computed from a
coefficient matrix, and the focal loss is composed on them. The fast kernel runs only
when every option it does not handle has its default value, so no option can be
skipped by it (a test runs every option through both kernels).

Gradients are closed forms. Both kernels compute ``u = ∂L/∂(log o)`` (the derivative
with respect to the log-probabilities: stable where p is tiny) and the link maps it to
the input: ``u - o Σ_c u_c`` through the softmax, ``u / p`` for probabilities.

* cross-entropy ``L = -Σ_c a_c log o_c``: ``u = -a``;
* focal ``L = -Σ_c a_c (1 - o_c)^γ log o_c``: ``u = a (1 - o)^γ (γ r - 1)`` with
  ``r = o log o / (1 - o)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from xentropy._numerics import LN2, log_softmax
from xentropy._validation import (
    InputError,
    as_float_array,
    check_distributions,
    check_labels,
    check_same_shape,
    check_weights,
    first_index,
)
from xentropy.losses._common import (
    Batch,
    LossResult,
    finish,
    per_class_value,
    sample_weight_vector,
    with_state,
)
from xentropy.options import LossOptions

__all__ = [
    "categorical_cross_entropy",
    "categorical_cross_entropy_with_integer_labels",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
]

_FLOAT_MAX = float(np.finfo(np.float64).max)

_OPTIONS_DOC = """
    Options (keyword-only; see :data:`xentropy.options.CATEGORICAL_PARAMS`):
      class_weights: shape (C,), PyTorch ``weight``.
      sample_weights: shape (N,).
      ignore_index: with labels, samples with this label are left out (loss 0, not counted).
      label_smoothing: ε in [0, 1); targets become ``(1 - ε) t + ε / C``.
      focal_gamma: γ >= 0; γ > 0 gives ``-Σ_c α_c t_c (1 - p_c)^γ log p_c``.
      focal_alpha: scalar or shape (C,) focal balancing factor; None for none.
      reduction: "mean", "sum" or "none"; normalization: "weights" or "samples".
      epsilon: with probabilities, clip to [epsilon, 1 - epsilon] before the log.
      units: "nats" or "bits"; return_gradient: also return d loss / d input.
      return_state: also return ``state``, the batch's sufficient statistics
        (:mod:`xentropy.states`), which merge with those of other batches.
      convention: "xentropy", "pytorch", "keras" or "sklearn" (see xentropy.conventions).
"""


def softmax_cross_entropy(logits: ArrayLike, targets: ArrayLike, **options: Any) -> LossResult:
    """Softmax cross-entropy of logits against target distributions.

    ``loss_i = -Σ_c t_ic log softmax(z_i)_c``, with the log-softmax computed with max
    subtraction (every exponent <= 0).

    Args:
      logits: shape (N, C), unnormalised scores.
      targets: shape (N, C), one-hot or soft distributions (rows sum to 1).
    {options}
    Returns:
      LossResult with per-sample ``losses`` of shape (N,) and ``gradient`` (N, C).

    >>> r = softmax_cross_entropy([[2.0, 1.0, 0.1]], [[1.0, 0.0, 0.0]], return_gradient=True)
    >>> round(r.loss, 6), r.gradient.round(4).tolist()
    (0.41703, [[-0.341, 0.2424, 0.0986]])
    """
    return _categorical(logits, None, targets, from_logits=True, given=options)


def softmax_cross_entropy_with_integer_labels(
    logits: ArrayLike, labels: ArrayLike, **options: Any
) -> LossResult:
    """Softmax cross-entropy of logits against class indices (PyTorch ``cross_entropy``).

    ``loss_i = -log softmax(z_i)_{y_i}`` (times the weights; smoothing mixes in
    ``-ε/C Σ_c log softmax(z_i)_c``).

    Args:
      logits: shape (N, C).
      labels: shape (N,), integers in [0, C) or equal to ``ignore_index``.
    {options}
    Returns:
      LossResult with per-sample ``losses`` of shape (N,).

    >>> r = softmax_cross_entropy_with_integer_labels([[2.0, 1.0, 0.1], [0.5, 2.5, -0.5]], [0, 1])
    >>> r.loss
    0.2934380179170596
    """
    return _categorical(logits, labels, None, from_logits=True, given=options)


def categorical_cross_entropy(
    probabilities: ArrayLike, targets: ArrayLike, **options: Any
) -> LossResult:
    """Cross-entropy of probability rows against target distributions.

    ``loss_i = -Σ_c t_ic log clip(p_ic, ε, 1 - ε)``.

    Args:
      probabilities: shape (N, C), rows sum to 1 within 1e-6.
      targets: shape (N, C).
    {options}
    Returns:
      LossResult; ``gradient`` is the plain partial derivative w.r.t. the probabilities
      (``-t/p`` terms, not projected on the simplex), 0 where an entry was clipped.

    >>> r = categorical_cross_entropy([[0.7, 0.3]], [[1.0, 0.0]], return_gradient=True)
    >>> round(r.loss, 6), r.gradient.round(6).tolist()
    (0.356675, [[-1.428571, 0.0]])
    """
    return _categorical(probabilities, None, targets, from_logits=False, given=options)


def categorical_cross_entropy_with_integer_labels(
    probabilities: ArrayLike, labels: ArrayLike, **options: Any
) -> LossResult:
    """Cross-entropy of probability rows against class indices (negative log-likelihood).

    ``loss_i = -log clip(p_{i, y_i}, ε, 1 - ε)``.

    Args:
      probabilities: shape (N, C).
      labels: shape (N,).
    {options}
    Returns:
      LossResult with per-sample ``losses`` of shape (N,).

    >>> r = categorical_cross_entropy_with_integer_labels(
    ...     [[0.775, 0.116, 0.039, 0.070]], [0], units="bits")
    >>> r.loss
    0.3677317845004871
    """
    return _categorical(probabilities, labels, None, from_logits=False, given=options)


for _f in (softmax_cross_entropy, softmax_cross_entropy_with_integer_labels,
           categorical_cross_entropy, categorical_cross_entropy_with_integer_labels):
    _f.__doc__ = (_f.__doc__ or "").replace("    {options}\n", _OPTIONS_DOC)


# --------------------------------------------------------------------------- dispatch

#: Options the fast kernel handles, and the library behaviours that touch only the
#: reduction. Any other option with a non-default value, or any other behaviour, sends
#: the call to the general kernel. ``epsilon`` is here because the fast kernel's exact
#: log-softmax never clips.
_FAST_OPTIONS = frozenset({
    "class_weights", "sample_weights", "ignore_index", "label_smoothing", "reduction",
    "normalization", "units", "return_gradient", "epsilon", "return_state",
    "behaviour.library", "behaviour.empty_mean",
})


def _fast_path_applies(options: LossOptions, from_logits: bool, labelled: bool) -> bool:
    return from_logits and labelled and not options.changed - _FAST_OPTIONS


# FIX: with weights or logits near the float64 limit an overflowed intermediate (inf) can
# turn into NaN further on (inf - inf in a softmax gradient, 0 * inf); such a NaN is never
# returned: finish() checks every result and raises "overflow".
@np.errstate(over="ignore", under="ignore", invalid="ignore")
def _categorical(
    scores: ArrayLike,
    labels: ArrayLike | None,
    targets: ArrayLike | None,
    *,
    from_logits: bool,
    given: dict[str, Any],
    fast: bool = True,
) -> LossResult:
    """Both kernels behind the four public functions; ``fast=False`` forces the general one."""
    field = "logits" if from_logits else "probabilities"
    # float32 logits stay float32 here: the fast kernel widens them in its first pass.
    x = as_float_array(scores, field, ndim=2, keep_float32=from_logits)
    n, c = x.shape
    labelled = labels is not None
    options = LossOptions.build("categorical", given, from_logits=from_logits, labelled=labelled)
    if not from_logits:
        check_distributions(x, field)
    weights = options.weights
    w = None if weights.class_weights is None else check_weights(
        weights.class_weights, "class_weights", c, "one weight per class"
    )
    s = sample_weight_vector(weights.sample_weights, n)
    if labelled:
        y = check_labels(labels, n, c, ignore_index=weights.ignore_index)
        if weights.ignore_index is None:
            counted = np.ones(n, dtype=bool)
        else:
            counted = y != weights.ignore_index
            y = np.where(counted, y, 0)  # ignored labels may lie outside [0, C)
        t = None
    else:
        if weights.ignore_index is not None:
            raise InputError(
                "ignore_index", "expected null with targets: ignore_index applies to labels "
                "only", kind="not_applicable",
            )
        t = np.ascontiguousarray(as_float_array(targets, "targets", ndim=2))
        check_same_shape(t, "targets", x.shape, field)
        check_distributions(t, "targets")
        counted = np.ones(n, dtype=bool)
        y = None
    # Without ignore_index every sample counts: s itself (two passes fewer on small batches).
    s_counted = s if weights.ignore_index is None else s * counted

    # Weight of each sample in the "weights" denominator: sample weight times the class
    # weight of its label (Σ_c t_c w_c for soft targets); smoothing and alpha do not enter.
    row_weight = s_counted
    if w is not None:
        row_weight = row_weight * (w[y] if y is not None else t @ w)
    batch = Batch(
        field=field, n_samples=n, n_classes=c, counted=counted, weights=row_weight,
        weights_field="sample_weights" if weights.sample_weights is not None
        else "class_weights",
    )
    if fast and _fast_path_applies(options, from_logits, labelled):
        assert y is not None
        result = _softmax_with_labels(x, y, s_counted, w, options, batch)
        if result is not None:
            return with_state(result, batch, from_logits=from_logits, labelled=labelled)

    x = np.ascontiguousarray(x, dtype=np.float64)
    coef = _coefficients(y, t, s_counted, w, options, n, c)
    link = _link(x, from_logits, options)
    if link.underflow is not None:
        _raise_if_overflowing(coef, link.underflow, field)
    if options.behaviour.nan_gradient_at_zero:
        _refuse_undefined(x, coef, options, labelled=labelled)
    focal = options.focal
    if focal.active:
        losses, u = _focal_terms(link, coef, focal.focal_gamma)
    else:
        losses, u = _cross_entropy_terms(link.log_o, coef)
    gradient = link.backward(u) if options.return_gradient else None
    result = finish(losses, gradient, batch, options, n_clipped=link.n_clipped)
    return with_state(result, batch, from_logits=from_logits, labelled=labelled)


def _coefficients(
    y: np.ndarray | None,
    t: np.ndarray | None,
    s_counted: np.ndarray,
    w: np.ndarray | None,
    options: LossOptions,
    n: int,
    c: int,
) -> np.ndarray:
    """The (N, C) coefficient of each log-probability: smoothed target × sample weight ×
    class weight × focal alpha (0 for ignored samples)."""
    eps = options.smoothing.label_smoothing
    alpha = options.focal.focal_alpha
    per_class = np.ones(c) if w is None else w.copy()
    if alpha is not None:
        per_class *= per_class_value("focal_alpha", alpha, c, low=0.0, high=None, per="class")
    if t is None and eps == 0:
        # One nonzero per row: written in place, no one-hot matrix to multiply.
        assert y is not None
        coef = np.zeros((n, c))
        coef[np.arange(n), y] = s_counted * per_class[y]
        return coef
    if t is None:
        assert y is not None
        t = np.zeros((n, c))
        t[np.arange(n), y] = 1.0
    coef = t if eps == 0 else (1.0 - eps) * t + eps / c
    coef = coef * s_counted[:, None]
    coef *= per_class
    return coef


# --------------------------------------------------------------------------- links


@dataclass(frozen=True)
class _Link:
    """The probabilities the loss sees, and how gradients flow back to the input.

    Attributes:
      log_o: (N, C) their logs (finite, see ``underflow``).
      o: (N, C) the probabilities.
      complement: computes (N, C) ``1 - o``, without cancellation where the link allows
        (only the focal term needs it).
      n_clipped: entries clipped to [ε, 1 - ε].
      backward: maps ``u = ∂L/∂(log o)`` to ``∂L/∂input``.
      underflow: None, or where the true log-softmax is below -float64 max (set to -max
        there; a nonzero coefficient on such an entry is an overflow).
    """

    log_o: np.ndarray
    o: np.ndarray
    complement: Callable[[], np.ndarray]
    n_clipped: int
    backward: Callable[[np.ndarray], np.ndarray]
    underflow: np.ndarray | None = None


def _link(x: np.ndarray, from_logits: bool, options: LossOptions) -> _Link:
    behaviour = options.behaviour
    eps = options.clipping.epsilon
    if from_logits and not behaviour.clip_after_link:
        log_p = log_softmax(x)
        underflow = None
        if not np.isfinite(log_p).all():  # logits spread wider than float64's range
            underflow = ~np.isfinite(log_p)
            log_p[underflow] = -_FLOAT_MAX
        p = np.exp(log_p)

        def through_softmax(u: np.ndarray) -> np.ndarray:
            # d/dz_k Σ_c g_c p_c = p_k (g_k - Σ_c g_c p_c), with u_c = g_c p_c.
            return u - p * u.sum(axis=1, keepdims=True)

        # 1 - p from the log-probability: -expm1(log p) keeps full precision near p = 1.
        return _Link(log_p, p, lambda: -np.expm1(log_p), 0, through_softmax, underflow)

    p = np.exp(log_softmax(x)) if from_logits else x
    if behaviour.renormalize:
        # Keras divides each row by its sum before clipping (a softmax row sums to 1
        # up to rounding, so this is the identity there, mathematically).
        total = p.sum(axis=1, keepdims=True)
        p = p / total
    if eps is None:  # the log of the probabilities as sent (PyTorch's torch.log(p))
        # A zero is refused before this is used where PyTorch has no finite answer (see
        # _refuse_undefined); elsewhere (off the label) its coefficient is 0.
        log_p = np.log(np.where(p > 0, p, 1.0))
        return _Link(log_p, p, lambda: 1.0 - p, 0, lambda u: _divide(u, x, x > 0))
    # 1 - p >= eps, not p <= 1 - eps: for eps < 2^-54, 1 - eps rounds to 1.
    inside = (p >= eps) & (1.0 - p >= eps)
    o = np.clip(p, eps, 1.0 - eps)
    n_clipped = int(inside.size - np.count_nonzero(inside))
    def complement() -> np.ndarray:
        # p = 1 survives clipping when eps < 2^-54; such an entry is outside the clip
        # range, so its gradient is zeroed anyway, and q = 1 there keeps q^(γ-1) finite.
        return np.where(o < 1.0, 1.0 - o, 1.0)

    def backward(u: np.ndarray) -> np.ndarray:
        # u is the caller's to overwrite. The clip's derivative is 0 where it is active.
        np.copyto(u, 0.0, where=~inside)
        if from_logits:
            return u - p * u.sum(axis=1, keepdims=True)
        row_terms = u.sum(axis=1, keepdims=True) / total if behaviour.renormalize else None
        np.divide(u, x, out=u, where=inside)
        if row_terms is not None:
            u -= row_terms  # o = p / S: ∂L/∂p_k = u_k / p_k - Σ_c u_c / S
        return u

    return _Link(np.log(o), o, complement, n_clipped, backward)


def _divide(u: np.ndarray, p: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``u / p`` where ``where``, 0 elsewhere (no 0/0)."""
    return np.divide(u, p, out=np.zeros_like(u), where=where)


# --------------------------------------------------------------------------- terms


def _cross_entropy_terms(log_o: np.ndarray, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``L_i = -Σ_c coef_ic log o_ic`` per row, and ``u = ∂L/∂(log o) = -coef``."""
    return -np.einsum("ij,ij->i", coef, log_o), -coef


def _focal_terms(link: _Link, coef: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Categorical focal loss ``-Σ_c coef_c (1 - o_c)^γ log o_c``, composed on the
    cross-entropy: the cross-entropy terms with the coefficients ``coef (1 - o)^γ``, plus
    the derivative of the modulating factor, ``coef (1 - o)^γ γ r`` with
    ``r = o log o / (1 - o)``."""
    q = link.complement()
    modulated = coef * q**gamma
    losses, u = _cross_entropy_terms(link.log_o, modulated)
    if gamma > 0:
        # r tends to -1 as q -> 0 (o log o ≈ -q); setting it there avoids 0/0.
        r = np.divide(link.o * link.log_o, q, out=np.full_like(q, -1.0), where=q > 0)
        u += gamma * modulated * r
    return losses, u


def _raise_if_overflowing(coef: np.ndarray, underflow: np.ndarray, field: str) -> None:
    bad = underflow & (coef != 0)
    if bad.any():
        pos = first_index(bad)
        raise InputError(
            field,
            f"the loss overflows float64: in row {pos[0]} the logits differ by more than the "
            "largest float64, so the log-probability of a class with a nonzero target is "
            "below -1.8e308",
            position=pos, kind="overflow",
        )


def _refuse_undefined(
    p: np.ndarray, coef: np.ndarray, options: LossOptions, *, labelled: bool
) -> None:
    """PyTorch's log of unclipped probabilities: where it has no finite answer, say so.

    ``nll_loss`` picks the label's log-probability (inf where it is log 0); the
    probability-target form multiplies every entry (0 · log 0 = nan); autograd of
    ``torch.log`` at 0 is 0/0 = nan wherever the entry is.
    """
    library = options.behaviour.library
    zero = p == 0
    needed = zero & (coef != 0)
    if needed.any() or (not labelled and zero.any()):
        what, where = ("inf", needed) if needed.any() else ("nan", zero)
        raise InputError(
            "probabilities",
            f"{library} returns {what} here: torch.log(p) is not clipped, and this "
            "probability is 0; use convention 'xentropy' (clips to epsilon) or send logits",
            position=first_index(where), kind="undefined_in_convention",
        )
    if options.return_gradient and zero.any():
        raise InputError(
            "probabilities",
            f"{library}'s autograd returns nan here: the derivative of torch.log(p) at p = 0 "
            "is 0/0 even where the target is 0; use convention 'xentropy' or leave out "
            "return_gradient",
            position=first_index(zero), kind="undefined_in_convention",
        )


# --------------------------------------------------------------------------- fast kernel


def _softmax_with_labels(
    x: np.ndarray,
    y: np.ndarray,
    s: np.ndarray,
    w: np.ndarray | None,
    options: LossOptions,
    batch: Batch,
) -> LossResult | None:
    """The common case, logits with integer labels (no focal term), in few passes.

    One buffer of shape (N, C) holds ``z - max``, then ``exp(z - max)``, then the gradient:
    the softmax normalisation, the class coefficients, the units and the "mean" divisor
    are folded into one row scale. With ε-smoothing the per-sample coefficient of class k
    is ``s (1 - ε) w_y [k = y] + s ε/C w_k`` (PyTorch's weighted label smoothing), so with
    ``a = s (1 - ε) w_y``, ``b = s ε/C`` and ``S = Σ_k exp(z_k - max)``:

      loss = a (log S - (z_y - max)) + b (Σ_k w_k log S - Σ_k w_k (z_k - max))
      d loss / d z_k = (a + b Σw) exp(z_k - max) / S - b w_k - a [k = y]

    Returns None when a result is not finite, so that the general kernel (which locates
    the offending element) reports the overflow.

    Args:
      x: (N, C) logits, float32 or float64, any memory layout.
      y: (N,) labels, ignored ones already replaced by 0 (their s is 0).
      s: (N,) sample weights, 0 for ignored samples.
    """
    n, c = x.shape
    rows = np.arange(n)
    smoothing = options.smoothing.label_smoothing
    reduction = options.reduction
    wvec = np.ones(c) if w is None else w
    a = s * (1.0 - smoothing)
    if w is not None:
        a = a * w[y]
    b = s * (smoothing / c)
    denom = batch.denominator(reduction.normalization)
    if not np.isfinite(denom):
        return None
    # The gradient's units and "mean" divisor, folded into the one row scale below.
    grad_scale = 1.0 / LN2 if reduction.units == "bits" else 1.0
    if reduction.reduction == "mean" and denom > 0:
        grad_scale /= denom

    top = x.argmax(axis=1)
    # Max subtraction (exp of non-positive numbers cannot overflow; S >= 1), widened to
    # float64 and laid out in C order in the same pass: float32 or strided input needs
    # no separate copy, and every later sum runs in one fixed order.
    buf = np.subtract(x, x[rows, top][:, None], dtype=np.float64, order="C")
    picked = buf[rows, y]
    smooth = buf @ wvec if smoothing > 0 else None
    np.exp(buf, out=buf)
    # log S = log1p(S - 1), S - 1 summed without the maximum's exact 1 (see log_softmax).
    buf[rows, top] = 0.0
    rest = buf.sum(axis=1)
    buf[rows, top] = 1.0
    log_sums = np.log1p(rest)
    losses = a * (log_sums - picked)
    if smooth is not None:
        losses += b * (wvec.sum() * log_sums - smooth)
    if not np.isfinite(losses).all():
        return None

    gradient = None
    if options.return_gradient:
        total = a + b * wvec.sum() if smooth is not None else a
        # |gradient| <= (max total + max a + max b·max w) · scale: finite bound, finite result.
        bound = (total.max() + a.max()) * grad_scale
        if smooth is not None:
            bound += b.max() * wvec.max() * grad_scale
        if not np.isfinite(bound):
            return None
        buf *= (total * grad_scale / (1.0 + rest))[:, None]
        if smooth is not None:
            # Without class weights the smoothing term is one number per row: broadcast,
            # no (N, C) temporary.
            buf -= (b * grad_scale)[:, None] if w is None else np.outer(b * grad_scale, wvec)
        buf[rows, y] -= a * grad_scale
        gradient = buf
    try:
        return finish(losses, gradient, batch, options, prescaled=True)
    except InputError as error:
        if error.kind == "overflow":
            return None  # the general kernel locates it
        raise

