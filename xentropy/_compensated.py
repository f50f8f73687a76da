"""Compensated sums, vectorised: every sum as a pair ``(hi, lo)`` of float64 numbers.

A pair stands for the real number ``hi + lo``; it is *normalised*: ``hi`` is that number
rounded to float64 (``fl(hi + lo) == hi``) and ``lo`` the rest, so ``hi`` alone is the best
float64 answer and ``lo`` keeps about 53 more bits. States (:mod:`xentropy.states`) hold
their sums this way, so that merging any number of them, in any order and any tree shape,
loses nothing that float64 could show.

How a sum of n numbers x_i (one group, or one bin of a ``bincount``) is taken:

1. An error-free extraction (Rump, Ogita & Oishi, "Accurate floating-point summation
   part I", SIAM J. Sci. Comput. 31(1), 2008, Lemma 3.3): with σ a power of two at least
   2 Σ|x_i|, ``q_i = fl(fl(σ + x_i) − σ)`` is x_i rounded to a multiple of 2^-53 σ and
   ``r_i = x_i − q_i`` is exact. Every partial sum of the q_i is a multiple of 2^-53 σ
   below σ in magnitude, so ``Σ q_i`` is *exact* in float64, in any order (one
   ``bincount`` for every group at once, σ chosen per group).
2. The remainders are summed in float64: |r_i| <= 2^-53 σ <= 2^-50 Σ|x|, so their rounding
   error is at most n·u·Σ|r_i| <= n²·2^-103·Σ|x| (u = 2^-53).
3. ``(hi, lo) = TwoSum(Σq, Σr)`` (Knuth), exact.

So a pair is within n²·2^-103·Σ|x| of the exact sum: for n = 10^7 values, 2^-56 relative to
Σ|x| (for the non-negative sums of losses and weights, relative to the sum itself), far
below the float64 rounding of the sum. Merging m pairs is the same procedure over their
2m numbers. Groups whose Σ|x| is beyond 2^1020 (σ would overflow) are summed in plain
float64 (any overflow then shows as inf, which callers refuse).
"""

from __future__ import annotations

import numpy as np

#: Exponent range of σ: normal numbers whose sum with any x of the group cannot overflow.
_SIGMA_MIN_EXP = -1020
_SIGMA_MAX_EXP = 1022


def two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knuth's TwoSum, elementwise: ``s = fl(a + b)`` and the exact error ``a + b − s``."""
    s = a + b
    bb = s - a
    err = (a - (s - bb)) + (b - bb)
    return s, err


def _sigma(magnitude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """σ = 2^(e + 2) >= 4·magnitude (a power of two), and whether extraction applies.

    ``magnitude`` is a float64 Σ|x|, within a relative n·u of the exact one, so 4× it is at
    least 2× the exact Σ|x| (n·u <= 1/2), as the extraction needs."""
    _, exponent = np.frexp(magnitude)  # magnitude < 2^exponent
    exponent = exponent.astype(np.int64) + 2
    usable = np.isfinite(magnitude) & (exponent <= _SIGMA_MAX_EXP)
    sigma = np.ldexp(1.0, np.clip(exponent, _SIGMA_MIN_EXP, _SIGMA_MAX_EXP))
    return sigma, usable


def _pair(exact: np.ndarray, rest: np.ndarray) -> np.ndarray:
    hi, lo = two_sum(exact, rest)
    return np.stack([hi, lo], axis=-1)


@np.errstate(over="ignore", invalid="ignore")
def group_sums(keys: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Compensated sum of ``values`` per group, shape (size, 2) of normalised pairs.

    Args:
      keys: shape (n,), ints in [0, size): the group of each value.
      values: shape (n,), finite float64.
      size: the number of groups.

    >>> keys = np.array([0, 0, 0, 1])
    >>> group_sums(keys, np.array([1.0, 1e-20, -1.0, 0.5]), 2).tolist()
    [[1e-20, 0.0], [0.5, 0.0]]
    """
    keys = np.asarray(keys, dtype=np.intp).ravel()
    values = np.asarray(values, dtype=np.float64).ravel()
    magnitude = np.bincount(keys, np.abs(values), minlength=size)
    sigma, usable = _sigma(magnitude)
    # The same operations as (σ + x) − σ and x − q, in place: two temporaries of the
    # values' size at a time instead of three (a calibration state's peak memory).
    high = sigma[keys]
    high += values
    high -= sigma[keys]
    high[~usable[keys]] = 0.0
    exact = np.bincount(keys, high, minlength=size)
    rest = np.bincount(keys, np.subtract(values, high, out=high), minlength=size)
    return _pair(exact, rest)


@np.errstate(over="ignore", invalid="ignore")
def column_sums(values: np.ndarray) -> np.ndarray:
    """Compensated sum of each column of ``values`` (m, ...) over axis 0: shape (..., 2).

    >>> column_sums(np.array([[1.0, 2.0], [1e-30, 3.0], [-1.0, 0.0]])).tolist()
    [[1e-30, 0.0], [5.0, 0.0]]
    """
    values = np.asarray(values, dtype=np.float64)
    magnitude = np.abs(values).sum(axis=0)
    sigma, usable = _sigma(np.asarray(magnitude))
    high = sigma + values  # (σ + x) − σ and x − q in place, as in group_sums
    high -= sigma
    if not np.all(usable):
        high = np.where(usable, high, 0.0)
    exact = high.sum(axis=0)
    rest = np.subtract(values, high, out=high).sum(axis=0)
    return _pair(np.asarray(exact), np.asarray(rest))


def total(values: np.ndarray) -> np.ndarray:
    """Compensated sum of every element of ``values``: one pair, shape (2,).

    >>> total(np.array([1e16, 1.0, -1e16, 1.0])).tolist()
    [2.0, 0.0]
    """
    return column_sums(np.asarray(values, dtype=np.float64).reshape(-1, 1))[0]


def merge_pairs(pairs: np.ndarray) -> np.ndarray:
    """The compensated sum of m pairs of the same shape: (m, ..., 2) -> (..., 2).

    >>> merge_pairs(np.array([[1.0, 1e-17], [2.0, -1e-17], [1e-30, 0.0]])).tolist()
    [3.0, 1e-30]
    """
    pairs = np.asarray(pairs, dtype=np.float64)
    flat = np.moveaxis(pairs, -1, 1).reshape((2 * pairs.shape[0], *pairs.shape[1:-1]))
    return column_sums(flat)


def group_merge_pairs(keys: np.ndarray, pairs: np.ndarray, size: int) -> np.ndarray:
    """The compensated sum per group of pairs (n, 2) with groups ``keys`` (n,): (size, 2)."""
    pairs = np.asarray(pairs, dtype=np.float64)
    return group_sums(np.repeat(keys, 2), pairs.ravel(), size)


def is_normalised(pairs: np.ndarray) -> np.ndarray:
    """Whether each pair (..., 2) is normalised: ``fl(hi + lo) == hi`` (an overflowing
    hi + lo is not; callers silence the overflow warning, as ``from_json`` does)."""
    hi, lo = pairs[..., 0], pairs[..., 1]
    return (hi + lo) == hi
