"""State of :func:`xentropy.calibration_report`: ``"calibration"``.

What it holds (weighted sums are compensated pairs ``[hi, lo]`` of the sample weights
divided by ``2**weight_exponent``, the power of two that puts the batch's largest weight
in [1, 2) (0 without weights), so that tiny and huge weights keep every bit; merging
rescales to the largest exponent, and a weight more than 2^1074 times smaller than the
largest of the states merged with it counts as 0):

* ``totals``: Σw, Σw·correct, Σw·confidence, Σw·NLL (in nats), Σw·Brier: the accuracy,
  mean confidence, NLL and Brier score.
* ``histogram``: a fine histogram of the binned value (top-label confidence; binary: p)
  over fixed cells (:func:`histogram_edges`): per non-empty cell its count, Σw, Σw·value,
  Σw·outcome, Σw·|outcome − value|, and the smallest and largest value. The cells refine
  the ``n_bins`` uniform bins, so uniform bins, ECE, MCE and RMSCE are exact sums of
  cells. Quantile bins are not (their edges are sample quantiles): from a state they are
  the quantile bins of the cells, with a bound on the error (see below).
* ``per_class`` (multi-class): per class its count, Σw of its samples, Σw·correct,
  Σw·NLL and Σw·Brier of its samples and Σw·p_k over all samples; and per (class k,
  uniform bin b) cell that holds a p_k, Σw·(1[y = k] − p_k) (the class-wise ECE is Σ_b
  |that| / Σw). With quantile binning the cells also hold Σw and Σw·|1[y = k] − p_k|,
  for the approximate class-wise quantile bins; these three sums then feed approximate
  statistics only, so they are plain numbers rounded to CELL_DIGITS (6) significant
  digits, with ``rounding``, a bound ρ on their relative error that the bounds count
  (see below). Sparse: only cells that hold a value are listed.

Issue 13's additions, with uniform binning only (quantile bins from a state are
approximate; ``return_state`` refuses the combination):

* ``mode="classwise"``: the class cells also hold their count, Σw, Σw·p_k and the
  unweighted count of y = k, so every class's uniform bins (and MCE, RMSCE, their
  Clopper–Pearson intervals) are exact sums; ``per_class`` holds Σw·NLL and Σw·Brier of
  each class's samples.
* ``estimators``: ``ece_debiased`` is a function of the uniform bins' sums, exact. The
  others re-bin (``ece_sweep``) or smooth (``smooth_ece``) the samples themselves: a
  state does not carry them and a merged result has none (as ``selective``, whose tie
  groups are the samples' own confidences).
* ``confidence_level``: ``replicates`` holds, per Poisson replicate r, Σv, Σv·NLL,
  Σv·Brier, Σv·correct and per uniform bin Σv, Σv·confidence, Σv·outcome (v = w·P_r),
  and the unweighted count of outcomes 1 per bin. The replicates of two batches add
  when their weights are independent, i.e. drawn from distinct streams
  (``bootstrap.stream``, one per batch: the client numbers its batches; a merge of
  states that share a stream is refused). The merged intervals are those of nll, brier,
  accuracy, ece, mce, rmsce and ece_debiased; ``ace`` (quantile edges of each replicate's
  whole sample) is not in a state. Multinomial replicates fix each batch's count, so
  they do not merge (refused with ``return_state``).

Temperature scaling needs the logits themselves (each Newton step sums over samples at
a new T), so it is not part of a state: a result finalized from a state has no
``temperature``.

**Quantile bins from a state.** A state keeps the histogram, not the samples, so the
weighted quantiles are only known to the cell that holds them. The bins of a state are
the quantile bins of the cells (each cell goes, whole, to the bin of its smallest value;
a bin's upper edge is the largest value it holds), and the result lists every statistic
that comes from them under ``approximate``, with a bound on the error:

* A cell can hold samples of more than one exact bin only if a quantile target
  t_k = k·W/n_bins falls strictly inside its cumulative weight, and its values are not all
  equal (a cell of one value, such as p = 1, is never split: ties are never split). Only
  those *ambiguous* cells (and cells within a relative 1e-10 of a target, to cover
  rounding) differ from the exact binning.
* Moving one sample of weight w and gap d = outcome − value from one bin to another
  changes Σ_b |Σ_{i in b} w_i d_i| by at most 2·w·|d| (the triangle inequality, twice),
  so |ECE_state − ECE_exact| <= 2 Σ_{ambiguous cells} Σw|d| / W: the ``ece`` and ``ace``
  bounds.
* For MCE and RMSCE each bin's exact gap sum and weight lie within the ambiguous cells'
  Σw|d| and Σw of the approximate ones; the bounds are the extremes of the statistic
  over those intervals (a bin's gap is at most 1, and D²/W_b <= |D|).
* For ``bins``: the share of the total weight that lies in ambiguous cells (samples that
  may belong to another bin).
* For ``per_class.ece``: the largest of the per-class ECE bounds (the same argument, per
  class, over its cells), from rounded cells: each rounding to 6 digits moves a value by
  at most ROUNDING_STEP (5.0001e-6) of it (a gap: of its cell's Σw·|d|), ρ adds up along
  the roundings (a merge adds the rounded sums exactly and keeps the largest ρ; writing a
  merged state rounds again, one more step), cumulative weights within AMBIGUITY + 3ρ of
  a target are ambiguous, the cells' Σw·|d| are widened by 2ρ, no cell counts as one
  value (the extremes of p_k are not kept: [0, 1] bounds them), and the bound grows by
  4ρ(1 + ρ)·Σ(Σw·|d| + Σw)/W over the class's cells for the rounding of the gaps and
  weights themselves. A state written
  before this rounding (exact pairs, ``min`` and ``max``: still read) is rounded on
  reading.

``histogram_edges(15)`` has 1402 cells: 1035 of width 1/1035 and two tails of 4 cells per
halving of the distance to 0 and to 1 (down to 2^-60), where confidences pile up. JSON
sizes (compact, as the service writes them) with every cell a top-label confidence can
reach and every class-bin in use (15 bins, weighted): 0.19 MB for 10 classes, 0.22 MB
for 100, 0.96 MB for 1000 (0.87 MB before the per-class NLL and Brier sums); with
quantile binning, whose class-bins carry two more sums (all three rounded to 6 digits),
0.22 MB for 100 and 0.95 MB for 1000 (2.2 MB with the exact pairs and extremes of p_k
states held before). A small batch fills few cells, and a
state lists only those.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np

from xentropy import _compensated
from xentropy._numerics import UNITS, to_units
from xentropy._validation import InputError
from xentropy.calibration.binning import (
    BINNINGS,
    MAX_BINS,
    _BinSums,
    reliability_bins,
    uniform_bins,
)
from xentropy.calibration.estimators import _bin_intervals, _debiased_squared
from xentropy.calibration.intervals import (
    INTERVAL_PARAMS,
    ReplicateSums,
    percentile_interval,
)
from xentropy.calibration.metrics import _calibration_error, _Model
from xentropy.calibration.report import (
    CALIBRATION_PARAMS,
    Approximation,
    CalibrationResult,
    ClassCalibration,
    Estimates,
    Intervals,
    _check_class_nll,
)
from xentropy.states._base import (
    TOLERANCE,
    VERSION,
    Path,
    State,
    StateError,
    check_agree,
    check_at_most,
    check_close,
    check_non_negative,
    inconsistent,
    read_bool,
    read_choice,
    read_clip_margin,
    read_counts,
    read_int,
    read_number,
    read_numbers,
    read_object,
    read_pair,
    read_pairs,
)

#: The estimators a state carries exactly (from its uniform bins).
MERGEABLE_ESTIMATORS = ("ece_debiased",)

#: At least this many equal-width cells in the confidence histogram (a multiple of
#: n_bins, so that the cells refine the uniform bins).
HISTOGRAM_CELLS = 1024
#: Cells per halving of the distance to 0 and to 1 below 1/HISTOGRAM_CELLS.
TAIL_CELLS_PER_OCTAVE = 4
_TAIL_OCTAVES = 60
#: Cumulative weights within this relative distance of a quantile target count as
#: ambiguous (rounding of the sums of either side).
AMBIGUITY = 1e-10
#: Significant digits of the class cells of quantile binning (they feed only approximate
#: statistics, whose bounds count the rounding): what keeps a 1000-class state < 1 MB.
CELL_DIGITS = 6
#: Relative error of one rounding to CELL_DIGITS digits (half a unit of the last digit)
#: and of the float64 nearest to that decimal, with margin.
ROUNDING_STEP = 5.0001e-6
#: Largest accumulated rounding a state may declare (far beyond any real chain of merges).
_MAX_ROUNDING = 1e-3
#: Largest and smallest weight exponent (frexp) of a float64.
_EXPONENTS = (-1074, 1024)


@lru_cache(maxsize=128)
def histogram_edges(n_bins: int) -> np.ndarray:
    """The edges of the confidence histogram of states with ``n_bins`` bins (read-only).

    Cells are half-open intervals (lower, upper], the first one holds 0, as bins are.
    The edges are the uniform grid j/U (U = n_bins·⌈HISTOGRAM_CELLS / n_bins⌉, so every
    bin edge k/n_bins is one of them, the same float) and, below 1/U, the tails
    2^(-i/4) and 1 − 2^(-i/4).

    >>> e = histogram_edges(15)
    >>> len(e) - 1, float(e[0]), float(e[-1]), bool(np.isin(np.arange(16) / 15, e).all())
    (1402, 0.0, 1.0, True)
    """
    u = n_bins * -(-HISTOGRAM_CELLS // n_bins)
    uniform = np.arange(u + 1) / u
    tail = 2.0 ** (-np.arange(1, TAIL_CELLS_PER_OCTAVE * _TAIL_OCTAVES + 1)
                   / TAIL_CELLS_PER_OCTAVE)
    tail = tail[tail < uniform[1]]
    edges = np.unique(np.concatenate([uniform, tail, 1.0 - tail]))
    edges.setflags(write=False)
    return edges


@lru_cache(maxsize=128)
def _cell_bins(n_bins: int) -> np.ndarray:
    """The uniform bin of each histogram cell (the cells refine the bins)."""
    edges = histogram_edges(n_bins)
    bin_edges = np.arange(n_bins + 1) / n_bins
    out = np.searchsorted(bin_edges[1:-1], edges[1:], side="left")
    out.setflags(write=False)
    return out


def _cell_of(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The cell (lower, upper] of each value (the first cell also holds its lower edge)."""
    return np.searchsorted(edges[1:-1], values, side="left")


# --------------------------------------------------------------------------- the classes


