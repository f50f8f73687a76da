"""Selective prediction: the risk–coverage curve and the area under it (AURC).

Samples are ranked by confidence, descending, and the model abstains on the rest: at
coverage c it keeps the most confident share c of the samples, and its risk is the
top-label error rate of those it keeps (Geifman & El-Yaniv 2017; Geifman, Uziel &
El-Yaniv 2019, "Bias-reduced uncertainty estimation for deep neural classifiers").
Samples with equal confidence cannot be told apart, so they enter together: the curve
has one step per run of tied confidences (the HTTP contract, "Precise semantics").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from xentropy._validation import InputError, Param
from xentropy.calibration.estimators import _check_pairs

#: The option of :func:`risk_coverage`.
SELECTIVE_PARAMS: dict[str, Param] = {
    "n_points": Param(
        "integer", 101, "Points of the risk–coverage curve, 2 to 10 000.", low=2, high=10_000
    ),
}


@dataclass(frozen=True)
class RiskCoveragePoint:
    """One point of the curve: keeping the samples with confidence >= ``threshold``.

    Attributes:
      coverage: the (weighted) share of the samples kept.
      risk: the (weighted) error rate of the samples kept.
      threshold: the lowest confidence kept.
    """

    coverage: float
    risk: float
    threshold: float


@dataclass(frozen=True)
class SelectiveResult:
    """AURC and the risk–coverage curve.

    Attributes:
      aurc: area under the risk–coverage curve, one step per run of tied confidences.
      e_aurc: ``aurc − optimal_aurc`` (excess AURC).
      optimal_aurc: r + (1 − r) ln(1 − r) for the overall error rate r: the AURC of a
        perfect ranking (every error less confident than every correct prediction), in
        the limit of many samples.
      curve: at most ``n_points`` points, coverage increasing, the last one at coverage 1.
    """

    aurc: float
    e_aurc: float
    optimal_aurc: float
    curve: tuple[RiskCoveragePoint, ...]


def optimal_aurc(error_rate: float) -> float:
    """r + (1 − r) ln(1 − r), the AURC of a perfect ranking with error rate r
    (Geifman et al. 2019, eq. 7); 1 at r = 1.

    >>> optimal_aurc(0.0), round(optimal_aurc(0.2), 6), optimal_aurc(1.0)
    (0.0, 0.021485, 1.0)
    """
    r = float(error_rate)
    return r if r >= 1.0 else r + (1.0 - r) * math.log1p(-r)


def risk_coverage(
    confidences: ArrayLike,
    correct: ArrayLike,
    *,
    sample_weights: ArrayLike | None = None,
    n_points: int = 101,
) -> SelectiveResult:
    """AURC, E-AURC, the optimal AURC and the risk–coverage curve.

    Args:
      confidences: shape (N,), in [0, 1]: the ranking score (top-label confidence).
      correct: shape (N,), 0 or 1: top-label correctness (the risk is 1 − correct).
      sample_weights: shape (N,), >= 0 with a positive sum; repeat counts.
      n_points: the most points the curve may have, in [2, 10 000].

    Returns:
      :class:`SelectiveResult`. With the runs g = 1..G of tied confidences in decreasing
      order, W_g their weight, E_g their weight of errors, and the cumulative
      C_g = Σ_{h<=g} W_h, the risk at g is ρ_g = (Σ_{h<=g} E_h) / C_g and

          AURC = Σ_g (W_g / W) ρ_g,   optimal = r + (1 − r) ln(1 − r) with r = E / W,

      and ``e_aurc = aurc − optimal_aurc``. The curve has the point (C_g / W, ρ_g, c_g)
      of every run g when G <= n_points; otherwise, for each of the n_points coverages
      j / (n_points − 1), the first run whose coverage reaches it (duplicates merged), so
      the most confident run and coverage 1 are always on it. Runs whose weight is 0 are
      steps of width 0: they change neither the area nor (while C_g = 0) the curve.

    Raises:
      InputError: naming ``confidences``, ``correct``, ``sample_weights`` or ``n_points``.

    >>> r = risk_coverage([0.9, 0.8, 0.8, 0.6], [1, 1, 0, 0])  # 0.25·0 + 0.5·(1/3) + 0.25·0.5
    >>> round(r.aurc, 6), [(p.coverage, round(p.risk, 6), p.threshold) for p in r.curve]
    (0.291667, [(0.25, 0.0, 0.9), (0.75, 0.333333, 0.8), (1.0, 0.5, 0.6)])
    """
    try:
        c, ok, w = _check_pairs(confidences, correct, sample_weights)
    except InputError as err:
        if err.field != "outcomes":
            raise
        raise InputError("correct", err.message, position=err.position, kind=err.kind) from None
    k = SELECTIVE_PARAMS["n_points"].check(n_points, "n_points")
    order = np.argsort(-c, kind="stable")
    cs = c[order]
    run_end = np.flatnonzero(np.append(cs[1:] != cs[:-1], True))
    # Sums per run; sample order inside a run does not matter (one bincount).
    run_of = np.zeros(cs.shape[0], np.int64)
    run_of[run_end[:-1] + 1] = 1
    run_of = np.cumsum(run_of)
    n_runs = run_end.shape[0]
    ws = w[order]
    run_weight = np.bincount(run_of, weights=ws, minlength=n_runs)
    run_errors = np.bincount(run_of, weights=ws * (1.0 - ok[order]), minlength=n_runs)
    total = run_weight.sum()
    cum_weight = np.cumsum(run_weight)
    cum_errors = np.cumsum(run_errors)
    kept = cum_weight > 0
    risk = np.divide(cum_errors, cum_weight, out=np.zeros(n_runs), where=kept)
    risk = np.clip(risk, 0.0, 1.0)
    aurc = float(np.clip((run_weight / total) @ risk, 0.0, 1.0))
    error_rate = float(np.clip(cum_errors[-1] / total, 0.0, 1.0))
    best = optimal_aurc(error_rate)
    coverage = cum_weight / total
    coverage[-1] = 1.0
    # The points: every run, or the first run reaching each of k evenly spaced coverages.
    if n_runs <= k:
        picks = np.arange(n_runs)
    else:
        targets = np.arange(k) / (k - 1)
        picks = np.unique(np.minimum(np.searchsorted(coverage, targets, side="left"),
                                     n_runs - 1))
    picks = picks[kept[picks]]
    curve = tuple(
        RiskCoveragePoint(coverage=float(coverage[g]), risk=float(risk[g]),
                          threshold=float(cs[run_end[g]]))
        for g in picks.tolist()
    )
    return SelectiveResult(aurc=aurc, e_aurc=aurc - best, optimal_aurc=best, curve=curve)
