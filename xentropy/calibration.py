"""Calibration statistics: reliability bins, ECE/MCE/RMSCE/ACE, NLL, Brier, temperature scaling.

The pure-NumPy core of ``POST /v1/calibration`` (and of the reliability diagram), in the style
of scikit-learn's metrics: data first, keyword-only options, float64 throughout. Binning is
done by ``np.searchsorted``/sorting and one ``np.bincount`` for all bins of all classes: no
Python loop over samples, bins or classes (loops only build the result objects).

Conventions (the HTTP contract, "Precise semantics > Calibration"):

* Input of shape (N,) is binary: the probability (or logit) of class 1. The binned value is
  that probability, a bin's ``accuracy`` is the observed frequency of label 1, the overall
  ``accuracy`` thresholds at p > 0.5 (at logit > 0 for logits, the same rule without the
  rounding of the sigmoid), ``n_classes`` is 2 and ``per_class`` is ``None``.
* Input of shape (N, C) is multi-class: the binned value is the top-label confidence (the
  largest probability) and the outcome is top-label correctness; the prediction is the argmax
  of the input as sent (logits or probabilities), the first index on ties.
* Bins are half-open intervals (lower, upper]; the first bin also holds 0. Bins are found with
  ``searchsorted(inner_edges, value, side="left")``, which is exactly that rule.
* ``"uniform"`` edges are ``k / n_bins``, each correctly rounded (``np.arange(n + 1) / n``,
  not ``linspace``), so a decimal such as 0.6 typed on an edge lands in the bin it closes.
* ``"quantile"`` edges are weighted quantiles of the binned values ("inverted CDF": the inner
  edge k is the smallest value v with W(values <= v) >= k·W/n_bins), so that each bin holds
  ``floor`` or ``ceil`` of N/n_bins samples when the values are distinct. Ties are never split
  across bins: equal edges produce empty, zero-width bins (lower == upper), so exactly
  ``n_bins`` bins are always returned. With weights this is the same as repeating rows.
* Sample weights act as repeat counts: every statistic is weighted, ``count`` stays the number
  of samples. A bin whose samples all have weight 0 is empty (``mean_confidence`` and
  ``accuracy`` are ``None``) even though its ``count`` is positive.
* Probabilities are clipped to [ε, 1 − ε] for the NLL, as for the losses; logits use
  ``log_softmax`` (binary: ``−softplus``) and need no clipping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from xentropy._numerics import FLOAT64_EPS, LN2, log_softmax, logsumexp, sigmoid, softplus
from xentropy._validation import (
    InputError,
    as_float_array,
    check_choice,
    check_distributions,
    check_labels,
    check_length,
    check_range,
    check_scalar,
    check_weights,
)

__all__ = [
    "MAX_BINS",
    "MAX_LOGIT_RANGE",
    "TEMPERATURE_MAX",
    "TEMPERATURE_MIN",
    "CalibrationBin",
    "CalibrationResult",
    "ClassCalibration",
    "TemperatureFit",
    "assign_bins",
    "bin_edges",
    "calibration_report",
    "expected_calibration_error",
    "fit_temperature",
]

#: Largest accepted ``n_bins``: more bins than this are statistically meaningless and would
#: only make the response (one object per bin) large.
MAX_BINS = 10_000
#: Bounds of the fitted temperature. The optimum is searched in [TEMPERATURE_MIN,
#: TEMPERATURE_MAX]; an optimum outside is returned clamped, with a note.
TEMPERATURE_MIN = 1e-3
TEMPERATURE_MAX = 1e3
#: Largest accepted range (max − min) of a logit row when fitting a temperature: the fit
#: evaluates squared logit differences (the variance term of the Newton step) and logits
#: divided by TEMPERATURE_MIN, and both must stay finite in float64.
MAX_LOGIT_RANGE = 1e150

BINNINGS = ("uniform", "quantile")
UNITS = ("nats", "bits")
_MAX_ITERATIONS = 200
_LOG_T_TOLERANCE = 1e-13


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class CalibrationBin:
    """One reliability bin, the interval (lower, upper] (the first bin also holds 0).

    Attributes:
      lower, upper: the edges.
      count: number of samples in the bin.
      weight: sum of their sample weights (equals ``count`` without weights).
      mean_confidence: weighted mean binned value; ``None`` when ``weight`` is 0.
      accuracy: weighted mean outcome (correctness, or frequency of label 1 for binary
        input); ``None`` when ``weight`` is 0.
    """

    lower: float
    upper: float
    count: int
    weight: float
    mean_confidence: float | None
    accuracy: float | None


@dataclass(frozen=True)
class ClassCalibration:
    """Statistics of one class k of multi-class input (serialised with the key ``"class"``).

    Attributes:
      class_index: k.
      count: number of samples labelled k.
      frequency: their (weighted) share of all samples.
      mean_probability: (weighted) mean of p_k over all samples.
      recall: (weighted) share of the samples labelled k that are predicted as k; ``None``
        when no sample (of positive weight) is labelled k.
      ece: class-wise ECE of p_k against the indicator ``label == k``, same binning scheme.
    """

    class_index: int
    count: int
    frequency: float
    mean_probability: float
    recall: float | None
    ece: float


@dataclass(frozen=True)
class TemperatureFit:
    """Temperature scaling (Guo et al. 2017) of the logits: ``softmax(logits / T)``.

    Attributes:
      temperature: the fitted T, in [TEMPERATURE_MIN, TEMPERATURE_MAX].
      nll_before, nll_after: weighted mean NLL at T = 1 and at the fitted T, in ``units``.
      ece_before, ece_after: ECE at T = 1 and at the fitted T (same binning as the report).
      note: ``None``, or why T is not an interior optimum (clamped to a bound, or
        undetermined because the NLL does not depend on T).
    """

    temperature: float
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    note: str | None


@dataclass(frozen=True)
class CalibrationResult:
    """Result of :func:`calibration_report` (field names as in the HTTP response).

    Attributes:
      n_samples: N.
      n_classes: C (2 for binary input of shape (N,)).
      accuracy: weighted top-label accuracy (binary: of the prediction p > 0.5).
      mean_confidence: weighted mean top-label confidence (binary: mean p).
      nll: weighted mean negative log-likelihood of the labels, in ``units``.
      brier: weighted mean Brier score (multi-class: sum over classes of squared errors).
      ece, mce, rmsce: expected, maximum and root-mean-square calibration error.
      ace: ECE over ``n_bins`` equal-mass (quantile) bins.
      bins: ``n_bins`` :class:`CalibrationBin`, in order, empty ones included.
      per_class: one :class:`ClassCalibration` per class (multi-class), else ``None``.
      temperature: the :class:`TemperatureFit` when asked for, else ``None``.
      units, binning, n_bins: the options used.
    """

    n_samples: int
    n_classes: int
    accuracy: float
    mean_confidence: float
    nll: float
    brier: float
    ece: float
    mce: float
    rmsce: float
    ace: float
    bins: tuple[CalibrationBin, ...]
    per_class: tuple[ClassCalibration, ...] | None
    temperature: TemperatureFit | None
    units: str
    binning: str
    n_bins: int

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON-ready Python values, with the contract's key names."""
        out: dict[str, Any] = {
            name: getattr(self, name)
            for name in (
                "n_samples", "n_classes", "accuracy", "mean_confidence", "nll", "brier",
                "ece", "mce", "rmsce", "ace", "units", "binning", "n_bins",
            )
        }
        out["bins"] = [vars(b).copy() for b in self.bins]
        out["per_class"] = None
        if self.per_class is not None:
            out["per_class"] = [
                {"class": c.class_index, **{k: v for k, v in vars(c).items() if k != "class_index"}}
                for c in self.per_class
            ]
        out["temperature"] = None if self.temperature is None else vars(self.temperature).copy()
        return out