@dataclass(frozen=True)
class CalibrationOptions:
    """What two calibration states must share to merge.

    Attributes:
      input: ``"probabilities"`` or ``"logits"``.
      binary: input of shape N (the probability of class 1) rather than N×C.
      n_classes: C (2 for binary input).
      n_bins, binning, units: as requested.
      epsilon: the NLL's clipping margin of probabilities; ``None`` with logits.
      mode: ``"top_label"`` or ``"classwise"`` (the state then holds the class-wise bins
        and the per-class NLL and Brier sums).
      estimators: the estimators the state gives: ``()`` or ``("ece_debiased",)``.
      bootstrap: the Poisson replicates the state holds (``None``: no intervals).
      (The last three are written only when set, so older states read unchanged.)
    """

    input: str
    binary: bool
    n_classes: int
    n_bins: int
    binning: str
    units: str
    epsilon: float | None
    mode: str = "top_label"
    estimators: tuple[str, ...] = ()
    bootstrap: ReplicateOptions | None = None


@dataclass(frozen=True)
class ReplicateOptions:
    """What the Poisson replicates of states must share to merge: their level, count and
    seed (each batch has its own stream, see :class:`Replicates`)."""

    confidence_level: float
    n_resamples: int
    seed: int


@dataclass(frozen=True, eq=False)
class Replicates:
    """Sums of R Poisson bootstrap replicates over the n_bins uniform bins (the weights
    ÷ 2**weight_exponent, as every sum): replicate r of merged states is the sum of their
    replicates r, i.e. the concatenated batch with each batch's own weights.

    Attributes:
      streams: the resampling streams of the batches merged (distinct: equal streams
        would give the same weights to different samples, correlated replicates).
      weight, nll, brier, correct: (R,) Σ v, Σ v·NLL (nats), Σ v·Brier, Σ v·correct.
      bin_weight, bin_confidence, bin_outcome: (R, B) Σ v, Σ v·confidence, Σ v·outcome
        per bin.
      hits: (B,) the unweighted count of outcomes 1 per bin (the Clopper–Pearson
        intervals of the bins).
    """

    streams: np.ndarray
    weight: np.ndarray
    nll: np.ndarray
    brier: np.ndarray
    correct: np.ndarray
    bin_weight: np.ndarray
    bin_confidence: np.ndarray
    bin_outcome: np.ndarray
    hits: np.ndarray


@dataclass(frozen=True, eq=False)
class CalibrationTotals:
    """Weighted sums over every sample, each ``[hi, lo]`` (weights ÷ 2**weight_exponent).

    Attributes:
      weight: Σw; correct: Σw·correct (top label; binary: p > 0.5 against the label);
      confidence: Σw·confidence (binary: p); nll: Σw·NLL in nats; brier: Σw·Brier.
    """

    weight: np.ndarray
    correct: np.ndarray
    confidence: np.ndarray
    nll: np.ndarray
    brier: np.ndarray


@dataclass(frozen=True, eq=False)
class ConfidenceHistogram:
    """The non-empty cells of the confidence histogram, in cell order (shape (K,) or
    (K, 2) for pairs).

    Attributes:
      index: the cell, in [0, len(histogram_edges(n_bins)) − 1).
      count: samples in the cell (>= 1).
      weight, confidence, outcome, abs_gap: Σw, Σw·value, Σw·outcome and
        Σw·|outcome − value| over the cell.
      min, max: the smallest and largest value in the cell.
    """

    index: np.ndarray
    count: np.ndarray
    weight: np.ndarray
    confidence: np.ndarray
    outcome: np.ndarray
    abs_gap: np.ndarray
    min: np.ndarray
    max: np.ndarray


@dataclass(frozen=True, eq=False)
class ClassCells:
    """Per (class k, uniform bin b) cells that hold a p_k, at ``index`` k·n_bins + b.

    Attributes:
      index: shape (K,), increasing.
      gap: Σw·(1[y = k] − p_k) over the cell, (K, 2).
      weight, abs_gap, min, max: with quantile binning only (else ``None``): Σw,
        Σw·|1[y = k] − p_k|, and the smallest and largest p_k of the cell; ``weight``
        also with ``mode="classwise"``.
      count, confidence, hits: with ``mode="classwise"`` only: samples, Σw·p_k and the
        unweighted count of y = k per cell (the class-wise bins).
      rounding: with quantile binning only (else ``None``): the cells' ``gap``, ``weight``
        and ``abs_gap`` are rounded to CELL_DIGITS significant digits when a state is made
        or read (``min`` and ``max`` are ``None``), and ``rounding`` is ρ, a bound on their
        relative error: |weight − exact| <= ρ·exact, |gap − exact| and |abs_gap − exact|
        <= ρ·(exact abs_gap). Merging adds the rounded sums exactly and takes the largest ρ
        (any merge tree gives the same sums); writing a merged state rounds them again
        (ρ + ROUNDING_STEP·(1 + ρ)).
    """

    index: np.ndarray
    gap: np.ndarray
    weight: np.ndarray | None
    abs_gap: np.ndarray | None
    min: np.ndarray | None
    max: np.ndarray | None
    count: np.ndarray | None = None
    confidence: np.ndarray | None = None
    hits: np.ndarray | None = None
    rounding: float | None = None


@dataclass(frozen=True, eq=False)
class PerClassSums:
    """Per-class sums of multi-class input (C entries each).

    Attributes:
      count: samples labelled k; weight: their Σw; correct: their Σw·correct;
      probability: Σw·p_k over all samples; cells: the class-wise bins;
      nll, brier: Σw·NLL (nats) and Σw·Brier of the samples labelled k (``None`` in a
        state written before they were added: its per-class NLL and Brier are null).
    """

    count: np.ndarray
    weight: np.ndarray
    correct: np.ndarray
    probability: np.ndarray
    cells: ClassCells
    nll: np.ndarray | None = None
    brier: np.ndarray | None = None


_QUANTILE_CELL_FIELDS = ("weight", "abs_gap", "min", "max")
#: The class cells' sums written as plain rounded numbers with quantile binning.
_ROUNDED_CELL_FIELDS = ("gap", "weight", "abs_gap")
#: Fields written only when set (absent otherwise: older states read unchanged).
_CLASSWISE_CELL_FIELDS = ("count", "confidence", "hits")
_CLASS_SCORE_SUMS = ("nll", "brier")
_BELOW_TWO = ("expected less than 2 × count: each weight is below 2**(weight_exponent + 1) "
              "(the largest is in [1, 2) × 2**weight_exponent)")


