"""Estimators of the calibration error beyond the plug-in ECE, and the class-wise ECE.

Every estimator takes one binary calibration problem: ``confidences`` (N,) in [0, 1] (the
top-label confidence, or a binary model's probability of class 1) against ``outcomes``
(N,) in {0, 1} (top-label correctness, or the label), with optional ``sample_weights``
that act as repeat counts (as everywhere in :mod:`xentropy.calibration`):

* :func:`ece_debiased` — Kumar, Liang & Ma (2019), "Verified uncertainty calibration":
  the debiased estimate of the squared L2 calibration error over the request's bins,
  reported as its square root.
* :func:`ece_sweep` — Roelofs, Cain, Shlens & Mozer (2022), "Mitigating bias in
  calibration error estimation": the L1 ECE over equal-mass bins with the largest bin
  count that keeps the bin accuracies monotone.
* :func:`smooth_ece` — Błasiok & Nakkiran (2023), "Smooth ECE: principled reliability
  diagrams via kernel smoothing": relplot's ``smECE`` with its bandwidth search, and the
  smoothed reliability curve.
* :func:`classwise_calibration` — Kull et al. (2019) "class-wise", Kumar et al. (2019)
  "marginal" calibration error: every class's probability column binned against the
  indicator of that class, and the mean over classes.

Each public function validates its input and calls a private core that works on K rows of
weights at once (shape (K, N)); the bootstrap (:mod:`xentropy.calibration.intervals`)
calls the same cores with one row per replicate, so a replicate is computed exactly as the
point estimate would be on the resampled data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from xentropy._validation import (
    InputError,
    Param,
    as_float_array,
    check_distributions,
    check_labels,
    check_length,
    check_range,
    first_index,
    number_text,
)
from xentropy.calibration.binning import (
    BINNING,
    N_BINS,
    CalibrationBin,
    _binned,
    _BinSums,
    reliability_bins,
)
from xentropy.calibration.metrics import _calibration_error, _check_sample_weights

#: The options shared by the estimators (same rows as ``calibration_report``'s).
ESTIMATOR_PARAMS: dict[str, Param] = {
    "n_bins": N_BINS,
    "binning": BINNING,
    "max_n_bins": Param(
        "integer", None,
        "`ece_sweep`: the largest bin count tried (default: N, every count).", low=1,
    ),
}

#: relplot's constants (``relplot.metrics`` / ``relplot.kernels`` / ``relplot.config``).
_SMECE_TOLERANCE = 0.001  # smECE's ``eps``: the bandwidth search stops below it
_SMECE_REFINE = 10  # bisection steps of ``search_param``
_SMECE_MESH = 200  # ``config.smECE_mesh_pts``
_PLOT_MESH = 200  # ``config.plot_mesh_pts``: the points of the reliability curve
_SMOOTH_EPS = 0.0001  # ``BaseKernelMixin.smooth``'s eps added to the density


# --------------------------------------------------------------------------- validation


def _check_pairs(
    confidences: ArrayLike, outcomes: ArrayLike, sample_weights: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(confidences, outcomes, weights), each float64 of shape (N,), checked."""
    c = np.ascontiguousarray(as_float_array(confidences, "confidences", ndim=1))
    check_range(c, "confidences", low=0.0, high=1.0, what="a probability")
    o = np.ascontiguousarray(as_float_array(outcomes, "outcomes", ndim=1))
    check_length(o, "outcomes", c.shape[0], "one outcome per confidence")
    bad = (o != 0.0) & (o != 1.0)
    if bad.any():
        pos = first_index(bad)
        raise InputError(
            "outcomes", f"expected 0 or 1, got {number_text(o[pos])}", position=pos,
            kind="out_of_range",
        )
    w = _check_sample_weights(sample_weights, c.shape[0])
    return c, o, w


def _check_bins(n_bins: int, binning: str) -> int:
    ESTIMATOR_PARAMS["binning"].check(binning, "binning")
    return int(ESTIMATOR_PARAMS["n_bins"].check(n_bins, "n_bins"))


# --------------------------------------------------------------------------- ece_debiased


@dataclass(frozen=True)
class DebiasedECE:
    """Kumar et al.'s debiased L2 calibration error.

    Attributes:
      ece: sqrt(max(squared, 0)), the reported estimate.
      squared: the debiased estimate of the squared L2 error (can be negative).
      n_bins, binning: the bins used.
    """

    ece: float
    squared: float
    n_bins: int
    binning: str


