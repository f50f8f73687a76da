"""Cross-entropy losses and their analytic gradients.

Naming follows optax's ``losses`` module: the link comes first (``softmax_`` /
``sigmoid_`` for logits, none for probabilities), then the label form
(``_with_integer_labels`` for class indices). Data come first, options are keyword-only.

Every function returns a :class:`~xentropy.reductions.LossResult`. Semantics follow
PyTorch where PyTorch and the contract agree (``weight``, ``ignore_index``,
``label_smoothing``, ``pos_weight``) and Keras for binary label smoothing and focal loss;
what ``"mean"`` divides by is chosen with ``normalization`` (see reductions.py).

Gradients are closed forms, not autograd:

* softmax cross-entropy: ``d/dz_k Σ_c a_c (-log p_c) = p_k Σ_c a_c - a_k``;
* categorical focal: with ``q = 1 - p`` and ``f_c = -q_c^γ log p_c``,
  ``d f_c / d p_c = γ q^(γ-1) log p - q^γ / p``, chained through the softmax Jacobian;
* sigmoid BCE: ``d/dx [pw t softplus(-x) + (1-t) softplus(x)] = -pw t σ(-x) + (1-t) σ(x)``;
* binary focal: product rule on ``α_t m^γ BCE`` with ``m = 1 - p_t``.
"""

from __future__ import annotations

import numpy as np

from xentropy._numerics import FLOAT64_EPS, sigmoid, softplus
from xentropy._validation import (
    InputError,
    as_float_array,
    check_distributions,
    check_labels,
    check_range,
    check_same_shape,
    check_scalar,
    check_weights,
    first_index,
)
from xentropy.reductions import (
    LossResult,
    check_reduction_options,
    denominator,
    reduce_losses,
    unit_scale,
)

__all__ = [
    "binary_cross_entropy",
    "categorical_cross_entropy",
    "categorical_cross_entropy_with_integer_labels",
    "sigmoid_binary_cross_entropy",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
]

_FLOAT_MAX = float(np.finfo(np.float64).max)


# --------------------------------------------------------------------------- categorical


def softmax_cross_entropy(
    logits: np.ndarray,
    targets: np.ndarray,
    *,
    class_weights: np.ndarray | None = None,
    sample_weights: np.ndarray | None = None,
    label_smoothing: float = 0.0,
    focal_gamma: float = 0.0,
    focal_alpha: float | np.ndarray | None = None,
    reduction: str = "mean",
    normalization: str = "weights",
    units: str = "nats",
    return_gradient: bool = False,
) -> LossResult:
    """Softmax cross-entropy of logits against target distributions.

    Args:
      logits: shape (N, C), unnormalised scores.
      targets: shape (N, C), one-hot or soft distributions (rows sum to 1).
      class_weights: shape (C,), PyTorch ``weight``.
      sample_weights: shape (N,).
      label_smoothing: ε in [0, 1); targets become ``(1 - ε) t + ε / C``.
      focal_gamma: γ >= 0; γ > 0 gives the focal loss ``-Σ_c α_c t_c (1 - p_c)^γ log p_c``.
      focal_alpha: scalar or shape (C,) focal balancing factor; None for no balancing.
      reduction: "mean", "sum" or "none".
      normalization: "weights" or "samples" (what "mean" divides by).
      units: "nats" or "bits".
      return_gradient: also return d loss / d logits, shape (N, C).

    Returns:
      LossResult with per-sample ``losses`` of shape (N,).
    """
    return _categorical(
        logits, None, targets, from_logits=True, class_weights=class_weights,
        sample_weights=sample_weights, ignore_index=None, label_smoothing=label_smoothing,
        focal_gamma=focal_gamma, focal_alpha=focal_alpha, epsilon=FLOAT64_EPS,
        reduction=reduction, normalization=normalization, units=units,
        return_gradient=return_gradient,
    )


