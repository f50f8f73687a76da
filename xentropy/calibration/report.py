"""The report of ``POST /v1/calibration``: the result classes and :func:`calibration_report`.

The field names and their order in the result classes are those of the HTTP response.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
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
from xentropy._wire import KEY, NOT_WRITTEN, NULLABLE_FIELD, WRITTEN_FIRST
from xentropy.calibration.binning import (
    BINNING,
    N_BINS,
    CalibrationBin,
    _binned,
    _BinSums,
    reliability_bins,
)
from xentropy.calibration.estimators import (
    ClasswiseCalibration,
    SmoothCurve,
    _bin_intervals,
    _class_sums,
    _classwise,
    ece_debiased,
    ece_sweep,
    smooth_ece,
)
from xentropy.calibration.intervals import (
    ESTIMATORS,
    INTERVAL_PARAMS,
    ReplicateSums,
    bootstrap_intervals,
    bootstrap_work,
)
from xentropy.calibration.metrics import (
    _calibration_error,
    _check_sample_weights,
    _from_logits,
    _from_probabilities,
    _mean,
    _Model,
)
from xentropy.calibration.per_class import per_class_scores
from xentropy.calibration.selective import SELECTIVE_PARAMS, SelectiveResult, risk_coverage
from xentropy.calibration.temperature import _centred_logits, _solve_temperature

if TYPE_CHECKING:
    from xentropy.calibration.slices import MacroCalibration
    from xentropy.states.calibration import CalibrationState

#: The calibration modes.
MODES = ("top_label", "classwise")
#: The largest bin count ``ece_sweep`` tries in a report (its cost grows as the square of
#: the count reached, and outcomes sorted by confidence reach every count).
SWEEP_MAX_BINS = 1000

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
    "mode": Param(
        "choice", "top_label",
        '`"top_label"`: bins of the top-label confidence; `"classwise"` (Kull et al. 2019 '
        '"class-wise", Kumar et al. 2019 "marginal"): also every class\'s column p_k binned '
        "against 1[y = k], with its bins, MCE and RMSCE under `per_class`, and "
        "`classwise_ece` = (1/C) Σ_k ECE_k. N×C input only.",
        choices=MODES,
    ),
    "estimators": Param(
        "choices", (),
        "Estimators of the calibration error beyond the plug-in ECE, each adding a number "
        "under `estimates` (computed on the top-label confidence; binary input: p): "
        '`"ece_debiased"` (Kumar, Liang & Ma 2019, "Verified uncertainty calibration"): '
        "sqrt(max(Σ_b (n_b/N)[(conf_b − acc_b)² − acc_b(1 − acc_b)/(n_b − 1)], 0)) over the "
        "request's bins with n_b ≥ 2 (`calibration.get_calibration_error(..., p=2, "
        'debias=True)`); `"ece_sweep"` (Roelofs et al. 2022, "Mitigating bias in '
        'calibration error estimation"): the ECE over b equal-mass bins, b the largest '
        f"count (at most {SWEEP_MAX_BINS}) such that every count up to b keeps the bin "
        'accuracies non-decreasing; `"smooth_ece"` (Błasiok & Nakkiran 2023, "Smooth '
        'ECE"): Σ_t |r̂(t)| δ(t) / Σ_t δ(t), r̂ and δ the kernel-smoothed residual c − y and '
        "density (reflected Gaussian kernel), at relplot's fixed-point bandwidth σ ≥ "
        "smECE_σ (`relplot.smECE`).",
        choices=ESTIMATORS,
    ),
    "confidence_level": Param(
        "number", None,
        "Adds `intervals`: percentile bootstrap intervals (Efron & Tibshirani 1993) of nll, "
        "brier, accuracy, ece, mce, rmsce, ace and every estimator, at this level in (0, 1), "
        "and to every bin its `accuracy_interval`: the Clopper–Pearson interval (Clopper & "
        "Pearson 1934) of its unweighted count of correct predictions (binary: positives).",
        low=0.0, high=1.0, low_open=True, high_open=True,
    ),
    "bootstrap": Param(
        "object", None,
        "The resampling of `confidence_level` (defaults: 1000 Poisson resamples, seed 0, "
        "stream 0): deterministic for a (seed, stream). The bins' edges are those of the "
        "whole sample; `ece_sweep` and `smooth_ece` rerun their bin-count and bandwidth "
        "search on every replicate.",
        fields=tuple((name, INTERVAL_PARAMS[name])
                     for name in ("n_resamples", "seed", "method", "stream")),
    ),
    "risk_coverage": Param(
        "object", False,
        "`true` or `{\"n_points\": K}`: adds `selective`, the risk–coverage curve of "
        "selective prediction (Geifman & El-Yaniv 2017) with AURC, E-AURC and the optimal "
        "AURC r + (1 − r) ln(1 − r) (Geifman et al. 2019), samples ranked by top-label "
        "confidence, ties entering together.",
        fields=(("n_points", SELECTIVE_PARAMS["n_points"]),), flag=True,
    ),
    "multilabel": Param(
        "boolean", False,
        "With `targets` (N×C 0/1): N×C independent probabilities (or logits, through the "
        "sigmoid), every column a binary calibration problem; adds `per_label`, `macro` "
        "and `micro` (the top level is the micro report).",
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
      nll, brier: the (weighted) mean NLL (in ``units``) and Brier score of the samples
        labelled k (``None`` when they weigh 0), so that Σ_k W_k·nll_k / W = nll.
      mce, rmsce, bins: with ``mode="classwise"``, the MCE, RMSCE and every bin of p_k
        against ``label == k``; else ``None``.
    """

    class_index: int = field(metadata={KEY: "class"})
    count: int
    frequency: float
    mean_probability: float
    recall: float | None
    ece: float
    nll: float | None = field(default=None, metadata=NULLABLE_FIELD)
    brier: float | None = field(default=None, metadata=NULLABLE_FIELD)
    mce: float | None = None
    rmsce: float | None = None
    bins: tuple[CalibrationBin, ...] | None = None


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
class Estimates:
    """The requested estimators (``None`` when not asked for).

    Attributes:
      ece_debiased, ece_sweep, smooth_ece: see :mod:`xentropy.calibration.estimators`.
      sweep_n_bins: the bin count ``ece_sweep`` chose (not in the HTTP response).
      smooth_curve, smooth_bandwidth: the smoothed reliability curve and its bandwidth,
        for the diagram (not in the HTTP response).
    """

    ece_debiased: float | None = None
    ece_sweep: float | None = None
    smooth_ece: float | None = None
    sweep_n_bins: int | None = field(default=None, repr=False, metadata=NOT_WRITTEN)
    smooth_curve: SmoothCurve | None = field(default=None, repr=False, metadata=NOT_WRITTEN)
    smooth_bandwidth: float | None = field(default=None, repr=False, metadata=NOT_WRITTEN)