# --------------------------------------------------------------------------------------------
# Public building blocks


def bin_edges(
    values: ArrayLike,
    *,
    n_bins: int = 15,
    binning: str = "uniform",
    sample_weights: ArrayLike | None = None,
) -> np.ndarray:
    """Edges of ``n_bins`` bins over [0, 1] for the given values.

    Args:
      values: shape (N,), in [0, 1]; only used by ``"quantile"``.
      n_bins: number of bins, in [1, MAX_BINS].
      binning: ``"uniform"`` (edges k/n_bins) or ``"quantile"`` (weighted inverted-CDF
        quantiles of ``values``, first edge 0 and last edge 1; see the module docstring).
      sample_weights: shape (N,), >= 0 with a positive sum; repeat counts for the quantiles.

    Returns:
      shape (n_bins + 1,), non-decreasing, from 0 to 1.
    """
    v = as_float_array(values, "values", ndim=1)
    check_range(v, "values", low=0.0, high=1.0, what="a probability")
    n = _check_n_bins(n_bins)
    check_choice(binning, "binning", BINNINGS)
    w = _check_sample_weights(sample_weights, v.shape[0])
    return _edges_and_bins(v[None, :], w, n, binning)[0][0]


def assign_bins(values: ArrayLike, edges: ArrayLike) -> np.ndarray:
    """Index of the bin (lower, upper] holding each value; the first bin also holds ``edges[0]``.

    Args:
      values: shape (N,), in [edges[0], edges[-1]].
      edges: shape (B + 1,), non-decreasing.

    Returns:
      shape (N,), int64 in [0, B). With repeated edges a value equal to them goes to the first
      bin they close; the zero-width bins after it stay empty.
    """
    v = as_float_array(values, "values", ndim=1)
    e = as_float_array(edges, "edges", ndim=1)
    if e.shape[0] < 2:
        raise InputError(
            "edges", f"expected at least 2 edges, got {e.shape[0]}", kind="shape_error"
        )
    decreasing = np.diff(e) < 0
    if decreasing.any():
        i = int(np.flatnonzero(decreasing)[0]) + 1
        raise InputError(
            "edges", f"expected non-decreasing edges, got {e[i]:g} after {e[i - 1]:g}",
            position=(i,), kind="value_error",
        )
    check_range(v, "values", low=float(e[0]), high=float(e[-1]), what="a value")
    # side="left" returns i with inner[i-1] < v <= inner[i]: the bin (lower, upper].
    return np.searchsorted(e[1:-1], v, side="left").astype(np.int64)