@dataclass(frozen=True, kw_only=True, eq=False)
class CalibrationState(State):
    """State of :func:`xentropy.calibration_report` (``kind`` ``"calibration"``); see the
    module docstring.

    Attributes:
      n_samples: N.
      weight_exponent: every weighted sum is of the weights divided by 2**weight_exponent.
      totals, histogram, per_class: the sums (``per_class`` ``None`` for binary input).
      per_label: multi-label input: one binary state per label (the state itself is the
        micro pool of all N·C pairs); else ``None``.
      per_group: with ``groups``: (group value, state of its rows) in first-appearance
        order; merging adds the states of equal group values and appends the groups
        first seen in later states, in their order. Else ``None``.
    """

    kind: ClassVar[str] = "calibration"
    version: int = field(default=VERSION, init=False)
    options: CalibrationOptions
    n_samples: int
    weight_exponent: int
    totals: CalibrationTotals
    histogram: ConfidenceHistogram
    per_class: PerClassSums | None
    replicates: Replicates | None = None
    per_label: tuple[CalibrationState, ...] | None = None
    per_group: tuple[tuple[int | str, CalibrationState], ...] | None = None

    # ------------------------------------------------------------------ JSON

    def to_json(self) -> dict[str, Any]:
        out = {
            "kind": self.kind,
            "version": self.version,
            "options": _options_json(self.options),
            "n_samples": self.n_samples,
            "weight_exponent": self.weight_exponent,
            "totals": _arrays_json(self.totals),
            "histogram": _arrays_json(self.histogram),
            "per_class": None if self.per_class is None else {
                **_arrays_json(self.per_class, skip=("cells",), optional=_CLASS_SCORE_SUMS),
                "cells": _cells_json(self.per_class.cells),
            },
            # Slices only when present: a plain state's JSON is unchanged.
            **({} if self.per_label is None else {
                "per_label": [_plain_json(s) for s in self.per_label]}),
            **({} if self.per_group is None else {
                "per_group": [{"group": g, "state": _plain_json(s)}
                              for g, s in self.per_group]}),
        }
        if self.replicates is not None:
            out["replicates"] = _arrays_json(self.replicates)
        return out

    @classmethod
    def read(cls, obj: dict[str, Any]) -> CalibrationState:
        obj = read_object(obj, (), ("kind", "version", "options", "n_samples",
                                    "weight_exponent", "totals", "histogram", "per_class",
                                    "replicates", "per_label", "per_group"),
                          ("per_class", "replicates", "per_label", "per_group"))
        options = _read_options(obj["options"])
        n_samples = read_int(obj["n_samples"], ("n_samples",))
        exponent = read_int(obj["weight_exponent"], ("weight_exponent",),
                            low=_EXPONENTS[0], high=_EXPONENTS[1])
        t = read_object(obj["totals"], ("totals",), CalibrationTotals.__dataclass_fields__)
        totals = CalibrationTotals(**{
            name: read_pair(t[name], ("totals", name)) for name in t
        })
        histogram = _read_histogram(obj["histogram"], options)
        per_class = None
        if options.binary:
            if obj["per_class"] is not None:
                raise StateError("expected null for binary input (no classes)",
                                 path=("per_class",), kind="not_applicable")
        else:
            if obj["per_class"] is None:
                raise StateError("expected the per-class sums of multi-class input, got null",
                                 path=("per_class",), kind="not_applicable")
            per_class = _read_per_class(obj["per_class"], options)
        replicates = _read_replicates(obj["replicates"], options)
        state = cls(options=options, n_samples=n_samples, weight_exponent=exponent,
                    totals=totals, histogram=histogram, per_class=per_class,
                    replicates=replicates,
                    per_label=_read_per_label(obj["per_label"], options, obj["options"],
                                              n_samples),
                    per_group=_read_per_group(obj["per_group"], obj["options"], n_samples))
        state._check()
        return state

    def _check(self) -> None:
        """Sums that contradict the counts or each other (see the module docstring)."""
        o, n, t, h = self.options, self.n_samples, self.totals, self.histogram
        for name in CalibrationTotals.__dataclass_fields__:
            check_non_negative(getattr(t, name), ("totals", name), name)
        w = float(t.weight[0])
        check_at_most(np.asarray(w), 2.0 * n, ("totals", "weight"), _BELOW_TWO)
        if n and w < 1 - TOLERANCE:
            raise inconsistent("expected at least 1: the largest weight is at least "
                               "2**weight_exponent", ("totals", "weight"))
        for name, bound in (("correct", 1.0), ("confidence", 1.0),
                            ("brier", 1.0 if o.binary else 2.0)):
            check_at_most(getattr(t, name)[0], bound * w, ("totals", name),
                          f"expected at most {bound:g} × weight (a mean of values <= {bound:g})")
        if n == 0 and (w or t.nll[0] or t.brier[0] or t.correct[0] or t.confidence[0]):
            raise inconsistent("expected 0: the state holds no samples", ("totals",))
        if int(h.count.sum()) != n:
            raise inconsistent(f"expected the counts to add up to n_samples = {n}, got "
                               f"{int(h.count.sum())}", ("histogram", "count"))
        hw = h.weight[:, 0]
        check_close(float(h.weight[:, 0].sum()), w, ("histogram", "weight"),
                    "expected the cell weights to add up to totals.weight")
        check_close(float(h.confidence[:, 0].sum()), float(t.confidence[0]),
                    ("histogram", "confidence"),
                    "expected the cells to add up to totals.confidence")
        if not o.binary:
            check_close(float(h.outcome[:, 0].sum()), float(t.correct[0]),
                        ("histogram", "outcome"),
                        "expected the cells to add up to totals.correct (the outcome of "
                        "multi-class input is top-label correctness)")
        check_at_most(hw, 2.0 * h.count, ("histogram", "weight"), _BELOW_TWO)
        check_at_most(h.outcome[:, 0], hw, ("histogram", "outcome"),
                      "expected at most the cell's weight (outcomes are 0 or 1)")
        check_at_most(h.abs_gap[:, 0], hw, ("histogram", "abs_gap"),
                      "expected at most the cell's weight (|outcome − value| <= 1)")
        check_at_most(np.abs(h.outcome[:, 0] - h.confidence[:, 0]), h.abs_gap[:, 0],
                      ("histogram", "abs_gap"),
                      "expected at least |outcome − confidence| (the triangle inequality)",
                      scale=h.outcome[:, 0] + h.confidence[:, 0])
        check_at_most(h.confidence[:, 0], hw * h.max, ("histogram", "confidence"),
                      "expected at most weight × max (the values lie in [min, max])")
        check_at_most(hw * h.min, h.confidence[:, 0], ("histogram", "confidence"),
                      "expected at least weight × min (the values lie in [min, max])")
        if self.per_class is not None:
            _check_per_class(self.per_class, o, n, w)
        if self.replicates is not None:
            _check_replicates(self.replicates, self, w)

    # ------------------------------------------------------------------ algebra

    def empty(self) -> CalibrationState:
        zero = np.zeros(2)
        nothing = np.zeros(0, np.int64)
        pairs = np.zeros((0, 2))
        values = np.zeros(0)
        per_class = None
        o = self.options
        if self.per_class is not None:
            c = o.n_classes
            quantile = o.binning == "quantile"
            classwise = o.mode == "classwise"
            per_class = PerClassSums(
                count=np.zeros(c, np.int64), weight=np.zeros((c, 2)),
                correct=np.zeros((c, 2)), probability=np.zeros((c, 2)),
                cells=ClassCells(
                    nothing, pairs, pairs if quantile or classwise else None,
                    pairs if quantile else None, None, None,
                    **({"count": nothing, "confidence": pairs, "hits": nothing} if classwise
                       else {}),
                    rounding=0.0 if quantile else None),
                **{name: np.zeros((c, 2)) for name in _CLASS_SCORE_SUMS},
            )
        replicates = None
        if o.bootstrap is not None:
            r, b = o.bootstrap.n_resamples, o.n_bins
            replicates = Replicates(
                streams=nothing, weight=np.zeros(r), nll=np.zeros(r), brier=np.zeros(r),
                correct=np.zeros(r), bin_weight=np.zeros((r, b)),
                bin_confidence=np.zeros((r, b)), bin_outcome=np.zeros((r, b)),
                hits=np.zeros(b, np.int64))
        return CalibrationState(
            options=o, n_samples=0, weight_exponent=0,
            totals=CalibrationTotals(zero, zero, zero, zero, zero),
            histogram=ConfidenceHistogram(nothing, nothing, pairs, pairs, pairs, pairs,
                                          values, values),
            per_class=per_class, replicates=replicates,
            per_label=None if self.per_label is None else tuple(
                s.empty() for s in self.per_label),
            per_group=None if self.per_group is None else (),
        )

    @classmethod
    def merge_all(cls, states: Sequence[Any]) -> CalibrationState:
        check_agree(states)
        options = states[0].options
        live = [s for s in states if s.n_samples > 0] or [states[0]]
        exponent = max(s.weight_exponent for s in live)
        scale = [math.ldexp(1.0, s.weight_exponent - exponent) for s in live]

        def merged(get: Any) -> np.ndarray:
            out = _compensated.merge_pairs(np.stack([get(s) * f for s, f in zip(live, scale,
                                                                                strict=True)]))
            if not np.isfinite(out).all():
                raise InputError("states", "a sum of the merged states overflows float64",
                                 kind="overflow")
            return out

        totals = CalibrationTotals(**{
            name: merged(lambda s, name=name: getattr(s.totals, name))
            for name in CalibrationTotals.__dataclass_fields__
        })
        histogram = _merge_cells(
            [s.histogram for s in live], scale, ("weight", "confidence", "outcome",
                                                 "abs_gap"), ConfidenceHistogram,
        )
        per_class = None
        if live[0].per_class is not None:
            pcs = [s.per_class for s in live]
            cell_fields = ("gap", "weight", "abs_gap", "confidence")
            per_class = PerClassSums(
                count=np.sum([p.count for p in pcs], axis=0),
                weight=merged(lambda s: s.per_class.weight),
                correct=merged(lambda s: s.per_class.correct),
                probability=merged(lambda s: s.per_class.probability),
                cells=_merge_cells([p.cells for p in pcs], scale, cell_fields, ClassCells),
                **{name: merged(lambda s, name=name: getattr(s.per_class, name))
                   for name in _CLASS_SCORE_SUMS  # absent from a state of an older writer
                   if all(getattr(p, name) is not None for p in pcs)},
            )
        replicates = None
        if options.bootstrap is not None:
            replicates = _merge_replicates(states, live, scale)
        return CalibrationState(
            options=options, n_samples=sum(s.n_samples for s in states),
            weight_exponent=exponent if any(s.n_samples for s in states) else 0,
            totals=totals, histogram=histogram, per_class=per_class, replicates=replicates,
            per_label=_merge_per_label(states), per_group=_merge_per_group(states),
        )

    def finalize(self) -> CalibrationResult:
        """The :class:`CalibrationResult` of the samples the state describes, with
        ``approximate`` listing what the state cannot give exactly (see the module
        docstring) and no ``temperature``; with ``per_label`` and ``per_group``, the
        slices' results too (as :mod:`xentropy.calibration.slices` assembles them)."""
        result = self._finalize_plain()
        if self.per_label is not None:
            from xentropy.calibration.slices import _assemble

            plain = dataclasses.replace(result, state=None)
            result = _assemble(plain, tuple(
                dataclasses.replace(s._finalize_plain(), state=None) for s in self.per_label
            ), state=self)
        if self.per_group is not None:
            result = dataclasses.replace(result, per_group=tuple(
                dataclasses.replace(s.finalize(), group=g, state=None)
                for g, s in self.per_group
            ))
        return result

    def _finalize_plain(self) -> CalibrationResult:
        o, t = self.options, self.totals
        w = float(t.weight[0])
        if self.n_samples == 0 or not w > 0:
            raise InputError("states", "the merged states hold no samples of positive "
                             "weight: no mean exists", kind="zero_denominator")
        if not np.isfinite(np.ldexp(w, self.weight_exponent)):
            raise InputError("states", "the merged sample weights sum beyond float64 (the "
                             "bins report weights as sent)", kind="overflow")
        nll = to_units(float(t.nll[0]) / w, o.units)
        if not math.isfinite(nll):
            raise InputError("states", f"the mean NLL overflows float64 in {o.units}",
                             kind="overflow")
        approximate: list[Approximation] = []
        cells = _TopCells.of(self.histogram)
        quantile = _quantile_bins(cells, o.n_bins, w)
        ace = quantile.ece
        ace_entry = Approximation("ace", quantile.ece_bound)
        if o.binning == "uniform":
            top = _uniform_bins(self.histogram, o.n_bins, self.weight_exponent)
            ece = float(_calibration_error(top, "l1")[0])
            mce = float(_calibration_error(top, "max")[0])
            rmsce = float(_calibration_error(top, "l2")[0])
            approximate.append(ace_entry)
        else:
            top = quantile.sums(self.weight_exponent)
            ece, mce, rmsce = quantile.ece, quantile.mce, quantile.rmsce
            approximate += [
                Approximation("ece", quantile.ece_bound),
                Approximation("mce", quantile.mce_bound),
                Approximation("rmsce", quantile.rmsce_bound),
                ace_entry,
                Approximation("bins", quantile.weight_share),
            ]
        per_class = None
        classwise_ece = None
        if self.per_class is not None:
            per_class, bound = _per_class_result(self.per_class, o, w)
            if bound is not None:
                approximate.append(Approximation("per_class.ece", bound))
            if o.mode == "classwise":
                per_class = _classwise_result(self.per_class, per_class, o,
                                              self.weight_exponent)
                classwise_ece = float(np.mean([k.ece for k in per_class]))
        level = None if o.bootstrap is None else o.bootstrap.confidence_level
        intervals = None
        bin_intervals = None
        if self.replicates is not None:
            assert o.bootstrap is not None
            intervals = _intervals(self.replicates, o, self.weight_exponent)
            bin_intervals = _bin_intervals(self.replicates.hits, top.count[0], level)
        estimates = None
        if "ece_debiased" in o.estimators:
            sq = float(_debiased_squared(top)[0])
            estimates = Estimates(ece_debiased=math.sqrt(max(sq, 0.0)))
        return CalibrationResult(
            n_samples=self.n_samples,
            n_classes=o.n_classes,
            accuracy=min(max(float(t.correct[0]) / w, 0.0), 1.0),
            mean_confidence=min(max(float(t.confidence[0]) / w, 0.0), 1.0),
            nll=nll,
            brier=min(max(float(t.brier[0]) / w, 0.0), 1.0 if o.binary else 2.0),
            ece=ece, mce=mce, rmsce=rmsce, ace=ace,
            bins=reliability_bins(top, bin_intervals),
            per_class=per_class,
            temperature=None,
            units=o.units, binning=o.binning, n_bins=o.n_bins,
            classwise_ece=classwise_ece, estimates=estimates, intervals=intervals,
            approximate=tuple(approximate),
            state=self,
        )


# --------------------------------------------------------------------------- building


