"""Calibration statistics: reliability bins, ECE/MCE/RMSCE/ACE, NLL, Brier, temperature scaling.

The pure-NumPy core of ``POST /v1/calibration`` (and of the reliability diagram), in the style
of scikit-learn's metrics: data first, keyword-only options, float64 throughout. Modules:
``binning`` (edges, bin assignment, sums per bin), ``metrics`` (ECE/MCE/RMSCE from the bin
sums, per-sample NLL and Brier), ``temperature`` (temperature scaling), ``estimators``
(debiased, sweep and smooth ECE; class-wise), ``intervals`` (bootstrap, Clopper–Pearson),
``selective`` (risk–coverage), ``per_class`` (per-class NLL and Brier) and ``report`` (the
result classes and :func:`calibration_report`, which dispatches to them). No Python loop
over samples or bins (loops build the result objects; ``mode="classwise"`` bins each
class's column in turn, its answer being C × n_bins bins); time and memory are
O(N·C + n_bins) (classwise: O(N·C + C·n_bins)).

Conventions (the HTTP contract, "Precise semantics > Calibration"):

* Input of shape (N,) is binary: the probability (or logit) of class 1. The binned value is
  that probability, a bin's ``accuracy`` is the observed frequency of label 1, the overall
  ``accuracy`` thresholds at p > 0.5 (at logit > 0 for logits, the same rule without the
  rounding of the sigmoid), ``n_classes`` is 2 and ``per_class`` is ``None``.
* Input of shape (N, C) is multi-class: the binned value is the top-label confidence (the
  largest probability) and the outcome is top-label correctness; the prediction is the argmax
  of the input as sent (logits or probabilities), the first index on ties.
* Bins are half-open intervals (lower, upper]; the first bin also holds 0. ``"uniform"`` edges
  are k / n_bins, ``"quantile"`` edges weighted inverted-CDF quantiles that never split ties
  (see :mod:`xentropy.calibration.binning`).
* Sample weights act as repeat counts: every statistic is weighted, ``count`` stays the number
  of samples. A bin whose samples all have weight 0 is empty (``mean_confidence`` and
  ``accuracy`` are ``None``) even though its ``count`` is positive.
* Probabilities are clipped to [ε, 1 − ε] for the NLL, as for the losses; logits use
  ``log_softmax`` (binary: ``−softplus``) and need no clipping.

>>> from xentropy.calibration import calibration_report
>>> r = calibration_report(logits=[[3, 0, 0], [0, 3, 0], [0, 0, 3], [3, 0, 0]],
...                        labels=[0, 1, 2, 1], n_bins=5, fit_temperature=True)
>>> r.accuracy, round(r.ece, 6), round(r.temperature.temperature, 6)
(0.75, 0.159443, 1.674332)
"""

from xentropy.calibration.binning import MAX_BINS
from xentropy.calibration.diagram import (
    MAX_PANELS,
    reliability_diagram,
    reliability_diagrams,
)
from xentropy.calibration.report import (
    CALIBRATION_PARAMS,
    Approximation,
    CalibrationBin,
    CalibrationResult,
    ClassCalibration,
    Estimates,
    Intervals,
    TemperatureFit,
    calibration_bootstrap_work,
    calibration_report,
    calibration_state_of,
)
from xentropy.calibration.slices import MAX_GROUPS, MacroCalibration
from xentropy.calibration.temperature import (
    MAX_LOGIT_RANGE,
    TEMPERATURE_MAX,
    TEMPERATURE_MIN,
    fit_temperature,
)

__all__ = [
    "CALIBRATION_PARAMS",
    "MAX_BINS",
    "MAX_GROUPS",
    "MAX_LOGIT_RANGE",
    "MAX_PANELS",
    "TEMPERATURE_MAX",
    "TEMPERATURE_MIN",
    "Approximation",
    "CalibrationBin",
    "CalibrationResult",
    "ClassCalibration",
    "Estimates",
    "Intervals",
    "MacroCalibration",
    "TemperatureFit",
    "calibration_bootstrap_work",
    "calibration_report",
    "calibration_state_of",
    "fit_temperature",
    "reliability_diagram",
    "reliability_diagrams",
]