def expected_calibration_error(
    confidences: ArrayLike,
    outcomes: ArrayLike,
    *,
    n_bins: int = 15,
    binning: str = "uniform",
    sample_weights: ArrayLike | None = None,
) -> float:
    """ECE = Σ_b (W_b / W) |mean outcome_b − mean confidence_b|.

    Args:
      confidences: shape (N,), the binned predicted probabilities, in [0, 1].
      outcomes: shape (N,), the observed outcomes (1 correct / positive, 0 not), in [0, 1].
      n_bins, binning: see :func:`bin_edges`.
      sample_weights: shape (N,), >= 0 with a positive sum.

    Returns:
      the ECE, in [0, 1].
    """
    conf = as_float_array(confidences, "confidences", ndim=1)
    check_range(conf, "confidences", low=0.0, high=1.0, what="a probability")
    out = as_float_array(outcomes, "outcomes", ndim=1)
    check_length(out, "outcomes", conf.shape[0], "one outcome per confidence")
    check_range(out, "outcomes", low=0.0, high=1.0, what="an outcome")
    n = _check_n_bins(n_bins)
    check_choice(binning, "binning", BINNINGS)
    w = _check_sample_weights(sample_weights, conf.shape[0])
    binned = _binned(conf[None, :], out[None, :], w, n, binning)
    return float(binned.errors()[0][0])


def fit_temperature(
    logits: ArrayLike, labels: ArrayLike, *, sample_weights: ArrayLike | None = None
) -> tuple[float, str | None]:
    """Temperature T minimising the weighted NLL of ``softmax(logits / T)`` (Guo et al. 2017).

    With β = 1/T the NLL is convex in β: dNLL/dβ = mean(E_p[z] − z_y) and
    d²NLL/dβ² = mean(Var_p[z]) >= 0, p = softmax(βz). The root of the first derivative is
    found by Newton's method in log β (= −log T), safeguarded by bisection of a bracket, in
    [TEMPERATURE_MIN, TEMPERATURE_MAX], to a relative accuracy of about 1e-13 in T.

    Args:
      logits: shape (N, C), or (N,) for binary logits of class 1 (treated as [0, z]).
      labels: shape (N,), ints in [0, C) (binary: 0/1).
      sample_weights: shape (N,), >= 0 with a positive sum.

    Returns:
      ``(temperature, note)``. ``note`` is ``None`` for an interior optimum; otherwise it says
      why T sits on a bound (the NLL still falls there: at TEMPERATURE_MIN when the predictions
      are separable, at TEMPERATURE_MAX when the logits are no better than uniform guessing) or
      why T = 1 is returned (every row constant: the NLL does not depend on T).
    """
    z = as_float_array(logits, "logits", ndim=(1, 2))
    binary = z.ndim == 1
    y = check_labels(labels, z.shape[0], 2 if binary else z.shape[1])
    w = _check_sample_weights(sample_weights, z.shape[0])
    zc = _centred_logits(z)
    return _solve_temperature(zc, y, w / w.sum())


# --------------------------------------------------------------------------------------------
# The report


