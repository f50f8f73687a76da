"""Reliability bins: edges, the bin of each value, and the weighted sums per bin.

Several binned quantities are handled at once, one per row of a (K, N) array: K = 1 for the
top-label confidence, K = C for the class-wise statistics (row k holds p_k of the N
samples). Everything is vectorised; the sums per bin are one ``np.bincount`` over
``row * width + slot`` keys for all rows at once.

Rules (the HTTP contract, "Precise semantics > Calibration"):

* A bin is the half-open interval (lower, upper]; the first bin also holds its lower edge.
* ``"uniform"`` edges are ``k / n_bins``, each correctly rounded (``np.arange(n + 1) / n``,
  not ``linspace``), so a decimal such as 0.6 typed on an edge lands in the bin it closes.
* ``"quantile"`` edges are weighted "inverted CDF" quantiles of the binned values: inner
  edge k (1 <= k < n_bins) is the smallest value v with W(values <= v) >= t_k, where
  t_k = k·W/n_bins in float64 and W is the total weight. Ties are never split across bins:
  equal edges make empty, zero-width bins (lower == upper), so there are always exactly
  ``n_bins`` bins. Zero-weight values never move an edge; integer weights give the edges of
  repeated rows.

Cost: O(K·N) memory and O(K·N·log N) time whatever ``n_bins`` is (plus O(n_bins) for the
one row whose every bin is reported). No (K, n_bins) array is allocated when n_bins > N:
quantile bins are found without materialising the n_bins edges of each row, and the sums
are kept for the non-empty bins only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xentropy._validation import Param

#: Largest accepted ``n_bins``: more bins than this are statistically meaningless and would
#: only make the response (one object per bin) large.
MAX_BINS = 10_000

BINNINGS = ("uniform", "quantile")

#: The constraint-table rows of the binning options, shared by every function that bins.
N_BINS = Param("integer", 15, f"Number of bins, 1 to {MAX_BINS}.", low=1, high=MAX_BINS)
BINNING = Param(
    "choice", "uniform",
    '`"uniform"` (equal width) or `"quantile"` (equal mass; edges are quantiles of the '
    "binned confidence). ACE always uses quantile bins.",
    choices=BINNINGS,
)


@dataclass(frozen=True)
class _Binning:
    """The bin of every value, and (when asked for) the edges.

    bins: shape (K, N), int64 in [0, n_bins).
    edges: shape (n_bins + 1,), non-decreasing from 0 to 1, for K = 1; ``None`` unless asked.
    """

    bins: np.ndarray
    edges: np.ndarray | None


def _assign_bins(
    values: np.ndarray, w: np.ndarray, n_bins: int, binning: str, *, edges: bool = False
) -> _Binning:
    """Bin each row of ``values`` on its own.

    Args:
      values: shape (K, N), in [0, 1].
      w: shape (N,), >= 0 with a positive sum: repeat counts for the quantiles.
      n_bins: the number of bins B.
      binning: ``"uniform"`` or ``"quantile"``.
      edges: also return the B + 1 edges (only for K = 1).

    Returns:
      the bin of each value: the number of inner edges strictly below it, i.e. the bin
      (lower, upper] that holds it (a value on repeated edges goes to the first bin they
      close).

    >>> b = _assign_bins(np.array([[0.0, 0.2, 0.2000001, 1.0]]), np.ones(4), 5, "uniform")
    >>> b.bins.tolist()
    [[0, 0, 1, 4]]
    >>> q = _assign_bins(np.array([[0.3, 0.1, 0.3, 0.9]]), np.ones(4), 2, "quantile", edges=True)
    >>> q.bins.tolist(), q.edges.tolist()
    ([[0, 0, 0, 1]], [0.0, 0.3, 1.0])
    """
    if binning == "uniform":
        bins = uniform_bins(values, n_bins)
        return _Binning(bins=bins, edges=np.arange(n_bins + 1) / n_bins if edges else None)
    return _quantile_bins(values, w, n_bins, edges=edges)


def uniform_bins(values: np.ndarray, n_bins: int) -> np.ndarray:
    """The uniform bin (lower, upper] of each value in [0, 1], int64, the shape of ``values``:
    the number of inner edges k / n_bins (correctly rounded) strictly below it, i.e.
    ``np.searchsorted(edges[1:-1], values, side="left")``, computed arithmetically.

    ``ceil(v · n) − 1`` is that bin or a neighbour (v · n is rounded once); one comparison
    with each of the two edges around it settles it, exactly. Several times faster than
    the binary search over N·C values, the bulk of a calibration state's time.

    >>> uniform_bins(np.array([0.0, 0.2, 0.2000001, 1 / 3, 0.6, 1.0]), 5).tolist()
    [0, 0, 1, 1, 2, 4]
    """
    v = np.asarray(values, dtype=np.float64)
    if n_bins == 1:
        return np.zeros(v.shape, np.int64)
    k = np.ceil(v * n_bins)
    k -= 1.0
    np.clip(k, 0, n_bins - 1, out=k)
    bins = k.astype(np.int64)
    del k
    # Exact edges, with guards at both ends: edge[b] is the lower edge of bin b.
    lower = np.concatenate([[-np.inf], np.arange(1, n_bins) / n_bins])
    upper = np.concatenate([np.arange(1, n_bins) / n_bins, [np.inf]])
    bins -= v <= lower[bins]  # v is at or below its bin's lower edge: the bin below
    bins += v > upper[bins]  # v is above its bin's upper edge: the bin above
    return bins


def _quantile_bins(values: np.ndarray, w: np.ndarray, n_bins: int, *, edges: bool) -> _Binning:
    """Quantile bins of each row of ``values`` (K, N) with weights ``w`` (N,); see the module.

    A value's bin is the number of inner edges strictly below it. Edge k is the first
    sorted value whose cumulative weight reaches t_k, so it lies strictly below a value v
    exactly when the weight of the values strictly below v reaches t_k: the bin of v is
    #{k in [1, B) : t_k <= W(values < v)}, found by bisection over k (t_k grows with k).
    This needs no edge array per row: O(K·N·log B) work and O(K·N) memory (the arrays are
    freed or updated in place as soon as possible: this runs on the N×C class columns).
    """
    n_samples = values.shape[1]
    order = np.argsort(values, axis=1)  # the order within a run of ties does not matter
    sorted_values = np.take_along_axis(values, order, axis=1)
    cum_weight = np.cumsum(w[order], axis=1)
    total = cum_weight[:, -1:].copy()
    out = None
    if edges:
        # Inverted-CDF quantile: inner edge k is the first sorted value whose cumulative
        # weight reaches t_k. Zero-weight values never start a new step of the cumulative
        # sum, so they are never chosen.
        targets = np.arange(1, n_bins) * total[0, 0] / n_bins
        idx = np.minimum(np.searchsorted(cum_weight[0], targets, side="left"), n_samples - 1)
        out = np.empty(n_bins + 1)
        out[0], out[-1] = 0.0, 1.0
        out[1:-1] = sorted_values[0, idx] + 0.0  # −0.0 -> 0.0
    # below[k, j] = W(values < sorted_values[k, j]): the cumulative weight just before the
    # run of ties that holds j, -inf for the first run (so that it gets bin 0 even where a
    # t_k underflows to 0 with subnormal weights). The cumulative weight at run starts never
    # decreases, so a running maximum carries it over the run.
    below = np.full(values.shape, -np.inf)
    run_start = sorted_values[:, 1:] != sorted_values[:, :-1]
    del sorted_values
    np.copyto(below[:, 1:], cum_weight[:, :-1], where=run_start)
    del cum_weight, run_start
    np.maximum.accumulate(below, axis=1, out=below)
    # The largest k in [0, B) with t_k = k·W/B <= below (k = 0 always holds), by bisection:
    # (B - 1).bit_length() halvings of [lo, hi], every step in place.
    lo = np.zeros(values.shape, np.int32)  # n_bins <= MAX_BINS fits
    hi = np.full(values.shape, n_bins - 1, np.int32)
    mid = np.empty_like(lo)
    target = np.empty(values.shape)
    reached = np.empty(values.shape, dtype=bool)
    for _ in range((n_bins - 1).bit_length()):
        np.add(lo, hi, out=mid)
        mid += 1
        mid //= 2  # in (lo, hi] wherever lo < hi
        # t_k rounded as the rule defines it: k·W first, then / B.
        np.multiply(mid, total, out=target)
        target /= n_bins
        np.less_equal(target, below, out=reached)
        np.copyto(lo, mid, where=reached)
        mid -= 1
        np.logical_not(reached, out=reached)
        np.copyto(hi, mid, where=reached)
    del below, hi, mid, target, reached
    bins = np.empty(values.shape, dtype=np.int64)
    np.put_along_axis(bins, order, lo, axis=1)
    return _Binning(bins=bins, edges=out)


@dataclass(frozen=True)
class _BinSums:
    """Weighted sums per bin of K binned quantities, each of shape (K, S).

    Slot s of row k holds one bin of that row; slots are in bin order and every non-empty
    bin has a slot. With ``every_bin`` (the reported row), slot b is bin b (S = n_bins) and
    ``edges`` holds the n_bins + 1 edges; otherwise S <= min(n_bins, N), ``edges`` is
    ``None``, and when n_bins > N a slot holds the s-th non-empty bin of its row (empty bins
    have zero sums, so no metric depends on them).

    The weights were multiplied by 2**-shift (exact) so that the products w·c stay normal
    numbers; every statistic is a ratio of these sums, so the scale cancels, and
    :meth:`weight_unscaled` undoes it for reporting.
    """

    count: np.ndarray
    weight: np.ndarray
    sum_confidence: np.ndarray
    sum_outcome: np.ndarray
    shift: int = 0
    edges: np.ndarray | None = None
    #: The unweighted count of outcome 1 per slot (for Clopper–Pearson), when asked for.
    hits: np.ndarray | None = None

    def weight_unscaled(self) -> np.ndarray:
        """The weights per slot as sent (shape (K, S))."""
        return np.ldexp(self.weight, self.shift)


def _binned(
    values: np.ndarray,
    outcomes: np.ndarray,
    w: np.ndarray,
    n_bins: int,
    binning: str,
    *,
    every_bin: bool,
    hits: bool = False,
) -> _BinSums:
    """Bin each row of ``values`` and sum count, w, w·value and w·outcome per bin (and,
    with ``hits``, the unweighted count of outcomes 1).

    Args:
      values, outcomes: shape (K, N): the binned values, in [0, 1], and their observed
        outcomes (0/1, or any number in [0, 1]).
      w: shape (N,), >= 0 with a positive sum.
      n_bins: the number of bins B.
      binning: ``"uniform"`` or ``"quantile"`` (see :func:`_assign_bins`).
      every_bin: one slot per bin (S = B) and the edges (for K = 1: the reported bins);
        else at most min(B, N) slots per row.

    Returns:
      a :class:`_BinSums` of shape (K, S). Each sum is accumulated in sample order (one
      bincount), whatever the slot layout, so a bin's sums do not depend on it.

    >>> s = _binned(np.array([[0.1, 0.3, 0.9]]), np.array([[0.0, 1.0, 1.0]]), np.ones(3), 2,
    ...             "uniform", every_bin=True)
    >>> s.count.tolist(), s.weight.tolist(), s.sum_confidence.tolist(), s.sum_outcome.tolist()
    ([[2, 1]], [[2.0, 1.0]], [[0.4, 0.9]], [[1.0, 1.0]])
    >>> s.edges.tolist()
    [0.0, 0.5, 1.0]
    """
    assignment = _assign_bins(values, w, n_bins, binning, edges=every_bin)
    k_rows, n_samples = values.shape
    # Row k owns the keys [k·B, (k + 1)·B).
    keys = assignment.bins + n_bins * np.arange(k_rows)[:, None]
    if every_bin or n_bins <= n_samples:
        width = n_bins
        slots = keys.ravel()
    else:
        # At most N of the B bins of a row are non-empty: number them in bin order, row by
        # row, so that the sums take O(K·N) memory instead of O(K·B).
        distinct, slot_of_key = np.unique(keys.ravel(), return_inverse=True)
        del keys
        row_of_key = distinct // n_bins
        rank = np.arange(distinct.shape[0]) - np.searchsorted(distinct, row_of_key * n_bins)
        width = int(rank.max()) + 1
        slots = (row_of_key * width + rank)[slot_of_key]
        del distinct, slot_of_key, row_of_key, rank
    size = k_rows * width

    def total(x: np.ndarray | None) -> np.ndarray:
        weights = None if x is None else np.broadcast_to(x, values.shape).ravel()
        return np.bincount(slots, weights=weights, minlength=size).reshape(k_rows, width)

    # FIX: weights below 1 are first scaled up by a power of two (exact: no bit is lost) so
    # that the products w·c stay normal numbers. With subnormal weights (1e-320) they kept a
    # few significant bits only: a bin's mean confidence came out 0.73123 instead of
    # 0.73106, and the ECE above the RMSCE.
    shift = min(0, int(np.frexp(w.max())[1]))
    ws = np.ldexp(w, -shift)
    edges = assignment.edges
    del assignment  # the bins are in the slots now
    return _BinSums(
        count=total(None),
        weight=total(ws),
        sum_confidence=total(ws * values),
        sum_outcome=total(ws * outcomes),
        shift=shift,
        edges=edges,
        hits=total(outcomes) if hits else None,
    )


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
      accuracy_interval: with a ``confidence_level``, the Clopper–Pearson interval of the
        bin's unweighted count of outcomes 1 among ``count``; ``None`` otherwise or when
        the bin is empty.
    """

    lower: float
    upper: float
    count: int
    weight: float
    mean_confidence: float | None
    accuracy: float | None
    accuracy_interval: tuple[float, float] | None = None