@dataclass(frozen=True)
class Intervals:
    """Percentile bootstrap intervals ``(lower, upper)`` of the scalar statistics; a
    statistic without one (not asked for, or no replicate of positive weight) is ``None``.

    Attributes:
      nll (in ``units``), brier, accuracy, ece, mce, rmsce, ace, ece_debiased, ece_sweep,
      smooth_ece: the intervals.
      confidence_level, n_resamples, seed, method, stream: the resampling (not in the HTTP
        response, which echoes none of the options).
      sums: with ``return_state``, the Poisson replicate sums the state carries.
    """

    nll: tuple[float, float] | None = None
    brier: tuple[float, float] | None = None
    accuracy: tuple[float, float] | None = None
    ece: tuple[float, float] | None = None
    mce: tuple[float, float] | None = None
    rmsce: tuple[float, float] | None = None
    ace: tuple[float, float] | None = None
    ece_debiased: tuple[float, float] | None = None
    ece_sweep: tuple[float, float] | None = None
    smooth_ece: tuple[float, float] | None = None
    confidence_level: float = field(default=0.95, repr=False, metadata=NOT_WRITTEN)
    n_resamples: int = field(default=1000, repr=False, metadata=NOT_WRITTEN)
    seed: int = field(default=0, repr=False, metadata=NOT_WRITTEN)
    method: str = field(default="poisson", repr=False, metadata=NOT_WRITTEN)
    stream: int = field(default=0, repr=False, metadata=NOT_WRITTEN)
    sums: ReplicateSums | None = field(default=None, repr=False, compare=False,
                                       metadata=NOT_WRITTEN)


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
      classwise_ece: with ``mode="classwise"``, the mean over classes of
        ``per_class[k].ece``; else ``None``.
      estimates: with ``estimators``, an :class:`Estimates`; else ``None``.
      intervals: with ``confidence_level``, the :class:`Intervals`; else ``None``.
      selective: with ``risk_coverage``, a
        :class:`~xentropy.calibration.selective.SelectiveResult`; else ``None``.
      approximate: ``None`` for a result computed from the samples; for a result
        finalized from a state, the statistics it gives approximately (quantile bins and
        ACE), each with a bound on its error.
      state: the batch's :class:`~xentropy.states.CalibrationState` with
        ``return_state=True`` (and for a finalized result, the state it comes from).
      per_label, macro, micro: with ``multilabel`` (:mod:`xentropy.calibration.slices`):
        the binary report of each label's column, the mean over labels of each scalar
        metric, and the binary report of all N·C pairs (the top level is ``micro``'s).
      per_group: with ``groups``: the report of each group's rows, first appearance first.
      group: in an entry of ``per_group``, its group value; else ``None``.
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
    classwise_ece: float | None = None
    estimates: Estimates | None = None
    intervals: Intervals | None = None
    selective: SelectiveResult | None = None
    approximate: tuple[Approximation, ...] | None = None
    state: CalibrationState | None = field(default=None, repr=False)
    per_label: tuple[CalibrationResult, ...] | None = None
    macro: MacroCalibration | None = None
    micro: CalibrationResult | None = None
    per_group: tuple[CalibrationResult, ...] | None = None
    group: int | str | None = field(default=None, metadata=WRITTEN_FIRST)


def calibration_report(
    probabilities: ArrayLike | None = None,
    labels: ArrayLike | None = None,
    *,
    logits: ArrayLike | None = None,
    targets: ArrayLike | None = None,
    groups: ArrayLike | None = None,
    n_bins: int = 15,
    binning: str = "uniform",
    sample_weights: ArrayLike | None = None,
    fit_temperature: bool = False,
    units: str = "nats",
    epsilon: float = FLOAT64_EPS,
    mode: str = "top_label",
    estimators: Sequence[str] = (),
    confidence_level: float | None = None,
    bootstrap: Mapping[str, Any] | None = None,
    risk_coverage: bool | Mapping[str, Any] = False,
    multilabel: bool = False,
    return_state: bool = False,
    _state_only: bool = False,
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
      mode: ``"top_label"`` (default) or ``"classwise"`` (N×C input): adds
        ``classwise_ece`` and, per class, bins, MCE and RMSCE.
      estimators: any of ``"ece_debiased"``, ``"ece_sweep"``, ``"smooth_ece"``
        (:mod:`xentropy.calibration.estimators`), each once: adds ``estimates``.
      confidence_level: in (0, 1): adds ``intervals`` (bootstrap) and every bin's
        Clopper–Pearson ``accuracy_interval``.
      bootstrap: with ``confidence_level``, ``{"n_resamples": 1000, "seed": 0,
        "method": "poisson", "stream": 0}`` or any part of it
        (:func:`~xentropy.calibration.intervals.bootstrap_intervals`).
      risk_coverage: ``True`` or ``{"n_points": K}``: adds ``selective``
        (:func:`~xentropy.calibration.selective.risk_coverage` of the top-label
        confidence and correctness).
      return_state: also return ``state``, the batch's sufficient statistics
        (:mod:`xentropy.states`), which merge with those of other batches; it carries
        ``mode``, ``ece_debiased`` and Poisson replicates over uniform bins (see
        :mod:`xentropy.states.calibration` for what it does not carry).
      targets, multilabel: multi-label input, see :mod:`xentropy.calibration.slices`.
      groups: shape (N,), ints or strings: also ``per_group``, the report of each group.

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
        ``"labels"``, ``"sample_weights"``, or the option; inside ``bootstrap`` and
        ``risk_coverage`` the position names the sub-option).

    >>> r = calibration_report([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], n_bins=2)
    >>> [(b.lower, b.upper, b.count) for b in r.bins]
    [(0.0, 0.5, 3), (0.5, 1.0, 1)]
    >>> round(r.ece, 6), round(r.mce, 6), r.accuracy
    (0.0875, 0.2, 0.75)
    >>> r = calibration_report([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]], [0, 1, 1], n_bins=2,
    ...                        mode="classwise", risk_coverage=True)
    >>> round(r.classwise_ece, 6), [round(k.nll, 6) for k in r.per_class]
    (0.166667, [0.356675, 0.569717])
    >>> round(r.selective.aurc, 6), round(r.selective.optimal_aurc, 6)
    (0.111111, 0.063023)
    """
    if multilabel is not False or targets is not None or groups is not None:
        from xentropy.calibration.slices import sliced_report

        given = locals()  # every option of the table, including any added later
        options = {name: given[name] for name in CALIBRATION_PARAMS}
        CALIBRATION_PARAMS["multilabel"].check(multilabel, "multilabel")
        sliced = sliced_report(probabilities, labels, logits=logits, targets=targets,
                               groups=groups, sample_weights=sample_weights, options=options)
        return sliced.state if _state_only else sliced  # type: ignore[return-value]
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
    extras = _check_extras(binary, mode=mode, estimators=estimators,
                           confidence_level=confidence_level, bootstrap=bootstrap,
                           risk_coverage=risk_coverage)
    return_state = CALIBRATION_PARAMS["return_state"].check(return_state, "return_state")
    if return_state:
        _check_mergeable(extras, binning)

    # Normalised weights (sum 1) for every weighted mean: w_i / W <= 1, so a mean of finite
    # values can never overflow even where their plain sum would.
    wn = w / w.sum()
    model = _from_probabilities(probs, y, eps) if z is None else _from_logits(z, y)
    if _state_only and extras.none:  # calibration_state_of: the state, without a report
        from xentropy.states.calibration import calibration_state  # builds on this module

        return calibration_state(model, y, w, n_bins=n, binning=binning,  # type: ignore[return-value]
                                 units=units, epsilon=eps, from_logits=z is not None,
                                 **_state_extras(extras, binning, None))

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
    level = extras.confidence_level
    classwise = None
    if extras.mode == "classwise":
        classwise = _classwise(model.probs, y, w, n, binning, confidence_level=level)
    if level is not None:  # the bins again, with their counts of outcomes 1
        top = _binned(model.confidence[None, :], model.outcome[None, :], w, n, binning,
                      every_bin=True, hits=True)
    intervals = _intervals(model, w, n, binning, units, extras, keep_sums=return_state)
    state = None
    if return_state:
        from xentropy.states.calibration import calibration_state  # builds on this module

        state = calibration_state(model, y, w, n_bins=n, binning=binning, units=units,
                                  epsilon=eps, from_logits=z is not None,
                                  hits=None if top.hits is None else top.hits[0],
                                  **_state_extras(extras, binning, intervals))

    if _state_only:
        return state  # type: ignore[return-value]
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
        bins=reliability_bins(top, _bin_intervals(
            None if top.hits is None else top.hits[0], top.count[0], level)),
        per_class=None if binary else _per_class(model, y, w, wn, n, binning, units,
                                                 classwise),
        temperature=temperature,
        units=units,
        binning=binning,
        n_bins=n,
        classwise_ece=None if classwise is None else classwise.classwise_ece,
        estimates=_estimates(model, w, n, binning, extras.estimators),
        intervals=intervals,
        selective=_selective(model, w, extras.n_points),
        state=state,
    )


def calibration_bootstrap_work(
    n_rows: int,
    *,
    n_labels: int | None = None,
    groups: ArrayLike | None = None,
    confidence_level: float | None = None,
    bootstrap: Mapping[str, Any] | None = None,
    estimators: Sequence[str] = (),
) -> int:
    """An upper bound of the bootstrap work of a :func:`calibration_report` of this shape
    and these options, in sample-replicates
    (:func:`~xentropy.calibration.intervals.bootstrap_work`), known before any work: 0
    without ``confidence_level``. Every report with intervals is one bootstrap run: the
    whole batch's (N samples; with ``multilabel``, the pool of N·C pairs and each label's
    N), and with ``groups`` each group's (N_g; with ``multilabel``, N_g·C and each label's
    N_g). A service bounds it (XENTROPY_MAX_BOOTSTRAP_WORK); the library does not.

    Args:
      n_rows: N, the rows of the input.
      n_labels: C with ``multilabel``; ``None`` for single-label input.
      groups: shape (N,), as for :func:`calibration_report` (checked as it checks them).
      confidence_level, bootstrap, estimators: the options of :func:`calibration_report`.

    >>> calibration_bootstrap_work(10, confidence_level=0.9)  # 1000 × (10 + 500)
    510000
    >>> calibration_bootstrap_work(10, groups=list('ababababbb'), confidence_level=0.9,
    ...                            bootstrap={"n_resamples": 10}, estimators=["smooth_ece"])
    6023200
    """
    if confidence_level is None:
        return 0
    b = CALIBRATION_PARAMS["bootstrap"].check(dict(bootstrap or {}), "bootstrap")
    sizes = np.zeros(0, np.int64)
    if groups is not None:
        from xentropy.calibration.slices import _group_partition

        part = _group_partition(groups, n_rows)
        sizes = part.stop - part.start
    wholes = np.append(n_rows, sizes)  # the batch, then each group
    if n_labels is None:
        runs = wholes
    else:  # each pool of pairs, and its labels' runs
        runs = np.concatenate([wholes * n_labels, np.repeat(wholes, n_labels)])
    return bootstrap_work(runs, n_resamples=b["n_resamples"], estimators=estimators,
                          sweep_max_n_bins=SWEEP_MAX_BINS)


def calibration_state_of(
    probabilities: ArrayLike | None = None, labels: ArrayLike | None = None, **options: Any
) -> CalibrationState:
    """``calibration_report(probabilities, labels, **options, return_state=True).state``
    without the report (its bins, quantile ACE and per-class ECE are not computed, about a
    third of the work): what a partition of the Dask adapter or a chunk of ``xentropy
    evaluate`` needs. Same arguments, options and errors; ``fit_temperature`` is ignored
    (a state has no temperature).

    >>> p, y = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    >>> state = calibration_state_of(p, y, n_bins=2)
    >>> state.to_json() == calibration_report(p, y, n_bins=2, return_state=True).state.to_json()
    True
    """
    options.pop("return_state", None)
    options.pop("fit_temperature", None)
    state: CalibrationState = calibration_report(  # type: ignore[assignment]
        probabilities, labels, **options, return_state=True, _state_only=True)
    return state


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
    model: _Model, y: np.ndarray, w: np.ndarray, wn: np.ndarray, n_bins: int, binning: str,
    units: str, classwise: ClasswiseCalibration | None,
) -> tuple[ClassCalibration, ...]:
    """Per-class statistics of multi-class predictions (all classes at once).

    The class-wise ECE bins the C columns at once (one row per class, p_k against the
    indicator label == k) with only the non-empty bins stored: O(N·C) memory and time.
    ``classwise``: the class-wise calibration of ``mode="classwise"`` (its ECE is the
    same), whose bins, MCE and RMSCE and the class means of NLL and Brier are added.
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
    scores = per_class_scores(model.nll, model.brier, y, n_classes=n_classes,
                              sample_weights=w)
    nll = [None if s.nll is None else to_units(s.nll, units) for s in scores]
    _check_class_nll(nll, units, "logits")
    entries = tuple(
        ClassCalibration(
            class_index=k,
            count=int(count[k]),
            frequency=float(frequency[k]),
            mean_probability=float(mean_probability[k]),
            recall=float(recall[k]) if has[k] else None,
            ece=float(ece_k),
            nll=nll[k],
            brier=score.brier,
        )
        for k, (ece_k, score) in enumerate(zip(
            _calibration_error(_class_sums(model.probs, y, w, n_bins, binning), "l1")
            if classwise is None else [b.ece for b in classwise.per_class],
            scores, strict=True))
    )
    if classwise is None:
        return entries
    return tuple(
        dataclasses.replace(entry, mce=bins.mce, rmsce=bins.rmsce, bins=bins.bins)
        for entry, bins in zip(entries, classwise.per_class, strict=True)
    )