def calibration_report(
    probabilities: ArrayLike | None = None,
    labels: ArrayLike | None = None,
    *,
    logits: ArrayLike | None = None,
    n_bins: int = 15,
    binning: str = "uniform",
    sample_weights: ArrayLike | None = None,
    fit_temperature: bool = False,
    units: str = "nats",
    epsilon: float = FLOAT64_EPS,
) -> CalibrationResult:
    """Calibration statistics of probabilistic predictions against integer labels.

    Args:
      probabilities: shape (N,) (binary: probability of class 1) or (N, C) (probability
        rows); exactly one of ``probabilities`` and ``logits``.
      labels: shape (N,), ints: 0/1 for binary input, in [0, C) otherwise.
      logits: shape (N,) (binary: logit of class 1, p = sigmoid) or (N, C) (p = softmax).
      n_bins: number of bins, in [1, MAX_BINS] (default 15).
      binning: ``"uniform"`` (default) or ``"quantile"``.
      sample_weights: shape (N,), >= 0 with a positive, finite sum; repeat counts.
      fit_temperature: also fit temperature scaling (logits only).
      units: ``"nats"`` (default) or ``"bits"``, for the NLL values.
      epsilon: with probabilities, the NLL clips them to [ε, 1 − ε]; in (0, 0.5).

    Returns:
      A :class:`CalibrationResult`. Definitions, with W_b the weight, acc_b the weighted mean
      outcome and conf_b the weighted mean confidence of bin b, W = Σ W_b:

      * ECE = Σ_b (W_b/W) |acc_b − conf_b|; MCE = max over bins with W_b > 0 of
        |acc_b − conf_b|; RMSCE = sqrt(Σ_b (W_b/W)(acc_b − conf_b)²), so
        ECE <= RMSCE <= MCE; ACE = ECE over ``n_bins`` quantile bins.
      * nll: −log p(label), weighted mean; brier: (p − y)² (binary) or Σ_c (p_c − [c = y])².

    Raises:
      InputError: naming the offending field (``"probabilities"``, ``"logits"``,
        ``"labels"``, ``"sample_weights"``, ``"n_bins"``, ``"binning"``,
        ``"fit_temperature"``, ``"units"``, ``"epsilon"``).
    """
    if (probabilities is None) == (logits is None):
        got = "both" if logits is not None else "neither"
        raise InputError(
            "logits" if logits is not None else "probabilities",
            f"expected exactly one of probabilities and logits, got {got}",
            kind="missing" if logits is None else "conflict",
        )
    z: np.ndarray | None = None
    if probabilities is not None:
        # C order whatever the layout sent (FIX: per-class means and the NLL differed in
        # the last ulp between C and Fortran input: numpy sums pairwise only along the
        # contiguous axis).
        probs = np.ascontiguousarray(as_float_array(probabilities, "probabilities", ndim=(1, 2)))
        if probs.ndim == 1:
            check_range(probs, "probabilities", low=0.0, high=1.0, what="a probability")
        else:
            check_distributions(probs, "probabilities")
        shape = probs.shape
    else:
        z = np.ascontiguousarray(as_float_array(logits, "logits", ndim=(1, 2)))
        shape = z.shape
    binary = len(shape) == 1
    n_samples = shape[0]
    n_classes = 2 if binary else shape[1]
    if labels is None:
        raise InputError("labels", "expected one label per sample, got none", kind="missing")
    y = check_labels(labels, n_samples, n_classes)
    w = _check_sample_weights(sample_weights, n_samples)
    n = _check_n_bins(n_bins)
    check_choice(binning, "binning", BINNINGS)
    if not isinstance(fit_temperature, bool | np.bool_):
        raise InputError(
            "fit_temperature", f"expected a boolean, got {fit_temperature!r}", kind="type_error"
        )
    if fit_temperature and z is None:
        raise InputError(
            "fit_temperature",
            "expected logits with fit_temperature, got probabilities: temperature scaling "
            "rescales logits, so it requires logits",
        )
    check_choice(units, "units", UNITS)
    eps = check_scalar(epsilon, "epsilon", low=0.0, high=0.5, low_open=True, high_open=True)

    # Normalised weights (sum 1) for every weighted mean: w_i / W <= 1, so a mean of finite
    # values can never overflow even where their plain sum would.
    wn = w / w.sum()
    per_unit = LN2 if units == "bits" else 1.0

    if z is not None:
        model = _from_logits(z, y)
    else:
        model = _from_probabilities(probs, y, eps)

    binned = _binned(model.confidence[None, :], model.outcome[None, :], w, n, binning)
    ece, mce, rmsce = (float(e[0]) for e in binned.errors())
    if binning == "quantile":
        ace = ece
    else:
        ace = float(
            _binned(model.confidence[None, :], model.outcome[None, :], w, n, "quantile")
            .errors()[0][0]
        )
    nll = _mean(wn, model.nll) / per_unit
    if not math.isfinite(nll):
        # FIX: an NLL near the float64 maximum in nats is beyond it in bits (÷ ln 2); it was
        # sent as null. (Only logits get there: probabilities are clipped to ε.)
        raise InputError(
            "logits", f"the mean NLL overflows float64 in {units}", kind="overflow"
        )

    temperature = None
    if fit_temperature:
        assert z is not None  # checked above
        zc = _centred_logits(z)
        t, note = _solve_temperature(zc, y, wn)
        scaled = _from_logits(zc / t, y)
        nll_after = _mean(wn, scaled.nll) / per_unit
        if nll_after > nll and t != 1.0:
            # The fit minimises the exact NLL, so this can only be floating-point noise near
            # T = 1: keep the input as it is rather than report a (tiny) increase.
            t, nll_after, scaled = 1.0, nll, model
            note = "the fitted temperature did not lower the NLL in float64; T = 1 is kept"
        ece_after = float(
            _binned(scaled.confidence[None, :], scaled.outcome[None, :], w, n, binning)
            .errors()[0][0]
        )
        temperature = TemperatureFit(
            temperature=float(t),
            nll_before=nll,
            nll_after=nll_after,
            ece_before=ece,
            ece_after=ece_after,
            note=note,
        )

    per_class = None if binary else _per_class(model, y, w, wn, n, binning)
    return CalibrationResult(
        n_samples=n_samples,
        n_classes=n_classes,
        accuracy=_mean(wn, model.correct),
        mean_confidence=_mean(wn, model.confidence),
        nll=nll,
        brier=_mean(wn, model.brier),
        ece=ece,
        mce=mce,
        rmsce=rmsce,
        ace=ace,
        bins=binned.bins(0),
        per_class=per_class,
        temperature=temperature,
        units=units,
        binning=binning,
        n_bins=n,
    )


