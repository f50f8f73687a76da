"""Calibration metrics: ECE/MCE/RMSCE from bin sums, per-sample NLL and Brier, weighted means.

:func:`_calibration_error` is the one place where the binned errors are defined, in the
shape of torchmetrics' ``_ce_compute(confidences, accuracies, bin_boundaries, norm)``:
``norm="l1"`` is the ECE, ``"max"`` the MCE, ``"l2"`` the RMSCE; it works on the sums of
:mod:`xentropy.calibration.binning`, for several binned quantities at once.

The per-sample quantities of one set of predictions (:class:`_Model`) come from
probabilities (clipped to [ε, 1 − ε] for the NLL, as for the losses) or from logits
(``log_softmax``; binary: ``softplus``, no clipping needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from xentropy._numerics import log_softmax, sigmoid, softplus
from xentropy._validation import InputError, check_weights
from xentropy.calibration.binning import _BinSums

Norm = Literal["l1", "l2", "max"]


def _calibration_error(sums: _BinSums, norm: Norm) -> np.ndarray:
    """Binned calibration error of each row of ``sums`` (shape (K, S) -> (K,)).

    With W_b the weight, acc_b = Σ w·outcome / W_b and conf_b = Σ w·confidence / W_b of
    bin b, and W = Σ_b W_b:

    * ``"l1"``: ECE = Σ_b (W_b/W) |acc_b − conf_b|
    * ``"max"``: MCE = max over bins with W_b > 0 of |acc_b − conf_b|
    * ``"l2"``: RMSCE = sqrt(Σ_b (W_b/W) (acc_b − conf_b)²)

    so ECE <= RMSCE <= MCE. Empty bins contribute nothing: W_b·|acc_b − conf_b| is computed
    as |Σ w·outcome − Σ w·confidence| (no division for the ECE, exactly 0 when empty).

    >>> from xentropy.calibration.binning import _BinSums
    >>> sums = _BinSums(count=np.array([[3, 0, 1]]), weight=np.array([[3.0, 0.0, 1.0]]),
    ...                 sum_confidence=np.array([[0.85, 0.0, 0.8]]),
    ...                 sum_outcome=np.array([[1.0, 0.0, 1.0]]))
    >>> [round(float(_calibration_error(sums, n)[0]), 6) for n in ("l1", "max", "l2")]
    [0.0875, 0.2, 0.108972]
    """
    gap_mass = np.abs(sums.sum_outcome - sums.sum_confidence)
    total = sums.weight.sum(axis=1)
    if norm == "l1":
        return gap_mass.sum(axis=1) / total
    nonempty = sums.weight > 0
    gap = np.divide(gap_mass, sums.weight, out=np.zeros_like(gap_mass), where=nonempty)
    if norm == "max":
        return gap.max(axis=1)
    # W_b · gap_b² = gap_mass_b · gap_b.
    return np.sqrt((gap_mass * gap).sum(axis=1) / total)


def _check_sample_weights(value: ArrayLike | None, n_samples: int) -> np.ndarray:
    """Weights of shape (N,) (ones when ``None``) with a positive, finite sum."""
    if value is None:
        return np.ones(n_samples)
    w = check_weights(value, "sample_weights", n_samples, "one weight per sample")
    with np.errstate(over="ignore"):  # an infinite sum is reported just below
        total = w.sum()
    if not total > 0:
        raise InputError(
            "sample_weights",
            "expected at least one positive weight, got all zeros",
            kind="out_of_range",
        )
    if not np.isfinite(total):
        raise InputError(
            "sample_weights",
            f"expected weights with a finite sum, got a sum that overflows float64 ({total})",
            kind="overflow",
        )
    return w


def _mean(wn: np.ndarray, x: np.ndarray) -> float:
    """Weighted mean Σ wn_i x_i of ``x`` (N,) with weights ``wn`` (N,) that sum to 1.

    A weighted mean lies between the smallest and largest value; the normalised weights sum
    to 1 only up to rounding, so the dot product is put back into that range (an accuracy of
    1.0000000000000002 is not an answer).
    """
    return float(np.clip(wn @ x, x.min(), x.max()))


@dataclass(frozen=True)
class _Model:
    """Per-sample quantities of one set of predictions, each of shape (N,) unless noted.

    probs: (N,) positive-class probabilities (binary) or (N, C) probability rows.
    predicted: the prediction, bool "class 1" (binary) or the argmax (first on ties).
    confidence: the binned value; outcome: its observed counterpart (0/1);
    correct: top-label (binary: thresholded) correctness; nll: −log p(label) in nats;
    brier: (p − y)² (binary) or Σ_c (p_c − [c = y])².
    """

    probs: np.ndarray
    predicted: np.ndarray
    confidence: np.ndarray
    outcome: np.ndarray
    correct: np.ndarray
    nll: np.ndarray
    brier: np.ndarray


def _from_probabilities(probs: np.ndarray, y: np.ndarray, eps: float) -> _Model:
    """The model of probabilities (N,) (binary) or (N, C), labels (N,), NLL clipping ε."""
    rows = np.arange(y.shape[0])
    if probs.ndim == 1:
        positive = y == 1
        clipped = np.clip(probs, eps, 1.0 - eps)
        # log1p(−p) keeps full precision for the complement of a small p.
        nll = -np.where(positive, np.log(clipped), np.log1p(-clipped))
        return _binary_model(probs, probs > 0.5, positive, nll)
    pred = probs.argmax(axis=1)
    nll = -np.log(np.clip(probs[rows, y], eps, 1.0 - eps))
    return _multiclass_model(probs, pred, y, nll)


def _from_logits(z: np.ndarray, y: np.ndarray, predicted: np.ndarray | None = None) -> _Model:
    """The model of logits (N,) (binary, p = sigmoid) or (N, C) (p = softmax), labels (N,).

    ``predicted``: the top-label prediction, shape (N,) (binary: bool, positive predicted),
    when it must not be taken from ``z`` itself: logits divided by a temperature keep the
    order of the logits as sent, but not always in float64 (they can underflow to equal
    values), so the caller passes the prediction of the logits as sent.
    """
    rows = np.arange(y.shape[0])
    if z.ndim == 1:
        positive = y == 1
        # −log sigmoid(z) = softplus(−z) and −log(1 − sigmoid(z)) = softplus(z), both exact
        # and overflow-free, for any finite z.
        nll = softplus(np.where(positive, -z, z))
        return _binary_model(sigmoid(z), z > 0 if predicted is None else predicted, positive,
                             nll)
    # A row range beyond the float64 range makes (z − max) overflow to −inf inside
    # log_softmax; that is only a problem if it hits the label (checked below).
    with np.errstate(over="ignore"):
        log_p = log_softmax(z)
    nll = -log_p[rows, y]
    if not np.isfinite(nll).all():
        i = int(np.flatnonzero(~np.isfinite(nll))[0])
        raise InputError(
            "logits",
            "expected logits whose softmax is representable in float64, got a label "
            "probability that underflows to 0: the NLL overflows float64",
            position=(i, int(y[i])),
            kind="overflow",
        )
    pred = z.argmax(axis=1) if predicted is None else predicted
    return _multiclass_model(np.exp(log_p), pred, y, nll)


def _binary_model(
    p: np.ndarray, predicted: np.ndarray, positive: np.ndarray, nll: np.ndarray
) -> _Model:
    outcome = positive.astype(np.float64)
    return _Model(
        probs=p,
        predicted=predicted,
        confidence=p,
        outcome=outcome,
        correct=(predicted == positive).astype(np.float64),
        nll=nll,
        brier=(p - outcome) ** 2,
    )


def _multiclass_model(
    probs: np.ndarray, pred: np.ndarray, y: np.ndarray, nll: np.ndarray
) -> _Model:
    rows = np.arange(y.shape[0])
    correct = (pred == y).astype(np.float64)
    # p − onehot(y): a copy of p with 1 subtracted at the label, no N×C one-hot matrix.
    diff = probs.copy()
    diff[rows, y] -= 1.0
    return _Model(
        probs=probs,
        predicted=pred,
        confidence=probs[rows, pred],
        outcome=correct,
        correct=correct,
        nll=nll,
        brier=(diff**2).sum(axis=1),
    )
