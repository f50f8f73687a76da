"""Slices of a calibration report: multi-label input (``per_label``, ``macro``, ``micro``)
and groups (``per_group``), the part of :func:`~xentropy.calibration_report` that
``targets`` / ``multilabel`` and ``groups`` switch on.

Every slice's report is, by construction, the report of a request holding that slice
alone: a label's report is the shape-N binary report of its column, a group's report the
report of its rows (with ``multilabel``, the multi-label report of its rows). Floats are
equal to the last bit, not approximately: the numbers of a slice are summed in the order
a separate request sums them.

How the slices are computed (``groups``: at most MAX_GROUPS distinct values, G of them;
a multi-label problem of C labels is the N·C binary (probability, target) pairs, row-major,
partitioned by label, so labels and groups are one mechanism):

* The group values are sorted once (a stable argsort) to number them in order of first
  appearance and to make each group's rows one contiguous run, in request order.
* The per-sample quantities (NLL, Brier, confidence, correctness) are computed once for
  all rows, row by row, as a single request computes them.
* The binned sums of every group (count, weight, Σw·confidence, Σw·outcome per bin) are
  one group-major ``np.bincount`` over the G × n_bins cells (key group·n_bins + bin), for
  the request's binning and for the quantile bins of ACE; the ECE, MCE and RMSCE of all
  groups are one :func:`~xentropy.calibration.metrics._calibration_error` call on the
  (G, n_bins) sums. A bincount adds each cell's values in row order, which is the order of
  a separate request, so the sums are those of a separate request exactly.
* What needs the group's own values is done per group, one NumPy call each on the
  group's run (O(N) work in all plus a fixed cost per group, G <= MAX_GROUPS): the
  weighted means (a dot product, as a single request takes it), the quantile bin edges
  (weighted quantiles of the group's own confidences), and ``per_class``.
* Options that go beyond these core statistics (``fit_temperature``, and any option that
  is not in ``_CORE_OPTIONS``, such as those added to ``CALIBRATION_PARAMS`` later) make
  each slice's report the full :func:`~xentropy.calibration_report` of the slice's rows:
  those options then apply per slice without code here. Temperature scaling, for one,
  solves for T on the slice's own logits.

Memory: O(N·C) for the per-sample quantities and O(G·C·n_bins) for the binned sums of
groups × labels, which the service bounds (XENTROPY_MAX_CLASS_BINS and the element limit,
which counts the bins of the answer).

>>> from xentropy.calibration import calibration_report
>>> r = calibration_report([0.9, 0.2, 0.65, 0.4], [1, 0, 0, 1], groups=["b", "a", "b", "a"],
...                        n_bins=2)
>>> [(g.group, g.n_samples, round(g.ece, 6)) for g in r.per_group]
[('b', 2, 0.275), ('a', 2, 0.2)]
>>> g = calibration_report([0.9, 0.65], [1, 0], n_bins=2)
>>> g == dataclasses.replace(r.per_group[0], group=None)
True
>>> m = calibration_report([[0.9, 0.2], [0.3, 0.6]], targets=[[1, 0], [0, 1]],
...                        multilabel=True, n_bins=2)
>>> m.n_samples, len(m.per_label), m.per_label[1] == calibration_report(
...     [0.2, 0.6], [0, 1], n_bins=2), round(m.macro.brier, 6)
(4, 2, True, 0.075)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from xentropy._numerics import to_units
from xentropy._validation import (
    InputError,
    as_float_array,
    check_exactly_one,
    check_length,
    check_range,
    check_same_shape,
    first_index,
    number_text,
)
from xentropy.calibration.binning import _assign_bins, _BinSums, reliability_bins
from xentropy.calibration.metrics import (
    _calibration_error,
    _check_sample_weights,
    _from_logits,
    _from_probabilities,
    _mean,
    _Model,
)

if TYPE_CHECKING:
    from xentropy.calibration.report import CalibrationResult
    from xentropy.states.calibration import CalibrationState

#: Most distinct ``groups`` values of one report.
MAX_GROUPS = 10_000

#: The options the grouped core computes itself; any other option that is not at its
#: default makes every slice's report a full :func:`calibration_report` of the slice.
_CORE_OPTIONS = frozenset({"n_bins", "binning", "units", "epsilon", "return_state",
                           "multilabel"})

#: The scalar metrics that ``macro`` averages over labels.
MACRO_METRICS = ("accuracy", "mean_confidence", "nll", "brier", "ece", "mce", "rmsce", "ace")


@dataclass(frozen=True)
class MacroCalibration:
    """The mean over labels of every scalar metric of the per-label reports.

    Attributes:
      accuracy, mean_confidence, nll, brier, ece, mce, rmsce, ace: each the unweighted
        mean over the C labels of that metric of ``per_label``.
    """

    accuracy: float
    mean_confidence: float
    nll: float
    brier: float
    ece: float
    mce: float
    rmsce: float
    ace: float


def macro(per_label: tuple[CalibrationResult, ...]) -> MacroCalibration:
    """The mean over labels of each metric of ``MACRO_METRICS`` (math.fsum / C)."""
    return MacroCalibration(**{
        name: math.fsum(getattr(r, name) for r in per_label) / len(per_label)
        for name in MACRO_METRICS
    })


@dataclass(frozen=True)
class _Partition:
    """A partition of the M units (rows, or pairs) of a problem into G slices.

    codes: (M,), the slice of each unit, in [0, G), numbered by first appearance.
    order: (M,), the units slice by slice, each slice's in increasing order.
    start, stop: (G,), slice g is ``order[start[g]:stop[g]]``.
    values: the G slice labels as reported (group values, or label indices).
    """

    codes: np.ndarray
    order: np.ndarray
    start: np.ndarray
    stop: np.ndarray
    values: tuple[Any, ...]

    @property
    def size(self) -> int:
        return len(self.values)

    def rows(self, g: int) -> np.ndarray:
        return self.order[self.start[g]:self.stop[g]]

    @classmethod
    def of_codes(cls, codes: np.ndarray, n_codes: int, values: tuple[Any, ...] = ()
                 ) -> _Partition:
        """Dense codes already numbered in the wanted order (every code present)."""
        counts = np.bincount(codes, minlength=n_codes)
        stop = np.cumsum(counts)
        return cls(codes=codes, order=np.argsort(codes, kind="stable"), start=stop - counts,
                   stop=stop, values=values or tuple(range(n_codes)))


def _group_partition(groups: ArrayLike, n_samples: int) -> _Partition:
    """The partition of the N rows by ``groups`` (ints or strings), in first-appearance
    order, from one stable sort of the values."""
    arr = np.asarray(groups)
    if arr.dtype.kind not in "iuUO":
        raise InputError("groups", f"expected integers or strings, got dtype {arr.dtype}",
                         kind="type_error")
    check_length(arr, "groups", n_samples, "one group per sample")
    try:
        perm = np.argsort(arr, kind="stable")
    except TypeError:  # an object array mixing types that do not compare
        raise InputError("groups", "expected all integers or all strings, got a mixture",
                         kind="type_error") from None
    ordered = arr[perm]
    new_run = np.empty(n_samples, dtype=bool)
    new_run[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new_run[1:])
    run_start = np.flatnonzero(new_run)
    first_row = perm[run_start]  # stable: the first appearance of each value
    n_groups = run_start.shape[0]
    if n_groups > MAX_GROUPS:
        raise InputError(
            "groups", f"expected at most {MAX_GROUPS} distinct groups, got {n_groups}",
            position=(int(np.sort(first_row)[MAX_GROUPS]),), kind="out_of_range",
        )
    run_stop = np.append(run_start[1:], n_samples)
    run_of_code = np.argsort(first_row)
    code_of_run = np.empty(n_groups, np.int64)
    code_of_run[run_of_code] = np.arange(n_groups)
    codes = np.empty(n_samples, np.int64)
    codes[perm] = code_of_run[np.cumsum(new_run) - 1]
    values = tuple(ordered[run_start[run_of_code]].tolist())
    if arr.dtype.kind == "O":  # a loop over the distinct values, not over the samples
        kinds = {type(v) for v in values}
        if not (kinds <= {str} or kinds <= {int}) or bool in kinds:
            raise InputError(
                "groups", "expected all integers or all strings, got "
                + ", ".join(sorted(k.__name__ for k in kinds)), kind="type_error",
            )
    return _Partition(codes=codes, order=perm, start=run_start[run_of_code],
                      stop=run_stop[run_of_code], values=values)


@dataclass(frozen=True)
class _Problem:
    """Validated input of M units (rows, or the pairs of multi-label input).

    scores: the probabilities or logits of the units, (M,) or (M, C); from_logits says which.
    y: (M,) labels; w: (M,) weights (ones without weights); weighted: weights were sent.
    model: the per-sample quantities of all units.
    """

    scores: np.ndarray
    from_logits: bool
    y: np.ndarray
    w: np.ndarray
    weighted: bool
    model: _Model

    def request(self, rows: np.ndarray) -> dict[str, Any]:
        """The arguments of a separate request holding these units."""
        key = "logits" if self.from_logits else "probabilities"
        return {key: self.scores[rows], "labels": self.y[rows],
                "sample_weights": self.w[rows] if self.weighted else None}


def _slice_model(model: _Model, rows: np.ndarray) -> _Model:
    return _Model(**{f.name: getattr(model, f.name)[rows]
                     for f in dataclasses.fields(_Model)})


def _sliced_sums(values: np.ndarray, outcomes: np.ndarray, w: np.ndarray, part: _Partition,
                 n_bins: int, binning: str, shifts: np.ndarray
                 ) -> tuple[_BinSums, list[np.ndarray | None]]:
    """Every bin of every slice, from one group-major bincount: sums of shape (G, B).

    Returns the sums (with ``shift`` 0: the weights of slice g are scaled by 2**-shifts[g],
    as :func:`_binned` scales a single request's) and the edges of each slice's bins."""
    g_count, n_units = part.size, values.shape[0]
    bins = np.empty(n_units, np.int64)
    if binning == "uniform":
        uniform = _assign_bins(values[None, :], w, n_bins, "uniform", edges=True)
        bins[:] = uniform.bins[0]
        edges = [uniform.edges] * g_count
    else:  # the quantiles of each slice's own values
        edges = []
        for g in range(g_count):
            rows = part.rows(g)
            q = _assign_bins(values[rows][None, :], w[rows], n_bins, "quantile", edges=True)
            bins[rows] = q.bins[0]
            edges.append(q.edges)
    keys = part.codes * n_bins + bins
    size = g_count * n_bins
    ws = np.ldexp(w, -shifts[part.codes])

    def total(x: np.ndarray | None) -> np.ndarray:
        return np.bincount(keys, weights=x, minlength=size).reshape(g_count, n_bins)

    return _BinSums(count=total(None), weight=total(ws), sum_confidence=total(ws * values),
                    sum_outcome=total(ws * outcomes)), edges


def _shifts(w: np.ndarray, part: _Partition) -> np.ndarray:
    """Per slice, the exponent ``_binned`` scales that slice's weights by."""
    # reduceat needs increasing offsets: the slices in the order they lie in ``order``.
    by_offset = np.argsort(part.start)
    largest = np.empty(part.size)
    largest[by_offset] = np.maximum.reduceat(w[part.order], part.start[by_offset])
    return np.minimum(0, np.frexp(largest)[1])


def _row(sums: _BinSums, g: int, shift: int, edges: np.ndarray | None) -> _BinSums:
    return _BinSums(count=sums.count[g:g + 1], weight=sums.weight[g:g + 1],
                    sum_confidence=sums.sum_confidence[g:g + 1],
                    sum_outcome=sums.sum_outcome[g:g + 1], shift=shift, edges=edges)


def _reports(problem: _Problem, part: _Partition, options: dict[str, Any]
             ) -> tuple[list[CalibrationResult], list[CalibrationState] | None]:
    """The report of each slice of ``problem``, equal to a separate request's, and with
    ``return_state`` each slice's state (else ``None``), as that request would give it."""
    from xentropy.calibration.report import calibration_report

    _check_slice_weights(problem.w, problem.weighted, part)
    with_states = bool(options["return_state"])
    if any(value != _default(name) for name, value in options.items()
           if name not in _CORE_OPTIONS):
        plain = {**options, "multilabel": False}
        full = [calibration_report(**problem.request(part.rows(g)), **plain)
                for g in range(part.size)]
        states = [_state_of(r) for r in full] if with_states else None
        return [dataclasses.replace(r, state=None) for r in full], states
    reports = _core_reports(problem, part, options)
    if not with_states:
        return reports, None
    return reports, [_unit_state(problem, part.rows(g), options) for g in range(part.size)]


def _state_of(result: CalibrationResult) -> CalibrationState:
    assert result.state is not None  # return_state
    return result.state


def _default(name: str) -> Any:
    from xentropy.calibration.report import CALIBRATION_PARAMS

    return CALIBRATION_PARAMS[name].default


def _check_slice_weights(w: np.ndarray, weighted: bool, part: _Partition) -> None:
    """Each slice needs a positive weight, as a separate request does."""
    if not weighted:
        return
    positive = np.bincount(part.codes, weights=w > 0, minlength=part.size)
    if (positive == 0).any():
        g = int(np.flatnonzero(positive == 0)[0])
        raise InputError(
            "sample_weights", f"expected a positive weight in every slice, got only zeros "
            f"in slice {part.values[g]!r} (its report would have no mean)",
            position=(int(part.rows(g)[0]),), kind="zero_denominator",
        )


def _core_reports(problem: _Problem, part: _Partition, options: dict[str, Any]
                  ) -> list[CalibrationResult]:
    from xentropy.calibration.report import CalibrationResult, _per_class

    n_bins, binning, units = options["n_bins"], options["binning"], options["units"]
    m, w = problem.model, problem.w
    shifts = _shifts(w, part)
    top, edges = _sliced_sums(m.confidence, m.outcome, w, part, n_bins, binning, shifts)
    ece, mce, rmsce = (_calibration_error(top, norm) for norm in ("l1", "max", "l2"))
    if binning == "quantile":
        ace = ece
    else:
        ace = _calibration_error(
            _sliced_sums(m.confidence, m.outcome, w, part, n_bins, "quantile", shifts)[0],
            "l1")
    binary = m.probs.ndim == 1
    out = []
    for g in range(part.size):
        rows = part.rows(g)
        wg = w[rows]
        wn = wg / wg.sum()

        def mean(x: np.ndarray, wn: np.ndarray = wn, rows: np.ndarray = rows) -> float:
            return _mean(wn, x[rows])

        nll = to_units(mean(m.nll), units)
        if not math.isfinite(nll):
            raise InputError("logits", f"the mean NLL of slice {part.values[g]!r} "
                             f"overflows float64 in {units}", kind="overflow")
        out.append(CalibrationResult(
            n_samples=int(rows.shape[0]),
            n_classes=2 if binary else int(m.probs.shape[1]),
            accuracy=mean(m.correct),
            mean_confidence=mean(m.confidence),
            nll=nll,
            brier=mean(m.brier),
            ece=float(ece[g]), mce=float(mce[g]), rmsce=float(rmsce[g]), ace=float(ace[g]),
            bins=reliability_bins(_row(top, g, int(shifts[g]), edges[g])),
            per_class=None if binary else _per_class(
                _slice_model(m, rows), problem.y[rows], wg, wn, n_bins, binning, units, None),
            temperature=None,
            units=units, binning=binning, n_bins=n_bins,
        ))
    return out


# --------------------------------------------------------------------------- entry point


def sliced_report(
    probabilities: ArrayLike | None,
    labels: ArrayLike | None,
    *,
    logits: ArrayLike | None,
    targets: ArrayLike | None,
    groups: ArrayLike | None,
    sample_weights: ArrayLike | None,
    options: dict[str, Any],
) -> CalibrationResult:
    """:func:`~xentropy.calibration_report` with ``targets``/``multilabel`` or ``groups``
    (see the module docstring); ``options`` are its keyword options."""
    from xentropy.calibration.report import calibration_report

    if not options["multilabel"]:
        if targets is not None:
            raise InputError("targets", "expected multilabel: true with targets (N×C 0/1 "
                             "labels of independent probabilities); single-label input "
                             "takes labels", kind="not_applicable")
        whole = calibration_report(probabilities, labels, logits=logits,
                                   sample_weights=sample_weights,
                                   **{**options, "multilabel": False})
        problem = _single_label(probabilities, labels, logits, sample_weights, options)
        assert groups is not None  # the dispatch of calibration_report
        part = _group_partition(groups, problem.y.shape[0])
        reports, states = _reports(problem, part, options)
        per_group = tuple(dataclasses.replace(r, group=v)
                          for r, v in zip(reports, part.values, strict=True))
        state = whole.state
        if states is not None:
            assert state is not None
            state = dataclasses.replace(state, per_group=tuple(zip(part.values, states,
                                                                   strict=True)))
        return dataclasses.replace(whole, per_group=per_group, state=state)

    pairs, n_rows, n_labels = _multi_label(probabilities, labels, logits, targets,
                                           sample_weights, options["epsilon"])
    labels_part = _Partition.of_codes(np.tile(np.arange(n_labels), n_rows), n_labels)
    # The pool of all pairs is a request of its own (it checks the options), with its state.
    pool = calibration_report(**pairs.request(np.arange(n_rows * n_labels)),
                              **{**options, "multilabel": False})
    whole = _multilabel(pairs, ([dataclasses.replace(pool, state=None)],
                                None if pool.state is None else [pool.state]),
                        labels_part, n_labels, options)[0]
    if groups is None:
        return whole
    rows_part = _group_partition(groups, n_rows)
    # A group without weight, named by its first row (not pair).
    _check_slice_weights(pairs.w[::n_labels], pairs.weighted, rows_part)
    # The pairs of group g are those of its rows; its (g, k) cells number g·C + k.
    pair_groups = np.repeat(rows_part.codes, n_labels)
    grouped = _multilabel(
        pairs, _reports(pairs, _Partition.of_codes(pair_groups, rows_part.size), options),
        _Partition.of_codes(pair_groups * n_labels + labels_part.codes,
                            rows_part.size * n_labels),
        n_labels, options, rows_part.values)
    state = whole.state
    if state is not None:
        state = dataclasses.replace(state, per_group=tuple(
            (value, _state_of(r)) for value, r in zip(rows_part.values, grouped,
                                                      strict=True)))
    return dataclasses.replace(whole, per_group=tuple(
        dataclasses.replace(r, state=None) for r in grouped), state=state)


def _multilabel(pairs: _Problem,
                pools: tuple[list[CalibrationResult], list[CalibrationState] | None],
                cells: _Partition, n_labels: int, options: dict[str, Any],
                values: tuple[Any, ...] = (None,)) -> list[CalibrationResult]:
    """The multi-label report of each pool of pairs (all pairs, or a group's) from the
    pools' (micro) reports and states, and their labels, cells ``g·C + k``: the micro
    report at the top, its labels' reports, their mean; with ``return_state``, the pool's
    state with its labels'."""
    micro, micro_states = pools
    per_cell, cell_states = _reports(pairs, cells, options)
    out = []
    for g, value in enumerate(values):
        labels = slice(g * n_labels, (g + 1) * n_labels)
        state = None
        if micro_states is not None and cell_states is not None:
            state = dataclasses.replace(micro_states[g], per_label=tuple(cell_states[labels]))
        out.append(_assemble(micro[g], tuple(per_cell[labels]), group=value, state=state))
    return out


def _assemble(micro: CalibrationResult, per_label: tuple[CalibrationResult, ...], *,
              group: Any = None, state: CalibrationState | None = None) -> CalibrationResult:
    """The multi-label report: the top level is the micro report (all pairs pooled), with
    ``per_label``, ``macro`` and ``micro`` beside it."""
    return dataclasses.replace(micro, per_label=per_label, macro=macro(per_label),
                               micro=micro, group=group, state=state)


def _single_label(probabilities: ArrayLike | None, labels: ArrayLike | None,
                  logits: ArrayLike | None, sample_weights: ArrayLike | None,
                  options: dict[str, Any]) -> _Problem:
    """The arrays of input that :func:`calibration_report` has already validated."""
    from_logits = probabilities is None
    scores = np.ascontiguousarray(
        as_float_array(logits if from_logits else probabilities,
                       "logits" if from_logits else "probabilities", ndim=(1, 2)))
    y = np.asarray(labels).astype(np.int64, copy=False)
    w = _check_sample_weights(sample_weights, scores.shape[0])
    model = (_from_logits(scores, y) if from_logits
             else _from_probabilities(scores, y, options["epsilon"]))
    return _Problem(scores, from_logits, y, w, sample_weights is not None, model)


def _multi_label(probabilities: ArrayLike | None, labels: ArrayLike | None,
                 logits: ArrayLike | None, targets: ArrayLike | None,
                 sample_weights: ArrayLike | None, epsilon: float
                 ) -> tuple[_Problem, int, int]:
    """Validated multi-label input as its N·C binary pairs (row-major)."""
    check_exactly_one("probabilities", probabilities, "logits", logits)
    if labels is not None:
        raise InputError("labels", "expected null with multilabel: true (multi-label input "
                         "takes targets, N×C 0/1)", kind="not_applicable")
    if targets is None:
        raise InputError("targets", "expected N×C 0/1 targets with multilabel: true, got "
                         "none", kind="missing")
    from_logits = probabilities is None
    field = "logits" if from_logits else "probabilities"
    scores = np.ascontiguousarray(
        as_float_array(logits if from_logits else probabilities, field, ndim=(1, 2)))
    if scores.ndim != 2:  # a rule between fields: shape N is binary input otherwise
        raise InputError(field, f"expected N×C {field} with multilabel: true (one column "
                         f"per label), got shape {scores.shape[0]}", kind="shape_mismatch")
    if not from_logits:
        check_range(scores, field, low=0.0, high=1.0, what="a probability")
    t = as_float_array(targets, "targets", ndim=(1, 2))
    check_same_shape(t, "targets", scores.shape, field)
    bad = (t != 0) & (t != 1)
    if bad.any():
        pos = first_index(bad)
        raise InputError("targets", f"expected 0 or 1, got {number_text(t[pos])}", position=pos,
                         kind="out_of_range")
    n_rows, n_labels = scores.shape
    w = _check_sample_weights(sample_weights, n_rows)
    flat = scores.ravel()
    y = t.astype(np.int64).ravel()
    pair_w = np.repeat(w, n_labels)
    model = _from_logits(flat, y) if from_logits else _from_probabilities(flat, y, epsilon)
    return (_Problem(flat, from_logits, y, pair_w, sample_weights is not None, model),
            n_rows, n_labels)


# --------------------------------------------------------------------------- states


def _unit_state(problem: _Problem, rows: np.ndarray, options: dict[str, Any]
                ) -> CalibrationState:
    from xentropy.states.calibration import calibration_state

    return calibration_state(
        _slice_model(problem.model, rows), problem.y[rows], problem.w[rows],
        n_bins=options["n_bins"], binning=options["binning"], units=options["units"],
        epsilon=options["epsilon"], from_logits=problem.from_logits,
    )
