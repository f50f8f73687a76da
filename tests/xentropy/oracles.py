"""Reference answers from the real libraries, for the ``convention=`` tests.

Every function takes plain NumPy inputs and xentropy's option names and returns an
:class:`Answer` ``(value, gradient)`` computed by the named library itself in float64:

- ``value``: the reduced loss (a float) for reduction "mean"/"sum"; the per-sample
  losses (an array) for "none";
- ``gradient``: d value / d input (for "none": of the sum of the losses), the input's
  shape — autograd of the library's call (PyTorch, Keras/JAX), or for scikit-learn,
  which has no gradients, the closed form of its own expression (:func:`sklearn_gradient`).

Nothing here imports xentropy: these are the independent oracles. Each library is
imported lazily, so a test can ``pytest.importorskip`` it first.

Choices made here (the behaviour spec for the lead says more):

- **PyTorch**: float64 tensors on CPU. Categorical probabilities go through
  ``F.nll_loss(torch.log(p), ...)`` (labels) or ``-(w * t * log p).sum(1)`` reduced as
  ``cross_entropy``'s probability-target mode does (mean divides by N). Binary focal is
  torchvision's ``sigmoid_focal_loss`` formula, re-implemented in torch below from
  ``torchvision/ops/focal_loss.py`` (torchvision from PyPI does not import beside this
  CPU build of torch); autograd gives its gradient.
- **Keras**: Keras 3 on the **JAX backend** with ``jax_enable_x64``, for values *and*
  gradients (``jax.grad`` over the Keras loss call, one process, no subprocess). The
  NumPy backend was not used: it has no gradients, and it differs from the JAX, TF and
  torch backends in one formula (``binary_crossentropy(from_logits=True)`` there clips
  ``sigmoid(x)`` to [1e-7, 1-1e-7] before the log; the others use a stable
  log-sigmoid). One thing is switched off (:func:`_keras`): the entry ``"float64" ->
  "float32"`` of ``keras.src.backend.common.dtypes.BIT64_TO_BIT32_DTYPE``, the table
  ``result_type`` uses to force 64-bit dtypes to 32 bits on every backend but
  TensorFlow. With it, ``ops.mean`` (the mean over the last axis of every binary loss)
  computes float64 input in float32 (errors ~1e-7); the NumPy backend's
  ``convert_to_tensor`` rounds everything to float32. After the patch every Keras loss
  here equals its float64 formula to ~2e-16 (``test_oracles.py`` checks it).
- **Keras binary input of shape N** is passed to Keras as N×1 (one column per sample;
  per-sample losses of shape N). Keras itself would read a shape-(N,) ``y_pred`` as a
  single sample with N columns (reduction None then returns one number, the mean).
- **Keras integer labels with label smoothing or focal**: ``SparseCategoricalCrossentropy``
  has neither, so the oracle calls ``CategoricalCrossentropy`` /
  ``CategoricalFocalCrossentropy`` on ``one_hot(labels)``; together with
  ``ignore_index`` there is no Keras call (ValueError here).
- **scikit-learn**: ``log_loss(labels, p, sample_weight, normalize, labels=range(C))``;
  logits through ``scipy.special.softmax`` / ``expit`` first; reduction "none" is one
  ``log_loss(..., normalize=False)`` call per sample, times its sample weight.
"""

from __future__ import annotations

import os
import sys
from functools import cache
from typing import Any, NamedTuple

import numpy as np

KERAS_EPSILON = 1e-7
SKLEARN_EPSILON = float(np.finfo(np.float64).eps)


class Answer(NamedTuple):
    value: Any  # float for "mean"/"sum", ndarray of per-sample losses for "none"
    gradient: np.ndarray


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"unknown reduction {reduction!r}")


# ----------------------------------------------------------------------------- PyTorch


@cache
def _torch() -> Any:
    import torch

    return torch


def _t(a: Any, *, grad: bool = False, dtype: str = "float64") -> Any:
    torch = _torch()
    t = torch.tensor(np.asarray(a), dtype=getattr(torch, dtype))
    return t.requires_grad_(True) if grad else t