# --------------------------------------------------------------------------------------------
# Validation helpers


def _check_n_bins(n_bins: object) -> int:
    if isinstance(n_bins, bool | np.bool_) or not isinstance(n_bins, int | np.integer):
        raise InputError("n_bins", f"expected an integer, got {n_bins!r}", kind="type_error")
    if not 1 <= n_bins <= MAX_BINS:
        raise InputError(
            "n_bins", f"expected an integer in [1, {MAX_BINS}], got {n_bins}", kind="out_of_range"
        )
    return int(n_bins)


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
    """Weighted mean of ``x`` (N,) with weights ``wn`` (N,) that sum to 1.

    A weighted mean lies between the smallest and largest value; the normalised weights sum
    to 1 only up to rounding, so the dot product is put back into that range (an accuracy of
    1.0000000000000002 is not an answer).
    """
    return float(np.clip(wn @ x, x.min(), x.max()))


# --------------------------------------------------------------------------------------------
# Predictions


@dataclass(frozen=True)
class _Model:
    """Per-sample quantities of one set of predictions, each of shape (N,) unless noted.

    probs: (N,) positive-class probabilities (binary) or (N, C) probability rows.
    confidence: the binned value; outcome: its observed counterpart (0/1);
    correct: top-label (binary: thresholded) correctness; nll in nats; brier.
    """

    probs: np.ndarray
    confidence: np.ndarray
    outcome: np.ndarray
    correct: np.ndarray
    nll: np.ndarray
    brier: np.ndarray


def _from_probabilities(probs: np.ndarray, y: np.ndarray, eps: float) -> _Model:
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


def _from_logits(z: np.ndarray, y: np.ndarray) -> _Model:
    rows = np.arange(y.shape[0])
    if z.ndim == 1:
        positive = y == 1
        # −log sigmoid(z) = softplus(−z) and −log(1 − sigmoid(z)) = softplus(z), both exact
        # and overflow-free, for any finite z.
        nll = softplus(np.where(positive, -z, z))
        return _binary_model(sigmoid(z), z > 0, positive, nll)
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
    return _multiclass_model(np.exp(log_p), z.argmax(axis=1), y, nll)


def _binary_model(
    p: np.ndarray, predicted: np.ndarray, positive: np.ndarray, nll: np.ndarray
) -> _Model:
    outcome = positive.astype(np.float64)
    return _Model(
        probs=p,
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
        confidence=probs[rows, pred],
        outcome=correct,
        correct=correct,
        nll=nll,
        brier=(diff**2).sum(axis=1),
    )


# --------------------------------------------------------------------------------------------
# Binning, vectorised over several binned quantities at once (the top label, or every class)


def _searchsorted_rows(
    a: np.ndarray, v: np.ndarray, *, side: Literal["left", "right"]
) -> np.ndarray:
    """Row-wise ``np.searchsorted``: shape (K, M) sorted rows, (K, L) queries -> (K, L) int64.

    ``out[k, j] = np.searchsorted(a[k], v[k, j], side=side)``, i.e. the number of elements of
    ``a[k]`` that are ``< v[k, j]`` ("left") or ``<= v[k, j]`` ("right"). A bisection run on
    all K·L queries at once: ``M.bit_length()`` vectorised halving steps (a loop over the
    steps, not over rows or queries), O(K·L·log M) work.
    """
    k_rows, m = a.shape
    if k_rows == 1:
        return np.searchsorted(a[0], v[0], side=side)[None, :].astype(np.int64)
    rows = np.arange(k_rows)[:, None]
    # Invariant: the answer lies in [lo, hi]; every step at least halves hi − lo.
    lo = np.zeros(v.shape, np.int64)
    hi = np.full(v.shape, m, np.int64)
    for _ in range(m.bit_length()):
        active = lo < hi
        mid = (lo + hi) // 2  # < hi <= m wherever active
        probe = a[rows, np.minimum(mid, m - 1)]
        beyond = (probe < v) if side == "left" else (probe <= v)
        lo = np.where(active & beyond, mid + 1, lo)
        hi = np.where(active & ~beyond, mid, hi)
    return lo