def calibration_state(
    model: _Model, y: np.ndarray, w: np.ndarray, *, n_bins: int, binning: str, units: str,
    epsilon: float, from_logits: bool, mode: str = "top_label",
    estimators: tuple[str, ...] = (), bootstrap: ReplicateOptions | None = None,
    replicates: ReplicateSums | None = None, hits: np.ndarray | None = None,
) -> CalibrationState:
    """The state of one call of :func:`calibration_report` (its per-sample model).

    ``mode``, ``estimators``, ``bootstrap``: what the state carries (see
    :class:`CalibrationOptions`); with ``bootstrap``, ``replicates`` are the batch's
    Poisson replicate sums over the uniform bins (weights as sent) and ``hits`` the
    unweighted count of outcomes 1 per uniform bin."""
    binary = model.probs.ndim == 1
    exponent = int(np.frexp(w.max())[1]) - 1  # the largest weight in [1, 2) × 2**exponent
    ws = np.ldexp(w, -exponent)
    totals = CalibrationTotals(
        weight=_compensated.total(ws),
        correct=_compensated.total(ws * model.correct),
        confidence=_compensated.total(ws * model.confidence),
        nll=_compensated.total(ws * model.nll),
        brier=_compensated.total(ws * model.brier),
    )
    if not np.isfinite(totals.nll).all():
        raise InputError("logits", "the sum of the NLL of this batch overflows float64, so "
                         "it has no state (a state holds sums); split the batch",
                         kind="overflow")
    edges = histogram_edges(n_bins)
    values = model.confidence
    index, slot = _slots(_cell_of(values, edges), len(edges) - 1)
    k = index.shape[0]
    gap = model.outcome - values
    histogram = ConfidenceHistogram(
        index=index,
        count=np.bincount(slot, minlength=k),
        weight=_compensated.group_sums(slot, ws, k),
        confidence=_compensated.group_sums(slot, ws * values, k),
        outcome=_compensated.group_sums(slot, ws * model.outcome, k),
        abs_gap=_compensated.group_sums(slot, ws * np.abs(gap), k),
        **_extremes(slot, values, k),
    )
    return CalibrationState(
        options=CalibrationOptions(
            input="logits" if from_logits else "probabilities", binary=binary,
            n_classes=2 if binary else int(model.probs.shape[1]), n_bins=n_bins,
            binning=binning, units=units, epsilon=None if from_logits else float(epsilon),
            mode=mode, estimators=estimators, bootstrap=bootstrap,
        ),
        n_samples=int(y.shape[0]),
        weight_exponent=exponent,
        totals=totals,
        histogram=histogram,
        per_class=None if binary else _per_class_sums(model, y, ws, n_bins, binning,
                                                      classwise=mode == "classwise"),
        replicates=None if replicates is None or hits is None
        else _replicates_of(replicates, hits, exponent),
    )


def _replicates_of(r: ReplicateSums, hits: np.ndarray, exponent: int) -> Replicates:
    """A batch's replicate sums in the state's scale (weights ÷ 2**exponent, exact)."""
    def scaled(x: np.ndarray) -> np.ndarray:
        return np.ldexp(x, -exponent)

    return Replicates(
        streams=np.array(r.streams, np.int64), weight=scaled(r.weight), nll=scaled(r.nll),
        brier=scaled(r.brier), correct=scaled(r.correct), bin_weight=scaled(r.bin_weight),
        bin_confidence=scaled(r.bin_confidence), bin_outcome=scaled(r.bin_outcome),
        hits=np.asarray(hits, np.int64),
    )