def _torch_answer(loss: Any, inp: Any, reduction: str) -> Answer:
    (loss.sum() if reduction == "none" else loss).backward()
    grad = inp.grad.detach().numpy().copy()
    value = loss.detach().numpy().copy()
    return Answer(value if reduction == "none" else float(value), grad)


def pytorch_categorical(
    scores: np.ndarray,
    labels: np.ndarray | None = None,
    targets: np.ndarray | None = None,
    *,
    from_logits: bool,
    class_weights: np.ndarray | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> Answer:
    """``F.cross_entropy`` (logits) or ``F.nll_loss(torch.log(p))`` / ``-(w t log p).sum(1)``."""
    import torch.nn.functional as F

    torch = _torch()
    _check_reduction(reduction)
    if (labels is None) == (targets is None):
        raise ValueError("exactly one of labels, targets")
    x = _t(scores, grad=True)
    w = None if class_weights is None else _t(class_weights)
    if from_logits:
        target = _t(labels, dtype="int64") if labels is not None else _t(targets)
        loss = F.cross_entropy(
            x, target, weight=w, ignore_index=ignore_index, reduction=reduction,
            label_smoothing=label_smoothing,
        )
        return _torch_answer(loss, x, reduction)
    if label_smoothing:
        raise ValueError("F.nll_loss has no label_smoothing (not in the pytorch convention)")
    if labels is not None:
        loss = F.nll_loss(
            torch.log(x), _t(labels, dtype="int64"), weight=w, ignore_index=ignore_index,
            reduction=reduction,
        )
        return _torch_answer(loss, x, reduction)
    t = _t(targets)
    per_sample = -((t * torch.log(x)) if w is None else (w * t * torch.log(x))).sum(1)
    # cross_entropy_loss_prob_target: "mean" divides by N = numel / C.
    loss = {"none": per_sample, "sum": per_sample.sum(), "mean": per_sample.sum() / x.shape[0]}
    return _torch_answer(loss[reduction], x, reduction)


def _binary_weight(
    shape: tuple[int, ...], class_weights: np.ndarray | None, sample_weights: np.ndarray | None
) -> np.ndarray | None:
    """PyTorch ``weight`` = sample_weights[:, None] * class_weights (broadcast to the input)."""
    if class_weights is None and sample_weights is None:
        return None
    w = np.ones(shape)
    if sample_weights is not None:
        s = np.asarray(sample_weights, dtype=np.float64)
        w = w * (s[:, None] if len(shape) == 2 else s)
    if class_weights is not None:
        if len(shape) != 2:
            raise ValueError("class_weights needs N×C input")
        w = w * np.asarray(class_weights, dtype=np.float64)[None, :]
    return w


def pytorch_binary(
    scores: np.ndarray,
    targets: np.ndarray,
    *,
    from_logits: bool,
    class_weights: np.ndarray | None = None,
    sample_weights: np.ndarray | None = None,
    pos_weight: float | np.ndarray | None = None,
    reduction: str = "mean",
) -> Answer:
    """``F.binary_cross_entropy_with_logits`` (logits) or ``F.binary_cross_entropy`` (p)."""
    import torch.nn.functional as F

    _check_reduction(reduction)
    x = _t(scores, grad=True)
    t = _t(targets)
    w = _binary_weight(tuple(x.shape), class_weights, sample_weights)
    wt = None if w is None else _t(w)
    if from_logits:
        pw = None if pos_weight is None else _t(np.asarray(pos_weight, dtype=np.float64))
        loss = F.binary_cross_entropy_with_logits(
            x, t, weight=wt, pos_weight=pw, reduction=reduction
        )
    else:
        if pos_weight is not None:
            raise ValueError("F.binary_cross_entropy has no pos_weight")
        loss = F.binary_cross_entropy(x, t, weight=wt, reduction=reduction)
    return _torch_answer(loss, x, reduction)


def torchvision_sigmoid_focal_loss(
    inputs: Any, targets: Any, alpha: float = 0.25, gamma: float = 2, reduction: str = "none"
) -> Any:
    """torchvision.ops.sigmoid_focal_loss, the formula of torchvision/ops/focal_loss.py."""
    import torch.nn.functional as F

    torch = _torch()
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    if reduction == "mean":
        loss = loss.mean()
    elif reduction == "sum":
        loss = loss.sum()
    return loss


def pytorch_focal(
    logits: np.ndarray,
    targets: np.ndarray,
    *,
    focal_gamma: float = 2.0,
    focal_alpha: float | None = None,
    reduction: str = "mean",
) -> Answer:
    """torchvision ``sigmoid_focal_loss(x, t, alpha, gamma, reduction)``; alpha None → 0.25."""
    _check_reduction(reduction)
    x = _t(logits, grad=True)
    alpha = 0.25 if focal_alpha is None else focal_alpha
    loss = torchvision_sigmoid_focal_loss(
        x, _t(targets), alpha=alpha, gamma=focal_gamma, reduction=reduction
    )
    return _torch_answer(loss, x, reduction)


# ----------------------------------------------------------------------------- Keras


@cache
def _keras() -> Any:
    """Keras 3 on JAX in float64, with the float64→float32 type-promotion entry switched off."""
    if "keras" in sys.modules:
        import keras
    else:
        previous = os.environ.get("KERAS_BACKEND")
        os.environ["KERAS_BACKEND"] = "jax"
        try:
            import jax

            # Before Keras creates any array: without x64, float64 requests silently give
            # float32 arrays.
            jax.config.update("jax_enable_x64", True)
            import keras
        finally:
            if previous is None:
                os.environ.pop("KERAS_BACKEND", None)
            else:
                os.environ["KERAS_BACKEND"] = previous
    if keras.backend.backend() != "jax":
        raise RuntimeError(
            f"the Keras oracle needs the JAX backend; keras was already imported with "
            f"{keras.backend.backend()!r}"
        )
    import jax

    jax.config.update("jax_enable_x64", True)
    keras.config.set_floatx("float64")
    if keras.config.epsilon() != KERAS_EPSILON:
        raise RuntimeError(f"keras epsilon is {keras.config.epsilon()}, expected 1e-7")
    from keras.src.backend.common import dtypes

    # THE patch: keras.src.backend.common.dtypes._lattice_result_type ends with
    # BIT64_TO_BIT32_DTYPE.get(out_dtype, out_dtype), which turns "float64" into
    # "float32" except on TensorFlow. That makes ops.mean (binary losses' mean over the
    # last axis) compute in float32. TensorFlow's own entry is "float64"; use it.
    dtypes.BIT64_TO_BIT32_DTYPE["float64"] = "float64"
    return keras


def keras_or_none() -> Any:
    """The configured Keras module, or None when keras or jax is not installed.

    (``pytest.importorskip("keras")`` would import Keras on its default TensorFlow backend.)
    """
    import importlib.util

    if importlib.util.find_spec("keras") is None or importlib.util.find_spec("jax") is None:
        return None
    return _keras()


def keras_float32_downcast_is_off() -> bool:
    from keras.src.backend.common import dtypes

    return bool(dtypes.result_type("float64") == "float64")


_KERAS_REDUCTION = {"mean": "sum_over_batch_size", "sum": "sum", "none": None}


def _keras_answer(loss_obj: Any, y_true: Any, scores: np.ndarray, sample_weights: Any,
                  reduction: str, shape_back: tuple[int, ...] | None = None) -> Answer:
    import jax
    import jax.numpy as jnp

    sw = None if sample_weights is None else np.asarray(sample_weights, dtype=np.float64)

    def f(z: Any) -> Any:
        out = loss_obj(y_true, z, sample_weight=sw)
        return (jnp.sum(out) if reduction == "none" else out), out

    (_, out), grad = jax.value_and_grad(f, has_aux=True)(jnp.asarray(scores, dtype=jnp.float64))
    grad = np.asarray(grad, dtype=np.float64)
    if shape_back is not None:
        grad = grad.reshape(shape_back)
    out = np.asarray(out, dtype=np.float64)
    return Answer(out.copy() if reduction == "none" else float(out), grad.copy())


def keras_categorical(
    scores: np.ndarray,
    labels: np.ndarray | None = None,
    targets: np.ndarray | None = None,
    *,
    from_logits: bool,
    sample_weights: np.ndarray | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    focal_gamma: float | None = None,
    focal_alpha: float | np.ndarray | None = None,
    reduction: str = "mean",
) -> Answer:
    """(Sparse)CategoricalCrossentropy / CategoricalFocalCrossentropy.

    Focal when ``focal_gamma`` or ``focal_alpha`` is given (Keras defaults gamma=2.0,
    alpha=0.25 for the one not given).
    """
    keras = _keras()
    _check_reduction(reduction)
    if (labels is None) == (targets is None):
        raise ValueError("exactly one of labels, targets")
    focal = focal_gamma is not None or focal_alpha is not None
    red = _KERAS_REDUCTION[reduction]
    if labels is not None and not focal and not label_smoothing:
        loss_obj = keras.losses.SparseCategoricalCrossentropy(
            from_logits=from_logits, ignore_class=ignore_index, reduction=red
        )
        return _keras_answer(loss_obj, np.asarray(labels), scores, sample_weights, reduction)
    if labels is not None:
        if ignore_index is not None:
            raise ValueError("no Keras loss has ignore_class together with "
                             "label_smoothing or focal")
        targets = np.eye(np.shape(scores)[1])[np.asarray(labels)]
    elif ignore_index is not None:
        raise ValueError("ignore_class needs integer labels")
    if focal:
        alpha = 0.25 if focal_alpha is None else focal_alpha
        if isinstance(alpha, np.ndarray):
            alpha = [float(a) for a in alpha]
        loss_obj = keras.losses.CategoricalFocalCrossentropy(
            alpha=alpha, gamma=2.0 if focal_gamma is None else focal_gamma,
            from_logits=from_logits, label_smoothing=label_smoothing, reduction=red,
        )
    else:
        loss_obj = keras.losses.CategoricalCrossentropy(
            from_logits=from_logits, label_smoothing=label_smoothing, reduction=red
        )
    return _keras_answer(
        loss_obj, np.asarray(targets, dtype=np.float64), scores, sample_weights, reduction
    )


def keras_binary(
    scores: np.ndarray,
    targets: np.ndarray,
    *,
    from_logits: bool,
    sample_weights: np.ndarray | None = None,
    label_smoothing: float = 0.0,
    focal_gamma: float | None = None,
    focal_alpha: float | np.ndarray | None = None,
    reduction: str = "mean",
) -> Answer:
    """BinaryCrossentropy / BinaryFocalCrossentropy; per-sample = mean over the last axis.

    Shape-N input is sent as N×1. Focal when ``focal_gamma`` or ``focal_alpha`` is given;
    ``apply_class_balancing`` is ``focal_alpha is not None``.
    """
    keras = _keras()
    _check_reduction(reduction)
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    shape_back = None
    if scores.ndim == 1:
        shape_back = scores.shape
        scores, targets = scores[:, None], targets[:, None]
    red = _KERAS_REDUCTION[reduction]
    if focal_gamma is not None or focal_alpha is not None:
        alpha = 0.25 if focal_alpha is None else focal_alpha
        if isinstance(alpha, np.ndarray):
            alpha = [float(a) for a in alpha]
        loss_obj = keras.losses.BinaryFocalCrossentropy(
            apply_class_balancing=focal_alpha is not None, alpha=alpha,
            gamma=2.0 if focal_gamma is None else focal_gamma, from_logits=from_logits,
            label_smoothing=label_smoothing, reduction=red,
        )
    else:
        loss_obj = keras.losses.BinaryCrossentropy(
            from_logits=from_logits, label_smoothing=label_smoothing, reduction=red
        )
    return _keras_answer(loss_obj, targets, scores, sample_weights, reduction, shape_back)


# ----------------------------------------------------------------------------- scikit-learn


def _sk_probabilities(scores: np.ndarray, from_logits: bool) -> np.ndarray:
    from scipy.special import expit, softmax

    scores = np.asarray(scores, dtype=np.float64)
    if not from_logits:
        return scores
    return expit(scores) if scores.ndim == 1 else softmax(scores, axis=1)


def sklearn_value(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    from_logits: bool,
    sample_weights: np.ndarray | None = None,
    reduction: str = "mean",
) -> Any:
    """``log_loss``: N×C scores with integer labels, or shape-N scores of class 1 with 0/1
    labels. "none": one ``log_loss(normalize=False)`` per sample, times its weight."""
    from sklearn.metrics import log_loss

    _check_reduction(reduction)
    p = _sk_probabilities(scores, from_logits)
    y = np.asarray(labels).astype(np.int64)
    classes = list(range(p.shape[1] if p.ndim == 2 else 2))
    sw = None if sample_weights is None else np.asarray(sample_weights, dtype=np.float64)
    if reduction == "none":
        # log_loss refuses a single zero weight, so weigh the one-sample loss here: these
        # are the terms its weighted sum (np.dot(loss, sample_weight)) adds up.
        per = np.array([
            log_loss(y[i:i + 1], p[i:i + 1], normalize=False, labels=classes)
            for i in range(len(y))
        ])
        return per if sw is None else per * sw
    return float(log_loss(y, p, normalize=reduction == "mean", sample_weight=sw,
                          labels=classes))


def sklearn_gradient(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    from_logits: bool,
    sample_weights: np.ndarray | None = None,
    reduction: str = "mean",
) -> np.ndarray:
    """Closed-form derivative of ``log_loss``'s own expression (it has no gradients).

    ``log_loss`` = Σ_i s_i·(−log clip(p_{i,y_i}, eps, 1−eps)) / D, eps = float64 machine
    eps, D = Σ s (mean) or 1 (sum, none); shape-N input uses the column [1 − p, p] of the
    label, clipped after 1 − p is formed. Where clipped, the derivative is 0.
    """
    p = _sk_probabilities(scores, from_logits)
    y = np.asarray(labels).astype(np.int64)
    n = len(y)
    s = np.ones(n) if sample_weights is None else np.asarray(sample_weights, dtype=np.float64)
    d = s.sum() if reduction == "mean" else 1.0
    eps = SKLEARN_EPSILON
    if p.ndim == 1:
        col = np.where(y == 1, p, 1.0 - p)  # the probability sklearn takes the log of
        live = (col > eps) & (col < 1 - eps)
        if from_logits:  # d(−log σ)/dx = σ − 1, d(−log(1 − σ))/dx = σ
            g = p - (y == 1)
        else:
            safe = np.where(live, col, 0.5)
            g = np.where(y == 1, -1.0 / safe, 1.0 / safe)
        return np.where(live, s * g / d, 0.0)
    rows = np.arange(n)
    py = p[rows, y]
    live = (py > eps) & (py < 1 - eps)
    if from_logits:
        g = p.copy()
        g[rows, y] -= 1.0
    else:
        g = np.zeros_like(p)
        g[rows, y] = -1.0 / np.where(live, py, 0.5)
    return np.where(live[:, None], (s / d)[:, None] * g, 0.0)


def sklearn_log_loss(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    from_logits: bool,
    sample_weights: np.ndarray | None = None,
    reduction: str = "mean",
) -> Answer:
    """``log_loss`` value and the closed-form gradient of its expression."""
    kw = dict(from_logits=from_logits, sample_weights=sample_weights, reduction=reduction)
    return Answer(sklearn_value(scores, labels, **kw), sklearn_gradient(scores, labels, **kw))
