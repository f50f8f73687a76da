"""Uncertainty of the calibration statistics: bootstrap intervals and Clopper–Pearson bins.

* :func:`clopper_pearson` — the exact binomial interval of a bin's count of correct
  predictions, from :func:`beta_quantile` (the quantile of the beta distribution, written
  here: the library imports only NumPy and the standard library).
* :func:`bootstrap_intervals` — percentile intervals of every scalar statistic (nll,
  brier, accuracy, ece, mce, rmsce, ace and the estimators of
  :mod:`xentropy.calibration.estimators`) over bootstrap replicates, either Poisson
  (every sample weighted by an independent Poisson(1) count; the default) or multinomial
  (N draws with replacement).
* :func:`replicate_sums` / :class:`ReplicateSums` — the Poisson replicates as sums per
  replicate and bin: two batches' sums add, so intervals survive merging states.

Resampling is a matrix of replicate weights, (R, N), generated and consumed in blocks of
replicates (bounded memory); every statistic of a block is a few matrix products and
``np.bincount`` calls over it, never a Python loop over samples or single replicates.

Determinism. The weights come from a counter-based generator (Philox) keyed by
``(seed, stream)``: replicate r of a batch of N samples is a fixed range of its stream, so
the same seed gives the same weights whatever the block size, and 2000 resamples extend
the 1000 of the same seed. Column j of a replicate weighs the j-th sample in increasing
order of confidence (a stable sort), which keeps every bin a contiguous block of columns.

Poisson weights are decided by 32 random bits each: P(X <= k) = round(F(k)·2³²) / 2³² for
the Poisson(1) distribution function F, within 2⁻³³ of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from xentropy._validation import (
    InputError,
    Param,
    as_float_array,
    check_length,
    check_scalar,
)
from xentropy.calibration.binning import _assign_bins, _BinSums
from xentropy.calibration.estimators import (
    _check_bins,
    _check_pairs,
    _debiased_squared,
    _smooth_ece_rows,
    _sorted_runs,
    _sweep_counts,
    _sweep_ece_rows,
)
from xentropy.calibration.metrics import _calibration_error

#: Resampling methods.
BOOTSTRAP_METHODS = ("poisson", "multinomial")
#: The estimators :func:`bootstrap_intervals` can add.
ESTIMATORS = ("ece_debiased", "ece_sweep", "smooth_ece")

#: The options of the intervals (the rows of the HTTP contract's ``bootstrap`` object).
INTERVAL_PARAMS: dict[str, Param] = {
    "confidence_level": Param(
        "number", 0.95, "Coverage of every interval, in (0, 1).", low=0.0, high=1.0,
        low_open=True, high_open=True,
    ),
    "n_resamples": Param("integer", 1000, "Bootstrap replicates, 1 to 10 000.", low=1,
                         high=10_000),
    "seed": Param("integer", 0, "Seed of the resampling, 0 to 2**63 − 1.", low=0,
                  high=2**63 - 1),
    "method": Param(
        "choice", "poisson",
        '`"poisson"` (independent Poisson(1) weights; mergeable) or `"multinomial"` (N '
        "draws with replacement).",
        choices=BOOTSTRAP_METHODS,
    ),
    "stream": Param("integer", 0, "Independent stream of weights for this batch, 0 to "
                    "2**63 − 1 (batches to be merged need distinct streams).", low=0,
                    high=2**63 - 1),
}

#: Replicates generated and reduced together: about this many weights per block.
_BLOCK_ELEMENTS = 1 << 20

#: The cost model of :func:`bootstrap_intervals` (see :func:`bootstrap_work`), in
#: sample-replicates: one sample's share of one replicate of the binned statistics (about
#: 10 ns of one core). Measured with R = 1000 to 10 000: binned statistics 7 to 35 ns per
#: sample and 5 µs per replicate; smooth_ece 1 to 2 ms per replicate (its FFT grid and
#: bandwidth search, whatever N) and 350 ns per sample; ece_sweep 100 ns per sample and
#: 260 to 380 ns per (count, bin) it tries.
REPLICATE_WORK = 500
SMOOTH_ECE_REPLICATE_WORK = 200_000
SMOOTH_ECE_SAMPLE_WORK = 40
SWEEP_SAMPLE_WORK = 10
SWEEP_BIN_WORK = 30


def bootstrap_work(
    run_sizes: ArrayLike,
    *,
    n_resamples: int = 1000,
    estimators: Sequence[str] = (),
    sweep_max_n_bins: int | None = None,
) -> int:
    """An upper bound of the work of :func:`bootstrap_intervals` runs, in sample-replicates
    (one sample's share of one replicate of the binned statistics), known before any is
    started: for runs of N_j samples and R replicates,

        R · Σ_j [N_j + REPLICATE_WORK
                 + smooth_ece: SMOOTH_ECE_REPLICATE_WORK + SMOOTH_ECE_SAMPLE_WORK · N_j
                 + ece_sweep: SWEEP_SAMPLE_WORK · N_j + SWEEP_BIN_WORK · (b_j (b_j + 1)/2 − 1)]

    with b_j = min(N_j, sweep_max_n_bins) the sweep's largest bin count (it tries counts
    2, 3, … and stops at the first that breaks monotonicity: at worst every count up to
    b_j, Σ b bins).

    Args:
      run_sizes: shape (J,), the samples N_j of each run (a report's confidences).
      n_resamples, estimators, sweep_max_n_bins: as for :func:`bootstrap_intervals`.

    >>> bootstrap_work([10], n_resamples=1000)
    510000
    >>> bootstrap_work([10, 10], n_resamples=10, estimators=["smooth_ece"])
    4018200
    """
    # int64 per run: at most about 10^9 each (N <= 2·10^7), far from overflow.
    n = np.asarray(run_sizes, dtype=np.int64).ravel()
    per_run = n + REPLICATE_WORK
    if "smooth_ece" in estimators:
        per_run += SMOOTH_ECE_REPLICATE_WORK + SMOOTH_ECE_SAMPLE_WORK * n
    if "ece_sweep" in estimators:
        b = n if sweep_max_n_bins is None else np.minimum(n, int(sweep_max_n_bins))
        per_run += SWEEP_SAMPLE_WORK * n + SWEEP_BIN_WORK * np.maximum(b * (b + 1) // 2 - 1, 0)
    return int(n_resamples) * int(per_run.sum())


# --------------------------------------------------------------------------- beta quantile


def _stirling_correction(z: np.ndarray) -> np.ndarray:
    """μ(z) = ln Γ(z) − [(z − ½) ln z − z + ½ ln 2π], for z > 0.

    The asymptotic series for z >= 10 (error < 1e-17 there); below, the recurrence
    μ(z) = μ(z + 1) + (z + ½) ln(1 + 1/z) − 1 carries z up to [10, 11).
    """
    z = np.asarray(z, dtype=np.float64)
    shift = np.maximum(np.ceil(10.0 - z), 0.0)
    acc = np.zeros_like(z)
    zz = z.copy()
    for _ in range(int(shift.max(initial=0.0))):
        move = shift > 0
        acc += np.where(move, (zz + 0.5) * np.log1p(1.0 / zz) - 1.0, 0.0)
        zz = np.where(move, zz + 1.0, zz)
        shift -= move
    inv = 1.0 / zz
    inv2 = inv * inv
    series = inv * (
        1 / 12 + inv2 * (-1 / 360 + inv2 * (1 / 1260 + inv2 * (-1 / 1680 + inv2 / 1188)))
    )
    return acc + series


def _log_beta_front(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ln[x^a (1 − x)^b / B(a, b)] without cancellation (Stirling form):

        a ln(x/p₀) + b ln((1 − x)/(1 − p₀)) + ½ ln(ab / (2π(a + b))) + μ(a + b) − μ(a) − μ(b)

    with p₀ = a / (a + b), the two logarithms as ``log1p`` of the relative deviation."""
    s = a + b
    p0 = a / s
    with np.errstate(divide="ignore", invalid="ignore"):
        # ln(x/p₀) as log1p of the relative deviation near p₀ (no cancellation), and
        # as a difference of logarithms far from it (x/p₀ − 1 would lose x).
        dx, dy = (x - p0) / p0, (p0 - x) / (1.0 - p0)
        lx = np.where(np.abs(dx) < 0.5, np.log1p(dx), np.log(x) - np.log(p0))
        ly = np.where(np.abs(dy) < 0.5, np.log1p(dy), np.log1p(-x) - np.log1p(-p0))
        main = a * lx + b * ly
    return (
        main
        + 0.5 * np.log(a * b / (2.0 * np.pi * s))
        + _stirling_correction(s)
        - _stirling_correction(a)
        - _stirling_correction(b)
    )


def _beta_continued_fraction(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The continued fraction of I_x(a, b) (modified Lentz; Numerical Recipes' betacf),
    every element until it converges to the float64 rounding."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = np.ones_like(x)
    d = 1.0 - qab * x / qap
    d = np.where(np.abs(d) < tiny, tiny, d)
    d = 1.0 / d
    h = d.copy()
    active = np.ones(x.shape, dtype=bool)
    m = 0
    while active.any() and m < 100_000:
        m += 1
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = np.where(np.abs(d) < tiny, tiny, d)
        c = 1.0 + aa / c
        c = np.where(np.abs(c) < tiny, tiny, c)
        d = 1.0 / d
        h = np.where(active, h * d * c, h)
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = np.where(np.abs(d) < tiny, tiny, d)
        c = 1.0 + aa / c
        c = np.where(np.abs(c) < tiny, tiny, c)
        d = 1.0 / d
        delta = d * c
        h = np.where(active, h * delta, h)
        active &= np.abs(delta - 1.0) > 1e-16
    return h


def regularized_beta(x: ArrayLike, a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """The regularized incomplete beta function I_x(a, b), the beta(a, b) distribution
    function at x (broadcast arrays; a, b > 0, x in [0, 1]).

    I_x(a, b) = x^a (1 − x)^b / (a B(a, b)) · CF(x; a, b) for x < (a + 1)/(a + b + 2),
    else 1 − I_{1−x}(b, a) (Numerical Recipes, 3rd ed., §6.4), the front factor in the
    Stirling form of :func:`_log_beta_front`.

    >>> float(regularized_beta(0.5, 2.0, 2.0)), float(regularized_beta(0.2, 1.0, 3.0))
    (0.5, 0.488)
    """
    x, a, b = (np.asarray(v, dtype=np.float64) for v in np.broadcast_arrays(x, a, b))
    swap = x >= (a + 1.0) / (a + b + 2.0)
    xs = np.where(swap, 1.0 - x, x)
    aa = np.where(swap, b, a)
    bb = np.where(swap, a, b)
    inner = (xs > 0) & (xs < 1)
    safe_x = np.where(inner, xs, 0.5)
    front = np.exp(_log_beta_front(safe_x, aa, bb))
    value = np.where(inner, front * _beta_continued_fraction(safe_x, aa, bb) / aa,
                     np.where(xs >= 1, 1.0, 0.0))
    return np.where(swap, 1.0 - value, value)


def beta_quantile(q: ArrayLike, a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """The q-quantile of the beta(a, b) distribution: x with I_x(a, b) = q.

    Args:
      q: in [0, 1]; a, b: > 0 (broadcast together).

    Returns:
      x in [0, 1] (0 at q = 0, 1 at q = 1), to about 1e-15: Numerical Recipes' initial
      guess (§6.14, ``invbetai``) refined by Halley steps on I_x(a, b) − q until a step is
      below 1e-15·x (at most 100), the density written as
      exp(:func:`_log_beta_front`) / (x (1 − x)).

    >>> round(float(beta_quantile(0.025, 3.0, 8.0)), 12)  # Clopper–Pearson low of 3/10
    0.066739511178
    """
    q, a, b = (np.asarray(v, dtype=np.float64) for v in np.broadcast_arrays(q, a, b))
    a1, b1 = a - 1.0, b - 1.0
    # Initial guess (Numerical Recipes).
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        pp = np.where(q < 0.5, q, 1.0 - q)
        t = np.sqrt(-2.0 * np.log(np.maximum(pp, 1e-300)))
        z = (2.30753 + t * 0.27061) / (1.0 + t * (0.99229 + t * 0.04481)) - t
        z = np.where(q < 0.5, -z, z)
        al = (z * z - 3.0) / 6.0
        h = 2.0 / (1.0 / (2.0 * a - 1.0) + 1.0 / (2.0 * b - 1.0))
        w = z * np.sqrt(al + h) / h - (1.0 / (2.0 * b - 1.0) - 1.0 / (2.0 * a - 1.0)) * (
            al + 5.0 / 6.0 - 2.0 / (3.0 * h)
        )
        big = a / (a + b * np.exp(2.0 * w))
        lna, lnb = np.log(a / (a + b)), np.log(b / (a + b))
        tt = np.exp(a * lna) / a
        uu = np.exp(b * lnb) / b
        ww = tt + uu
        small = np.where(q < tt / ww, (a * ww * q) ** (1.0 / a),
                         1.0 - (b * ww * (1.0 - q)) ** (1.0 / b))
    x = np.where((a >= 1.0) & (b >= 1.0), big, small)
    x = np.where(np.isfinite(x), np.clip(x, 1e-300, 1.0 - 1e-16), 0.5)
    done = (q <= 0) | (q >= 1)
    for _ in range(100):
        if done.all():
            break
        err = regularized_beta(x, a, b) - q
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            dens = np.exp(_log_beta_front(x, a, b)) / (x * (1.0 - x))
            u = err / dens
            step = u / (1.0 - 0.5 * np.minimum(1.0, u * (a1 / x - b1 / (1.0 - x))))
        step = np.where(done | ~np.isfinite(step), 0.0, step)
        new = x - step
        new = np.where(new <= 0, 0.5 * x, new)
        new = np.where(new >= 1, 0.5 * (x + 1.0), new)
        done |= np.abs(step) <= 1e-15 * new
        x = new
    return np.where(q <= 0, 0.0, np.where(q >= 1, 1.0, x))


@dataclass(frozen=True)
class ClopperPearson:
    """Clopper–Pearson intervals, arrays of the shape of the counts.

    Attributes:
      lower, upper: the interval of each proportion k/n (``nan`` where n = 0).
      confidence_level: their coverage.
    """

    lower: np.ndarray
    upper: np.ndarray
    confidence_level: float


def clopper_pearson(
    successes: ArrayLike, trials: ArrayLike, *, confidence_level: float = 0.95
) -> ClopperPearson:
    """Exact binomial intervals for k successes in n trials (Clopper & Pearson 1934,
    "The use of confidence or fiducial limits illustrated in the case of the binomial").

    Args:
      successes: k, integers in [0, n] (any shape).
      trials: n, integers >= 0 (the shape of k).
      confidence_level: in (0, 1).

    Returns:
      :class:`ClopperPearson` with, for α = (1 − confidence_level)/2,
      lower = B⁻¹(α; k, n − k + 1) (0 at k = 0) and upper = 1 − B⁻¹(α; n − k, k + 1)
      (1 at k = n), B⁻¹ the beta quantile (:func:`beta_quantile`): the p solving
      P(X >= k | p) = α and P(X <= k | p) = α, as
      ``scipy.stats.binomtest(k, n).proportion_ci(confidence_level, method="exact")``.
      Bins with n = 0 get ``nan``.

    Raises:
      InputError: naming ``successes``, ``trials`` or ``confidence_level``.

    >>> ci = clopper_pearson([3, 0], [10, 5])
    >>> ci.lower.round(6).tolist(), ci.upper.round(6).tolist()
    ([0.06674, 0.0], [0.652453, 0.521824])
    """
    level = INTERVAL_PARAMS["confidence_level"].check(confidence_level, "confidence_level")
    k = as_float_array(successes, "successes", ndim=(0, 1, 2))
    n = as_float_array(trials, "trials", ndim=(0, 1, 2))
    if n.shape != k.shape:
        raise InputError("trials", f"expected the shape of successes, {k.shape}, got {n.shape}",
                         kind="shape_mismatch")
    for name, arr in (("successes", k), ("trials", n)):
        bad = (arr != np.floor(arr)) | (arr < 0)
        if bad.any():
            raise InputError(name, "expected non-negative integers", kind="out_of_range")
    if (k > n).any():
        raise InputError("successes", "expected at most the number of trials",
                         kind="out_of_range")
    alpha = (1.0 - level) / 2.0
    some = n > 0
    lo_a = np.where(k > 0, k, 1.0)
    lo_b = np.where(some, n - k + 1.0, 1.0)
    lower = np.where(k > 0, beta_quantile(alpha, lo_a, lo_b), 0.0)
    hi_a = np.where(k < n, n - k, 1.0)
    upper = np.where(k < n, 1.0 - beta_quantile(alpha, hi_a, k + 1.0), 1.0)
    return ClopperPearson(
        lower=np.where(some, lower, np.nan), upper=np.where(some, upper, np.nan),
        confidence_level=level,
    )


# --------------------------------------------------------------------------- weights


def _poisson_tables() -> tuple[np.ndarray, np.ndarray]:
    """Thresholds c_k = round(F(k)·2³²) of Poisson(1) (F its distribution function), and
    a table over the top 16 bits u of a 32-bit draw: the count when every draw starting
    with u gives the same count, else 255 (decided by the full 32 bits)."""
    f = np.cumsum([math.exp(-1.0) / math.factorial(j) for j in range(40)])
    thresholds = np.unique(np.minimum(np.round(f * 2.0**32), 2.0**32)).astype(np.int64)
    thresholds = thresholds[thresholds < 2**32]
    starts = np.arange(65536, dtype=np.int64) << 16
    low = np.searchsorted(thresholds, starts, side="right")
    high = np.searchsorted(thresholds, starts + 65535, side="right")
    table = np.where(low == high, low, 255).astype(np.uint8)
    return thresholds, table


_THRESHOLDS, _TABLE = _poisson_tables()


def _key(seed: int, stream: int, method: str) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, stream, BOOTSTRAP_METHODS.index(method)])


def _philox(seed: int, stream: int, method: str, start: int) -> np.random.Generator:
    """The generator of (seed, stream, method), advanced to 64-bit draw ``start``
    (a multiple of 4: Philox's counter counts blocks of four 64-bit draws)."""
    bits = np.random.Philox(_key(seed, stream, method))
    bits.advance(start // 4)
    return np.random.Generator(bits)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser (Steele, Lea & Flood 2014) of uint64 values: a
    counter-based source of 64 random bits per position."""
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _stride(n_samples: int, method: str) -> int:
    """64-bit draws per replicate, a multiple of 4: four Poisson weights (16 bits each)
    or one index per draw."""
    draws = -(-n_samples // 4) if method == "poisson" else n_samples
    return -(-draws // 4) * 4


def _weights_block(
    n_samples: int, first: int, count: int, *, seed: int, stream: int, method: str
) -> np.ndarray:
    """Replicate weights of replicates [first, first + count): shape (count, N), float64.

    Poisson: 16 random bits u per weight give the count directly (a table) unless a
    threshold c_k falls inside u's range of 32-bit values (about 2 weights in 10 000);
    those take 16 more bits from a counter-based hash of their position r·N + j, so that
    every weight is decided by 32 bits."""
    stride = _stride(n_samples, method)
    rng = _philox(seed, stream, method, first * stride)
    raw = rng.integers(0, 2**64, size=(count, stride), dtype=np.uint64)
    if method == "poisson":
        top = raw.view(np.uint16)[:, :n_samples]
        small = np.take(_TABLE, top)
        weights = np.empty((count, n_samples))
        weights[...] = small
        flat = np.flatnonzero(small.reshape(-1) == 255)
        ambiguous = (flat // n_samples, flat % n_samples)
        if flat.shape[0]:
            key = _key(seed, stream, method).generate_state(1, np.uint64)[0]
            pos = (first + ambiguous[0]).astype(np.uint64) * np.uint64(n_samples) + (
                ambiguous[1].astype(np.uint64)
            )
            low = (_splitmix64(pos ^ key) >> np.uint64(48)).astype(np.int64)
            full = (top[ambiguous].astype(np.int64) << 16) | low
            weights[ambiguous] = np.searchsorted(_THRESHOLDS, full, side="right")
        return weights
    # Multinomial: N uniform indices per replicate (53 random bits each), counted.
    idx = ((raw[:, :n_samples] >> np.uint64(11)).astype(np.float64) * 2.0**-53 * n_samples)
    idx = np.minimum(idx.astype(np.int64), n_samples - 1)
    keys = idx + n_samples * np.arange(count)[:, None]
    counts = np.bincount(keys.ravel(), minlength=count * n_samples)
    return counts.reshape(count, n_samples).astype(np.float64)


def _blocks(n_samples: int, n_resamples: int) -> Iterator[tuple[int, int]]:
    """(first, count) of the blocks of replicates, about _BLOCK_ELEMENTS weights each."""
    per = max(1, _BLOCK_ELEMENTS // max(n_samples, 1))
    for first in range(0, n_resamples, per):
        yield first, min(per, n_resamples - first)


def bootstrap_weights(
    n_samples: int,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    method: str = "poisson",
    stream: int = 0,
) -> np.ndarray:
    """The replicate weights :func:`bootstrap_intervals` uses, shape (R, N), float64
    (Poisson bootstrap: Hanley & MacGibbon 2006, "Creating non-parametric bootstrap
    samples using Poisson frequencies"; multinomial: Efron 1979).

    Args:
      n_samples: N >= 1.
      n_resamples: R, in [1, 10 000].
      seed, stream: the generator's key (see the module); batches that are to be merged
        need distinct streams, else their replicates would be correlated.
      method: ``"poisson"`` (independent Poisson(1) counts) or ``"multinomial"`` (the
        counts of N draws with replacement: every row sums to N).

    Returns:
      W, where column j weighs the j-th sample in increasing order of confidence.

    >>> w = bootstrap_weights(5, n_resamples=3, seed=1)
    >>> w.shape, bool((w == np.round(w)).all())
    ((3, 5), True)
    >>> bootstrap_weights(4, n_resamples=2, method="multinomial").sum(axis=1).tolist()
    [4.0, 4.0]
    """
    n, r, s, st, m = _check_bootstrap(n_samples, n_resamples, seed, stream, method)
    return np.concatenate(
        [_weights_block(n, first, count, seed=s, stream=st, method=m)
         for first, count in _blocks(n, r)]
    )


def _check_bootstrap(
    n_samples: int, n_resamples: int, seed: int, stream: int, method: str
) -> tuple[int, int, int, int, str]:
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) or (
        n_samples < 1
    ):
        raise InputError("n_samples", f"expected an integer >= 1, got {n_samples!r}",
                         kind="out_of_range")
    return (
        int(n_samples),
        int(INTERVAL_PARAMS["n_resamples"].check(n_resamples, "n_resamples")),
        int(INTERVAL_PARAMS["seed"].check(seed, "seed")),
        int(INTERVAL_PARAMS["stream"].check(stream, "stream")),
        str(INTERVAL_PARAMS["method"].check(method, "method")),
    )


# --------------------------------------------------------------------------- replicate sums


@dataclass(frozen=True)
class ReplicateSums:
    """Sufficient statistics of R bootstrap replicates over fixed bins (mergeable).

    For replicate r with weights v_ri = w_i·P_ri (sample weight times replicate count):

    Attributes:
      edges: the B + 1 bin edges, fixed for all replicates.
      weight: (R,) Σ_i v_ri; nll, brier, correct: (R,) Σ_i v_ri x_i of the per-sample
        NLL, Brier score and top-label correctness (zeros when not given).
      bin_weight, bin_confidence, bin_outcome: (R, B) the same sums per bin, of 1, the
        confidence and the outcome.
      seed, method, streams: where the weights came from; merging needs equal seeds,
        methods and edges and disjoint streams.
    """

    edges: np.ndarray
    weight: np.ndarray
    nll: np.ndarray
    brier: np.ndarray
    correct: np.ndarray
    bin_weight: np.ndarray
    bin_confidence: np.ndarray
    bin_outcome: np.ndarray
    seed: int
    method: str
    streams: tuple[int, ...] = field(default=(0,))

    def merge(self, other: ReplicateSums) -> ReplicateSums:
        """The sums of both batches: replicate r of the union is the sum of the two
        replicates r (Poisson weights of disjoint samples are independent)."""
        if self.method != "poisson" or other.method != "poisson":
            raise InputError("method", "only Poisson replicates merge (multinomial ones "
                             "fix the total count of each batch)", kind="not_mergeable")
        if self.seed != other.seed or self.weight.shape != other.weight.shape:
            raise InputError("seed", "expected replicates of one seed and one count",
                             kind="not_mergeable")
        if not np.array_equal(self.edges, other.edges):
            raise InputError("edges", "expected the same bin edges", kind="not_mergeable")
        if set(self.streams) & set(other.streams):
            raise InputError("stream", "expected batches from distinct streams (equal "
                             "streams give correlated replicates)", kind="not_mergeable")
        return ReplicateSums(
            edges=self.edges,
            weight=self.weight + other.weight,
            nll=self.nll + other.nll,
            brier=self.brier + other.brier,
            correct=self.correct + other.correct,
            bin_weight=self.bin_weight + other.bin_weight,
            bin_confidence=self.bin_confidence + other.bin_confidence,
            bin_outcome=self.bin_outcome + other.bin_outcome,
            seed=self.seed,
            method=self.method,
            streams=tuple(sorted(self.streams + other.streams)),
        )

    def metrics(self) -> dict[str, np.ndarray]:
        """Every statistic of every replicate, (R,) each: nll, brier, accuracy (the
        weighted means), ece, mce, rmsce (over the fixed bins) and ece_debiased.
        Replicates of total weight 0 are ``nan``."""
        has = self.weight > 0
        safe = np.where(has, self.weight, 1.0)
        sums = _BinSums(
            count=self.bin_weight, weight=self.bin_weight,
            sum_confidence=self.bin_confidence, sum_outcome=self.bin_outcome,
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            out = {
                "nll": self.nll / safe,
                "brier": self.brier / safe,
                "accuracy": self.correct / safe,
                "ece": _calibration_error(sums, "l1"),
                "mce": _calibration_error(sums, "max"),
                "rmsce": _calibration_error(sums, "l2"),
                "ece_debiased": np.sqrt(np.maximum(_debiased_squared(sums), 0.0)),
            }
        return {k: np.where(has, v, np.nan) for k, v in out.items()}


@dataclass(frozen=True)
class _Prepared:
    """Samples sorted by confidence, with their bins and per-sample channels."""

    c: np.ndarray
    o: np.ndarray
    w: np.ndarray
    channels: np.ndarray  # (N, 6): w, w·nll, w·brier, w·correct, w·confidence, w·outcome
    starts: np.ndarray  # first sorted position of every cell (bins of all binnings)
    cell_bin: dict[str, np.ndarray]  # binning -> bin of each cell
    edges: dict[str, np.ndarray]


def _prepare(
    c: np.ndarray,
    o: np.ndarray,
    w: np.ndarray,
    extra: dict[str, np.ndarray],
    n_bins: int,
    binnings: Sequence[str],
) -> _Prepared:
    order = np.argsort(c, kind="stable")
    cs, os_, ws = c[order], o[order], w[order]
    channels = np.zeros((c.shape[0], 6))
    channels[:, 0] = ws
    for j, name in enumerate(("nll", "brier", "correct"), start=1):
        if name in extra:
            channels[:, j] = ws * extra[name][order]
    channels[:, 4] = ws * cs
    channels[:, 5] = ws * os_
    bins: dict[str, np.ndarray] = {}
    edges: dict[str, np.ndarray] = {}
    for binning in binnings:
        a = _assign_bins(cs[None, :], ws, n_bins, binning, edges=True)
        bins[binning] = a.bins[0]
        assert a.edges is not None
        edges[binning] = a.edges
    # Every binning is monotone in the confidence, so their common refinement is a set of
    # contiguous cells of the sorted samples.
    change = np.zeros(c.shape[0], dtype=bool)
    change[0] = True
    for b in bins.values():
        change[1:] |= b[1:] != b[:-1]
    starts = np.flatnonzero(change)
    return _Prepared(cs, os_, ws, channels, starts,
                     {k: v[starts] for k, v in bins.items()}, edges)


def _cell_sums(weights: np.ndarray, x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Σ over the columns of each cell of weights (K, N) × x (N, J): shape (K, cells, J),
    one matrix product per cell (cells are contiguous blocks of columns)."""
    ends = np.append(starts[1:], weights.shape[1])
    out = np.empty((weights.shape[0], starts.shape[0], x.shape[1]))
    for j, (s, e) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        out[:, j, :] = weights[:, s:e] @ x[s:e]
    return out


def _bin_totals(cell: np.ndarray, cell_bin: np.ndarray, n_bins: int) -> np.ndarray:
    """Sum the cells (K, cells) of each bin: (K, B)."""
    k_rows = cell.shape[0]
    keys = cell_bin[None, :] + n_bins * np.arange(k_rows)[:, None]
    return np.bincount(keys.ravel(), weights=cell.ravel(), minlength=k_rows * n_bins).reshape(
        k_rows, n_bins
    )


def _replicate_block(
    prep: _Prepared, weights: np.ndarray, binning: str, n_bins: int
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The global sums (K, 4) and the bin sums (K, B, 3) per binning of one block."""
    cells = _cell_sums(weights, prep.channels, prep.starts)  # (K, cells, 6)
    totals = cells[:, :, :4].sum(axis=1)
    per_binning = {
        name: np.stack(
            [_bin_totals(cells[:, :, j], cell_bin, n_bins) for j in (0, 4, 5)], axis=2
        )
        for name, cell_bin in prep.cell_bin.items()
    }
    return totals, per_binning[binning], per_binning


def replicate_sums(
    confidences: ArrayLike,
    outcomes: ArrayLike,
    *,
    nll: ArrayLike | None = None,
    brier: ArrayLike | None = None,
    correct: ArrayLike | None = None,
    sample_weights: ArrayLike | None = None,
    n_bins: int = 15,
    n_resamples: int = 1000,
    seed: int = 0,
    stream: int = 0,
) -> ReplicateSums:
    """Poisson bootstrap replicates of a batch as sums over uniform bins (mergeable).

    Args:
      confidences, outcomes, sample_weights: as for the estimators.
      nll, brier, correct: optional per-sample NLL, Brier score and top-label
        correctness, shape (N,) each (their sums are 0 when not given).
      n_bins: uniform bins (edges k / B: the same for every batch, so sums merge).
      n_resamples, seed, stream: the replicates (see :func:`bootstrap_weights`).

    Returns:
      :class:`ReplicateSums`; ``a.merge(b)`` for two batches from distinct streams equals
      the sums of the concatenated batch with its weights (the two weight matrices side
      by side), and its :meth:`~ReplicateSums.metrics` give the replicates of the union.

    >>> s = replicate_sums([0.2, 0.7, 0.9], [0, 1, 1], n_bins=2, n_resamples=4, seed=3)
    >>> s.bin_weight.shape, bool((s.bin_weight.sum(axis=1) == s.weight).all())
    ((4, 2), True)
    """
    c, o, w = _check_pairs(confidences, outcomes, sample_weights)
    extra = _check_extra(c.shape[0], nll=nll, brier=brier, correct=correct)
    n = _check_bins(n_bins, "uniform")
    _, r, s, st, _ = _check_bootstrap(c.shape[0], n_resamples, seed, stream, "poisson")
    prep = _prepare(c, o, w, extra, n, ("uniform",))
    totals, bins = [], []
    for first, count in _blocks(c.shape[0], r):
        weights = _weights_block(c.shape[0], first, count, seed=s, stream=st,
                                 method="poisson")
        t, b, _ = _replicate_block(prep, weights, "uniform", n)
        totals.append(t)
        bins.append(b)
    tot = np.concatenate(totals)
    bb = np.concatenate(bins)
    return ReplicateSums(
        edges=prep.edges["uniform"], weight=tot[:, 0], nll=tot[:, 1], brier=tot[:, 2],
        correct=tot[:, 3], bin_weight=bb[:, :, 0], bin_confidence=bb[:, :, 1],
        bin_outcome=bb[:, :, 2], seed=s, method="poisson", streams=(st,),
    )


def _check_extra(n_samples: int, **arrays: ArrayLike | None) -> dict[str, np.ndarray]:
    out = {}
    for name, value in arrays.items():
        if value is None:
            continue
        arr = np.ascontiguousarray(as_float_array(value, name, ndim=1))
        check_length(arr, name, n_samples, "one value per sample")
        out[name] = arr
    return out


# --------------------------------------------------------------------------- intervals


@dataclass(frozen=True)
class BootstrapIntervals:
    """Percentile bootstrap intervals.

    Attributes:
      intervals: metric -> (lower, upper); ``None`` when no replicate had positive weight.
      confidence_level, n_resamples, seed, method, stream: the options used.
      replicates: metric -> the R replicate values (``nan`` for replicates of total
        weight 0), for callers that need more than the interval.
      sums: with ``keep_sums``, the replicates' :class:`ReplicateSums` (mergeable).
    """

    intervals: dict[str, tuple[float, float] | None]
    confidence_level: float
    n_resamples: int
    seed: int
    method: str
    stream: int
    replicates: dict[str, np.ndarray] = field(repr=False)
    sums: ReplicateSums | None = field(default=None, repr=False)


def percentile_interval(
    values: ArrayLike, *, confidence_level: float = 0.95
) -> tuple[float, float] | None:
    """The (α/2, 1 − α/2) quantiles of the finite values, α = 1 − confidence_level,
    by ``np.quantile``'s default linear interpolation; ``None`` if none is finite.

    >>> percentile_interval([1.0, 2.0, 3.0, 4.0, 5.0], confidence_level=0.5)
    (2.0, 4.0)
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.shape[0] == 0:
        return None
    alpha = 1.0 - check_scalar(confidence_level, "confidence_level", low=0.0, high=1.0,
                               low_open=True, high_open=True)
    lo, hi = np.quantile(v, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def bootstrap_intervals(
    confidences: ArrayLike,
    outcomes: ArrayLike,
    *,
    nll: ArrayLike | None = None,
    brier: ArrayLike | None = None,
    correct: ArrayLike | None = None,
    sample_weights: ArrayLike | None = None,
    n_bins: int = 15,
    binning: str = "uniform",
    estimators: Sequence[str] = (),
    confidence_level: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
    method: str = "poisson",
    stream: int = 0,
    sweep_max_n_bins: int | None = None,
    keep_sums: bool = False,
) -> BootstrapIntervals:
    """Percentile bootstrap intervals of every scalar calibration statistic (Efron &
    Tibshirani 1993, "An Introduction to the Bootstrap", ch. 13).

    Args:
      confidences: shape (N,), in [0, 1]: the binned value (top-label confidence, or
        binary input's probability of class 1).
      outcomes: shape (N,), 0 or 1: its observed counterpart.
      nll, brier, correct: optional shape-(N,) per-sample NLL, Brier score and top-label
        correctness: each adds the interval of its weighted mean (``nll``, ``brier``,
        ``accuracy``).
      sample_weights: shape (N,), >= 0 with a positive sum; repeat counts.
      n_bins, binning: the bins of ece, mce, rmsce and ece_debiased (``ace`` always uses
        quantile bins).
      estimators: any of ``"ece_debiased"``, ``"ece_sweep"``, ``"smooth_ece"``.
      confidence_level: in (0, 1).
      n_resamples: R in [1, 10 000]; seed, method, stream: see :func:`bootstrap_weights`.
      sweep_max_n_bins: ``ece_sweep``'s largest bin count (default N), as for
        :func:`~xentropy.calibration.estimators.ece_sweep`.
      keep_sums: also return the replicates as :class:`ReplicateSums` (those of
        :func:`replicate_sums`, from the same weights); uniform bins and Poisson only.

    Returns:
      :class:`BootstrapIntervals`. Replicate r weighs sample i by w_i·P_ri
      (:func:`bootstrap_weights`) and recomputes each statistic on the reweighted data:
      the means (nll, brier, accuracy); ece, mce, rmsce, ace and ece_debiased over the
      bins of the full sample (the edges are held fixed, so that Poisson replicates are
      sums per bin and merge; the bin contents, counts and means are resampled);
      ece_sweep and smooth_ece run their whole procedure (bin count, bandwidth) on every
      replicate. The interval of a statistic is the (α/2, 1 − α/2) percentile of its
      replicates (:func:`percentile_interval`), α = 1 − confidence_level.

      Cost: O(R·N) for the binned statistics (a block of replicates is one matrix product
      per bin), plus O(R·N log N) with ``ece_sweep`` and O(R·N) per grid size with
      ``smooth_ece``.

    Raises:
      InputError: naming the offending argument.

    >>> p = np.linspace(0.05, 0.95, 200); y = (np.arange(200) % 3 != 0).astype(float)
    >>> r = bootstrap_intervals(p, y, n_bins=5, n_resamples=200, seed=0)
    >>> lo, hi = r.intervals["ece"]
    >>> bool(0 < lo < hi < 0.5), sorted(r.intervals)
    (True, ['ace', 'ece', 'mce', 'rmsce'])
    """
    c, o, w = _check_pairs(confidences, outcomes, sample_weights)
    extra = _check_extra(c.shape[0], nll=nll, brier=brier, correct=correct)
    n = _check_bins(n_bins, binning)
    level = INTERVAL_PARAMS["confidence_level"].check(confidence_level, "confidence_level")
    _, r, s, st, m = _check_bootstrap(c.shape[0], n_resamples, seed, stream, method)
    wanted = tuple(estimators)
    for i, name in enumerate(wanted):
        if name not in ESTIMATORS:
            options = ", ".join(repr(e) for e in ESTIMATORS)
            raise InputError("estimators", f"expected one of {options}, got {name!r}",
                             position=(i,), kind="enum")
    if keep_sums and (binning != "uniform" or m != "poisson"):
        raise InputError("keep_sums", "expected uniform bins and Poisson weights: only "
                         "those replicate sums merge", kind="not_mergeable")
    binnings = tuple(dict.fromkeys((binning, "quantile")))
    prep = _prepare(c, o, w, extra, n, binnings)
    pieces: dict[str, list[np.ndarray]] = {}
    kept: list[ReplicateSums] = []
    for first, count in _blocks(c.shape[0], r):
        weights = _weights_block(c.shape[0], first, count, seed=s, stream=st, method=m)
        totals, bins, per_binning = _replicate_block(prep, weights, binning, n)
        sums = ReplicateSums(
            edges=prep.edges[binning], weight=totals[:, 0], nll=totals[:, 1],
            brier=totals[:, 2], correct=totals[:, 3], bin_weight=bins[:, :, 0],
            bin_confidence=bins[:, :, 1], bin_outcome=bins[:, :, 2], seed=s, method=m,
        )
        if keep_sums:
            kept.append(sums)
        block = sums.metrics()
        q = per_binning["quantile"]
        with np.errstate(invalid="ignore", divide="ignore"):  # replicates of weight 0
            ace = _calibration_error(
                _BinSums(count=q[:, :, 0], weight=q[:, :, 0], sum_confidence=q[:, :, 1],
                         sum_outcome=q[:, :, 2]),
                "l1",
            )
        block["ace"] = np.where(totals[:, 0] > 0, ace, np.nan)
        if "ece_sweep" in wanted or "smooth_ece" in wanted:
            # The weighted replicates, only for the estimators that re-bin them: a (K, N)
            # product per block, 8% of a 10^6-row bootstrap when nothing used it.
            v = weights * prep.w
            if "ece_sweep" in wanted:
                block["ece_sweep"] = _sweep_replicates(prep, v, sweep_max_n_bins)
            if "smooth_ece" in wanted:
                block["smooth_ece"] = _smooth_replicates(prep, v)
        for key, values in block.items():
            pieces.setdefault(key, []).append(values)
    keep = ["ece", "mce", "rmsce", "ace"]
    keep += [name for name in ("nll", "brier", "correct") if name in extra]
    keep += list(dict.fromkeys(wanted))
    replicates = {
        ("accuracy" if k == "correct" else k): np.concatenate(
            pieces["accuracy" if k == "correct" else k]
        )
        for k in keep
    }
    return BootstrapIntervals(
        intervals={k: percentile_interval(v, confidence_level=level)
                   for k, v in replicates.items()},
        confidence_level=level, n_resamples=r, seed=s, method=m, stream=st,
        replicates=replicates, sums=_stacked(kept, st) if keep_sums else None,
    )


def _stacked(blocks: Sequence[ReplicateSums], stream: int) -> ReplicateSums:
    """The blocks of replicates as one :class:`ReplicateSums` (replicates in order)."""
    first = blocks[0]
    return ReplicateSums(
        edges=first.edges,
        **{name: np.concatenate([getattr(b, name) for b in blocks])
           for name in ("weight", "nll", "brier", "correct", "bin_weight", "bin_confidence",
                        "bin_outcome")},
        seed=first.seed, method=first.method, streams=(stream,),
    )


def _sweep_replicates(prep: _Prepared, v: np.ndarray, cap: int | None) -> np.ndarray:
    """ece_sweep of every replicate (rows of v, (K, N), in sorted order), trying at most
    ``cap`` bins (default N)."""
    out = np.full(v.shape[0], np.nan)
    ok = np.flatnonzero(v.sum(axis=1) > 0)
    n_samples = prep.c.shape[0]
    if ok.shape[0]:
        runs = _sorted_runs(prep.c, prep.o, v[ok], presorted=True)
        counts = _sweep_counts(runs, n_samples if cap is None else min(cap, n_samples))
        out[ok] = _sweep_ece_rows(runs, counts)
    return out


def _smooth_replicates(prep: _Prepared, v: np.ndarray) -> np.ndarray:
    """smooth_ece of every replicate (rows of v, (K, N))."""
    out = np.full(v.shape[0], np.nan)
    ok = np.flatnonzero(v.sum(axis=1) > 0)
    if ok.shape[0]:
        out[ok] = _smooth_ece_rows(prep.c, prep.o, v[ok])
    return out
