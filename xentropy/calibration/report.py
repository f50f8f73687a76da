"""The report of ``POST /v1/calibration``: the result classes and :func:`calibration_report`.

The field names and their order in the result classes are those of the HTTP response.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from xentropy._numerics import FLOAT64_EPS, UNITS, to_units
from xentropy._validation import (
    InputError,
    Param,
    as_float_array,
    check_distributions,
    check_exactly_one,
    check_labels,
    check_range,
)
from xentropy.calibration.binning import (
    BINNING,
    N_BINS,
    CalibrationBin,
    _binned,
    _BinSums,
    reliability_bins,
)
from xentropy.calibration.metrics import (
    _calibration_error,
    _check_sample_weights,
    _from_logits,
    _from_probabilities,
    _mean,
    _Model,
)
from xentropy.calibration.temperature import _centred_logits, _solve_temperature

if TYPE_CHECKING:
    from xentropy.states.calibration import CalibrationState

#: The options of :func:`calibration_report` (``/v1/calibration``).
CALIBRATION_PARAMS: dict[str, Param] = {
    "n_bins": N_BINS,
    "binning": BINNING,
    "fit_temperature": Param(
        "boolean", False, "With `logits`: fit temperature scaling (Guo et al. 2017)."
    ),
    "units": Param("choice", "nats", "Units of `nll`: nats or bits.", choices=UNITS),
    "epsilon": Param(
        "number", FLOAT64_EPS, "With `probabilities`: the NLL clips them to [ε, 1 − ε].",
        low=0.0, high=0.5, low_open=True, high_open=True,
    ),
    "return_state": Param(
        "boolean", False,
        "Include `state`: the sufficient statistics of the batch (counts, compensated sums, "
        "a fine confidence histogram), of fixed size, that `POST /v1/merge` combines with "
        "those of other batches. Temperature scaling is not part of a state.",
    ),
}


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
class Approximation:
    """A statistic of a result finalized from a state that the state gives only
    approximately (see :mod:`xentropy.states.calibration`), with a bound on its error.

    Attributes:
      statistic: ``"ace"``, ``"ece"``, ``"mce"``, ``"rmsce"``, ``"bins"`` or
        ``"per_class.ece"``.
      error_bound: |approximate − exact| is at most this (for ``"bins"``: the share of
        the total weight that may lie in another bin; for ``"per_class.ece"``: the largest
        bound over the classes).
    """

    statistic: str
    error_bound: float


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
      temperature: the :class:`TemperatureFit` when asked for, else ``None`` (always
        ``None`` for a result finalized from a state).
      units, binning, n_bins: the options used.
      approximate: ``None`` for a result computed from the samples; for a result
        finalized from a state, the statistics it gives approximately (quantile bins and
        ACE), each with a bound on its error.
      state: the batch's :class:`~xentropy.states.CalibrationState` with
        ``return_state=True`` (and for a finalized result, the state it comes from).
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
    approximate: tuple[Approximation, ...] | None = None
    state: CalibrationState | None = field(default=None, repr=False)


#: calibration_report's keyword arguments and their defaults (for calibration_state_of).
_DEFAULTS: dict[str, Any] = {
    "logits": None, "sample_weights": None,
    **{name: param.default for name, param in CALIBRATION_PARAMS.items()
       if name != "return_state"},
}


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
    return_state: bool = False,
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
      return_state: also return ``state``, the batch's sufficient statistics
        (:mod:`xentropy.states`), which merge with those of other batches.

    Returns:
      A :class:`CalibrationResult`. Definitions, with W_b the weight, acc_b the weighted mean
      outcome and conf_b the weighted mean confidence of bin b, W = Σ W_b:

      * ECE = Σ_b (W_b/W) |acc_b − conf_b|; MCE = max over bins with W_b > 0 of
        |acc_b − conf_b|; RMSCE = sqrt(Σ_b (W_b/W)(acc_b − conf_b)²), so
        ECE <= RMSCE <= MCE; ACE = ECE over ``n_bins`` quantile bins.
      * nll: −log p(label), weighted mean; brier: (p − y)² (binary) or Σ_c (p_c − [c = y])².

      Time and memory are O(N·C + n_bins), whatever the number of bins per class.

    Raises:
      InputError: naming the offending field (``"probabilities"``, ``"logits"``,
        ``"labels"``, ``"sample_weights"``, ``"n_bins"``, ``"binning"``,
        ``"fit_temperature"``, ``"units"``, ``"epsilon"``).

    >>> r = calibration_report([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], n_bins=2)
    >>> [(b.lower, b.upper, b.count) for b in r.bins]
    [(0.0, 0.5, 3), (0.5, 1.0, 1)]
    >>> round(r.ece, 6), round(r.mce, 6), r.accuracy
    (0.0875, 0.2, 0.75)
    """
    result = _calibration(probabilities, labels, logits=logits, n_bins=n_bins,
                          binning=binning, sample_weights=sample_weights,
                          fit_temperature=fit_temperature, units=units, epsilon=epsilon,
                          return_state=return_state)
    assert isinstance(result, CalibrationResult)
    return result