def _check_class_nll(nll: list[float | None], units: str, field: str) -> None:
    """A class's mean NLL can exceed the overall mean: near the float64 maximum in nats it
    is beyond it in bits (only logits get there: probabilities are clipped to ε)."""
    bad = [k for k, v in enumerate(nll) if v is not None and not math.isfinite(v)]
    if bad:
        raise InputError(field, f"the mean NLL of class {bad[0]} overflows float64 in "
                         f"{units}", kind="overflow")


# --------------------------------------------------------------------------- the extras


@dataclass(frozen=True)
class _Extras:
    """The checked options of issue 13's additions (see :data:`CALIBRATION_PARAMS`)."""

    mode: str
    estimators: tuple[str, ...]
    confidence_level: float | None
    bootstrap: dict[str, Any]
    n_points: int | None  # risk_coverage's, None when off

    @property
    def none(self) -> bool:
        """No addition asked for: the plain report."""
        return (self.mode == "top_label" and not self.estimators
                and self.confidence_level is None and self.n_points is None)


def _check_extras(binary: bool, **options: Any) -> _Extras:
    """Each option against its row; the rules between them and the input."""
    checked = {name: CALIBRATION_PARAMS[name].check(value, name)
               for name, value in options.items()}
    if checked["mode"] == "classwise" and binary:
        raise InputError("mode", "expected N×C input with classwise: binary input (shape N) "
                         "is a single calibration problem", kind="not_applicable")
    if checked["bootstrap"] is not None and checked["confidence_level"] is None:
        raise InputError("bootstrap", "expected confidence_level with bootstrap: the "
                         "resampling only serves the intervals", kind="not_applicable")
    bootstrap = checked["bootstrap"] or CALIBRATION_PARAMS["bootstrap"].check({}, "bootstrap")
    rc = checked["risk_coverage"]
    return _Extras(
        mode=checked["mode"], estimators=checked["estimators"],
        confidence_level=checked["confidence_level"], bootstrap=bootstrap,
        n_points=None if rc is None else rc["n_points"],
    )