def _edges_and_bins(
    values: np.ndarray, w: np.ndarray, n_bins: int, binning: str
) -> tuple[np.ndarray, np.ndarray]:
    """Bin edges and bin indices for each row of ``values``.

    Args:
      values: shape (K, N), in [0, 1]: K quantities (the top label, or every class) of the
        N samples, one per row so that sorting and cumulative sums run along contiguous
        memory; each row is binned on its own.
      w: shape (N,), sample weights (repeat counts for the quantiles).
      n_bins: number of bins B.
      binning: ``"uniform"`` or ``"quantile"``.

    Returns:
      ``(edges, bins)``: shape (K, B + 1), and (K, N) int64 in [0, B): each value's bin
      (lower, upper] (the first bin also holds its lower edge).
    """
    k_rows, n_samples = values.shape
    if binning == "uniform":
        # k / n correctly rounded for every k (linspace would give 0.6000000000000001).
        edges = np.arange(n_bins + 1) / n_bins
        # side="left" returns i with inner[i-1] < v <= inner[i]: the bin (lower, upper].
        bins = np.searchsorted(edges[1:-1], values, side="left").astype(np.int64)
        return np.broadcast_to(edges, (k_rows, n_bins + 1)), bins
    order = np.argsort(values, axis=1)  # the order within a run of ties does not matter
    sorted_values = np.take_along_axis(values, order, axis=1)
    cum_weight = np.cumsum(w[order], axis=1)
    targets = np.arange(1, n_bins)[None, :] * cum_weight[:, -1:] / n_bins
    # Inverted-CDF quantile: inner edge k is the first sorted value whose cumulative weight
    # reaches k·W/n. Zero-weight values never start a new step of the cumulative sum, so they
    # are never chosen; integer weights give the same edges as repeated rows.
    idx = np.minimum(_searchsorted_rows(cum_weight, targets, side="left"), n_samples - 1)
    edges = np.empty((k_rows, n_bins + 1))
    edges[:, 0] = 0.0
    edges[:, -1] = 1.0
    edges[:, 1:-1] = np.take_along_axis(sorted_values, idx, axis=1) + 0.0  # −0.0 -> 0.0

    # Bin indices from the sort already done, without searching: the bin of a value is the
    # number of inner edges strictly below it, and since edge k is sorted_values[idx_k], an
    # edge lies below sorted_values[j] exactly when idx_k < start_j, the first position of
    # the run of values equal to sorted_values[j] (ties go to the lowest bin they close).
    run_start = np.ones(sorted_values.shape, dtype=bool)
    run_start[:, 1:] = sorted_values[:, 1:] != sorted_values[:, :-1]
    start = np.maximum.accumulate(np.where(run_start, np.arange(n_samples), 0), axis=1)
    # edges_upto[k, j]: number of inner edges of row k whose index is <= j.
    keys = (idx + n_samples * np.arange(k_rows)[:, None]).ravel()
    edges_upto = np.bincount(keys, minlength=k_rows * n_samples).reshape(k_rows, n_samples)
    np.cumsum(edges_upto, axis=1, out=edges_upto)
    below = np.take_along_axis(edges_upto, np.maximum(start - 1, 0), axis=1)
    sorted_bins = np.where(start > 0, below, 0)
    bins = np.empty((k_rows, n_samples), dtype=np.int64)
    np.put_along_axis(bins, order, sorted_bins, axis=1)
    return edges, bins


