"""Binary / multi-label (sigmoid) cross-entropy and focal loss, with analytic gradients.

One kernel: the elementwise binary cross-entropy with its derivative
(:func:`_bce_terms`), and the focal loss composed on it (:func:`_focal_terms`), as
optax's ``sigmoid_focal_loss`` composes on ``sigmoid_binary_cross_entropy``.

* sigmoid BCE: ``pw t softplus(-x) + (1-t) softplus(x)``, derivative
  ``-pw t σ(-x) + (1-t) σ(x)``;
* binary focal: ``α_t m^γ BCE`` with ``m = 1 - p_t``, by the product rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from xentropy._numerics import softplus
from xentropy._validation import (
    InputError,
    as_float_array,
    check_range,
    check_same_shape,
    check_weights,
    first_index,
    number_text,
)
from xentropy.losses._common import (
    Batch,
    LossResult,
    as_input,
    finish,
    per_class_value,
    sample_weight_vector,
    with_state,
)
from xentropy.options import LossOptions

__all__ = ["binary_cross_entropy", "sigmoid_binary_cross_entropy"]

#: PyTorch's binary_cross_entropy backward divides by max(p (1 - p), this): its EPSILON,
#: a C++ float 1e-12, promoted to double.
_PYTORCH_BCE_EPSILON = float(np.float32(1e-12))

_OPTIONS_DOC = """
    Options (keyword-only; see :data:`xentropy.options.BINARY_PARAMS`):
      pos_weight: scalar or shape (C,): weight of the positive term (PyTorch).
      class_weights: shape (C,), per-column weight (N×C input only).
      sample_weights: shape (N,).
      mask: same shape as the input, 0/1; 0 leaves the element out.
      label_smoothing: ε in [0, 1): targets become ``t (1 - ε) + ε / 2`` (Keras).
      focal_gamma, focal_alpha: binary focal loss ``α_t (1 - p_t)^γ BCE`` (RetinaNet),
        alpha a scalar or shape (C,) in [0, 1] weighing positives, 1 - alpha negatives.
      reduction, normalization, units, return_gradient, return_state, convention: as for
        the categorical losses; "mean" averages over every counted element.
      epsilon: with probabilities, clip to [epsilon, 1 - epsilon] before the log.