def reliability_bins(
    top: _BinSums, intervals: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[CalibrationBin, ...]:
    """The reported bins of one row of sums (``every_bin``): None statistics where W_b = 0.
    ``intervals``: the (lower, upper) bounds of each bin's ``accuracy_interval`` (``nan``
    for none)."""
    assert top.edges is not None  # every_bin
    weight = top.weight[0]
    nonempty = weight > 0
    zeros = np.zeros_like(weight)
    conf = np.divide(top.sum_confidence[0], weight, out=zeros.copy(), where=nonempty)
    acc = np.divide(top.sum_outcome[0], weight, out=zeros, where=nonempty)
    edges = top.edges
    # A weighted mean of values in [lower, upper] lies in that interval; Σwc / Σw can
    # leave it by an ulp (w·c/w != c), so it is put back.
    conf = np.clip(conf, edges[:-1], edges[1:])
    unscaled = top.weight_unscaled()[0]
    return tuple(
        CalibrationBin(
            lower=float(edges[b]),
            upper=float(edges[b + 1]),
            count=int(top.count[0, b]),
            weight=float(unscaled[b]),
            mean_confidence=float(conf[b]) if nonempty[b] else None,
            accuracy=float(acc[b]) if nonempty[b] else None,
            accuracy_interval=None if intervals is None or not np.isfinite(intervals[0][b])
            else (float(intervals[0][b]), float(intervals[1][b])),
        )
        for b in range(weight.shape[0])
    )