def _check_mergeable(extras: _Extras, binning: str) -> None:
    """``return_state`` with an addition the state cannot carry exactly is refused, never
    silently approximated (see :mod:`xentropy.states.calibration`): class-wise bins and
    bootstrap replicates are carried over the exact uniform bins only, and only Poisson
    replicates merge. (``ece_sweep``, ``smooth_ece`` and ``risk_coverage`` are answered
    for the batch but not carried, as temperature scaling is not.)"""
    b = extras.bootstrap
    if extras.confidence_level is not None and b["method"] != "poisson":
        raise InputError("bootstrap", "expected the Poisson method with return_state: "
                         "multinomial replicates fix each batch's total count, so they do "
                         "not merge", position=("method",), kind="not_mergeable")
    if binning != "uniform":
        for name, on in (("mode", extras.mode != "top_label"),
                         ("confidence_level", extras.confidence_level is not None)):
            if on:
                raise InputError(name, f"expected uniform binning for {name} with "
                                 "return_state: states give quantile bins only "
                                 "approximately", kind="not_mergeable")


def _state_extras(extras: _Extras, binning: str, intervals: Intervals | None) -> dict[str, Any]:
    """What the state carries of the additions (see :func:`_check_mergeable`)."""
    from xentropy.states.calibration import MERGEABLE_ESTIMATORS, ReplicateOptions

    out: dict[str, Any] = {
        "mode": extras.mode,
        "estimators": tuple(e for e in extras.estimators if e in MERGEABLE_ESTIMATORS)
        if binning == "uniform" else (),
    }
    if intervals is not None:
        out["bootstrap"] = ReplicateOptions(
            confidence_level=intervals.confidence_level, n_resamples=intervals.n_resamples,
            seed=intervals.seed)
        out["replicates"] = intervals.sums
    return out