def _slots(cells: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``cells`` (increasing) and the slot of each element among them."""
    flat = cells.ravel()
    if size <= max(4 * flat.size, 1 << 16):
        present = np.bincount(flat, minlength=size) > 0
        index = np.flatnonzero(present)
        lookup = np.zeros(size, np.int64)
        lookup[index] = np.arange(index.shape[0])
        return index.astype(np.int64), lookup[flat]
    index, slot = np.unique(flat, return_inverse=True)
    return index.astype(np.int64), slot.ravel()


def _extremes(slot: np.ndarray, values: np.ndarray, k: int) -> dict[str, np.ndarray]:
    lowest = np.full(k, np.inf)
    highest = np.full(k, -np.inf)
    np.minimum.at(lowest, slot, values.ravel())
    np.maximum.at(highest, slot, values.ravel())
    return {"min": lowest + 0.0, "max": highest + 0.0}


def _per_class_sums(
    model: _Model, y: np.ndarray, ws: np.ndarray, n_bins: int, binning: str, *,
    classwise: bool = False,
) -> PerClassSums:
    probs = model.probs
    n, c = probs.shape
    rows = np.arange(n)
    keys = uniform_bins(probs, n_bins)
    keys += n_bins * np.arange(c)
    index, slot = _slots(keys, c * n_bins)
    del keys
    k = index.shape[0]
    # w·(1[y = k] − p_k): −w·p everywhere, + w at the label.
    signed = probs * -ws[:, None]
    signed[rows, y] += ws
    quantile = binning == "quantile"
    extra: dict[str, Any] = {name: None for name in _CLASSWISE_CELL_FIELDS}
    if classwise:
        label_slot = slot.reshape(n, c)[rows, y]  # the cell of each sample's own class
        extra = {
            "count": np.bincount(slot, minlength=k).astype(np.int64),
            "confidence": _compensated.group_sums(slot, (probs * ws[:, None]).ravel(), k),
            "hits": np.bincount(label_slot, minlength=k).astype(np.int64),
        }
    cells = ClassCells(
        index=index,
        gap=_compensated.group_sums(slot, signed.ravel(), k),
        weight=_compensated.group_sums(slot, np.broadcast_to(ws[:, None], probs.shape), k)
        if quantile or classwise else None,
        abs_gap=_compensated.group_sums(slot, np.abs(signed).ravel(), k) if quantile else None,
        min=None, max=None,
        **extra,
    )
    del signed
    if quantile:
        cells = _rounded_cells(cells, 0.0)
    return PerClassSums(
        count=np.bincount(y, minlength=c).astype(np.int64),
        weight=_compensated.group_sums(y, ws, c),
        correct=_compensated.group_sums(y, ws * model.correct, c),
        probability=_compensated.column_sums(ws[:, None] * probs),
        cells=cells,
        nll=_compensated.group_sums(y, ws * model.nll, c),
        brier=_compensated.group_sums(y, ws * model.brier, c),
    )


# --------------------------------------------------------------------------- merging


def _merge_cells(parts: Sequence[Any], scale: Sequence[float], sums: tuple[str, ...],
                 cls: Any) -> Any:
    """Sparse cells merged: the union of the indices, sums per index."""
    index = np.concatenate([p.index for p in parts])
    distinct, slot = np.unique(index, return_inverse=True)
    k = distinct.shape[0]
    out: dict[str, Any] = {"index": distinct.astype(np.int64)}
    names = {f.name for f in dataclasses.fields(cls)}
    for name in ("count", "hits"):  # integer counts, summed exactly
        if name in names:
            out[name] = None if getattr(parts[0], name) is None else np.bincount(
                slot, np.concatenate([getattr(p, name) for p in parts]), minlength=k
            ).astype(np.int64)
    for name in names - {"index", "count", "hits", "rounding"}:
        if getattr(parts[0], name) is None:
            out[name] = None
        elif name in ("min", "max"):
            values = np.concatenate([getattr(p, name) for p in parts])
            extreme = np.full(k, np.inf if name == "min" else -np.inf)
            (np.minimum if name == "min" else np.maximum).at(extreme, slot, values)
            out[name] = extreme
        elif name in sums:
            pairs = np.concatenate([getattr(p, name) * f for p, f in zip(parts, scale,
                                                                          strict=True)])
            merged = _compensated.group_merge_pairs(slot, pairs, k)
            if not np.isfinite(merged).all():
                raise InputError("states", "a sum of the merged states overflows float64",
                                 kind="overflow")
            out[name] = merged
    if "rounding" in names and parts[0].rounding is not None:
        # The exact sums of the rounded cells (within the largest ρ of the exact ones);
        # rounded again only when written, so that any merge tree gives the same sums.
        out["rounding"] = max(p.rounding for p in parts)
    return cls(**out)


def _round_significant(x: np.ndarray) -> np.ndarray:
    """x rounded to CELL_DIGITS significant digits (the float64 nearest to the decimal);
    zeros, and magnitudes whose scaling by a power of ten would leave float64, unchanged
    (no error there)."""
    out = x.copy()
    a = np.abs(x)
    ok = (a > 1e-290) & (a < 1e290)
    v, a = x[ok], a[ok]
    e = np.floor(np.log10(a)).astype(np.int64)
    e += a >= 10.0 ** (e + 1)  # log10 rounded across a power of ten
    e -= a < 10.0 ** e
    k = CELL_DIGITS - 1 - e  # decimal places
    scale = 10.0 ** np.abs(k)
    up = k >= 0
    r = np.empty_like(v)
    r[up] = np.round(v[up] * scale[up]) / scale[up]
    r[~up] = np.round(v[~up] / scale[~up]) * scale[~up]
    out[ok] = r
    return out


def _is_rounded(cells: ClassCells) -> bool:
    """Whether the cells' sums are rounded already (as made or read; a merge's are not)."""
    for name in _ROUNDED_CELL_FIELDS:
        pairs = getattr(cells, name)
        if (pairs[:, 1] != 0).any() or (_round_significant(pairs[:, 0]) != pairs[:, 0]).any():
            return False
    return True


def _rounded_cells(cells: ClassCells, rounding: float) -> ClassCells:
    """Quantile binning's class cells with ``gap``, ``weight`` and ``abs_gap`` rounded to
    CELL_DIGITS digits, as pairs ``[x, 0]``, and ρ + ROUNDING_STEP·(1 + ρ) (|gap| is at
    most (1 + ρ)·abs_gap, so the step counts relative to the exact abs_gap too)."""
    def rounded(pairs: np.ndarray | None) -> np.ndarray:
        assert pairs is not None
        out = np.zeros((pairs.shape[0], 2))
        out[:, 0] = _round_significant(pairs[:, 0] + pairs[:, 1])
        return out

    return dataclasses.replace(
        cells, gap=rounded(cells.gap), weight=rounded(cells.weight),
        abs_gap=rounded(cells.abs_gap), min=None, max=None,
        rounding=float(rounding + ROUNDING_STEP * (1.0 + rounding)))


# --------------------------------------------------------------------------- finalizing


def _uniform_bins(h: ConfidenceHistogram, n_bins: int, exponent: int) -> _BinSums:
    """The exact uniform bins: sums of the cells they are made of."""
    b = _cell_bins(n_bins)[h.index]
    return _BinSums(
        count=np.bincount(b, h.count, minlength=n_bins).astype(np.int64)[None, :],
        weight=_compensated.group_merge_pairs(b, h.weight, n_bins)[None, :, 0],
        sum_confidence=_compensated.group_merge_pairs(b, h.confidence, n_bins)[None, :, 0],
        sum_outcome=_compensated.group_merge_pairs(b, h.outcome, n_bins)[None, :, 0],
        shift=exponent,
        edges=np.arange(n_bins + 1) / n_bins,
    )


@dataclass(frozen=True)
class _TopCells:
    """One row of cells in value order, as the quantile approximation needs them."""

    count: np.ndarray | None
    weight: np.ndarray
    confidence: np.ndarray | None
    outcome: np.ndarray | None
    gap: np.ndarray
    abs_gap: np.ndarray
    min: np.ndarray
    max: np.ndarray

    @classmethod
    def of(cls, h: ConfidenceHistogram) -> _TopCells:
        gap = h.outcome[:, 0] - h.confidence[:, 0] + (h.outcome[:, 1] - h.confidence[:, 1])
        return cls(h.count, h.weight, h.confidence, h.outcome, gap, h.abs_gap[:, 0],
                   h.min, h.max)


@dataclass(frozen=True)
class _Quantile:
    """Quantile bins of cells, and the bounds of what they give (see the module)."""

    bin_of_cell: np.ndarray
    cells: _TopCells
    n_bins: int
    total: float
    ece: float
    mce: float
    rmsce: float
    ece_bound: float
    mce_bound: float
    rmsce_bound: float
    weight_share: float

    def sums(self, exponent: int) -> _BinSums:
        """The approximate bins as the report writes them (top-label cells only)."""
        c, b, n = self.cells, self.bin_of_cell, self.n_bins
        assert c.count is not None and c.confidence is not None and c.outcome is not None
        highest = np.full(n, -np.inf)
        np.maximum.at(highest, b, c.max)
        edges = np.empty(n + 1)
        edges[0], edges[-1] = 0.0, 1.0
        edges[1:-1] = np.maximum.accumulate(highest)[:-1] + 0.0
        return _BinSums(
            count=np.bincount(b, c.count, minlength=n).astype(np.int64)[None, :],
            weight=_compensated.group_merge_pairs(b, c.weight, n)[None, :, 0],
            sum_confidence=_compensated.group_merge_pairs(b, c.confidence, n)[None, :, 0],
            sum_outcome=_compensated.group_merge_pairs(b, c.outcome, n)[None, :, 0],
            shift=exponent,
            edges=edges,
        )


def _quantile_bins(cells: _TopCells, n_bins: int, total: float, *,
                   ambiguity: float = AMBIGUITY) -> _Quantile:
    """The quantile bins of cells (each cell whole, in the bin of its smallest value) and
    rigorous bounds on the error of ECE, MCE and RMSCE against the exact quantile bins
    (see the module docstring); cumulative weights within a relative ``ambiguity`` of a
    target are ambiguous (the rounding of the sums, or of rounded cells)."""
    weight = cells.weight[:, 0]
    cum = np.cumsum(weight)
    targets = np.arange(1, n_bins) * cum[-1] / n_bins  # t_k = k·W / n_bins, as binned
    below = np.concatenate([[-np.inf], cum[:-1]])
    finite = np.isfinite(below)
    low = np.where(finite, below * (1 - ambiguity), below)
    high = np.where(finite, below * (1 + ambiguity), below)
    bin_of_cell = np.searchsorted(targets, below, side="right")  # #{t_k <= W(before)}
    first = np.searchsorted(targets, low, side="right")
    last_atomic = np.searchsorted(targets, high, side="right")
    last = np.searchsorted(targets, cum * (1 + ambiguity), side="left")  # #{t_k < W(through)}
    atomic = cells.min == cells.max
    last = np.where(atomic, last_atomic, np.maximum(last, last_atomic))
    ambiguous = last > first

    gap_sum = _compensated.group_sums(bin_of_cell, cells.gap, n_bins)[:, 0]
    bin_weight = _compensated.group_merge_pairs(bin_of_cell, cells.weight, n_bins)[:, 0]
    d = np.abs(gap_sum)
    nonempty = bin_weight > 0
    gap = np.divide(d, bin_weight, out=np.zeros(n_bins), where=nonempty)
    ece = float(d.sum() / total)
    mce = float(gap.max())
    rmsce = float(math.sqrt((d * gap).sum() / total))

    # Across each boundary k (between bins k − 1 and k), the exact bins differ from these
    # by a flow of gap mass x_k and of weight: |x_k| <= m[k], the weight at most w[k].
    a = cells.abs_gap
    m = np.zeros(n_bins + 1)
    w = np.zeros(n_bins + 1)
    for j in np.flatnonzero(ambiguous):
        home = int(bin_of_cell[j])
        for k in range(int(first[j]) + 1, int(last[j]) + 1):
            if atomic[j]:  # one value: the whole cell is on one side of t_k or the other
                m[k] += abs(cells.gap[j])
                w[k] += weight[j]
                continue
            moved = weight[j]
            if k > home:  # the samples of exact bin >= k weigh at most cum_j − t_k
                moved = min(moved, max(0.0, cum[j] * (1 + ambiguity) - targets[k - 1]))
            m[k] += _moved_gap(cells, int(j), moved)
            w[k] += moved
    # ECE·W = F(x) = Σ_b |D_b + x_b − x_{b+1}|, convex: its largest value over the box
    # |x_k| <= m[k] is at a vertex (a chain: dynamic programming over the boundaries),
    # and it is at least Σ over runs of bins of |Σ_run D_b| − m[start] − m[end + 1].
    rise = _largest_change(gap_sum, m)
    fall = float(d.sum()) - _lower_bound(gap_sum, m)
    moved_once = 2.0 * float(a[ambiguous].sum())  # each sample moves once: 2·w·|d| at most
    ece_bound = min(max(rise, fall), moved_once) / total

    alpha = m[:-1] + m[1:]
    omega = w[:-1] + w[1:]
    sure = bin_weight - omega > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        gap_low = np.where(sure, np.maximum(d - alpha, 0) / (bin_weight + omega), 0.0)
        gap_high = np.where(sure, np.minimum(1.0, (d + alpha) / (bin_weight - omega)),
                            np.where(bin_weight + omega > 0, 1.0, 0.0))
        f_low = np.where(bin_weight + omega > 0,
                         np.maximum(d - alpha, 0) ** 2 / (bin_weight + omega), 0.0)
        f_high = np.minimum(d + alpha, np.where(sure, (d + alpha) ** 2 / (bin_weight - omega),
                                                np.inf))
    exact = (omega == 0) & (alpha == 0)
    gap_low = np.where(exact, gap, gap_low)
    gap_high = np.where(exact, gap, gap_high)
    f_low = np.where(exact, d * gap, f_low)
    f_high = np.where(exact, d * gap, f_high)
    rms_low = math.sqrt(max(float(f_low.sum()) / total, 0.0))
    rms_high = math.sqrt(max(float(f_high.sum()) / total, 0.0))
    return _Quantile(
        bin_of_cell=bin_of_cell, cells=cells, n_bins=n_bins, total=total,
        ece=ece, mce=mce, rmsce=rmsce,
        ece_bound=_round_up(ece_bound),
        mce_bound=_round_up(max(mce - float(gap_low.max()), float(gap_high.max()) - mce, 0.0)),
        rmsce_bound=_round_up(max(rmsce - rms_low, rms_high - rmsce, 0.0)),
        weight_share=_round_up(float(weight[ambiguous].sum()) / total),
    )


def _moved_gap(cells: _TopCells, j: int, moved: float) -> float:
    """The largest |Σ w·(outcome − value)| of samples of cell j weighing ``moved`` at most.

    Outcomes are 0 or 1 and values lie in [min, max]: a subset of weight μ holds outcome
    mass in [max(0, μ − (W − O)), min(μ, O)] (O: the cell's Σw·outcome) and value mass in
    [μ·min, μ·max], so its gap is at most min(μ, O)·(1 − min) above 0 and
    min(μ, W − O)·max below; and at most Σw·|outcome − value| = abs_gap either way."""
    weight = float(cells.weight[j, 0])
    if cells.outcome is not None:
        o_low = o_high = float(cells.outcome[j, 0])
    else:  # outcome mass = gap + value mass, the value mass within [W·min, W·max]
        o_low = cells.gap[j] + weight * cells.min[j]
        o_high = cells.gap[j] + weight * cells.max[j]
    o_low, o_high = max(o_low, 0.0), min(o_high, weight)
    above = min(moved, o_high) * (1.0 - cells.min[j])
    below = min(moved, max(weight - o_low, 0.0)) * cells.max[j]
    return float(min(cells.abs_gap[j], moved, max(above, below)))


def _lower_bound(gaps: np.ndarray, m: np.ndarray) -> float:
    """A lower bound of Σ_b |gaps_b + x_b − x_{b+1}| over |x_k| <= m[k] (x_0 = x_B = 0).

    For any run of consecutive bins, the terms add up to at least |Σ_run gaps| minus the
    flows at its two ends (the flows inside the run cancel): over the runs of gaps of one
    sign (or bin by bin, whichever is larger)."""
    n = gaps.shape[0]
    singles = float(np.maximum(np.abs(gaps) - m[:-1] - m[1:], 0.0).sum())
    sign = np.sign(gaps)
    starts = np.flatnonzero(np.concatenate([[True], sign[1:] != sign[:-1]]))
    ends = np.concatenate([starts[1:], [n]])
    sums = np.add.reduceat(gaps, starts)
    runs = float(np.maximum(np.abs(sums) - m[starts] - m[ends], 0.0).sum())
    return max(singles, runs)


def _largest_change(gaps: np.ndarray, m: np.ndarray) -> float:
    """max over |x_k| <= m[k] (x_0 = x_B = 0) of Σ_b |gaps_b + x_b − x_{b+1}| − Σ_b |gaps_b|:
    the function is convex, so the maximum is at a vertex; the terms form a chain, so a
    dynamic programme over the two signs of each x_k finds it. Only the bins next to a
    flow change (the others add |gaps_b| to both sides), so only those are visited."""
    n = gaps.shape[0]
    active = np.flatnonzero((m[:-1] > 0) | (m[1:] > 0))
    if active.size == 0:
        return 0.0
    signs = np.array([-1.0, 1.0])
    best = np.zeros(2)  # by the sign of the flow into the bin; no flow: both alike
    for b in active:
        x_in = signs * m[b]
        x_out = signs * m[b + 1] if b + 1 < n else np.zeros(2)
        terms = best[:, None] + np.abs(gaps[b] + x_in[:, None] - x_out[None, :])
        best = terms.max(axis=0)
    return max(float(best.max()) - float(np.abs(gaps[active]).sum()), 0.0)


def _round_up(bound: float) -> float:
    """A bound, widened by the rounding of the arithmetic that produced it."""
    return bound * (1 + 1e-12) + 1e-15 if bound > 0 else 0.0


def _per_class_result(
    p: PerClassSums, o: CalibrationOptions, w: float
) -> tuple[tuple[ClassCalibration, ...], float | None]:
    c, n_bins = o.n_classes, o.n_bins
    class_weight = p.weight[:, 0]
    has = class_weight > 0
    recall = np.divide(p.correct[:, 0], class_weight, out=np.zeros(c), where=has)
    frequency = np.clip(class_weight / w, 0.0, 1.0)
    mean_probability = np.clip(p.probability[:, 0] / w, 0.0, 1.0)
    cells = p.cells
    owner = cells.index // n_bins
    bound: float | None = None
    if o.binning == "uniform":
        ece = np.bincount(owner, np.abs(cells.gap[:, 0]), minlength=c) / w
    else:
        assert cells.weight is not None and cells.abs_gap is not None
        assert cells.rounding is not None
        rho = cells.rounding
        # Rounded cells (see ClassCells): the exact values lie within ρ of these; the
        # extremes of p_k are not kept, [0, 1] bounds them (no cell counts as one value).
        # The bound covers the ECE of the exact cells' sums too: each gap moves the ECE
        # by at most ρ·abs_gap / W, and each weight the flows of the bound by ρ·weight / W.
        abs_gap = cells.abs_gap[:, 0] * (1.0 + 2.0 * rho)
        zeros, ones = np.zeros(owner.shape[0]), np.ones(owner.shape[0])
        slack = 4.0 * rho * (1.0 + rho) * np.bincount(
            owner, abs_gap + cells.weight[:, 0], minlength=c) / w
        ece = np.zeros(c)
        bounds = np.zeros(c)
        starts = np.searchsorted(owner, np.arange(c + 1))
        for k in range(c):
            s = slice(starts[k], starts[k + 1])
            if s.start == s.stop:
                continue
            row = _TopCells(None, cells.weight[s], None, None,
                            cells.gap[s, 0] + cells.gap[s, 1], abs_gap[s], zeros[s], ones[s])
            q = _quantile_bins(row, n_bins, w, ambiguity=AMBIGUITY + 3.0 * rho)
            ece[k], bounds[k] = q.ece, _round_up(q.ece_bound + float(slack[k]))
        bound = float(bounds.max())
    nll: list[float | None] = [None] * c
    brier: list[float | None] = [None] * c
    if p.nll is not None and p.brier is not None:  # (a state of an older writer has none)
        safe = np.where(has, class_weight, 1.0)
        nll = [float(v) if h else None for v, h in zip(
            to_units(p.nll[:, 0] / safe, o.units), has, strict=True)]
        _check_class_nll(nll, o.units, "states")
        brier = [float(v) if h else None for v, h in zip(
            np.clip(p.brier[:, 0] / safe, 0.0, 2.0), has, strict=True)]
    result = tuple(
        ClassCalibration(
            class_index=k, count=int(p.count[k]), frequency=float(frequency[k]),
            mean_probability=float(mean_probability[k]),
            recall=float(recall[k]) if has[k] else None, ece=float(ece[k]),
            nll=nll[k], brier=brier[k],
        )
        for k in range(c)
    )
    return result, bound


def _classwise_result(
    p: PerClassSums, entries: tuple[ClassCalibration, ...], o: CalibrationOptions,
    exponent: int,
) -> tuple[ClassCalibration, ...]:
    """Mode classwise from the state: every class's exact uniform bins (sums of its
    cells), their MCE and RMSCE, and the per-class NLL and Brier means."""
    cells, c, b = p.cells, o.n_classes, o.n_bins
    assert cells.count is not None and cells.weight is not None
    assert cells.confidence is not None and cells.hits is not None
    size = c * b

    def dense(x: np.ndarray) -> np.ndarray:  # pairs per cell -> (C, B) sums
        return _compensated.group_merge_pairs(cells.index, x, size)[:, 0].reshape(c, b)

    confidence = dense(cells.confidence)
    sums = _BinSums(
        count=np.bincount(cells.index, cells.count, minlength=size).astype(np.int64)
        .reshape(c, b),
        weight=dense(cells.weight), sum_confidence=confidence,
        sum_outcome=dense(cells.gap) + confidence, shift=exponent,
        edges=np.arange(b + 1) / b,
    )
    hits = np.bincount(cells.index, cells.hits, minlength=size).reshape(c, b)
    mce = _calibration_error(sums, "max")
    rmsce = _calibration_error(sums, "l2")
    level = None if o.bootstrap is None else o.bootstrap.confidence_level
    # Every class's intervals in one call (elementwise: the same as one call per class).
    intervals = _bin_intervals(hits, sums.count, level)
    out = []
    for k, entry in enumerate(entries):
        row = _BinSums(count=sums.count[k:k + 1], weight=sums.weight[k:k + 1],
                       sum_confidence=sums.sum_confidence[k:k + 1],
                       sum_outcome=sums.sum_outcome[k:k + 1], shift=exponent,
                       edges=sums.edges)
        out.append(dataclasses.replace(
            entry, mce=float(mce[k]), rmsce=float(rmsce[k]),
            bins=reliability_bins(row, None if intervals is None else (
                intervals[0][k], intervals[1][k])),
        ))
    return tuple(out)


def _intervals(reps: Replicates, o: CalibrationOptions, exponent: int) -> Intervals:
    """Percentile intervals of what Poisson replicates over uniform bins give exactly:
    nll, brier, accuracy, ece, mce, rmsce and ece_debiased (``ace`` and the other
    estimators re-bin or re-search every replicate: not in a state)."""
    assert o.bootstrap is not None

    def unscaled(x: np.ndarray) -> np.ndarray:  # the debiased estimate needs weights as sent
        return np.ldexp(x, exponent)

    sums = ReplicateSums(
        edges=np.arange(o.n_bins + 1) / o.n_bins, weight=unscaled(reps.weight),
        nll=unscaled(reps.nll), brier=unscaled(reps.brier), correct=unscaled(reps.correct),
        bin_weight=unscaled(reps.bin_weight), bin_confidence=unscaled(reps.bin_confidence),
        bin_outcome=unscaled(reps.bin_outcome), seed=o.bootstrap.seed, method="poisson",
        streams=tuple(reps.streams.tolist()),
    )
    level = o.bootstrap.confidence_level
    metrics = sums.metrics()
    names = ["nll", "brier", "accuracy", "ece", "mce", "rmsce", *o.estimators]
    found: dict[str, Any] = {name: percentile_interval(metrics[name], confidence_level=level)
                             for name in names}
    nll = found["nll"]
    if nll is not None:
        found["nll"] = (to_units(nll[0], o.units), to_units(nll[1], o.units))
    b = o.bootstrap
    return Intervals(**found, confidence_level=level, n_resamples=b.n_resamples,
                     seed=b.seed, method="poisson", stream=int(reps.streams.min(initial=0)))


def _merge_replicates(states: Sequence[Any], live: Sequence[Any], scale: Sequence[float]
                      ) -> Replicates:
    """Replicate sums added (rescaled to the merged exponent), streams disjoint."""
    seen: dict[int, int] = {}
    for i, st in enumerate(states):
        for stream in st.replicates.streams.tolist():
            if stream in seen:
                raise StateError(
                    f"expected distinct bootstrap streams: stream {stream} is also in "
                    f"states[{seen[stream]}] (equal streams give correlated replicates; give "
                    "each batch its own bootstrap.stream)", path=("replicates", "streams"),
                    index=i, kind="states_disagree")
            seen[stream] = i
    parts = [st.replicates for st in live]

    def total(name: str) -> np.ndarray:
        out = sum(getattr(r, name) * f for r, f in zip(parts, scale, strict=True))
        if not np.isfinite(out).all():
            raise InputError("states", "a sum of the merged states overflows float64",
                             kind="overflow")
        return np.asarray(out)

    return Replicates(
        streams=np.array(sorted(seen), np.int64),
        **{name: total(name) for name in ("weight", "nll", "brier", "correct", "bin_weight",
                                          "bin_confidence", "bin_outcome")},
        hits=np.sum([r.hits for r in parts], axis=0).astype(np.int64),
    )


# --------------------------------------------------------------------------- reading


def _cells_json(cells: ClassCells) -> dict[str, Any]:
    """The class cells; with quantile binning their rounded sums as plain numbers (each
    pair is ``[x, 0]``), ``rounding`` with them and no ``min`` or ``max``."""
    if cells.rounding is None:
        return _arrays_json(cells, optional=(*_CLASSWISE_CELL_FIELDS, "rounding"))
    if not _is_rounded(cells):  # merged: exact sums of rounded cells
        cells = _rounded_cells(cells, cells.rounding)
    out = _arrays_json(cells, optional=(*_CLASSWISE_CELL_FIELDS, "min", "max"))
    for name in _ROUNDED_CELL_FIELDS:
        out[name] = getattr(cells, name)[:, 0].tolist()
    return out


def _arrays_json(obj: Any, skip: tuple[str, ...] = (),
                 optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """The arrays of ``obj`` as lists; ``optional`` ones left out when ``None``."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        if f.name in skip:
            continue
        value = getattr(obj, f.name)
        if value is None and f.name in optional:
            continue
        out[f.name] = value if value is None or isinstance(value, float) else value.tolist()
    return out