def softmax_cross_entropy_with_integer_labels(
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    class_weights: np.ndarray | None = None,
    sample_weights: np.ndarray | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    focal_gamma: float = 0.0,
    focal_alpha: float | np.ndarray | None = None,
    reduction: str = "mean",
    normalization: str = "weights",
    units: str = "nats",
    return_gradient: bool = False,
) -> LossResult:
    """Softmax cross-entropy of logits against class indices (PyTorch ``cross_entropy``).

    Args:
      logits: shape (N, C).
      labels: shape (N,), integers in [0, C) or equal to ``ignore_index``.
      ignore_index: samples with this label are left out (loss 0, not counted).
      Other options as in :func:`softmax_cross_entropy`.

    Returns:
      LossResult with per-sample ``losses`` of shape (N,).
    """
    return _categorical(
        logits, labels, None, from_logits=True, class_weights=class_weights,
        sample_weights=sample_weights, ignore_index=ignore_index,
        label_smoothing=label_smoothing, focal_gamma=focal_gamma, focal_alpha=focal_alpha,
        epsilon=FLOAT64_EPS, reduction=reduction, normalization=normalization, units=units,
        return_gradient=return_gradient,
    )


def categorical_cross_entropy(
    probabilities: np.ndarray,
    targets: np.ndarray,
    *,
    epsilon: float = FLOAT64_EPS,
    class_weights: np.ndarray | None = None,
    sample_weights: np.ndarray | None = None,
    label_smoothing: float = 0.0,
    focal_gamma: float = 0.0,
    focal_alpha: float | np.ndarray | None = None,
    reduction: str = "mean",
    normalization: str = "weights",
    units: str = "nats",
    return_gradient: bool = False,
) -> LossResult:
    """Cross-entropy of probability rows against target distributions.

    Args:
      probabilities: shape (N, C), rows sum to 1 within 1e-6; clipped to
        [epsilon, 1 - epsilon] before the log.
      targets: shape (N, C).
      epsilon: clipping margin in (0, 0.5).
      Other options as in :func:`softmax_cross_entropy`.

    Returns:
      LossResult; ``gradient`` is the plain partial derivative w.r.t. the probabilities
      (``-a/p`` terms, not projected on the simplex), 0 where an entry was clipped.
    """
    return _categorical(
        probabilities, None, targets, from_logits=False, class_weights=class_weights,
        sample_weights=sample_weights, ignore_index=None, label_smoothing=label_smoothing,
        focal_gamma=focal_gamma, focal_alpha=focal_alpha, epsilon=epsilon,
        reduction=reduction, normalization=normalization, units=units,
        return_gradient=return_gradient,
    )


def categorical_cross_entropy_with_integer_labels(
    probabilities: np.ndarray,
    labels: np.ndarray,
    *,
    epsilon: float = FLOAT64_EPS,
    class_weights: np.ndarray | None = None,
    sample_weights: np.ndarray | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    focal_gamma: float = 0.0,
    focal_alpha: float | np.ndarray | None = None,
    reduction: str = "mean",
    normalization: str = "weights",
    units: str = "nats",
    return_gradient: bool = False,
) -> LossResult:
    """Cross-entropy of probability rows against class indices (negative log-likelihood).

    Args:
      probabilities: shape (N, C).
      labels: shape (N,).
      Other options as in :func:`categorical_cross_entropy` and
      :func:`softmax_cross_entropy_with_integer_labels`.

    Returns:
      LossResult with per-sample ``losses`` of shape (N,).
    """
    return _categorical(
        probabilities, labels, None, from_logits=False, class_weights=class_weights,
        sample_weights=sample_weights, ignore_index=ignore_index,
        label_smoothing=label_smoothing, focal_gamma=focal_gamma, focal_alpha=focal_alpha,
        epsilon=epsilon, reduction=reduction, normalization=normalization, units=units,
        return_gradient=return_gradient,
    )