def calibration_state_of(
    probabilities: ArrayLike | None = None, labels: ArrayLike | None = None, **options: Any
) -> CalibrationState:
    """``calibration_report(probabilities, labels, **options, return_state=True).state``
    without the report (about a third of the work): what a partition of the Dask adapter
    or of a chunked evaluation needs. Same arguments, options and errors.

    >>> p, y = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    >>> state = calibration_state_of(p, y, n_bins=2)
    >>> state.to_json() == calibration_report(p, y, n_bins=2, return_state=True).state.to_json()
    True
    """
    options.pop("return_state", None)
    state = _calibration(probabilities, labels, **{**_DEFAULTS, **options},
                         return_state=True, state_only=True)
    assert not isinstance(state, CalibrationResult)
    return state


def _calibration(
    probabilities: ArrayLike | None, labels: ArrayLike | None, *, logits: ArrayLike | None,
    n_bins: int, binning: str, sample_weights: ArrayLike | None, fit_temperature: bool,
    units: str, epsilon: float, return_state: bool, state_only: bool = False,
) -> CalibrationResult | CalibrationState:
    """:func:`calibration_report`; with ``state_only``, its state alone."""
    check_exactly_one("probabilities", probabilities, "logits", logits)
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
    n = CALIBRATION_PARAMS["n_bins"].check(n_bins, "n_bins")
    CALIBRATION_PARAMS["binning"].check(binning, "binning")
    fit_temperature = CALIBRATION_PARAMS["fit_temperature"].check(
        fit_temperature, "fit_temperature"
    )
    if fit_temperature and z is None:
        raise InputError(
            "fit_temperature",
            "expected logits with fit_temperature, got probabilities: temperature scaling "
            "rescales logits, so it requires logits",
        )
    CALIBRATION_PARAMS["units"].check(units, "units")
    eps = CALIBRATION_PARAMS["epsilon"].check(epsilon, "epsilon")
    return_state = CALIBRATION_PARAMS["return_state"].check(return_state, "return_state")

    # Normalised weights (sum 1) for every weighted mean: w_i / W <= 1, so a mean of finite
    # values can never overflow even where their plain sum would.
    wn = w / w.sum()
    model = _from_probabilities(probs, y, eps) if z is None else _from_logits(z, y)
    if state_only:
        from xentropy.states.calibration import calibration_state  # builds on this module

        return calibration_state(model, y, w, n_bins=n, binning=binning, units=units,
                                 epsilon=eps, from_logits=z is not None)

    top = _top_label(model, w, n, binning)
    ece = float(_calibration_error(top, "l1")[0])
    ace = ece if binning == "quantile" else float(
        _calibration_error(_top_label(model, w, n, "quantile"), "l1")[0]
    )
    nll = to_units(_mean(wn, model.nll), units)
    if not math.isfinite(nll):
        # FIX: an NLL near the float64 maximum in nats is beyond it in bits (÷ ln 2); it was
        # sent as null. (Only logits get there: probabilities are clipped to ε.)
        raise InputError(
            "logits", f"the mean NLL overflows float64 in {units}", kind="overflow"
        )
    temperature = None
    if fit_temperature:
        assert z is not None  # checked above
        temperature = _temperature_fit(z, y, w, wn, model, nll, ece, n, binning, units)
    state = None
    if return_state:
        from xentropy.states.calibration import calibration_state  # builds on this module

        state = calibration_state(model, y, w, n_bins=n, binning=binning, units=units,
                                  epsilon=eps, from_logits=z is not None)

    return CalibrationResult(
        n_samples=n_samples,
        n_classes=n_classes,
        accuracy=_mean(wn, model.correct),
        mean_confidence=_mean(wn, model.confidence),
        nll=nll,
        brier=_mean(wn, model.brier),
        ece=ece,
        mce=float(_calibration_error(top, "max")[0]),
        rmsce=float(_calibration_error(top, "l2")[0]),
        ace=ace,
        bins=reliability_bins(top),
        per_class=None if binary else _per_class(model, y, w, wn, n, binning),
        temperature=temperature,
        units=units,
        binning=binning,
        n_bins=n,
        state=state,
    )


