"""Risk–coverage (:mod:`xentropy.calibration.selective`) against a brute-force sort, and
the per-class NLL and Brier (:mod:`xentropy.calibration.per_class`)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xentropy._validation import InputError
from xentropy.calibration import calibration_report
from xentropy.calibration.metrics import _from_probabilities
from xentropy.calibration.per_class import per_class_scores
from xentropy.calibration.selective import optimal_aurc, risk_coverage


def _brute_force(c: np.ndarray, ok: np.ndarray, w: np.ndarray) -> tuple[float, list]:
    """Sort by confidence, descending, with loops; tied confidences enter together."""
    items = sorted(zip(c.tolist(), ok.tolist(), w.tolist(), strict=True), key=lambda t: -t[0])
    total = sum(w)
    groups: list[list[tuple[float, float, float]]] = []
    for item in items:
        if groups and groups[-1][0][0] == item[0]:
            groups[-1].append(item)
        else:
            groups.append([item])
    aurc, kept, errors, points = 0.0, 0.0, 0.0, []
    for g in groups:
        kept += sum(x[2] for x in g)
        errors += sum(x[2] * (1 - x[1]) for x in g)
        if kept > 0:
            risk = errors / kept
            aurc += sum(x[2] for x in g) / total * risk
            points.append((kept / total, risk, g[0][0]))
    return aurc, points


@pytest.mark.parametrize("seed", range(5))
def test_matches_brute_force_sort(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    c = rng.uniform(size=n)
    if seed % 2:
        c = np.round(c * 10) / 10  # many ties
    ok = (rng.uniform(size=n) < c).astype(float)
    w = rng.integers(0, 3, size=n).astype(float) if seed >= 3 else np.ones(n)
    w[0] = 1.0
    r = risk_coverage(c, ok, sample_weights=w, n_points=10_000)
    aurc, points = _brute_force(c, ok, w)
    assert r.aurc == pytest.approx(aurc, abs=1e-12)
    assert len(r.curve) == len(points)
    for p, (cov, risk, thr) in zip(r.curve, points, strict=True):
        assert p.coverage == pytest.approx(cov, abs=1e-12)
        assert p.risk == pytest.approx(risk, abs=1e-12)
        assert p.threshold == thr
    r_err = 1 - np.average(ok, weights=w)
    assert r.optimal_aurc == pytest.approx(r_err + (1 - r_err) * math.log(1 - r_err), abs=1e-12)
    assert r.e_aurc == pytest.approx(r.aurc - r.optimal_aurc, abs=1e-15)


def test_ties_share_one_step() -> None:
    # All tied: one step, AURC = overall error rate.
    r = risk_coverage([0.7] * 4, [1, 0, 0, 1])
    assert r.aurc == 0.5
    assert [(p.coverage, p.risk, p.threshold) for p in r.curve] == [(1.0, 0.5, 0.7)]


def test_a_perfect_ranking_reaches_the_closed_form() -> None:
    """Every error below every correct prediction: the AURC is the discrete sum
    Σ_{i > N−E} (i − (N − E)) / (i N), which tends to r + (1 − r) ln(1 − r)."""
    n, errors = 200_000, 30_000
    c = np.linspace(1.0, 0.0, n)
    ok = np.r_[np.ones(n - errors), np.zeros(errors)]
    r = risk_coverage(c, ok)
    i = np.arange(n - errors + 1, n + 1)
    discrete = float(np.sum((i - (n - errors)) / (i * n)))
    assert r.aurc == pytest.approx(discrete, abs=1e-12)
    rate = errors / n
    assert r.optimal_aurc == pytest.approx(rate + (1 - rate) * math.log(1 - rate), abs=1e-15)
    assert abs(r.e_aurc) < 1e-4  # the discrete sum converges to the closed form
    # A perfectly wrong ranking is the worst.
    assert risk_coverage(c[::-1].copy(), ok).aurc > r.aurc + 0.1


def test_curve_is_capped_at_n_points() -> None:
    rng = np.random.default_rng(0)
    c = rng.uniform(size=10_000)
    ok = (rng.uniform(size=10_000) < c).astype(float)
    r = risk_coverage(c, ok, n_points=11)
    assert 2 <= len(r.curve) <= 11
    assert r.curve[0].threshold == c.max()
    assert r.curve[-1].coverage == 1.0
    assert r.curve[-1].threshold == c.min()
    covs = [p.coverage for p in r.curve]
    assert covs == sorted(covs)
    full = risk_coverage(c, ok, n_points=10_000)
    assert full.aurc == r.aurc  # the area never depends on the points shown
    assert len(full.curve) == 10_000


def test_extreme_error_rates_and_errors() -> None:
    assert risk_coverage([0.2, 0.9], [0, 0]).optimal_aurc == 1.0
    assert risk_coverage([0.2, 0.9], [1, 1]).aurc == 0.0
    assert optimal_aurc(0.0) == 0.0
    with pytest.raises(InputError) as err:
        risk_coverage([0.2, 0.9], [1, 2])
    assert (err.value.field, err.value.position) == ("correct", (1,))
    with pytest.raises(InputError) as err:
        risk_coverage([0.2, 0.9], [1, 1], n_points=1)
    assert err.value.field == "n_points"


# ----------------------------------------------------------------------------- per class


@pytest.mark.parametrize("weighted", [False, True])
def test_per_class_means_recombine_into_the_top_level_means(weighted: bool) -> None:
    rng = np.random.default_rng(4)
    n, c = 500, 4
    z = rng.normal(size=(n, c))
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = rng.integers(0, c - 1, size=n)  # class 3 never appears
    w = rng.uniform(0, 2, size=n) if weighted else None
    model = _from_probabilities(probs, y, float(np.finfo(float).eps))
    scores = per_class_scores(model.nll, model.brier, y, n_classes=c, sample_weights=w)
    report = calibration_report(probs, y, sample_weights=w)
    weights = np.ones(n) if w is None else w
    total = weights.sum()
    nll = sum(s.weight * s.nll for s in scores if s.nll is not None) / total
    brier = sum(s.weight * s.brier for s in scores if s.brier is not None) / total
    assert nll == pytest.approx(report.nll, rel=1e-12)
    assert brier == pytest.approx(report.brier, rel=1e-12)
    assert [s.count for s in scores] == np.bincount(y, minlength=c).tolist()
    assert scores[3].nll is None and scores[3].count == 0
    if not weighted:
        assert sum(s.count * s.nll for s in scores if s.nll is not None) / n == pytest.approx(
            report.nll, rel=1e-12
        )


def test_per_class_hand_computed() -> None:
    # Two classes: p = [[.8, .2], [.4, .6], [.3, .7]], labels [0, 0, 1].
    probs = np.array([[0.8, 0.2], [0.4, 0.6], [0.3, 0.7]])
    y = np.array([0, 0, 1])
    nll = -np.log(probs[np.arange(3), y])
    brier = np.array([2 * 0.2**2, 2 * 0.6**2, 2 * 0.3**2])
    s = per_class_scores(nll, brier, y, n_classes=2, sample_weights=[1.0, 3.0, 1.0])
    assert s[0].nll == pytest.approx((-math.log(0.8) - 3 * math.log(0.4)) / 4, abs=1e-15)
    assert s[0].brier == pytest.approx((0.08 + 3 * 0.72) / 4, abs=1e-15)
    assert s[1].nll == pytest.approx(-math.log(0.7), abs=1e-15)
    assert (s[0].count, s[0].weight, s[1].count) == (2, 4.0, 1)
    with pytest.raises(InputError) as err:
        per_class_scores(nll, brier[:2], y, n_classes=2)
    assert err.value.field == "brier"
    with pytest.raises(InputError) as err:
        per_class_scores(nll, brier, [0, 0, 2], n_classes=2)
    assert err.value.field == "labels"