# FIX: invalid="ignore" added. With weights or logits near the float64 limit an overflowed
# intermediate (inf) can turn into NaN further on (inf - inf in a softmax gradient,
# 0 * inf where a zero weight meets an overflowed BCE); that emitted a RuntimeWarning.
# Such a NaN is never returned: _finish checks every result and raises "overflow".
@np.errstate(over="ignore", under="ignore", invalid="ignore")
def _categorical(
    scores: np.ndarray,
    labels: np.ndarray | None,
    targets: np.ndarray | None,
    *,
    from_logits: bool,
    class_weights: np.ndarray | None,
    sample_weights: np.ndarray | None,
    ignore_index: int | None,
    label_smoothing: float,
    focal_gamma: float,
    focal_alpha: float | np.ndarray | None,
    epsilon: float,
    reduction: str,
    normalization: str,
    units: str,
    return_gradient: bool,
) -> LossResult:
    field = "logits" if from_logits else "probabilities"
    # FIX: compute on C-ordered copies of Fortran-ordered or strided inputs. Ufunc results
    # keep the input's layout, and einsum / matmul / sums then add in another order, so
    # the same numbers in another layout gave answers differing in the last bits.
    x = as_float_array(scores, field, ndim=2, keep_float32=from_logits)
    n, c = x.shape
    if not from_logits:
        check_distributions(x, field)
    check_reduction_options(reduction, normalization, units)
    smoothing = check_scalar(label_smoothing, "label_smoothing", low=0.0, high=1.0, high_open=True)
    gamma = check_scalar(focal_gamma, "focal_gamma", low=0.0)
    eps = check_scalar(epsilon, "epsilon", low=0.0, high=0.5, low_open=True, high_open=True)
    w = None if class_weights is None else check_weights(
        class_weights, "class_weights", c, "one weight per class"
    )
    s = np.ones(n) if sample_weights is None else check_weights(
        sample_weights, "sample_weights", n, "one weight per sample"
    )
    alpha = _focal_alpha(focal_alpha, c)
    focal = gamma > 0 or alpha is not None

    if labels is not None:
        y = check_labels(labels, n, c, ignore_index=ignore_index)
        counted = np.ones(n, dtype=bool) if ignore_index is None else y != ignore_index
        y = np.where(counted, y, 0)  # ignored labels may lie outside [0, C)
        t = None
    else:
        t = np.ascontiguousarray(as_float_array(targets, "targets", ndim=2))  # FIX: see x
        check_same_shape(t, "targets", x.shape, field)
        check_distributions(t, "targets")
        counted = np.ones(n, dtype=bool)
        y = None

    # Weight of each sample in the "weights" denominator: sample weight times the class
    # weight of its label (Σ_c t_c w_c for soft targets); smoothing and alpha do not enter.
    row_weight = s * counted
    if w is not None:
        row_weight = row_weight * (w[y] if y is not None else t @ w)

    if from_logits and y is not None and not focal:
        fast = _softmax_with_labels(
            x, y, s * counted, w, smoothing, row_weight, counted, reduction=reduction,
            normalization=normalization, units=units, return_gradient=return_gradient,
        )
        if fast is not None:
            return fast
    x = np.ascontiguousarray(x, dtype=np.float64)

    # Link: log-probabilities (and probabilities when needed) of every class.
    if from_logits:
        log_p, underflow = _log_softmax(x)
        inside = None
        n_clipped = 0
        p = np.exp(log_p) if (return_gradient or focal) else None
    else:
        # 1 - x >= eps, not x <= 1 - eps: for eps < 2^-54, 1 - eps rounds to 1.
        inside = (x >= eps) & (1.0 - x >= eps)
        n_clipped = int(x.size - np.count_nonzero(inside))
        p = np.clip(x, eps, 1.0 - eps)
        log_p = np.log(p)
        underflow = None

    if y is not None and not focal and underflow is None:
        losses, grad = _sparse_label_terms(
            log_p, p, y, s * counted, w, smoothing, from_logits, inside, return_gradient
        )
    else:
        if t is None:
            assert y is not None
            t = np.zeros((n, c))
            t[np.arange(n), y] = 1.0
        coef = t if smoothing == 0 else (1.0 - smoothing) * t + smoothing / c
        coef = coef * (s * counted)[:, None]
        if w is not None:
            coef *= w
        if alpha is not None:
            coef *= alpha
        if underflow is not None:
            _raise_if_overflowing(coef, underflow, field)
        if focal:
            assert p is not None
            losses, grad = _focal_terms(log_p, p, coef, gamma, from_logits, inside, return_gradient)
        else:
            losses, grad = _dense_terms(log_p, p, coef, from_logits, inside, return_gradient)

    return _finish(
        losses, grad, row_weight, counted, reduction=reduction, normalization=normalization,
        units=units, field=field, n_samples=n, n_classes=c,
        n_ignored=int(n - np.count_nonzero(counted)), n_clipped=n_clipped,
        weights_field="sample_weights" if sample_weights is not None else "class_weights",
    )