def _options_json(o: CalibrationOptions) -> dict[str, Any]:
    """The options, those of issue 13's additions only when set."""
    out = dataclasses.asdict(o)
    if o.mode == "top_label":
        del out["mode"]
    if o.estimators:
        out["estimators"] = list(o.estimators)
    else:
        del out["estimators"]
    if o.bootstrap is None:
        del out["bootstrap"]
    return out


def _read_options(value: Any) -> CalibrationOptions:
    path: Path = ("options",)
    o = read_object(value, path, CalibrationOptions.__dataclass_fields__,
                    ("epsilon", "mode", "estimators", "bootstrap"))
    options = CalibrationOptions(
        input=read_choice(o["input"], (*path, "input"), ("probabilities", "logits")),
        binary=read_bool(o["binary"], (*path, "binary")),
        n_classes=read_int(o["n_classes"], (*path, "n_classes"), low=2),
        n_bins=read_int(o["n_bins"], (*path, "n_bins"), low=1, high=MAX_BINS),
        binning=read_choice(o["binning"], (*path, "binning"), BINNINGS),
        units=read_choice(o["units"], (*path, "units"), UNITS),
        epsilon=read_clip_margin(
            o["epsilon"], (*path, "epsilon"), clipped=o["input"] == "probabilities",
            param=CALIBRATION_PARAMS["epsilon"], what="probabilities (for the NLL)",
        ),
        mode="top_label" if o["mode"] is None else read_choice(
            o["mode"], (*path, "mode"), ("classwise",)),
        estimators=() if o["estimators"] is None else _read_estimators(
            o["estimators"], (*path, "estimators")),
        bootstrap=None if o["bootstrap"] is None else _read_bootstrap(
            o["bootstrap"], (*path, "bootstrap")),
    )
    if options.binary and options.n_classes != 2:
        raise StateError("expected 2 for binary input", path=(*path, "n_classes"),
                         kind="not_applicable")
    if options.binary and options.mode == "classwise":
        raise StateError("expected no mode for binary input (no classes)",
                         path=(*path, "mode"), kind="not_applicable")
    for name in ("mode", "estimators", "bootstrap"):
        if o[name] is not None and options.binning != "uniform":
            raise StateError(f"expected no {name} with quantile binning (states carry them "
                             "over the exact uniform bins only)", path=(*path, name),
                             kind="not_applicable")
    return options