def _estimates(
    model: _Model, w: np.ndarray, n_bins: int, binning: str, wanted: tuple[str, ...]
) -> Estimates | None:
    """The requested estimators of the top-label confidence (binary: p)."""
    if not wanted:
        return None
    c, o = model.confidence, model.outcome
    values: dict[str, Any] = {}
    if "ece_debiased" in wanted:
        values["ece_debiased"] = ece_debiased(c, o, sample_weights=w, n_bins=n_bins,
                                              binning=binning).ece
    if "ece_sweep" in wanted:
        sweep = ece_sweep(c, o, sample_weights=w, max_n_bins=SWEEP_MAX_BINS)
        values.update(ece_sweep=sweep.ece, sweep_n_bins=sweep.n_bins)
    if "smooth_ece" in wanted:
        smooth = smooth_ece(c, o, sample_weights=w)
        values.update(smooth_ece=smooth.ece, smooth_curve=smooth.curve,
                      smooth_bandwidth=smooth.bandwidth)
    return Estimates(**values)


def _intervals(
    model: _Model, w: np.ndarray, n_bins: int, binning: str, units: str, extras: _Extras,
    *, keep_sums: bool = False,
) -> Intervals | None:
    """Bootstrap intervals of every scalar statistic, NLL in ``units`` (with
    ``keep_sums``, the Poisson replicate sums for the state too)."""
    if extras.confidence_level is None:
        return None
    b = extras.bootstrap
    r = bootstrap_intervals(
        model.confidence, model.outcome, nll=model.nll, brier=model.brier,
        correct=model.correct, sample_weights=w, n_bins=n_bins, binning=binning,
        estimators=extras.estimators, confidence_level=extras.confidence_level,
        n_resamples=b["n_resamples"], seed=b["seed"], method=b["method"],
        stream=b["stream"], sweep_max_n_bins=SWEEP_MAX_BINS, keep_sums=keep_sums,
    )
    found: dict[str, Any] = dict(r.intervals)
    nll = found.get("nll")
    if nll is not None:
        found["nll"] = (to_units(nll[0], units), to_units(nll[1], units))
    return Intervals(**found, confidence_level=r.confidence_level,
                     n_resamples=r.n_resamples, seed=r.seed, method=r.method,
                     stream=r.stream, sums=r.sums)


def _selective(model: _Model, w: np.ndarray, n_points: int | None) -> SelectiveResult | None:
    """The risk–coverage curve of the top-label confidence (binary: max(p, 1 − p))."""
    if n_points is None:
        return None
    confidence = model.confidence if model.probs.ndim == 2 else np.maximum(
        model.probs, 1.0 - model.probs)
    return risk_coverage(confidence, model.correct, sample_weights=w, n_points=n_points)