def _debiased_squared(sums: _BinSums) -> np.ndarray:
    """The debiased squared L2 error of each row of bin sums (shape (K, S) -> (K,)).

    With n_b the (unscaled) weight of bin b, acc_b and conf_b its weighted means and
    W = Σ_b n_b: Σ over bins with n_b >= 2 of (n_b / W) [(conf_b − acc_b)² −
    acc_b (1 − acc_b) / (n_b − 1)]; bins with n_b < 2 contribute 0 but count in W
    (``calibration.utils.unbiased_square_ce``).
    """
    n = sums.weight_unscaled()
    enough = n >= 2.0
    safe = np.where(sums.weight > 0, sums.weight, 1.0)
    acc = sums.sum_outcome / safe
    conf = sums.sum_confidence / safe
    denom = np.where(enough, n - 1.0, 1.0)
    term = (conf - acc) ** 2 - acc * (1.0 - acc) / denom
    return np.where(enough, n * term, 0.0).sum(axis=1) / n.sum(axis=1)


def ece_debiased(
    confidences: ArrayLike,
    outcomes: ArrayLike,
    *,
    sample_weights: ArrayLike | None = None,
    n_bins: int = 15,
    binning: str = "uniform",
) -> DebiasedECE:
    """Debiased L2 calibration error (Kumar, Liang & Ma 2019).

    Args:
      confidences: shape (N,), in [0, 1]: the binned value (top-label confidence, or the
        probability of class 1).
      outcomes: shape (N,), 0 or 1: its observed counterpart.
      sample_weights: shape (N,), >= 0 with a positive sum; repeat counts (so n_b below
        is the bin's weight: Poisson bootstrap weights give exactly the resampled data).
      n_bins, binning: the bins, as in ``calibration_report`` (bins (lower, upper]).

    Returns:
      :class:`DebiasedECE` with, over bins b holding n_b >= 2 (W = Σ_b n_b over all bins),

          squared = Σ_b (n_b / W) [(conf_b − acc_b)² − acc_b (1 − acc_b) / (n_b − 1)]

      (the plug-in squared gap minus the estimated variance of acc_b) and
      ``ece = sqrt(max(squared, 0))``. This is ``calibration.get_calibration_error(probs,
      labels, p=2, debias=True)`` of Kumar et al.'s ``uncertainty-calibration`` package,
      evaluated on these bins. Their default bins are 15 equal-mass bins whose edges are
      midpoints between the sorted values ``np.array_split`` separates; ours put edge k
      after the first ceil(k·N/B) sorted values: the same bins whenever B divides N
      (and the values are distinct), otherwise one value can move to the neighbouring bin.

    Raises:
      InputError: naming ``confidences``, ``outcomes``, ``sample_weights``, ``n_bins`` or
        ``binning``.

    >>> r = ece_debiased([0.9, 0.8, 0.85, 0.7, 0.6, 0.95], [1, 1, 0, 1, 0, 1], n_bins=2)
    >>> round(r.squared, 6), round(r.ece, 6)  # (0.8 − 4/6)² − (4/6)(2/6)/5 < 0
    (-0.026667, 0.0)
    """
    c, o, w = _check_pairs(confidences, outcomes, sample_weights)
    n = _check_bins(n_bins, binning)
    sums = _binned(c[None, :], o[None, :], w, n, binning, every_bin=False)
    sq = float(_debiased_squared(sums)[0])
    return DebiasedECE(ece=math.sqrt(max(sq, 0.0)), squared=sq, n_bins=n, binning=binning)


# --------------------------------------------------------------------------- ece_sweep


@dataclass(frozen=True)
class SweepECE:
    """Roelofs et al.'s monotonic-sweep calibration error.

    Attributes:
      ece: the L1 ECE over ``n_bins`` equal-mass bins.
      n_bins: the chosen bin count b.
      max_n_bins: the largest count tried; ``n_bins == max_n_bins`` means the accuracies
        were still monotone there.
    """

    ece: float
    n_bins: int
    max_n_bins: int


@dataclass(frozen=True)
class _Sorted:
    """Samples sorted by confidence, with the cumulative sums at the end of each run of
    tied confidences: shapes (K, M + 1) with a leading 0, M the number of runs."""

    order: np.ndarray
    run_end: np.ndarray  # (M,) index (in sorted order) of the last sample of each run
    cum_weight: np.ndarray
    cum_outcome: np.ndarray
    cum_confidence: np.ndarray