def _top_label(model: _Model, w: np.ndarray, n_bins: int, binning: str) -> _BinSums:
    """Every bin of the top-label confidence (binary: of p) against its outcome: shape (1, B)."""
    return _binned(
        model.confidence[None, :], model.outcome[None, :], w, n_bins, binning, every_bin=True
    )


def _temperature_fit(
    z: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    wn: np.ndarray,
    model: _Model,
    nll: float,
    ece: float,
    n_bins: int,
    binning: str,
    units: str,
) -> TemperatureFit:
    """Fit T on the logits z and report the NLL and ECE before (given) and after."""
    zc = _centred_logits(z)
    t, note = _solve_temperature(zc, y, wn)
    # FIX: the prediction is that of the logits as sent: zc / T keeps their order, but in
    # float64 subnormal logits divided by T = 1000 underflowed to equal values, which
    # changed the top label (first index on ties) and so the ECE after scaling.
    scaled = _from_logits(zc / t, y, predicted=model.predicted)
    nll_after = to_units(_mean(wn, scaled.nll), units)
    ece_after = float(_calibration_error(_top_label(scaled, w, n_bins, binning), "l1")[0])
    return _temperature_result(t, note, nll, nll_after, ece, ece_after)


def _temperature_result(
    t: float, note: str | None, nll: float, nll_after: float, ece: float, ece_after: float
) -> TemperatureFit:
    """The fit T (with its note) and the NLL and ECE at T = 1 and at T (also the Dask
    adapter's, from its passes over the partitions)."""
    if nll_after > nll and t != 1.0:
        # The fit minimises the exact NLL, so this can only be floating-point noise near
        # T = 1: keep the input as it is rather than report a (tiny) increase.
        return TemperatureFit(
            temperature=1.0, nll_before=nll, nll_after=nll, ece_before=ece, ece_after=ece,
            note="the fitted temperature did not lower the NLL in float64; T = 1 is kept",
        )
    return TemperatureFit(
        temperature=float(t),
        nll_before=nll,
        nll_after=nll_after,
        ece_before=ece,
        ece_after=ece_after,
        note=note,
    )


def _per_class(
    model: _Model, y: np.ndarray, w: np.ndarray, wn: np.ndarray, n_bins: int, binning: str
) -> tuple[ClassCalibration, ...]:
    """Per-class statistics of multi-class predictions (all classes at once).

    The class-wise ECE bins the C columns at once (one row per class, p_k against the
    indicator label == k) with only the non-empty bins stored: O(N·C) memory and time.
    """
    n_classes = model.probs.shape[1]
    count = np.bincount(y, minlength=n_classes)
    class_weight = np.bincount(y, weights=wn, minlength=n_classes)
    hits = np.bincount(y, weights=wn * model.correct, minlength=n_classes)
    has = class_weight > 0
    recall = np.divide(hits, class_weight, out=np.zeros_like(hits), where=has)
    # Means of values in [0, 1] (see _mean on why the clip).
    mean_probability = np.clip(wn @ model.probs, 0.0, 1.0)
    frequency = np.clip(class_weight, 0.0, 1.0)
    class_probs = np.ascontiguousarray(model.probs.T)
    indicator = (np.arange(n_classes)[:, None] == y).astype(np.float64)
    sums = _binned(class_probs, indicator, w, n_bins, binning, every_bin=False)
    ece = _calibration_error(sums, "l1")
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