@dataclass(frozen=True)
class _Binned:
    """Sums per (row, bin), each of shape (K, n_bins), and the edges (K, n_bins + 1)."""

    edges: np.ndarray
    count: np.ndarray
    weight: np.ndarray
    sum_confidence: np.ndarray
    sum_outcome: np.ndarray
    #: The weights were multiplied by 2**-shift (see _binned); bins() reports them unscaled.
    shift: int = 0

    def errors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ECE, MCE and RMSCE per row, each of shape (K,)."""
        # W_b |acc_b − conf_b| = |S_outcome_b − S_confidence_b|: no division for the ECE, and
        # empty bins contribute exactly 0.
        gap_mass = np.abs(self.sum_outcome - self.sum_confidence)
        total = self.weight.sum(axis=1)
        nonempty = self.weight > 0
        gap = np.divide(gap_mass, self.weight, out=np.zeros_like(gap_mass), where=nonempty)
        ece = gap_mass.sum(axis=1) / total
        mce = gap.max(axis=1)
        # W_b · gap_b² = gap_mass_b · gap_b.
        rmsce = np.sqrt((gap_mass * gap).sum(axis=1) / total)
        return ece, mce, rmsce

    def bins(self, row: int) -> tuple[CalibrationBin, ...]:
        """The bins of one row as result objects (None statistics where W_b = 0)."""
        weight = self.weight[row]
        nonempty = weight > 0
        zeros = np.zeros_like(weight)
        conf = np.divide(self.sum_confidence[row], weight, out=zeros.copy(), where=nonempty)
        acc = np.divide(self.sum_outcome[row], weight, out=zeros, where=nonempty)
        edges = self.edges[row]
        # A weighted mean of values in [lower, upper] lies in that interval; Σwc / Σw can
        # leave it by an ulp (w·c/w != c), so it is put back.
        conf = np.clip(conf, edges[:-1], edges[1:])
        return tuple(
            CalibrationBin(
                lower=float(edges[b]),
                upper=float(edges[b + 1]),
                count=int(self.count[row, b]),
                weight=float(np.ldexp(weight[b], self.shift)),
                mean_confidence=float(conf[b]) if nonempty[b] else None,
                accuracy=float(acc[b]) if nonempty[b] else None,
            )
            for b in range(weight.shape[0])
        )


def _binned(
    values: np.ndarray, outcomes: np.ndarray, w: np.ndarray, n_bins: int, binning: str
) -> _Binned:
    """Bin every row of ``values`` (K, N) against ``outcomes`` (K, N) with weights (N,)."""
    k_rows = values.shape[0]
    edges, bins = _edges_and_bins(values, w, n_bins, binning)
    # One bincount for all rows: row k owns the slots [k·n_bins, (k + 1)·n_bins).
    keys = (bins + n_bins * np.arange(k_rows)[:, None]).ravel()
    size = k_rows * n_bins

    def total(x: np.ndarray | None) -> np.ndarray:
        weights = None if x is None else np.broadcast_to(x, values.shape).ravel()
        return np.bincount(keys, weights=weights, minlength=size).reshape(k_rows, n_bins)

    # FIX: weights below 1 are first scaled up by a power of two (exact: no bit is lost) so
    # that the products w·c stay normal numbers. With subnormal weights (1e-320) they kept a
    # few significant bits only: a bin's mean confidence came out 0.73123 instead of
    # 0.73106, and the ECE above the RMSCE. Every statistic is a ratio of these sums, so the
    # scale cancels; bins() reports the weights scaled back.
    shift = min(0, int(np.frexp(w.max())[1])) if w.size else 0
    ws = np.ldexp(w, -shift)
    return _Binned(
        edges=edges,
        count=total(None),
        weight=total(ws),
        sum_confidence=total(ws * values),
        sum_outcome=total(ws * outcomes),
        shift=shift,
    )


def _per_class(
    model: _Model, y: np.ndarray, w: np.ndarray, wn: np.ndarray, n_bins: int, binning: str
) -> tuple[ClassCalibration, ...]:
    """Per-class statistics of multi-class predictions (all classes at once)."""
    n_classes = model.probs.shape[1]
    count = np.bincount(y, minlength=n_classes)
    class_weight = np.bincount(y, weights=wn, minlength=n_classes)
    hits = np.bincount(y, weights=wn * model.correct, minlength=n_classes)
    has = class_weight > 0
    recall = np.divide(hits, class_weight, out=np.zeros_like(hits), where=has)
    # Means of values in [0, 1] (see _mean on why the clip).
    mean_probability = np.clip(wn @ model.probs, 0.0, 1.0)
    frequency = np.clip(class_weight, 0.0, 1.0)
    # One row per class (K = C): p_k against the indicator label == k.
    class_probs = np.ascontiguousarray(model.probs.T)
    indicator = (np.arange(n_classes)[:, None] == y).astype(np.float64)
    ece = _binned(class_probs, indicator, w, n_bins, binning).errors()[0]
    return tuple(
        ClassCalibration(
            class_index=k,
            count=int(count[k]),
            frequency=float(frequency[k]),
            mean_probability=float(mean_probability[k]),
            recall=float(recall[k]) if has[k] else None,
            ece=float(ece[k]),
        )
        for k in range(n_classes)
    )


# --------------------------------------------------------------------------------------------
# Temperature scaling


def _centred_logits(z: np.ndarray) -> np.ndarray:
    """Logits with each row's maximum subtracted (binary (N,) -> the rows [0, z]), checked.

    Shape (N,) or (N, C) -> (N,) for binary, (N, C) otherwise. Softmax is shift invariant, so
    this changes no probability; it keeps β·z <= 0 in the fit and makes MAX_LOGIT_RANGE the
    only bound needed for every intermediate of the fit to be finite.
    """
    rows = np.stack([np.zeros_like(z), z], axis=1) if z.ndim == 1 else z
    with np.errstate(over="ignore"):
        spread = rows.max(axis=1) - rows.min(axis=1)
    too_wide = ~(spread <= MAX_LOGIT_RANGE)
    if too_wide.any():
        i = int(np.flatnonzero(too_wide)[0])
        what = "|logit|" if z.ndim == 1 else "a logit range (max − min of a row)"
        raise InputError(
            "logits",
            f"expected {what} of at most {MAX_LOGIT_RANGE:g} for temperature fitting, got "
            f"{spread[i]:g}: the fit would overflow float64",
            position=(i,),
            kind="overflow",
        )
    if z.ndim == 1:
        return z
    return z - z.max(axis=1, keepdims=True)


def _nll_terms(z: np.ndarray, y: np.ndarray, wn: np.ndarray, beta: float) -> tuple[float, float]:
    """First and second derivative of the weighted NLL of softmax(β z) with respect to β.

    z: (N, C) row-centred logits (binary already as [0, z] rows); y: (N,); wn: (N,) summing
    to 1. Returns (Σ wn (E_p[z] − z_y), Σ wn Var_p[z]).
    """
    s = beta * z
    # exp(s − logsumexp(s)): the max-shifted softmax, no overflow.
    p = np.exp(s - logsumexp(s)[:, None])
    mean_z = (p * z).sum(axis=1)
    # The variance as the mean squared deviation (not E[z²] − E[z]², which cancels).
    var = (p * (z - mean_z[:, None]) ** 2).sum(axis=1)
    grad = float(wn @ (mean_z - z[np.arange(z.shape[0]), y]))
    return grad, float(wn @ var)


def _solve_temperature(
    zc: np.ndarray, y: np.ndarray, wn: np.ndarray
) -> tuple[float, str | None]:
    """Fit T on row-centred logits zc ((N,) binary or (N, C)), labels y, weights wn (sum 1)."""
    z = np.stack([np.zeros_like(zc), zc], axis=1) if zc.ndim == 1 else zc
    live = wn > 0
    if not (z[live].max(axis=1) > z[live].min(axis=1)).any():
        return 1.0, (
            "every logit row (of positive weight) is constant, so the NLL does not depend on "
            "the temperature; T = 1 is returned"
        )
    # Root of h(u) = dNLL/dβ at β = e^u = 1/T; h is non-decreasing (NLL convex in β).
    u_lo, u_hi = -math.log(TEMPERATURE_MAX), -math.log(TEMPERATURE_MIN)
    if _nll_terms(z, y, wn, math.exp(u_lo))[0] >= 0:
        return TEMPERATURE_MAX, (
            f"the NLL still decreases at the largest temperature allowed, "
            f"{TEMPERATURE_MAX:g}: the logits predict no better than uniform guessing; "
            f"T is clamped to {TEMPERATURE_MAX:g}"
        )
    if _nll_terms(z, y, wn, math.exp(u_hi))[0] <= 0:
        return TEMPERATURE_MIN, (
            f"the NLL still decreases at the smallest temperature allowed, "
            f"{TEMPERATURE_MIN:g}: the predictions are (nearly) separable, so sharpening "
            f"them lowers the NLL without limit; T is clamped to {TEMPERATURE_MIN:g}"
        )
    # Safeguarded Newton (Numerical Recipes' rtsafe) in u = log β, starting at T = 1:
    # dh/du = β · Var term > 0. A Newton step that leaves the bracket, or that does not at
    # least halve the step before last, is replaced by bisection, so the bracket shrinks
    # geometrically and the loop ends well within _MAX_ITERATIONS.
    u = 0.0
    step_before_last = step = u_hi - u_lo
    for _ in range(_MAX_ITERATIONS):
        grad, curvature = _nll_terms(z, y, wn, math.exp(u))
        if grad == 0.0:
            break
        if grad < 0:
            u_lo = u
        else:
            u_hi = u
        slope = math.exp(u) * curvature
        newton = u - grad / slope if slope > 0 else math.inf
        if not u_lo < newton < u_hi or abs(2.0 * grad) > abs(step_before_last * slope):
            step_before_last, step = step, 0.5 * (u_hi - u_lo)
            u = u_lo + step
        else:
            step_before_last, step = step, u - newton
            u = newton
        if abs(step) <= _LOG_T_TOLERANCE or u_hi - u_lo <= _LOG_T_TOLERANCE:
            break
    return math.exp(-u), None