def _sorted_runs(
    c: np.ndarray, o: np.ndarray, weights: np.ndarray, *, presorted: bool = False
) -> _Sorted:
    """Sort by confidence (``np.argsort``'s default, as the quantile bins do) and take the
    cumulative weight, w·outcome and w·confidence of K rows of ``weights`` (K, N) at the
    ends of the runs of ties. ``presorted``: c is already sorted (and ``weights`` in its
    order): no sort, no gather of the (K, N) weights."""
    order = np.arange(c.shape[0]) if presorted else np.argsort(c)
    cs = c if presorted else c[order]
    run_end = np.flatnonzero(np.append(cs[1:] != cs[:-1], True))
    ws = weights if presorted else weights[:, order]
    os_ = o if presorted else o[order]

    def cum(x: np.ndarray | None) -> np.ndarray:
        v = ws if x is None else ws * x
        out = np.zeros((weights.shape[0], run_end.shape[0] + 1))
        if run_end.shape[0] == c.shape[0]:  # no ties: every sample ends its run
            np.cumsum(v, axis=1, out=out[:, 1:])
        else:
            out[:, 1:] = np.cumsum(v, axis=1)[:, run_end]
        return out

    return _Sorted(order, run_end, cum(None), cum(os_), cum(cs))


def _rowwise_searchsorted(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``np.searchsorted(a[k], v[k], side="left")`` for every row k: a (K, M) with
    non-decreasing rows, v (K, Q) -> (K, Q) int64, by bisection (log2 M steps)."""
    k_rows, m = a.shape
    if k_rows == 1:
        return np.searchsorted(a[0], v[0], side="left")[None, :]
    lo = np.zeros(v.shape, np.int64)
    hi = np.full(v.shape, m, np.int64)
    rows = np.arange(k_rows)[:, None]
    for _ in range(max(1, m).bit_length()):
        active = lo < hi
        if not active.any():
            break
        mid = (lo + hi) // 2
        below = a[rows, np.minimum(mid, m - 1)] < v
        lo = np.where(active & below, mid + 1, lo)
        hi = np.where(active & ~below, mid, hi)
    return lo


def _bin_ends(runs: _Sorted, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bin boundaries of equal-mass bins for several bin counts at once.

    Args:
      runs: K rows of run-level cumulative sums.
      counts: shape (Q,), bin counts b_q.

    Returns:
      (ends, owner): ends (K, Σ b_q) are the number of runs in bins 0..j of each count
      (the quantile rule of :mod:`xentropy.calibration.binning`: a run lands in the bin
      #{k in [1, b) : t_k <= W(values below it)}, t_k = k·W/b, so bin j closes after the
      runs whose weight below is < t_{j+1}; the last bin closes after all M runs); owner
      (Σ b_q,) is the index q of the count each column belongs to.
    """
    m = runs.run_end.shape[0]
    total = runs.cum_weight[:, -1:]
    owner = np.repeat(np.arange(counts.shape[0]), counts)
    first = np.cumsum(counts) - counts
    j = np.arange(owner.shape[0]) - first[owner]  # bin index within its count
    b = counts[owner]
    last = j == b - 1
    # t_{j+1} = (j + 1)·W / b, rounded as the quantile rule rounds it (k·W first).
    targets = ((j + 1) * total) / b
    # Weight below run r (1-based) is cum_weight[r - 1], -inf for the first run: the
    # number of runs with weight below < t is 1 + #{m' in [1, M) : cum_weight[m'] < t}.
    inner = runs.cum_weight[:, 1:m]
    if m > 1:
        ends = 1 + _rowwise_searchsorted(inner, np.where(last, np.inf, targets))
    else:
        ends = np.ones(targets.shape, np.int64)
    ends[:, last] = m
    return ends, owner


def _sweep_counts(runs: _Sorted, max_n_bins: int) -> np.ndarray:
    """The sweep's bin count for every row: the largest b <= max_n_bins such that every
    count 1..b gives non-decreasing accuracies over its non-empty bins (shape (K,)).

    Counts are tried in growing blocks (all the bins of a block at once); a row leaves as
    soon as a count breaks monotonicity. Accuracies are compared cross-multiplied,
    O_j·W_j' <= O_j'·W_j, exact for integer weights (no division, no rounding).
    """
    k_rows = runs.cum_weight.shape[0]
    chosen = np.full(k_rows, max_n_bins, np.int64)
    active = np.arange(k_rows)
    b_next, block = 2, 16
    while b_next <= max_n_bins and active.shape[0] > 0:
        # Bound the work per block: about 2**22 bins over the active rows.
        block = max(1, min(block, (2**22 // active.shape[0]) // b_next))
        counts = np.arange(b_next, min(b_next + block, max_n_bins + 1))
        sub = _Sorted(
            runs.order, runs.run_end, runs.cum_weight[active], runs.cum_outcome[active],
            runs.cum_confidence[active],
        )
        ends, owner = _bin_ends(sub, counts)
        rows = np.arange(active.shape[0])[:, None]
        first = (np.cumsum(counts) - counts)[owner] == np.arange(owner.shape[0])
        start = np.where(first, 0, np.roll(ends, 1, axis=1))
        bw = sub.cum_weight[rows, ends] - sub.cum_weight[rows, start]
        bo = sub.cum_outcome[rows, ends] - sub.cum_outcome[rows, start]
        nonempty = bw > 0
        # The previous non-empty bin of the same count, for every bin: an exclusive
        # running maximum of the indices of the non-empty bins.
        cols = np.arange(owner.shape[0])
        idx = np.where(nonempty, cols, -1)
        prev = np.empty_like(idx)
        prev[:, 0] = -1
        np.maximum.accumulate(idx[:, :-1], axis=1, out=prev[:, 1:])
        seg_start = (np.cumsum(counts) - counts)
        has_prev = nonempty & (prev >= seg_start[owner])
        p = np.maximum(prev, 0)
        broken = has_prev & (bo[rows, p] * bw > bo * bw[rows, p])
        broken_count = np.logical_or.reduceat(broken, seg_start, axis=1)
        any_broken = broken_count.any(axis=1)
        first_bad = counts[broken_count.argmax(axis=1)]
        done = active[any_broken]
        chosen[done] = first_bad[any_broken] - 1
        active = active[~any_broken]
        b_next = int(counts[-1]) + 1
        block *= 2
    return chosen


def _sweep_ece_rows(runs: _Sorted, counts: np.ndarray) -> np.ndarray:
    """The L1 ECE of each row over ``counts[k]`` equal-mass bins (shape (K,))."""
    k_rows = runs.cum_weight.shape[0]
    out = np.empty(k_rows)
    for b in np.unique(counts):  # one pass per distinct count (a handful)
        sel = np.flatnonzero(counts == b)
        sub = _Sorted(runs.order, runs.run_end, runs.cum_weight[sel], runs.cum_outcome[sel],
                      runs.cum_confidence[sel])
        ends, _ = _bin_ends(sub, np.array([b]))
        rows = np.arange(sel.shape[0])[:, None]
        start = np.concatenate([np.zeros((sel.shape[0], 1), np.int64), ends[:, :-1]], axis=1)
        gap = (sub.cum_outcome[rows, ends] - sub.cum_outcome[rows, start]) - (
            sub.cum_confidence[rows, ends] - sub.cum_confidence[rows, start]
        )
        out[sel] = np.abs(gap).sum(axis=1) / sub.cum_weight[:, -1]
    return out


def ece_sweep(
    confidences: ArrayLike,
    outcomes: ArrayLike,
    *,
    sample_weights: ArrayLike | None = None,
    max_n_bins: int | None = None,
) -> SweepECE:
    """Monotonic-sweep calibration error (Roelofs, Cain, Shlens & Mozer 2022).

    Args:
      confidences: shape (N,), in [0, 1].
      outcomes: shape (N,), 0 or 1.
      sample_weights: shape (N,), >= 0 with a positive sum; repeat counts.
      max_n_bins: the largest bin count tried (default N). The sweep costs
        O(N log N + b²·log N) for the chosen count b, so a caller facing adversarial
        input (outcomes sorted by confidence keep every count monotone) bounds it here.

    Returns:
      :class:`SweepECE`: with equal-mass (``"quantile"``) bins, b is the largest count
      such that, for every count 1..b, the accuracies of the non-empty bins are
      non-decreasing from the lowest bin to the highest (the sweep stops at the first
      count that breaks monotonicity), and ``ece`` = Σ_j (W_j/W) |acc_j − conf_j| over
      those b bins (exactly ``calibration_report(..., binning="quantile", n_bins=b).ece``).

    Raises:
      InputError: naming ``confidences``, ``outcomes``, ``sample_weights`` or
        ``max_n_bins``.

    >>> r = ece_sweep([0.1, 0.2, 0.3, 0.6, 0.7, 0.9], [0, 0, 1, 0, 1, 1])
    >>> r.n_bins, round(r.ece, 6)
    (3, 0.133333)
    """
    c, o, w = _check_pairs(confidences, outcomes, sample_weights)
    n_samples = c.shape[0]
    cap = ESTIMATOR_PARAMS["max_n_bins"].check(max_n_bins, "max_n_bins")
    cap = n_samples if cap is None else min(int(cap), n_samples)
    runs = _sorted_runs(c, o, w[None, :])
    b = int(_sweep_counts(runs, cap)[0])
    sums = _binned(c[None, :], o[None, :], w, b, "quantile", every_bin=False)
    return SweepECE(ece=float(_calibration_error(sums, "l1")[0]), n_bins=b, max_n_bins=cap)


# --------------------------------------------------------------------------- smooth_ece


@dataclass(frozen=True)
class SmoothCurve:
    """The smoothed reliability curve (relplot's ``prepare_rel_diagram`` main line).

    Attributes:
      mesh: the evaluation points, ``linspace(0, 1, 200)``.
      accuracy: the kernel-smoothed outcome at each point (relplot's ``mu``).
      density: the kernel density estimate of the confidences there (relplot's
        ``density``), integrating to about 1.
    """

    mesh: tuple[float, ...]
    accuracy: tuple[float, ...]
    density: tuple[float, ...]


@dataclass(frozen=True)
class SmoothECE:
    """Błasiok & Nakkiran's smooth ECE.

    Attributes:
      ece: smECE at the chosen bandwidth.
      bandwidth: the bandwidth σ found by relplot's search.
      curve: the smoothed reliability curve at that bandwidth.
    """

    ece: float
    bandwidth: float
    curve: SmoothCurve


def _grid_points(sigma: float) -> int:
    """Points of relplot's convolution grid for bandwidth σ (``GaussianKernel.apply``)."""
    return max(2000, round(20 / sigma)) // 2 + 1


def _hat_sums(c: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """relplot's ``smooth_round_to_grid`` for K rows: each c_i split between its two grid
    points of ``linspace(0, 1, n)`` in proportion to its position; values (K, N) -> (K, n)."""
    k_rows = values.shape[0]
    pos = c * (n - 1)
    bins = pos.astype(np.int64).clip(0, n - 2)
    frac = pos - bins
    keys = bins + n * np.arange(k_rows)[:, None]
    size = k_rows * n
    left = np.bincount(keys.ravel(), weights=((1.0 - frac) * values).ravel(), minlength=size)
    right = np.bincount((keys + 1).ravel(), weights=(frac * values).ravel(), minlength=size)
    return (left + right).reshape(k_rows, n)


def _fft_size(n: int) -> int:
    """The smallest 2^i·3^j·5^k >= 2.5·n: a circular convolution of that length holds the
    centre n points of the reflected convolution (full indices about 1.5n to 2.5n of a
    full length 4n − 3) without wrap-around."""
    need = (5 * n + 1) // 2
    best = 1 << (need - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            v = p35
            while v < need:
                v *= 2
            best = min(best, v)
            p35 *= 3
        p5 *= 5
    return best


def _reflect_spectrum(grid: np.ndarray, size: int) -> np.ndarray:
    """rfft of each row of ``grid`` (..., n) reflected at both ends (length 3n − 2),
    folded modulo ``size`` (a circular convolution of the folded rows is the linear one
    folded the same way)."""
    ext = np.concatenate([grid[..., ::-1][..., :-1], grid, grid[..., ::-1][..., 1:]], axis=-1)
    if ext.shape[-1] > size:
        folded = ext[..., :size].copy()
        folded[..., : ext.shape[-1] - size] += ext[..., size:]
        ext = folded
    return np.fft.rfft(ext, size)


def _kernel_spectrum(n: int, sigmas: np.ndarray, size: int) -> np.ndarray:
    """rfft of relplot's Gaussian sampled on ``linspace(0, 1, n)`` (centred at 0.5), one
    row per σ."""
    t = np.linspace(0, 1, n)
    s = sigmas[:, None]
    ker = np.exp(-(t - 0.5) * (t - 0.5) / (2 * s**2)) / (np.sqrt(2 * np.pi) * s)
    return np.fft.rfft(ker, size)


def _reflected_smooth(grid: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """``ReflectedGaussianKernel.convolve`` of each row of ``grid`` (K, n) with the
    Gaussian of its own σ (K,), by FFT: the values reflected at both ends, convolved with
    the kernel sampled on ``linspace(0, 1, n)`` (centred at 0.5), the centre n kept."""
    n = grid.shape[1]
    size = _fft_size(n)
    return _centre(_reflect_spectrum(grid, size) * _kernel_spectrum(n, sigmas, size), n, size)


def _centre(product: np.ndarray, n: int, size: int) -> np.ndarray:
    """The centre n points of the (circular) convolution whose spectrum is ``product``:
    np.convolve(..., 'valid')[n//2 : n//2 + n], i.e. full indices n − 1 + n//2 + i."""
    start = n - 1 + n // 2
    return np.fft.irfft(product, size)[..., start:start + n]


def _interpolate(t: np.ndarray, y: np.ndarray) -> np.ndarray:
    """relplot's ``interpolate``: the piecewise-linear function through
    (i / (n − 1), y[:, i]) at the points t (E,), for K rows y (K, n) -> (K, E)."""
    n = y.shape[1]
    step = 1 / (n - 1)
    inds = (t * (n - 1)).astype(np.int64).clip(0, n - 2)
    residual = (t - inds * step) / step
    return y[:, inds] * (1 - residual) + y[:, inds + 1] * residual


class _Smoother:
    """Kernel smoothing of K weighted data sets sharing the same confidences.

    ``weights`` (K, N) are repeat counts; the grid sums of w·(c − y) and w for each grid
    size are computed once and reused by every bandwidth that needs that grid.
    """

    def __init__(self, c: np.ndarray, o: np.ndarray, weights: np.ndarray) -> None:
        self.c = c
        self.weights = weights
        self.residual = weights * (c - o)
        self.labels = weights * o
        self._spectra: dict[int, np.ndarray] = {}

    def spectrum(self, n: int) -> np.ndarray:
        """The reflected grid sums of w·(c − y) and of w for grid size n, transformed:
        shape (2, K, size // 2 + 1); computed once per grid size (no σ in them)."""
        if n not in self._spectra:
            grids = np.stack([_hat_sums(self.c, self.residual, n),
                              _hat_sums(self.c, self.weights, n)])
            self._spectra[n] = _reflect_spectrum(grids, _fft_size(n))
        return self._spectra[n]

    def smece(self, sigmas: np.ndarray) -> np.ndarray:
        """relplot's ``smooth_ece(f, y, σ_k)`` for every row k (shape (K,))."""
        out = np.empty(sigmas.shape[0])
        n_grid = np.array([_grid_points(float(s)) for s in sigmas])
        n_eval = np.array([max(round(10 / float(s)), _SMECE_MESH) for s in sigmas])
        for n, e in sorted(set(zip(n_grid.tolist(), n_eval.tolist(), strict=True))):
            sel = np.flatnonzero((n_grid == n) & (n_eval == e))
            size = _fft_size(n)
            smooth = _centre(self.spectrum(n)[:, sel] * _kernel_spectrum(n, sigmas[sel], size),
                             n, size)
            t = np.linspace(0, 1, e)
            ys = _interpolate(t, smooth[0])
            dens = _interpolate(t, smooth[1]) + _SMOOTH_EPS
            out[sel] = (np.abs(ys / dens) * dens).sum(axis=1) / dens.sum(axis=1)
        return out

    def bandwidths(self) -> np.ndarray:
        """relplot's ``search_param`` for every row: σ = 1 if 1 < smECE(1) (or 1 < eps),
        else 10 bisection steps on (0, 1] keeping the end where σ >= smECE(σ)."""
        k_rows = self.weights.shape[0]
        start = np.ones(k_rows)
        end = np.zeros(k_rows)

        def predicate(alpha: np.ndarray) -> np.ndarray:
            return (alpha < _SMECE_TOLERANCE) | (alpha < self.smece(alpha))

        at_one = predicate(start)
        for _ in range(_SMECE_REFINE):
            mid = (start + end) / 2
            ok = predicate(mid)
            end = np.where(ok, mid, end)
            start = np.where(ok, start, mid)
        return np.where(at_one, 1.0, start)


def _smooth_ece_rows(c: np.ndarray, o: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """smECE with relplot's bandwidth for K rows of weights (K, N) -> (K,)."""
    smoother = _Smoother(c, o, weights)
    return smoother.smece(smoother.bandwidths())


def smooth_ece(
    confidences: ArrayLike,
    outcomes: ArrayLike,
    *,
    sample_weights: ArrayLike | None = None,
) -> SmoothECE:
    """Smooth ECE with its bandwidth search (Błasiok & Nakkiran 2023; ``relplot.smECE``).

    Args:
      confidences: shape (N,), in [0, 1].
      outcomes: shape (N,), 0 or 1.
      sample_weights: shape (N,), >= 0 with a positive sum; repeat counts (relplot has no
        weights: a weight of 2 is the sample sent twice).

    Returns:
      :class:`SmoothECE`. For a bandwidth σ, with the reflected Gaussian kernel K_σ and
      residuals r_i = c_i − y_i,

          r̂(t) = Σ_i w_i K_σ(t, c_i) r_i / (Σ_i w_i K_σ(t, c_i) + 10⁻⁴),
          δ(t) = Σ_i w_i K_σ(t, c_i) + 10⁻⁴,
          smECE_σ = Σ_t |r̂(t)| δ(t) / Σ_t δ(t)

      over t in ``linspace(0, 1, max(round(10/σ), 200))``, the kernel sums computed as
      relplot does: each c_i split linearly between two points of a grid of
      max(2000, round(20/σ)) // 2 + 1 points, the grid convolved with the Gaussian
      reflected at 0 and 1 (here by FFT) and interpolated linearly. σ is relplot's
      fixed point search: σ = 1 if smECE_1 < 1 fails, else 10 halvings of (0, 1]
      keeping the smallest σ tried with σ >= smECE_σ (values below 0.001 accepted).
      ``ece`` equals ``relplot.smECE(confidences, outcomes)`` to about 1e-12.
      ``curve`` is relplot's reliability line at that σ: the smoothed outcome
      Σ w K y / (Σ w K + 10⁻⁴) and the density Σ w K / Σ w on ``linspace(0, 1, 200)``.

    Raises:
      InputError: naming ``confidences``, ``outcomes`` or ``sample_weights``.

    >>> r = smooth_ece([0.2, 0.4, 0.6, 0.8, 0.9], [0, 1, 0, 1, 1])
    >>> round(r.ece, 6), r.bandwidth, len(r.curve.mesh)
    (0.124724, 0.126953125, 200)
    """
    c, o, w = _check_pairs(confidences, outcomes, sample_weights)
    smoother = _Smoother(c, o, w[None, :])
    sigma = smoother.bandwidths()
    ece = float(smoother.smece(sigma)[0])
    n = _grid_points(float(sigma[0]))
    mesh = np.linspace(0, 1, _PLOT_MESH)
    labels = _interpolate(mesh, _reflected_smooth(_hat_sums(c, o[None, :] * w, n), sigma))
    ones = _interpolate(mesh, _reflected_smooth(_hat_sums(c, w[None, :], n), sigma))
    density = _interpolate(
        mesh, _reflected_smooth(_hat_sums(c, w[None, :] / w.sum(), n), sigma)
    )
    curve = SmoothCurve(
        mesh=tuple(mesh.tolist()),
        accuracy=tuple((labels / (ones + _SMOOTH_EPS))[0].tolist()),
        density=tuple(density[0].tolist()),
    )
    return SmoothECE(ece=ece, bandwidth=float(sigma[0]), curve=curve)


# --------------------------------------------------------------------------- class-wise


@dataclass(frozen=True)
class ClassBins:
    """The calibration of class k's probability column against the indicator y == k.

    Attributes:
      class_index: k.
      ece, mce, rmsce: the binned errors of the column.
      bins: every bin, empty ones included (count 0, ``None`` statistics).
    """

    class_index: int
    ece: float
    mce: float
    rmsce: float
    bins: tuple[CalibrationBin, ...]


@dataclass(frozen=True)
class ClasswiseCalibration:
    """Class-wise calibration: ``classwise_ece`` = mean over classes of ``per_class[k].ece``."""

    classwise_ece: float
    per_class: tuple[ClassBins, ...]
    n_bins: int
    binning: str


def classwise_calibration(
    probabilities: ArrayLike,
    labels: ArrayLike,
    *,
    sample_weights: ArrayLike | None = None,
    n_bins: int = 15,
    binning: str = "uniform",
) -> ClasswiseCalibration:
    """Class-wise calibration error (Kull et al. 2019; Kumar et al. 2019's "marginal").

    Args:
      probabilities: shape (N, C), rows summing to 1 (within 1e-6).
      labels: shape (N,), ints in [0, C).
      sample_weights: shape (N,), >= 0 with a positive sum; repeat counts.
      n_bins, binning: the bins of every column (each column binned on its own).

    Returns:
      :class:`ClasswiseCalibration`: for each class k, the column p_k binned against
      1[y = k], its ECE, MCE, RMSCE (as in ``calibration_report``) and every bin; and
      ``classwise_ece`` = (1/C) Σ_k ECE_k. With ``binning="quantile"`` and B dividing N
      this is ``calibration.get_calibration_error(probs, labels, p=1, debias=False,
      mode="marginal")`` with B bins (see :func:`ece_debiased` on the bins).

    Raises:
      InputError: naming ``probabilities``, ``labels``, ``sample_weights``, ``n_bins`` or
        ``binning``.

    >>> r = classwise_calibration([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]], [0, 1, 1], n_bins=2)
    >>> [round(k.ece, 6) for k in r.per_class], round(r.classwise_ece, 6)
    ([0.166667, 0.166667], 0.166667)
    """
    probs = np.ascontiguousarray(as_float_array(probabilities, "probabilities", ndim=2))
    check_distributions(probs, "probabilities")
    n_samples, n_classes = probs.shape
    y = check_labels(labels, n_samples, n_classes)
    w = _check_sample_weights(sample_weights, n_samples)
    return _classwise(probs, y, w, _check_bins(n_bins, binning), binning)


def _class_sums(probs: np.ndarray, y: np.ndarray, w: np.ndarray, n_bins: int,
                binning: str) -> _BinSums:
    """Every class column p_k (N, C) binned against 1[y = k] at once: shape (C, S), only
    the non-empty bins stored (O(N·C) memory whatever n_bins)."""
    columns = np.ascontiguousarray(probs.T)
    indicator = (np.arange(probs.shape[1])[:, None] == y).astype(np.float64)
    return _binned(columns, indicator, w, n_bins, binning, every_bin=False)


def _classwise(
    probs: np.ndarray, y: np.ndarray, w: np.ndarray, n_bins: int, binning: str,
    *, confidence_level: float | None = None,
) -> ClasswiseCalibration:
    """:func:`classwise_calibration` of checked arrays; with ``confidence_level`` every
    bin also gets its Clopper–Pearson ``accuracy_interval``."""
    sums = _class_sums(probs, y, w, n_bins, binning)
    ece = _calibration_error(sums, "l1")
    mce = _calibration_error(sums, "max")
    rmsce = _calibration_error(sums, "l2")
    del sums
    n_classes = probs.shape[1]
    rows = []
    for k in range(n_classes):  # one binning per class (the output is C × n_bins bins)
        # The reported bins need each column's own edges.
        column = np.ascontiguousarray(probs[:, k])[None, :]
        rows.append(_binned(column, (y == k).astype(np.float64)[None, :], w, n_bins, binning,
                            every_bin=True, hits=confidence_level is not None))
    # The C × n_bins intervals in one call: its iterations have a fixed cost per call,
    # which C calls (per group, with groups) paid C times for the same elementwise result.
    hits = None if confidence_level is None else np.stack(
        [r.hits[0] for r in rows if r.hits is not None])
    intervals = _bin_intervals(hits, np.stack([r.count[0] for r in rows]), confidence_level)
    per_class = [
        ClassBins(class_index=k, ece=float(ece[k]), mce=float(mce[k]), rmsce=float(rmsce[k]),
                  bins=reliability_bins(row, None if intervals is None else (
                      intervals[0][k], intervals[1][k])))
        for k, row in enumerate(rows)
    ]
    return ClasswiseCalibration(
        classwise_ece=float(ece.mean()), per_class=tuple(per_class), n_bins=n_bins,
        binning=binning,
    )


def _bin_intervals(
    hits: np.ndarray | None, count: np.ndarray, confidence_level: float | None
) -> tuple[np.ndarray, np.ndarray] | None:
    """The Clopper–Pearson interval of each bin's count ``hits`` of outcomes 1 among
    ``count`` (``nan`` for an empty bin); ``None`` without a level."""
    if confidence_level is None:
        return None
    from xentropy.calibration.intervals import clopper_pearson  # builds on this module

    assert hits is not None
    ci = clopper_pearson(hits, count, confidence_level=confidence_level)
    return ci.lower, ci.upper
