"""Per-class means of the per-sample NLL and Brier score (``per_class[k].nll``/``.brier``).

The mean over the samples labelled k, weighted as everywhere by the sample weights, so
that the class means recombine into the top-level means:

    Σ_k W_k · nll_k / W = nll   (unweighted: Σ_k count_k · nll_k / N),

with W_k the weight of the samples labelled k and W the total weight (likewise for the
Brier score).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from xentropy._validation import as_float_array, check_labels, check_length
from xentropy.calibration.metrics import _check_sample_weights


@dataclass(frozen=True)
class ClassScores:
    """The per-class means of one class k.

    Attributes:
      class_index: k.
      count: samples labelled k.
      weight: their total weight (``count`` without weights).
      nll, brier: the weighted means over those samples; ``None`` when ``weight`` is 0.
    """

    class_index: int
    count: int
    weight: float
    nll: float | None
    brier: float | None


def per_class_scores(
    nll: ArrayLike,
    brier: ArrayLike,
    labels: ArrayLike,
    *,
    n_classes: int,
    sample_weights: ArrayLike | None = None,
) -> tuple[ClassScores, ...]:
    """Mean NLL and Brier score over the samples of each class.

    Args:
      nll: shape (N,): the per-sample NLL −log p(label) (in any units).
      brier: shape (N,): the per-sample Brier score (multi-class: Σ_c (p_c − [c = y])²).
      labels: shape (N,), ints in [0, n_classes).
      n_classes: C.
      sample_weights: shape (N,), >= 0 with a positive sum; repeat counts.

    Returns:
      C :class:`ClassScores`, k = 0..C−1: nll_k = Σ_{y_i = k} w_i nll_i / W_k and
      brier_k likewise (one ``np.bincount`` each, all classes at once).

    Raises:
      InputError: naming ``nll``, ``brier``, ``labels`` or ``sample_weights``.

    >>> s = per_class_scores([0.1, 0.5, 2.0], [0.02, 0.3, 1.1], [0, 0, 2], n_classes=3)
    >>> [(k.count, k.nll, k.brier) for k in s]
    [(2, 0.3, 0.16), (0, None, None), (1, 2.0, 1.1)]
    """
    losses = as_float_array(nll, "nll", ndim=1)
    n_samples = losses.shape[0]
    scores = as_float_array(brier, "brier", ndim=1)
    check_length(scores, "brier", n_samples, "one score per sample")
    y = check_labels(labels, n_samples, int(n_classes))
    w = _check_sample_weights(sample_weights, n_samples)
    count = np.bincount(y, minlength=n_classes)
    weight = np.bincount(y, weights=w, minlength=n_classes)
    has = weight > 0
    safe = np.where(has, weight, 1.0)
    # Each sample's share of its class's weight (<= 1): w_i * nll_i itself could overflow
    # (w = 1e100, nll = 1e300), a mean of shares cannot, once put back under the largest
    # value (the shares sum to 1 only up to rounding).
    share = w / safe[y]
    top = (losses.max(), scores.max()) if n_samples else (0.0, 0.0)
    nll_k = np.minimum(np.bincount(y, weights=share * losses, minlength=n_classes), top[0])
    brier_k = np.minimum(np.bincount(y, weights=share * scores, minlength=n_classes), top[1])
    return tuple(
        ClassScores(
            class_index=k,
            count=int(count[k]),
            weight=float(weight[k]),
            nll=float(nll_k[k]) if has[k] else None,
            brier=float(brier_k[k]) if has[k] else None,
        )
        for k in range(int(n_classes))
    )