def _softmax_with_labels(
    x: np.ndarray,
    y: np.ndarray,
    s: np.ndarray,
    w: np.ndarray | None,
    smoothing: float,
    row_weight: np.ndarray,
    counted: np.ndarray,
    *,
    reduction: str,
    normalization: str,
    units: str,
    return_gradient: bool,
) -> LossResult | None:
    """The common case, logits with integer labels (no focal term), in few passes.

    One buffer of shape (N, C) holds ``z - max``, then ``exp(z - max)``, then the gradient:
    the softmax normalisation, the class coefficients, the units and the "mean" divisor
    are folded into one row scale. With ε-smoothing the per-sample coefficient of class k
    is ``s (1 - ε) w_y [k = y] + s ε/C w_k`` (PyTorch's weighted label smoothing), so with
    ``a = s (1 - ε) w_y``, ``b = s ε/C`` and ``S = Σ_k exp(z_k - max)``:

      loss = a (log S - (z_y - max)) + b (Σ_k w_k log S - Σ_k w_k (z_k - max))
      d loss / d z_k = (a + b Σw) exp(z_k - max) / S - b w_k - a [k = y]

    Returns None when a result is not finite, so that the general path (which locates
    the offending element) reports the overflow.

    Args:
      x: (N, C) logits, float32 or float64, any memory layout.
      y: (N,) labels, ignored ones already replaced by 0 (their s is 0).
      s: (N,) sample weights, 0 for ignored samples.
    """
    n, c = x.shape
    rows = np.arange(n)
    wvec = np.ones(c) if w is None else w
    a = s * (1.0 - smoothing)
    if w is not None:
        a = a * w[y]
    b = s * (smoothing / c)
    units_scale = unit_scale(units)
    denom = denominator(row_weight, int(np.count_nonzero(counted)), normalization)
    if not np.isfinite(denom):
        return None
    grad_scale = units_scale / denom if reduction == "mean" and denom > 0 else units_scale

    # Max subtraction (exp of non-positive numbers cannot overflow; S >= 1), widened to
    # float64 and laid out in C order in the same pass: float32 or strided input needs
    # no separate copy, and every later sum runs in one fixed order.
    buf = np.subtract(x, x.max(axis=1, keepdims=True), dtype=np.float64, order="C")
    picked = buf[rows, y]
    smooth = buf @ wvec if smoothing > 0 else None
    np.exp(buf, out=buf)
    sums = buf.sum(axis=1)
    log_sums = np.log(sums)
    losses = a * (log_sums - picked)
    if smooth is not None:
        losses += b * (wvec.sum() * log_sums - smooth)
    losses *= units_scale
    if not np.isfinite(losses).all():
        return None

    gradient = None
    if return_gradient:
        total = a + b * wvec.sum()
        # |gradient| <= (max total + max a + max b·max w) · scale: finite bound, finite result.
        bound = (total.max() + a.max() + b.max() * wvec.max()) * grad_scale
        if not np.isfinite(bound):
            return None
        buf *= (total * grad_scale / sums)[:, None]
        if smooth is not None:
            buf -= np.outer(b * grad_scale, wvec)
        buf[rows, y] -= a * grad_scale
        gradient = buf

    loss, weight_sum = reduce_losses(
        losses, None, effective_weights=row_weight, n_counted=int(np.count_nonzero(counted)),
        reduction=reduction, normalization=normalization,
    )
    if loss is not None and not np.isfinite(loss):
        return None
    return LossResult(
        loss=loss, losses=losses, gradient=gradient, n_samples=n, n_classes=c,
        n_ignored=int(n - np.count_nonzero(counted)), n_clipped=0, weight_sum=weight_sum,
        units=units, reduction=reduction, normalization=normalization,
    )