def _read_estimators(value: Any, path: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) != 1:
        raise StateError('expected ["ece_debiased"] (the one estimator states carry)',
                         path=path, kind="type_error")
    return (read_choice(value[0], (*path, 0), MERGEABLE_ESTIMATORS),)


def _read_bootstrap(value: Any, path: Path) -> ReplicateOptions:
    b = read_object(value, path, ReplicateOptions.__dataclass_fields__)
    at = (*path, "confidence_level")
    level = read_number(b["confidence_level"], at)
    try:
        CALIBRATION_PARAMS["confidence_level"].check(level, "confidence_level")
    except InputError as err:
        raise StateError(err.message, path=at, kind=err.kind) from None
    return ReplicateOptions(
        confidence_level=level,
        n_resamples=read_int(b["n_resamples"], (*path, "n_resamples"), low=1,
                             high=int(INTERVAL_PARAMS["n_resamples"].high or 1)),
        seed=read_int(b["seed"], (*path, "seed")),
    )


def _read_matrix(value: Any, path: Path, rows: int, cols: int) -> np.ndarray:
    if not isinstance(value, list) or len(value) != rows:
        raise StateError(f"expected {rows} rows (one per replicate)", path=path,
                         kind="shape_mismatch")
    return np.array([read_numbers(row, (*path, i), cols) for i, row in enumerate(value)]
                    ).reshape(rows, cols)


def _read_replicates(value: Any, options: CalibrationOptions) -> Replicates | None:
    path: Path = ("replicates",)
    if options.bootstrap is None:
        if value is not None:
            raise StateError("expected no replicates without options.bootstrap", path=path,
                             kind="not_applicable")
        return None
    if value is None:
        raise StateError("expected the replicates of options.bootstrap, got null",
                         path=path, kind="not_applicable")
    v = read_object(value, path, Replicates.__dataclass_fields__)
    r, b = options.bootstrap.n_resamples, options.n_bins
    streams = read_counts(v["streams"], (*path, "streams"))
    if np.unique(streams).shape[0] != streams.shape[0]:
        raise inconsistent("expected distinct streams", (*path, "streams"))
    reps = Replicates(
        streams=streams,
        **{name: read_numbers(v[name], (*path, name), r)
           for name in ("weight", "nll", "brier", "correct")},
        **{name: _read_matrix(v[name], (*path, name), r, b)
           for name in ("bin_weight", "bin_confidence", "bin_outcome")},
        hits=read_counts(v["hits"], (*path, "hits"), b),
    )
    for name in ("weight", "nll", "brier", "correct", "bin_weight", "bin_confidence",
                 "bin_outcome"):
        if (getattr(reps, name) < 0).any():
            raise inconsistent(f"expected sums of non-negative terms ({name})",
                               (*path, name))
    return reps


def _check_replicates(reps: Replicates, state: CalibrationState, w: float) -> None:
    """Replicate sums that contradict each other or the bins."""
    path: Path = ("replicates",)
    if state.n_samples and reps.streams.shape[0] == 0:
        raise inconsistent("expected the stream of every batch", (*path, "streams"))
    rows = reps.bin_weight.sum(axis=1)
    bad = np.abs(rows - reps.weight) > 1e-9 * np.maximum(rows, reps.weight) + 2.0**-1000
    if bad.any():
        raise inconsistent("expected each replicate's bin weights to add up to its weight",
                           (*path, "bin_weight", int(np.flatnonzero(bad)[0])))
    for name in ("bin_confidence", "bin_outcome"):
        check_at_most(getattr(reps, name), reps.bin_weight * (1 + 1e-9), (*path, name),
                      "expected at most the bin's weight (values in [0, 1])")
    counts = np.bincount(_cell_bins(state.options.n_bins)[state.histogram.index],
                         state.histogram.count, minlength=state.options.n_bins)
    if (reps.hits > counts).any():
        raise inconsistent("expected at most the bin's count", (*path, "hits"))


def _read_histogram(value: Any, options: CalibrationOptions) -> ConfidenceHistogram:
    path: Path = ("histogram",)
    h = read_object(value, path, ConfidenceHistogram.__dataclass_fields__)
    n_cells = len(histogram_edges(options.n_bins)) - 1
    index = _read_index(h["index"], (*path, "index"), n_cells)
    k = index.shape[0]
    histogram = ConfidenceHistogram(
        index=index,
        count=read_counts(h["count"], (*path, "count"), k, low=1),
        **{name: read_pairs(h[name], (*path, name), k)
           for name in ("weight", "confidence", "outcome", "abs_gap")},
        **{name: read_numbers(h[name], (*path, name), k) for name in ("min", "max")},
    )
    for name in ("weight", "confidence", "outcome", "abs_gap"):
        check_non_negative(getattr(histogram, name), (*path, name), name)
    edges = histogram_edges(options.n_bins)
    _check_within(histogram.min, histogram.max, edges[index], edges[index + 1], index == 0,
                  path)
    return histogram


def _read_index(value: Any, path: Path, size: int) -> np.ndarray:
    index = read_counts(value, path)
    bad = index >= size
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise StateError(f"expected a cell in [0, {size}) (the cells of these options), got "
                         f"{int(index[i])}", path=(*path, i), kind="inconsistent_state")
    unordered = np.diff(index) <= 0
    if unordered.any():
        i = int(np.flatnonzero(unordered)[0]) + 1
        raise StateError("expected increasing cells (each cell once, in order)",
                         path=(*path, i), kind="inconsistent_state")
    return index


def _check_within(lowest: np.ndarray, highest: np.ndarray, lower: np.ndarray,
                  upper: np.ndarray, closed: np.ndarray, path: Path) -> None:
    """min <= max, both in their cell (lower, upper] (the first cell closed at 0)."""
    outside_min = (lowest > highest) | (lowest > upper) | (lowest < lower) | (
        (lowest == lower) & ~closed)
    outside_max = (highest > upper) | (highest < lower) | ((highest == lower) & ~closed)
    for name, bad in (("min", outside_min), ("max", outside_max)):
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise inconsistent(
                f"expected a value in the cell ({lower[i]!r}, {upper[i]!r}] with min <= max",
                (*path, name, i),
            )


def _read_class_cells(value: Any, cells_path: Path, options: CalibrationOptions
                      ) -> ClassCells:
    c, n_bins = options.n_classes, options.n_bins
    q = read_object(value, cells_path, ClassCells.__dataclass_fields__,
                    (*_QUANTILE_CELL_FIELDS, *_CLASSWISE_CELL_FIELDS, "rounding"))
    index = _read_index(q["index"], (*cells_path, "index"), c * n_bins)
    k = index.shape[0]
    quantile = options.binning == "quantile"
    if quantile and q["rounding"] is not None:
        return _read_rounded_cells(q, cells_path, index)
    if q["rounding"] is not None:
        raise StateError("expected no rounding with uniform binning (the class-wise bins "
                         "are exact)", path=(*cells_path, "rounding"), kind="not_applicable")
    extra: dict[str, Any] = {}
    for name in _QUANTILE_CELL_FIELDS:
        at = (*cells_path, name)
        if name == "weight" and options.mode == "classwise" and not quantile:
            continue  # read below, with the class-wise cells
        if not quantile:
            if q[name] is not None:
                raise StateError("expected null with uniform binning (the class-wise bins "
                                 "are exact)", path=at, kind="not_applicable")
            extra[name] = None
        elif q[name] is None:
            raise StateError("expected the cells' values with quantile binning, got null",
                             path=at, kind="not_applicable")
        elif name in ("min", "max"):
            extra[name] = read_numbers(q[name], at, k)
        else:
            extra[name] = read_pairs(q[name], at, k)
            check_non_negative(extra[name], at, name)
    classwise = options.mode == "classwise"
    for name in _CLASSWISE_CELL_FIELDS:
        at = (*cells_path, name)
        if not classwise:
            if q[name] is not None:
                raise StateError("expected no class-wise cells without mode classwise",
                                 path=at, kind="not_applicable")
            extra[name] = None
        elif q[name] is None:
            raise StateError("expected the class-wise cells of mode classwise", path=at,
                             kind="not_applicable")
        elif name == "confidence":
            extra[name] = read_pairs(q[name], at, k)
            check_non_negative(extra[name], at, name)
        else:
            extra[name] = read_counts(q[name], at, k)
    if classwise and not quantile:
        if q["weight"] is None:
            raise StateError("expected the cells' weights with mode classwise",
                             path=(*cells_path, "weight"), kind="not_applicable")
        extra["weight"] = read_pairs(q["weight"], (*cells_path, "weight"), k)
        check_non_negative(extra["weight"], (*cells_path, "weight"), "weight")
    cells = ClassCells(index=index, gap=read_pairs(q["gap"], (*cells_path, "gap"), k), **extra)
    if quantile:
        edges = np.arange(n_bins + 1) / n_bins
        b = index % n_bins
        assert cells.min is not None and cells.max is not None
        _check_within(cells.min, cells.max, edges[b], edges[b + 1], b == 0, cells_path)
        # The layout of states written before the rounded cells (exact pairs, min, max):
        # read, then held as this library holds quantile cells.
        cells = _rounded_cells(cells, 0.0)
    return cells


def _read_rounded_cells(q: dict[str, Any], cells_path: Path, index: np.ndarray
                        ) -> ClassCells:
    """Quantile binning's class cells: rounded plain numbers and their ``rounding``."""
    k = index.shape[0]
    for name in ("min", "max", *_CLASSWISE_CELL_FIELDS):
        if q[name] is not None:
            raise StateError("expected no such field with quantile binning's rounded cells",
                             path=(*cells_path, name), kind="not_applicable")
    sums = {}
    for name in _ROUNDED_CELL_FIELDS:
        at = (*cells_path, name)
        if q[name] is None:
            raise StateError("expected the cells' values with quantile binning, got null",
                             path=at, kind="not_applicable")
        values = np.zeros((k, 2))
        values[:, 0] = read_numbers(q[name], at, k)
        if name != "gap":
            check_non_negative(values, at, name)
        sums[name] = values
    rounding = read_number(q["rounding"], (*cells_path, "rounding"))
    if not 0.0 <= rounding <= _MAX_ROUNDING:
        raise StateError(f"expected a rounding in [0, {_MAX_ROUNDING:g}], got {rounding!r}",
                         path=(*cells_path, "rounding"), kind="out_of_range")
    return ClassCells(index=index, min=None, max=None, rounding=rounding, **sums)