"""


def sigmoid_binary_cross_entropy(
    logits: ArrayLike, targets: ArrayLike, **options: Any
) -> LossResult:
    """Sigmoid (binary / multi-label) cross-entropy of logits.

    ``BCE = pw t softplus(-x) + (1 - t) softplus(x)``, the stable form of
    ``-[pw t log σ(x) + (1 - t) log(1 - σ(x))]`` (PyTorch ``binary_cross_entropy_with_logits``).

    Args:
      logits: shape (N,) or (N, C).
      targets: same shape, in [0, 1] (soft targets allowed).
    {options}
    Returns:
      LossResult with per-element ``losses`` and ``gradient`` of the input's shape.

    >>> r = sigmoid_binary_cross_entropy([1.5, -0.3, 2.2], [1, 0, 1], pos_weight=2.0)
    >>> r.loss
    0.3891161466571413
    """
    return _binary(logits, targets, from_logits=True, given=options)


def binary_cross_entropy(
    probabilities: ArrayLike, targets: ArrayLike, **options: Any
) -> LossResult:
    """Binary cross-entropy of probabilities, clipped to [epsilon, 1 - epsilon].

    ``BCE = -[pw t log p + (1 - t) log(1 - p)]``, with ``log(1 - p)`` as ``log1p(-p)``
    below 0.5 (exact for small p).

    Args:
      probabilities: shape (N,) or (N, C), in [0, 1].
      targets: same shape, in [0, 1].
    {options}
    Returns:
      LossResult; the gradient is 0 for clipped entries.

    The Keras documentation's example (``BinaryCrossentropy``), per element:

    >>> r = binary_cross_entropy([[0.6, 0.4], [0.4, 0.6]], [[0, 1], [0, 0]])
    >>> round(r.loss, 3)
    0.815
    """
    return _binary(probabilities, targets, from_logits=False, given=options)


for _f in (sigmoid_binary_cross_entropy, binary_cross_entropy):
    _f.__doc__ = (_f.__doc__ or "").replace("    {options}\n", _OPTIONS_DOC)


@dataclass(frozen=True)
class _Terms:
    """Elementwise binary cross-entropy and what its derivative and the focal term need.

    Attributes:
      bce: the loss of each element (no weights but ``pos_weight``).
      d_bce: its derivative with respect to the input, or None.
      prob, comp: the probability and its complement as the focal term uses them.
      log_prob, log_comp: their logs, exact, for logits (None for probabilities: the
        focal term's log-space form is for p that round to 0 or 1 only through a sigmoid).
      inside: False where the input was clipped (None: never clipped).
      n_clipped: the number of clipped entries.
      dprob: d prob / d input (p (1 - p) for logits, 1 for probabilities).
    """

    bce: np.ndarray
    d_bce: np.ndarray | None
    prob: np.ndarray
    comp: np.ndarray
    log_prob: np.ndarray | None
    log_comp: np.ndarray | None
    inside: np.ndarray | None
    n_clipped: int
    dprob: np.ndarray | float


# FIX: invalid="ignore": see the categorical kernel; finish() refuses every non-finite result.
@np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore")
def _binary(
    scores: ArrayLike, targets: ArrayLike, *, from_logits: bool, given: dict[str, Any]
) -> LossResult:
    field = "logits" if from_logits else "probabilities"
    x = as_input(scores, field, (1, 2))
    if not from_logits:
        check_range(x, field, low=0.0, high=1.0, what="a probability")
    t = as_input(targets, "targets", (1, 2))
    check_same_shape(t, "targets", x.shape, field)
    check_range(t, "targets", low=0.0, high=1.0, what="a target")
    options = LossOptions.build("binary", given, from_logits=from_logits, labelled=False)
    behaviour = options.behaviour
    if behaviour.hard_targets:
        _check_hard_targets(x, t, options)
    n = x.shape[0]
    c = x.shape[1] if x.ndim == 2 else 1
    weights = options.weights

    # Element weights: sample weight × class weight × mask (the "weights" denominator).
    weight = np.ones(x.shape)
    if weights.sample_weights is not None:
        s = sample_weight_vector(weights.sample_weights, n)
        weight *= s[:, None] if x.ndim == 2 else s
    if weights.class_weights is not None:
        if x.ndim == 1:
            raise InputError(
                "class_weights",
                "expected null for 1-D input: class_weights weigh the columns of N×C "
                "(multi-label) input",
                kind="not_applicable",
            )
        weight *= check_weights(weights.class_weights, "class_weights", c, "one weight per column")
    counted = np.ones(x.shape, dtype=bool)
    if weights.mask is not None:
        counted = _mask(weights.mask, x.shape, field)
        weight *= counted

    ts = t
    if options.smoothing.label_smoothing:
        eps = options.smoothing.label_smoothing
        ts = t * (1.0 - eps) + 0.5 * eps
    pw = _per_column("pos_weight", weights.pos_weight, x.ndim, c, high=None)
    terms = _bce_terms(x, ts, pw, from_logits, options)
    focal = options.focal
    if focal.active:
        alpha = _per_column("focal_alpha", focal.focal_alpha, x.ndim, c, high=1.0)
        losses, grad = _focal_terms(terms, ts, focal.focal_gamma, alpha, options)
    else:
        losses, grad = terms.bce, terms.d_bce
    losses = weight * losses
    if grad is not None:
        grad = weight * grad
        if terms.inside is not None and not behaviour.one_minus:
            grad[~terms.inside] = 0.0  # the gradient of the clipped function

    batch = Batch(
        field=field, n_samples=n, n_classes=c, counted=counted, weights=weight,
        weights_field="sample_weights" if weights.sample_weights is not None
        else "class_weights",
    )
    if behaviour.sample_mean and x.ndim == 2:
        # Keras: the mean over the last axis is each sample's loss.
        losses = losses.mean(axis=1)
        if grad is not None:
            grad /= c
        batch = Batch(
            field=field, n_samples=n, n_classes=c, counted=np.ones(n, dtype=bool),
            weights=weight.mean(axis=1), weights_field=batch.weights_field,
        )
    result = finish(losses, grad, batch, options, n_clipped=terms.n_clipped)
    return with_state(result, batch, from_logits=from_logits, labelled=False)


def _bce_terms(
    x: np.ndarray,
    ts: np.ndarray,
    pw: np.ndarray | float | None,
    from_logits: bool,
    options: LossOptions,
) -> _Terms:
    """The binary cross-entropy of each element and its derivative, by the convention's
    formula (the exact softplus / log1p forms unless a library writes it otherwise);
    ``pw`` weighs the positive term."""
    behaviour = options.behaviour
    want_gradient = options.return_gradient
    pos_t = ts if pw is None else pw * ts
    if from_logits and behaviour.torch_logits:
        return _torch_logit_terms(x, ts, pw, want_gradient)
    if from_logits and not behaviour.clip_after_link:
        # -log σ(x) = softplus(-x) and -log(1 - σ(x)) = softplus(x): stable for any x.
        log_prob, log_comp = -softplus(-x), -softplus(x)
        bce = -(pos_t * log_prob + (1.0 - ts) * log_comp)
        if not (want_gradient or options.focal.active):
            return _Terms(bce, None, x, x, None, None, None, 0, 1.0)  # nothing else is read
        # σ(x) and 1 - σ(x) = σ(-x) as exp of the logs above: no cancellation, no overflow.
        prob, comp = np.exp(log_prob), np.exp(log_comp)
        d_bce = (1.0 - ts) * prob - pos_t * comp if want_gradient else None
        return _Terms(bce, d_bce, prob, comp, log_prob, log_comp, None, 0, prob * comp)

    eps = options.clipping.epsilon
    # The sigmoid as Keras (jax.nn.sigmoid) and scikit-learn (scipy's expit) compute it,
    # before they clip: 1 - p of a p near 1 depends on its last bit.
    p = 1.0 / (1.0 + np.exp(-x)) if from_logits else x
    if eps is None:  # PyTorch: no clipping (its log terms are clamped instead)
        return _unclipped_terms(p, ts, pos_t, options)
    inside = (p >= eps) & (1.0 - p >= eps)  # 1 - eps may round to 1: see categorical
    n_clipped = int(inside.size - np.count_nonzero(inside))
    dprob: np.ndarray | float = p * (1.0 - p) if from_logits else 1.0
    if behaviour.one_minus:
        # Keras and scikit-learn: log(1 - o) of the clipped o, as they write it.
        o = np.clip(p, eps, 1.0 - eps)
        bce = -(pos_t * np.log(o) + (1.0 - ts) * np.log(1.0 - o))
        d_bce = None
        if want_gradient:
            d_bce = np.where(inside, (1.0 - ts) / (1.0 - o) - pos_t / o, 0.0) * dprob
        return _Terms(bce, d_bce, p, 1.0 - p, None, None, inside, n_clipped, dprob)

    prob = np.clip(p, eps, 1.0 - eps)
    # 1 - p: exact above 0.5 (Sterbenz) and clipped to eps there; log1p(-p) is exact
    # for small p, where log(1 - p) would lose digits.
    high = p > 0.5
    comp = np.where(high, np.maximum(1.0 - p, eps), 1.0 - prob)
    log_comp = np.log(comp)
    log_comp[~high] = np.log1p(-prob[~high])
    log_prob = np.log(prob)
    bce = -(pos_t * log_prob + (1.0 - ts) * log_comp)
    d_bce = (1.0 - ts) / comp - pos_t / prob if want_gradient else None
    return _Terms(bce, d_bce, prob, comp, None, None, inside, n_clipped, 1.0)


def _torch_logit_terms(
    x: np.ndarray, ts: np.ndarray, pw: np.ndarray | float | None, want_gradient: bool
) -> _Terms:
    """PyTorch's ``binary_cross_entropy_with_logits``, term by term as PyTorch writes it:
    ``(1 - t) x - (1 + (pw - 1) t) log_sigmoid(x)`` with
    ``log_sigmoid(x) = min(x, 0) - log1p(exp(-|x|))``, and its backward
    ``(pw t + 1 - t) σ(x) - pw t`` with ``σ(x) = 1 / (1 + exp(-x))``. For t = 0 and
    x << 0 the first form cancels (PyTorch's value, not the exact softplus)."""
    log_sigmoid = np.minimum(x, 0.0) - np.log1p(np.exp(-np.abs(x)))
    lw = 1.0 if pw is None else 1.0 + (pw - 1.0) * ts
    bce = (1.0 - ts) * x - lw * log_sigmoid
    prob = 1.0 / (1.0 + np.exp(-x))
    pos_t = ts if pw is None else pw * ts
    d_bce = (pos_t + 1.0 - ts) * prob - pos_t if want_gradient else None
    return _Terms(bce, d_bce, prob, 1.0 - prob, None, None, None, 0, prob * (1.0 - prob))


def _unclipped_terms(
    p: np.ndarray, ts: np.ndarray, pos_t: np.ndarray, options: LossOptions
) -> _Terms:
    """PyTorch's ``binary_cross_entropy``: each log term clamped at ``log_floor`` (-100)
    instead of clipping p, and its backward ``(p - t) / max(p (1 - p), 1e-12)``, which
    ignores the clamp."""
    floor = options.behaviour.log_floor
    assert floor is not None
    log_prob = np.maximum(np.log(p), floor)
    log_comp = np.maximum(np.log1p(-p), floor)
    bce = -(pos_t * log_prob + (1.0 - ts) * log_comp)
    d_bce = None
    if options.return_gradient:
        d_bce = (p - ts) / np.maximum((1.0 - p) * p, _PYTORCH_BCE_EPSILON)
    return _Terms(bce, d_bce, p, 1.0 - p, None, None, None, 0, 1.0)


def _focal_terms(
    terms: _Terms,
    ts: np.ndarray,
    gamma: float,
    alpha: np.ndarray | float | None,
    options: LossOptions,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Binary focal loss ``α_t m^γ BCE`` with ``m = 1 - p_t``, composed on the BCE terms.

    ``p_t = p t + (1 - p)(1 - t)`` and ``α_t = α t + (1 - α)(1 - t)`` (1 without alpha).
    The derivative is ``α_t m^γ (γ (m'/m) BCE + BCE')`` with ``m' = (1 - 2t) dp/dx``.
    """
    alpha_t = 1.0 if alpha is None else alpha * ts + (1.0 - alpha) * (1.0 - ts)
    if options.behaviour.one_minus:
        # torchvision and Keras: 1 - p_t from the rounded p_t, as they write it.
        m = 1.0 - (terms.prob * ts + (1.0 - terms.prob) * (1.0 - ts))
        modulator = m**gamma
        losses = alpha_t * modulator * terms.bce
        if terms.d_bce is None:
            return losses, None
        d_m = (1.0 - 2.0 * ts) * terms.dprob
        d_modulator = gamma * m ** (gamma - 1.0) * d_m if gamma > 0 else 0.0
        return losses, alpha_t * (d_modulator * terms.bce + modulator * terms.d_bce)

    # m = p (1 - t) + (1 - p) t, a sum of non-negative terms: no cancellation. For logits
    # it is taken in log space (log p = -softplus(-x) is exact where p rounds to 1), and
    # m^γ as exp(γ log m): a tiny 1 - m raised to a huge γ keeps its effect.
    if terms.log_prob is not None and terms.log_comp is not None and gamma > 0:
        log_m = np.logaddexp(np.log(1.0 - ts) + terms.log_prob, np.log(ts) + terms.log_comp)
        modulator = np.exp(gamma * log_m)
    else:
        log_m = None
        modulator = (terms.prob * (1.0 - ts) + terms.comp * ts) ** gamma
    losses = alpha_t * modulator * terms.bce
    if terms.d_bce is None:
        return losses, None
    # γ m^(γ-1) m' written as γ m^γ (m'/m): finite where m underflows to 0.
    if log_m is not None:
        assert terms.log_prob is not None and terms.log_comp is not None
        ratio = (1.0 - 2.0 * ts) * np.exp(terms.log_prob + terms.log_comp - log_m)
    else:
        m = terms.prob * (1.0 - ts) + terms.comp * ts
        d_m = (1.0 - 2.0 * ts) * terms.dprob
        ratio = np.divide(d_m, m, out=np.zeros_like(terms.bce), where=m > 0)
    return losses, alpha_t * modulator * (gamma * ratio * terms.bce + terms.d_bce)


def _mask(value: Any, shape: tuple[int, ...], field: str) -> np.ndarray:
    m = as_float_array(value, "mask", ndim=(1, 2))
    check_same_shape(m, "mask", shape, field)
    not_binary = (m != 0) & (m != 1)
    if not_binary.any():
        pos = first_index(not_binary)
        raise InputError(
            "mask", f"expected 0 or 1, got {number_text(m[pos])}", position=pos,
            kind="out_of_range",
        )
    return m == 1


def _per_column(
    field: str, value: Any, ndim: int, c: int, *, high: float | None
) -> np.ndarray | float | None:
    """A binary option given as a scalar or one value per column (N×C input only)."""
    if value is None:
        return None
    if np.ndim(value) == 0:
        return float(per_class_value(field, value, 1, low=0.0, high=high, per="column")[0])
    if ndim == 1:
        arr = as_float_array(value, field, ndim=1)
        raise InputError(
            field, f"expected a number for 1-D input, got {arr.shape[0]} values",
            kind="shape_mismatch",
        )
    return per_class_value(field, value, c, low=0.0, high=high, per="column")


def _check_hard_targets(x: np.ndarray, t: np.ndarray, options: LossOptions) -> None:
    library = options.behaviour.library
    if x.ndim != 1:
        raise InputError(
            "targets", f"{library}'s log_loss takes binary input of shape N (the "
            "probability or logit of class 1); N×C binary input has no equivalent there",
            kind="not_in_convention",
        )
    soft = (t != 0) & (t != 1)
    if soft.any():
        pos = first_index(soft)
        raise InputError(
            "targets", f"{library}'s log_loss takes 0/1 labels, got a soft target "
            f"{number_text(t[pos])}", position=pos, kind="not_in_convention",
        )