def _log_softmax(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Row-wise log-softmax of (N, C) logits, plus where it underflowed to -inf.

    Returns:
      (log_p, underflow): log_p of shape (N, C), always finite; ``underflow`` is None in
      the normal case, else a boolean (N, C) mask of entries whose true log-probability
      is below -float64 max (they are set to -max so that a zero coefficient times them
      gives 0, and a nonzero one is reported as an overflow by the caller).
    """
    row_max = logits.max(axis=1, keepdims=True)
    # Max subtraction: every exponent is <= 0, so exp cannot overflow and each row sum
    # is >= 1 (its maximum contributes exactly exp(0) = 1), so the log is finite.
    with np.errstate(over="ignore"):
        log_p = logits - row_max
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    if np.isfinite(log_p).all():  # logits spread wider than float64's range are rare
        return log_p, None
    underflow = ~np.isfinite(log_p)
    log_p[underflow] = -_FLOAT_MAX
    return log_p, underflow


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


def _sparse_label_terms(
    log_p: np.ndarray,
    p: np.ndarray | None,
    y: np.ndarray,
    s: np.ndarray,
    w: np.ndarray | None,
    smoothing: float,
    from_logits: bool,
    inside: np.ndarray | None,
    return_gradient: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Plain cross-entropy with integer labels, without building one-hot targets.

    With smoothing ε the per-sample coefficient of class k is
    ``s (1 - ε) w_y [k = y] + s ε/C w_k`` (PyTorch's weighted label smoothing), so the
    loss is ``-a log p_y - b Σ_k w_k log p_k`` with ``a = s (1-ε) w_y`` and ``b = s ε/C``.
    """
    n, c = log_p.shape
    rows = np.arange(n)
    wvec = np.ones(c) if w is None else w
    a = s * (1.0 - smoothing) * (wvec[y] if w is not None else 1.0)
    losses = -a * log_p[rows, y]
    b = s * (smoothing / c)
    if smoothing > 0:
        losses -= b * (log_p @ wvec)
    if not return_gradient:
        return losses, None
    assert p is not None
    if from_logits:
        # d/dz_k Σ_c a_c (-log p_c) = p_k Σ_c a_c - a_k.
        grad = p * (a + b * wvec.sum())[:, None]
        if smoothing > 0:
            grad -= np.outer(b, wvec)
        grad[rows, y] -= a
    else:
        # d/dp_k Σ_c a_c (-log p_c) = -a_k / p_k on unclipped entries.
        grad = -np.outer(b, wvec) / p if smoothing > 0 else np.zeros_like(p)
        grad[rows, y] -= a / p[rows, y]
        assert inside is not None
        grad[~inside] = 0.0
    return losses, grad


def _dense_terms(
    log_p: np.ndarray,
    p: np.ndarray | None,
    coef: np.ndarray,
    from_logits: bool,
    inside: np.ndarray | None,
    return_gradient: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Cross-entropy ``-Σ_c coef_c log p_c`` per row, coef of shape (N, C)."""
    losses = -np.einsum("ij,ij->i", coef, log_p)
    if not return_gradient:
        return losses, None
    assert p is not None
    if from_logits:
        grad = p * coef.sum(axis=1, keepdims=True)
        grad -= coef
    else:
        grad = -coef / p
        assert inside is not None
        grad[~inside] = 0.0
    return losses, grad


def _focal_terms(
    log_p: np.ndarray,
    p: np.ndarray,
    coef: np.ndarray,
    gamma: float,
    from_logits: bool,
    inside: np.ndarray | None,
    return_gradient: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Categorical focal loss ``-Σ_c coef_c (1 - p_c)^γ log p_c`` per row.

    ``coef`` already holds sample weight × class weight × alpha × (smoothed) target.
    """
    # 1 - p from the log-probability: -expm1(log p) keeps full precision when p is near 1,
    # where 1 - p would cancel. On the probability path p <= 1 - eps, so q >= eps > 0.
    # On the probability path p = 1 survives clipping when eps < 2^-54 (1 - eps rounds
    # to 1); such an entry is outside the clip range, so its gradient is zeroed anyway, and
    # q = 1 there only keeps q^(γ-1) finite.
    q = -np.expm1(log_p) if from_logits else np.where(p < 1.0, 1.0 - p, 1.0)
    modulator = q**gamma
    losses = -np.einsum("ij,ij->i", coef * modulator, log_p)
    if not return_gradient:
        return losses, None
    if from_logits:
        # u_c = coef_c p_c d f_c/d p_c = coef_c q^γ (γ r - 1) with r = p log p / q, which
        # tends to -1 as q -> 0 (p log p ≈ -q); setting it there avoids 0/0.
        r = np.divide(p * log_p, q, out=np.full_like(q, -1.0), where=q > 0)
        u = coef * modulator * (gamma * r - 1.0)
        # Softmax Jacobian: d/dz_k Σ_c g_c p_c (δ_ck - p_k) = u_k - p_k Σ_c u_c.
        grad = u - p * u.sum(axis=1, keepdims=True)
    else:
        grad = coef * (gamma * q ** (gamma - 1.0) * log_p - modulator / p)
        assert inside is not None
        grad[~inside] = 0.0
    return losses, grad


# --------------------------------------------------------------------------- binary


def sigmoid_binary_cross_entropy(
    logits: np.ndarray,
    targets: np.ndarray,
    *,
    pos_weight: float | np.ndarray | None = None,
    class_weights: np.ndarray | None = None,
    sample_weights: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    label_smoothing: float = 0.0,
    focal_gamma: float = 0.0,
    focal_alpha: float | np.ndarray | None = None,
    reduction: str = "mean",
    normalization: str = "weights",
    units: str = "nats",
    return_gradient: bool = False,
) -> LossResult:
    """Sigmoid (binary / multi-label) cross-entropy of logits.

    ``BCE = pw t softplus(-x) + (1 - t) softplus(x)``, the stable form of
    ``-[pw t log σ(x) + (1 - t) log(1 - σ(x))]`` (PyTorch ``binary_cross_entropy_with_logits``).

    Args:
      logits: shape (N,) or (N, C).
      targets: same shape, in [0, 1] (soft targets allowed).
      pos_weight: scalar or shape (C,): weight of the positive term.
      class_weights: shape (C,), per-column weight (N×C input only).
      sample_weights: shape (N,).
      mask: same shape as logits, 0/1; 0 leaves the element out.
      label_smoothing: ε in [0, 1): targets become ``t (1 - ε) + ε / 2`` (Keras).
      focal_gamma, focal_alpha: binary focal loss ``α_t (1 - p_t)^γ BCE`` (RetinaNet),
        alpha a scalar or shape (C,) in [0, 1] weighing positives, 1 - alpha negatives.
      reduction, normalization, units, return_gradient: as for the categorical losses;
        "mean" averages over every counted element.

    Returns:
      LossResult with per-element ``losses`` and ``gradient`` of the input's shape.
    """
    return _binary(
        logits, targets, from_logits=True, pos_weight=pos_weight, class_weights=class_weights,
        sample_weights=sample_weights, mask=mask, label_smoothing=label_smoothing,
        focal_gamma=focal_gamma, focal_alpha=focal_alpha, epsilon=FLOAT64_EPS,
        reduction=reduction, normalization=normalization, units=units,
        return_gradient=return_gradient,
    )


def binary_cross_entropy(
    probabilities: np.ndarray,
    targets: np.ndarray,
    *,
    epsilon: float = FLOAT64_EPS,
    pos_weight: float | np.ndarray | None = None,
    class_weights: np.ndarray | None = None,
    sample_weights: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    label_smoothing: float = 0.0,
    focal_gamma: float = 0.0,
    focal_alpha: float | np.ndarray | None = None,
    reduction: str = "mean",
    normalization: str = "weights",
    units: str = "nats",
    return_gradient: bool = False,
) -> LossResult:
    """Binary cross-entropy of probabilities, clipped to [epsilon, 1 - epsilon].

    Args:
      probabilities: shape (N,) or (N, C), in [0, 1].
      epsilon: clipping margin in (0, 0.5).
      Other arguments as in :func:`sigmoid_binary_cross_entropy`.

    Returns:
      LossResult; the gradient is 0 for clipped entries.
    """
    return _binary(
        probabilities, targets, from_logits=False, pos_weight=pos_weight,
        class_weights=class_weights, sample_weights=sample_weights, mask=mask,
        label_smoothing=label_smoothing, focal_gamma=focal_gamma, focal_alpha=focal_alpha,
        epsilon=epsilon, reduction=reduction, normalization=normalization, units=units,
        return_gradient=return_gradient,
    )


# FIX: invalid="ignore" added, see _categorical.
@np.errstate(over="ignore", under="ignore", invalid="ignore")
def _binary(
    scores: np.ndarray,
    targets: np.ndarray,
    *,
    from_logits: bool,
    pos_weight: float | np.ndarray | None,
    class_weights: np.ndarray | None,
    sample_weights: np.ndarray | None,
    mask: np.ndarray | None,
    label_smoothing: float,
    focal_gamma: float,
    focal_alpha: float | np.ndarray | None,
    epsilon: float,
    reduction: str,
    normalization: str,
    units: str,
    return_gradient: bool,
) -> LossResult:
    field = "logits" if from_logits else "probabilities"
    # FIX: C-ordered copies of non-contiguous inputs, as in _categorical.
    x = np.ascontiguousarray(as_float_array(scores, field, ndim=(1, 2)))
    if not from_logits:
        check_range(x, field, low=0.0, high=1.0, what="a probability")
    t = np.ascontiguousarray(as_float_array(targets, "targets", ndim=(1, 2)))
    check_same_shape(t, "targets", x.shape, field)
    check_range(t, "targets", low=0.0, high=1.0, what="a target")
    check_reduction_options(reduction, normalization, units)
    n = x.shape[0]
    c = x.shape[1] if x.ndim == 2 else 1
    smoothing = check_scalar(label_smoothing, "label_smoothing", low=0.0, high=1.0, high_open=True)
    gamma = check_scalar(focal_gamma, "focal_gamma", low=0.0)
    eps = check_scalar(epsilon, "epsilon", low=0.0, high=0.5, low_open=True, high_open=True)
    pw = _per_column("pos_weight", pos_weight, x.ndim, c, what="a weight", low=0.0, high=None)
    alpha = _per_column("focal_alpha", focal_alpha, x.ndim, c, what="alpha", low=0.0, high=1.0)
    focal = gamma > 0 or alpha is not None

    # Element weights: sample weight × class weight × mask (the "weights" denominator).
    weight = np.ones(x.shape)
    if sample_weights is not None:
        s = check_weights(sample_weights, "sample_weights", n, "one weight per sample")
        weight *= s[:, None] if x.ndim == 2 else s
    if class_weights is not None:
        if x.ndim == 1:
            raise InputError(
                "class_weights",
                "expected null for 1-D input: class_weights weigh the columns of N×C "
                "(multi-label) input",
                kind="not_applicable",
            )
        weight *= check_weights(class_weights, "class_weights", c, "one weight per column")
    counted = np.ones(x.shape, dtype=bool)
    if mask is not None:
        m = as_float_array(mask, "mask", ndim=(1, 2))
        check_same_shape(m, "mask", x.shape, field)
        not_binary = (m != 0) & (m != 1)
        if not_binary.any():
            pos = first_index(not_binary)
            raise InputError(
                "mask", f"expected 0 or 1, got {m[pos]:g}", position=pos, kind="out_of_range"
            )
        counted = m == 1
        weight *= m

    ts = t if smoothing == 0 else t * (1.0 - smoothing) + 0.5 * smoothing
    pos_t = ts if pw is None else pw * ts

    if from_logits:
        n_clipped = 0
        inside = None
        # -log σ(x) = softplus(-x) and -log(1 - σ(x)) = softplus(x): stable for any x.
        bce = pos_t * softplus(-x) + (1.0 - ts) * softplus(x)
        prob = sigmoid(x) if (return_gradient or focal) else None
        comp = sigmoid(-x) if (return_gradient or focal) else None  # 1 - σ(x), no cancellation
    else:
        inside = (x >= eps) & (1.0 - x >= eps)  # see _categorical: 1 - eps may round to 1
        n_clipped = int(x.size - np.count_nonzero(inside))
        prob = np.clip(x, eps, 1.0 - eps)
        # 1 - p: exact above 0.5 (Sterbenz) and clipped to eps there; log1p(-p) is exact
        # for small p, where log(1 - p) would lose digits.
        high = x > 0.5
        comp = np.where(high, np.maximum(1.0 - x, eps), 1.0 - prob)
        log_comp = np.log(comp)
        log_comp[~high] = np.log1p(-prob[~high])
        bce = -(pos_t * np.log(prob) + (1.0 - ts) * log_comp)

    grad = None
    if return_gradient:
        assert prob is not None and comp is not None
        if from_logits:
            d_bce = (1.0 - ts) * prob - pos_t * comp
        else:
            d_bce = (1.0 - ts) / comp - pos_t / prob

    if focal:
        assert prob is not None and comp is not None
        one_minus_pt = prob * (1.0 - ts) + comp * ts  # 1 - p_t, from p and 1 - p: no cancellation
        modulator = one_minus_pt**gamma
        alpha_t = 1.0 if alpha is None else alpha * ts + (1.0 - alpha) * (1.0 - ts)
        scale = weight * alpha_t
        losses = scale * modulator * bce
        if return_gradient:
            # d(1 - p_t)/dx = (1 - 2t) dp/dx, with dp/dx = p (1 - p) for logits, 1 for p.
            d_m = (1.0 - 2.0 * ts) * (prob * comp if from_logits else 1.0)
            # γ m^(γ-1) m' written as γ m^γ (m'/m): finite where m underflows to 0.
            ratio = np.divide(d_m, one_minus_pt, out=np.zeros_like(bce), where=one_minus_pt > 0)
            grad = scale * modulator * (gamma * ratio * bce + d_bce)
    else:
        losses = weight * bce
        if return_gradient:
            grad = weight * d_bce
    if grad is not None and inside is not None:
        grad[~inside] = 0.0

    return _finish(
        losses, grad, weight, counted, reduction=reduction, normalization=normalization,
        units=units, field=field, n_samples=n, n_classes=c,
        n_ignored=int(counted.size - np.count_nonzero(counted)), n_clipped=n_clipped,
        weights_field="sample_weights" if sample_weights is not None else "class_weights",
    )


# --------------------------------------------------------------------------- shared


def _focal_alpha(value: float | np.ndarray | None, c: int) -> np.ndarray | None:
    """Categorical focal alpha: a scalar or one non-negative value per class, as shape (C,)."""
    if value is None:
        return None
    if np.ndim(value) == 0:
        return np.full(c, check_scalar(float(value), "focal_alpha", low=0.0))
    return check_weights(value, "focal_alpha", c, "one alpha per class")


def _per_column(
    field: str,
    value: float | np.ndarray | None,
    ndim: int,
    c: int,
    *,
    what: str,
    low: float,
    high: float | None,
) -> np.ndarray | float | None:
    """A binary option given as a scalar or one value per column (N×C input only)."""
    if value is None:
        return None
    if np.ndim(value) == 0:
        return check_scalar(float(value), field, low=low, high=high)
    arr = as_float_array(value, field, ndim=1)
    if ndim == 1:
        raise InputError(
            field, f"expected a number for 1-D input, got {arr.shape[0]} values",
            kind="shape_mismatch",
        )
    check_weights(arr, field, c, "one per column")
    check_range(arr, field, low=low, high=high, what=what)
    return arr


def _finish(
    losses: np.ndarray,
    grad: np.ndarray | None,
    effective_weights: np.ndarray,
    counted: np.ndarray,
    *,
    reduction: str,
    normalization: str,
    units: str,
    field: str,
    n_samples: int,
    n_classes: int,
    n_ignored: int,
    n_clipped: int,
    weights_field: str = "sample_weights",
) -> LossResult:
    """Apply units, reduce, and refuse results that overflowed float64.

    ``weights_field`` names the argument blamed when the sum of the effective weights
    (the ``weight_sum`` of the response) overflows.
    """
    scale = unit_scale(units)
    if scale != 1.0:
        losses *= scale
        if grad is not None:
            grad *= scale
    # Overflow (huge weights or logits) is detected here, on the results, rather than
    # predicted from the inputs: it is rare, and this check is exact.
    # FIX: these two checks used to run after reduce_losses; an inf/NaN from an overflowed
    # intermediate then reached the reduction first, where a NaN total with a zero
    # denominator was misreported as "zero_denominator" instead of "overflow".
    _check_no_overflow(losses, field, "loss")
    if grad is not None:
        _check_no_overflow(grad, field, "gradient")
    loss, denominator = reduce_losses(
        losses, grad, effective_weights=effective_weights,
        n_counted=int(np.count_nonzero(counted)), reduction=reduction,
        normalization=normalization,
    )
    # FIX: a weight sum that overflows float64 used to give weight_sum = inf and, with
    # "mean", a silent loss of 0 and a zero gradient (x / inf = 0). It is an overflow.
    if not np.isfinite(denominator):
        raise InputError(
            weights_field,
            "the sum of the effective weights (weight_sum, the denominator of 'mean') "
            "overflows float64",
            kind="overflow",
        )
    # Dividing by a weight sum below 1 can overflow a gradient that was finite before.
    if grad is not None and reduction == "mean":
        _check_no_overflow(grad, field, "gradient")
    if loss is not None and not np.isfinite(loss):
        raise InputError(field, "the reduced loss overflows float64", kind="overflow")
    return LossResult(
        loss=loss, losses=losses, gradient=grad, n_samples=n_samples, n_classes=n_classes,
        n_ignored=n_ignored, n_clipped=n_clipped, weight_sum=denominator, units=units,
        reduction=reduction, normalization=normalization,
    )


def _check_no_overflow(values: np.ndarray, field: str, what: str) -> None:
    if not np.isfinite(values).all():
        pos = first_index(~np.isfinite(values))
        raise InputError(
            field,
            f"the {what} overflows float64 at this position: the input (or its weights) is "
            "too large in magnitude for the result to be represented",
            position=pos, kind="overflow",
        )