def _read_per_class(value: Any, options: CalibrationOptions) -> PerClassSums:
    path: Path = ("per_class",)
    p = read_object(value, path, PerClassSums.__dataclass_fields__, _CLASS_SCORE_SUMS)
    c = options.n_classes
    cells_path = (*path, "cells")
    cells = _read_class_cells(p["cells"], cells_path, options)
    sums: dict[str, Any] = {}
    for name in _CLASS_SCORE_SUMS:
        if p[name] is None and options.mode == "classwise":
            raise StateError(f"expected {name} sums with mode classwise",
                             path=(*path, name), kind="missing")
        if p[name] is not None:
            sums[name] = read_pairs(p[name], (*path, name), c)
            check_non_negative(sums[name], (*path, name), name)
    return PerClassSums(
        count=read_counts(p["count"], (*path, "count"), c),
        **{name: read_pairs(p[name], (*path, name), c)
           for name in ("weight", "correct", "probability")},
        cells=cells,
        **sums,
    )


def _check_class_cells(p: PerClassSums, cells: ClassCells, owner: np.ndarray, c: int,
                       n: int) -> None:
    """The class-wise cells of mode classwise against the per-class counts."""
    path: Path = ("per_class", "cells")
    assert cells.count is not None and cells.hits is not None
    assert cells.confidence is not None and cells.weight is not None
    if (np.bincount(owner, cells.count, minlength=c) != n).any():
        raise inconsistent(f"expected the cells of every class to count n_samples = {n}",
                           (*path, "count"))
    if (cells.hits > cells.count).any():
        raise inconsistent("expected at most the cell's count", (*path, "hits"))
    if (np.bincount(owner, cells.hits, minlength=c) != p.count).any():
        raise inconsistent("expected the hits of class k to add up to its count",
                           (*path, "hits"))
    check_at_most(cells.confidence[:, 0], cells.weight[:, 0], (*path, "confidence"),
                  "expected at most the cell's weight (p_k <= 1)")
    check_at_most(cells.weight[:, 0], 2.0 * cells.count, (*path, "weight"), _BELOW_TWO)
    assert p.brier is not None
    check_at_most(p.brier[:, 0], 2.0 * p.weight[:, 0], ("per_class", "brier"),
                  "expected at most 2 × the class's weight (a Brier score is <= 2)")


def _check_per_class(p: PerClassSums, o: CalibrationOptions, n: int, w: float) -> None:
    path: Path = ("per_class",)
    for name in ("weight", "correct", "probability"):
        check_non_negative(getattr(p, name), (*path, name), name)
    if int(p.count.sum()) != n:
        raise inconsistent(f"expected the counts to add up to n_samples = {n}",
                           (*path, "count"))
    weight = p.weight[:, 0]
    check_at_most(weight, 2.0 * p.count, (*path, "weight"), _BELOW_TWO)
    check_at_most(p.correct[:, 0], weight, (*path, "correct"),
                  "expected at most the class's weight")
    check_close(float(weight.sum()), w, (*path, "weight"),
                "expected the class weights to add up to totals.weight")
    check_close(float(p.probability[:, 0].sum()), w, (*path, "probability"),
                "expected the probabilities to add up to totals.weight (rows sum to 1)",
                slack=2e-6)
    cells = p.cells
    owner = cells.index // o.n_bins
    gap_total = np.bincount(owner, cells.gap[:, 0], minlength=o.n_classes)
    expected = weight - p.probability[:, 0]
    scale = weight + p.probability[:, 0]
    rho = cells.rounding or 0.0
    if rho:  # rounded gaps: each within 2ρ·abs_gap of its exact value (with margin)
        assert cells.abs_gap is not None
        scale = scale + 2.0 * rho / TOLERANCE * np.bincount(
            owner, cells.abs_gap[:, 0], minlength=o.n_classes)
    bad = np.abs(gap_total - expected) > TOLERANCE * scale + 2.0**-1000
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise inconsistent(
            f"expected the gaps of class {k} to add up to its weight − its probability mass",
            (*path, "cells", "gap", int(np.flatnonzero(owner == k)[0]) if (owner == k).any()
             else 0),
        )
    if cells.weight is not None and cells.abs_gap is not None:
        check_at_most(np.abs(cells.gap[:, 0]), cells.abs_gap[:, 0], (*path, "cells", "abs_gap"),
                      "expected at least |gap| (the triangle inequality)",
                      slack=TOLERANCE + 3.0 * rho)
        check_at_most(cells.abs_gap[:, 0], cells.weight[:, 0], (*path, "cells", "abs_gap"),
                      "expected at most the cell's weight (|1[y = k] − p_k| <= 1)",
                      slack=TOLERANCE + 3.0 * rho)
    if cells.count is not None:
        _check_class_cells(p, cells, owner, o.n_classes, n)
    if cells.weight is not None:
        per_class_weight = np.bincount(owner, cells.weight[:, 0], minlength=o.n_classes)
        off = np.abs(per_class_weight - w) > (TOLERANCE + 2.0 * rho) * w + 2.0**-1000
        if off.any():
            k = int(np.flatnonzero(off)[0])
            raise inconsistent(f"expected the cells of class {k} to weigh totals.weight "
                               "(every sample has a p_k)", (*path, "cells", "weight"))


# --------------------------------------------------------------------------- slices


def _plain_json(state: CalibrationState) -> dict[str, Any]:
    """A slice's state as JSON: kind, version and options are those of the enclosing
    state (a group's state keeps its own ``per_label``)."""
    out = state.to_json()
    for name in ("kind", "version", "options"):
        del out[name]
    return out


def _read_slice(value: Any, path: Path, options: Any, *, labels: bool) -> CalibrationState:
    """A slice's state, read as a state of the enclosing state's ``options`` (their JSON,
    as the enclosing state was sent)."""
    if not isinstance(value, dict):
        raise StateError("expected an object (a slice's state)", path=path,
                         kind="type_error")
    for name in ("kind", "version", "options"):
        if name in value:
            raise StateError(f"unknown field {name!r}: a slice's state shares the "
                             "enclosing state's", path=(*path, name), kind="extra_forbidden")
    if "per_group" in value:
        raise StateError("unknown field 'per_group': slices do not nest groups",
                         path=(*path, "per_group"), kind="extra_forbidden")
    if not labels and "per_label" in value:
        raise StateError("unknown field 'per_label': a label's state is binary",
                         path=(*path, "per_label"), kind="extra_forbidden")
    whole = {"kind": "calibration", "version": VERSION, "options": options, **value}
    try:
        return CalibrationState.read(whole)
    except StateError as error:
        raise error.under(*path) from None


def _read_per_label(value: Any, options: CalibrationOptions, options_json: Any,
                    n_samples: int) -> tuple[CalibrationState, ...] | None:
    if value is None:
        return None
    if not options.binary:
        raise StateError("expected null for multi-class input (per_label belongs to "
                         "multi-label input, whose pairs are binary)", path=("per_label",),
                         kind="not_applicable")
    if not isinstance(value, list) or not value:
        raise StateError("expected a non-empty list of label states", path=("per_label",),
                         kind="type_error")
    out = tuple(_read_slice(v, ("per_label", k), options_json, labels=False)
                for k, v in enumerate(value))
    if sum(s.n_samples for s in out) != n_samples:
        raise inconsistent(f"expected the labels' samples to add up to n_samples = "
                           f"{n_samples} (the micro pool)", ("per_label",))
    return out


def _read_per_group(value: Any, options_json: Any, n_samples: int
                    ) -> tuple[tuple[int | str, CalibrationState], ...] | None:
    from xentropy.calibration.slices import MAX_GROUPS

    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_GROUPS:
        raise StateError(f"expected a list of at most {MAX_GROUPS} groups",
                         path=("per_group",), kind="type_error")
    out = []
    seen: set[Any] = set()
    for i, entry in enumerate(value):
        path = ("per_group", i)
        entry = read_object(entry, path, ("group", "state"))
        group = entry["group"]
        if isinstance(group, bool) or not isinstance(group, int | str):
            raise StateError("expected an integer or a string", path=(*path, "group"),
                             kind="type_error")
        if (type(group), group) in seen:
            raise StateError(f"group {group!r} is listed twice", path=(*path, "group"),
                             kind="inconsistent_state")
        seen.add((type(group), group))
        out.append((group, _read_slice(entry["state"], (*path, "state"), options_json,
                                       labels=True)))
    if len({type(g) for g, _ in out}) > 1:
        raise StateError("expected all integers or all strings", path=("per_group",),
                         kind="type_error")
    if sum(s.n_samples for _, s in out) != n_samples:
        raise inconsistent(f"expected the groups' samples to add up to n_samples = "
                           f"{n_samples}", ("per_group",))
    return tuple(out)


def _merge_per_label(states: Sequence[CalibrationState]
                     ) -> tuple[CalibrationState, ...] | None:
    sizes = [None if s.per_label is None else len(s.per_label) for s in states]
    for i, size in enumerate(sizes):
        if size != sizes[0]:
            raise StateError("expected the per_label of states[0] (as many labels, or none)",
                             path=("per_label",), index=i, kind="states_disagree")
    labels = [s.per_label for s in states if s.per_label is not None]
    if not labels:
        return None
    return tuple(CalibrationState.merge_all([p[k] for p in labels])
                 for k in range(len(labels[0])))


def _merge_per_group(states: Sequence[CalibrationState]
                     ) -> tuple[tuple[int | str, CalibrationState], ...] | None:
    if states[0].per_group is None:
        for i, s in enumerate(states):
            if s.per_group is not None:
                raise StateError("expected no per_group, as in states[0]",
                                 path=("per_group",), index=i, kind="states_disagree")
        return None
    parts: dict[tuple[type, Any], list[CalibrationState]] = {}
    kind: type | None = None
    for i, s in enumerate(states):
        if s.per_group is None:
            raise StateError("expected per_group, as in states[0]", path=("per_group",),
                             index=i, kind="states_disagree")
        for g, part in s.per_group:
            kind = kind or type(g)
            if type(g) is not kind:
                raise StateError(f"expected {kind.__name__} groups, as in states[0]",
                                 path=("per_group",), index=i, kind="states_disagree")
            parts.setdefault((kind, g), []).append(part)  # dicts keep first insertion
    from xentropy.calibration.slices import MAX_GROUPS

    if len(parts) > MAX_GROUPS:
        raise StateError(f"expected at most {MAX_GROUPS} distinct groups in the merge, got "
                         f"{len(parts)}", path=("per_group",), kind="out_of_range")
    return tuple((g, CalibrationState.merge_all(p)) for (_, g), p in parts.items())
