"""Tests of xentropy.calibration against scikit-learn, scipy, a naive reference and hand values."""

from __future__ import annotations

import dataclasses
import json
import math
import tracemalloc
from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar
from scipy.special import expit, softmax
from scipy.special import log_softmax as scipy_log_softmax
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, recall_score

import xentropy.calibration.report as report_module
import xentropy.calibration.temperature as temperature_module
from app.api.responses import encode_result
from xentropy._validation import InputError
from xentropy.calibration import (
    MAX_BINS,
    TEMPERATURE_MAX,
    TEMPERATURE_MIN,
    CalibrationResult,
    calibration_report,
    fit_temperature,
)
from xentropy.calibration.binning import _assign_bins, _binned
from xentropy.calibration.metrics import _calibration_error

LN2 = math.log(2.0)


# --------------------------------------------------------------------------------------------
# An independent, deliberately naive reference: Python loops over bins and explicit masks.


def _ref_edges(conf: np.ndarray, w: np.ndarray, n_bins: int, binning: str) -> np.ndarray:
    if binning == "uniform":
        return np.array([k / n_bins for k in range(n_bins + 1)])
    inner = np.quantile(conf, np.arange(1, n_bins) / n_bins, method="inverted_cdf", weights=w)
    return np.concatenate([[0.0], inner, [1.0]])


def _ref_bins(conf: np.ndarray, out: np.ndarray, w: np.ndarray, edges: np.ndarray) -> list[dict]:
    bins = []
    taken = np.zeros(conf.shape, bool)
    for b in range(len(edges) - 1):
        lo, hi = edges[b], edges[b + 1]
        mask = (conf > lo) & (conf <= hi) & ~taken
        if b == 0:
            mask |= conf == lo
        taken |= mask
        weight = w[mask].sum()
        bins.append({
            "count": int(mask.sum()),
            "weight": weight,
            "conf": (w[mask] * conf[mask]).sum() / weight if weight > 0 else None,
            "acc": (w[mask] * out[mask]).sum() / weight if weight > 0 else None,
        })
    assert taken.all()
    return bins


def _ref_errors(bins: list[dict]) -> tuple[float, float, float]:
    total = sum(b["weight"] for b in bins)
    gaps = [(b["weight"], abs(b["acc"] - b["conf"])) for b in bins if b["weight"] > 0]
    ece = sum(wb * g for wb, g in gaps) / total
    rmsce = math.sqrt(sum(wb * g * g for wb, g in gaps) / total)
    return ece, max(g for _, g in gaps), rmsce


def _ref_ece(conf: np.ndarray, out: np.ndarray, w: np.ndarray, n_bins: int, binning: str) -> float:
    return _ref_errors(_ref_bins(conf, out, w, _ref_edges(conf, w, n_bins, binning)))[0]


def _binary_data(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    p = rng.random(n)
    return p, (rng.random(n) < p).astype(int)


def _multiclass_data(
    rng: np.random.Generator, n: int, c: int, *, calibrated: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    probs = rng.dirichlet(np.full(c, 0.5), size=n)
    if calibrated:  # labels drawn from the predicted distributions (inverse-CDF sampling)
        u = rng.random(n)[:, None]
        labels = np.minimum((probs.cumsum(axis=1) < u).sum(axis=1), c - 1)
    else:
        labels = rng.integers(0, c, n)
    return probs, labels


def _bin_of(values: list[float], n_bins: int, binning: str = "uniform",
            weights: list[float] | None = None) -> list[int]:
    """The bins of ``values`` (one row) as the report assigns them."""
    w = np.ones(len(values)) if weights is None else np.asarray(weights, float)
    return _assign_bins(np.array([values]), w, n_bins, binning).bins[0].tolist()


def _quantile_edges(values: list[float] | np.ndarray, n_bins: int,
                    weights: list[float] | np.ndarray | None = None) -> np.ndarray:
    """The n_bins + 1 quantile edges of ``values`` (one row) as the report computes them."""
    v = np.asarray(values, float)
    w = np.ones(v.shape[0]) if weights is None else np.asarray(weights, float)
    edges = _assign_bins(v[None, :], w, n_bins, "quantile", edges=True).edges
    assert edges is not None
    return edges


def _floats(values: Iterable[float | None]) -> np.ndarray:
    """Bin statistics as a float array; fails on a None (an unexpectedly empty bin)."""
    out = list(values)
    assert None not in out
    return np.array(out, dtype=float)


# --------------------------------------------------------------------------------------------
# Oracles: scikit-learn


@pytest.mark.parametrize("n_bins", [1, 5, 10, 15])
def test_uniform_bins_match_sklearn_calibration_curve(n_bins: int) -> None:
    p, y = _binary_data(np.random.default_rng(0), 2000)
    edges = np.arange(n_bins + 1) / n_bins
    assert not np.isin(p, edges).any()
    r = calibration_report(p, y, n_bins=n_bins)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    nonempty = [b for b in r.bins if b.count > 0]
    np.testing.assert_allclose(_floats(b.accuracy for b in nonempty), prob_true, rtol=1e-12)
    np.testing.assert_allclose(
        _floats(b.mean_confidence for b in nonempty), prob_pred, rtol=1e-12
    )
    np.testing.assert_allclose([b.lower for b in r.bins], edges[:-1], rtol=0, atol=1e-16)
    np.testing.assert_allclose([b.upper for b in r.bins], edges[1:], rtol=0, atol=1e-16)
    assert sum(b.count for b in r.bins) == 2000


@pytest.mark.parametrize("n_bins", [2, 5, 8, 10])
def test_quantile_bins_match_sklearn_calibration_curve(n_bins: int) -> None:
    # N divisible by n_bins and distinct values: sklearn's interpolated percentiles and our
    # inverted-CDF quantiles split the sorted sample at the same places.
    p, y = _binary_data(np.random.default_rng(1), 1000 * n_bins // math.gcd(1000, n_bins))
    r = calibration_report(p, y, n_bins=n_bins, binning="quantile")
    prob_true, prob_pred = calibration_curve(y, p, n_bins=n_bins, strategy="quantile")
    assert len(r.bins) == n_bins and all(b.count == len(p) // n_bins for b in r.bins)
    np.testing.assert_allclose(_floats(b.accuracy for b in r.bins), prob_true, rtol=1e-12)
    np.testing.assert_allclose(_floats(b.mean_confidence for b in r.bins), prob_pred, rtol=1e-12)
    assert r.ace == r.ece


@pytest.mark.parametrize("weighted", [False, True])
def test_binary_scores_match_sklearn(weighted: bool) -> None:
    rng = np.random.default_rng(2)
    p, y = _binary_data(rng, 500)
    p[:3] = [0.0, 1.0, 0.5]  # clipped in the NLL; 0.5 is predicted negative (p > 0.5 rule)
    w = rng.random(500) * 3 if weighted else None
    r = calibration_report(p, y, sample_weights=w)
    assert r.brier == pytest.approx(brier_score_loss(y, p, sample_weight=w), rel=1e-12)
    assert r.nll == pytest.approx(log_loss(y, p, sample_weight=w), rel=1e-12)
    assert r.accuracy == pytest.approx(
        accuracy_score(y, (p > 0.5).astype(int), sample_weight=w), rel=1e-12
    )
    assert r.mean_confidence == pytest.approx(np.average(p, weights=w), rel=1e-12)
    assert (r.n_samples, r.n_classes, r.per_class) == (500, 2, None)
    bits = calibration_report(p, y, sample_weights=w, units="bits")
    assert bits.nll == pytest.approx(r.nll / LN2, rel=1e-14) and bits.units == "bits"


@pytest.mark.parametrize("weighted", [False, True])
def test_multiclass_scores_match_sklearn(weighted: bool) -> None:
    rng = np.random.default_rng(3)
    probs, y = _multiclass_data(rng, 400, 5)
    w = rng.random(400) * 2 if weighted else None
    r = calibration_report(probs, y, sample_weights=w)
    labels = list(range(5))
    assert r.brier == pytest.approx(
        brier_score_loss(y, probs, sample_weight=w, labels=labels, scale_by_half=False),
        rel=1e-12,
    )
    onehot = np.eye(5)[y]
    assert r.brier == pytest.approx(
        np.average(((probs - onehot) ** 2).sum(axis=1), weights=w), rel=1e-12
    )
    assert r.nll == pytest.approx(log_loss(y, probs, sample_weight=w, labels=labels), rel=1e-12)
    assert r.accuracy == pytest.approx(
        accuracy_score(y, probs.argmax(axis=1), sample_weight=w), rel=1e-12
    )
    assert r.mean_confidence == pytest.approx(np.average(probs.max(axis=1), weights=w))
    assert r.per_class is not None and len(r.per_class) == 5
    recall = recall_score(y, probs.argmax(axis=1), average=None, sample_weight=w, labels=labels)
    wn = np.ones(400) if w is None else w
    for k, c in enumerate(r.per_class):
        assert c.class_index == k
        assert c.count == int((y == k).sum())
        assert c.frequency == pytest.approx(wn[y == k].sum() / wn.sum(), rel=1e-12)
        assert c.mean_probability == pytest.approx(np.average(probs[:, k], weights=wn), rel=1e-12)
        assert c.recall == pytest.approx(recall[k], rel=1e-12)
        assert c.ece == pytest.approx(
            _ref_ece(probs[:, k], (y == k).astype(float), wn, 15, "uniform"), rel=1e-10
        )


def test_nll_from_logits_is_exact() -> None:
    rng = np.random.default_rng(4)
    z = rng.normal(scale=3.0, size=(50, 4))
    z[0] = [0.0, 0.0, 900.0, 0.0]  # a probability far below ε: not clipped with logits
    y = rng.integers(0, 4, 50)
    y[0] = 0
    r = calibration_report(logits=z, labels=y)
    expected = -scipy_log_softmax(z, axis=1)[np.arange(50), y].mean()
    assert r.nll == pytest.approx(expected, rel=1e-13)
    assert r.nll > 900 / 50
    probs = softmax(z, axis=1)
    assert r.brier == pytest.approx(((probs - np.eye(4)[y]) ** 2).sum(axis=1).mean(), rel=1e-12)
    zb = rng.normal(scale=5.0, size=60)
    zb[:2] = [-1000.0, 1e-300]  # the second has sigmoid 0.5 in float64 but logit > 0
    yb = rng.integers(0, 2, 60)
    yb[:2] = [1, 1]
    rb = calibration_report(logits=zb, labels=yb)
    log_p = np.where(yb == 1, -np.logaddexp(0, -zb), -np.logaddexp(0, zb))
    assert rb.nll == pytest.approx(-log_p.mean(), rel=1e-13)
    assert rb.accuracy == pytest.approx(((zb > 0) == (yb == 1)).mean())
    assert rb.brier == pytest.approx(brier_score_loss(yb, expit(zb)), rel=1e-12)


def test_probabilities_are_clipped_on_both_sides_for_the_nll() -> None:
    probs = np.array([[1.0, 0.0], [0.0, 1.0], [0.25, 0.75]])
    y = [0, 0, 1]
    r = calibration_report(probs, y)
    eps = np.finfo(float).eps
    expected = -(math.log1p(-eps) + math.log(eps) + math.log(0.75)) / 3
    assert r.nll == pytest.approx(expected, rel=1e-14)
    assert r.nll == pytest.approx(log_loss(y, probs), rel=1e-14)
    assert calibration_report(probs, y, epsilon=1e-3).nll == pytest.approx(
        -(math.log1p(-1e-3) + math.log(1e-3) + math.log(0.75)) / 3, rel=1e-14
    )
    rb = calibration_report(np.array([1.0, 0.0, 1.0]), [1, 0, 0])
    assert rb.nll == pytest.approx(log_loss([1, 0, 0], np.array([1.0, 0.0, 1.0])), rel=1e-14)


def test_prediction_is_the_argmax_of_the_logits_as_sent() -> None:
    # softmax([0, 1e-20]) is [0.5, 0.5] in float64, but the model predicts class 1.
    r = calibration_report(logits=[[0.0, 1e-20], [0.0, 0.0]], labels=[1, 0])
    assert r.accuracy == 1.0
    assert r.mean_confidence == 0.5
    # Ties in the probabilities as sent: first index.
    assert calibration_report([[0.5, 0.5]], [1]).accuracy == 0.0


# --------------------------------------------------------------------------------------------
# The naive reference, on weighted data and quantile bins


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 60),
    c=st.sampled_from([0, 2, 3, 6]),
    n_bins=st.integers(1, 12),
    binning=st.sampled_from(["uniform", "quantile"]),
    weights=st.sampled_from(["none", "float", "ints_with_zeros"]),
    rounded=st.booleans(),
)
def test_matches_naive_reference(
    seed: int, n: int, c: int, n_bins: int, binning: str, weights: str, rounded: bool
) -> None:
    rng = np.random.default_rng(seed)
    if c == 0:
        probs, y = _binary_data(rng, n)
        if rounded:  # many ties and values on edges, 0 and 1 included
            probs = np.round(probs * 4) / 4
        conf, out = probs, y.astype(float)
    else:
        probs, y = _multiclass_data(rng, n, c)
        if rounded:
            probs = np.eye(c)[rng.integers(0, c, n)] * 0.5 + 0.5 / c
        conf = probs.max(axis=1)
        out = (probs.argmax(axis=1) == y).astype(float)
    w = {
        "none": None,
        "float": rng.random(n) + 0.01,
        "ints_with_zeros": np.r_[1, rng.integers(0, 3, n - 1)].astype(float),
    }[weights]
    wn = np.ones(n) if w is None else w
    r = calibration_report(probs, y, n_bins=n_bins, binning=binning, sample_weights=w)

    edges = _ref_edges(conf, wn, n_bins, binning)
    ref = _ref_bins(conf, out, wn, edges)
    assert len(r.bins) == n_bins
    np.testing.assert_array_equal([b.lower for b in r.bins], edges[:-1])
    np.testing.assert_array_equal([b.upper for b in r.bins], edges[1:])
    assert [b.count for b in r.bins] == [b["count"] for b in ref]
    np.testing.assert_allclose([b.weight for b in r.bins], [b["weight"] for b in ref], rtol=1e-12)
    for got, want in zip(r.bins, ref, strict=True):
        assert (got.accuracy is None) == (want["acc"] is None)
        assert (got.mean_confidence is None) == (want["conf"] is None)
        if want["acc"] is not None:
            assert got.accuracy == pytest.approx(want["acc"], rel=1e-12, abs=1e-15)
            assert got.mean_confidence == pytest.approx(want["conf"], rel=1e-12, abs=1e-15)
    ece, mce, rmsce = _ref_errors(ref)
    assert r.ece == pytest.approx(ece, rel=1e-9, abs=1e-15)
    assert r.mce == pytest.approx(mce, rel=1e-9, abs=1e-15)
    assert r.rmsce == pytest.approx(rmsce, rel=1e-9, abs=1e-15)
    assert r.ace == pytest.approx(_ref_ece(conf, out, wn, n_bins, "quantile"), rel=1e-9, abs=1e-15)
    if c:
        assert r.per_class is not None
        for k, cls in enumerate(r.per_class):
            ref_k = _ref_ece(probs[:, k], (y == k).astype(float), wn, n_bins, binning)
            assert cls.ece == pytest.approx(ref_k, rel=1e-9, abs=1e-15)


# --------------------------------------------------------------------------------------------
# Bin edges and hand-computed values


def test_values_on_edges_go_to_the_bin_they_close() -> None:
    for n_bins in range(1, 31):
        assert _bin_of([k / n_bins for k in range(1, n_bins + 1)], n_bins) == list(range(n_bins))
    assert _bin_of([0.2, 0.0, 1.0, 0.2000001, 0.6], 5) == [0, 0, 4, 1, 2]
    r = calibration_report([0.0, 1.0, 0.2, 0.4], [0, 1, 0, 1], n_bins=5)
    assert [b.count for b in r.bins] == [2, 1, 0, 0, 1]
    assert r.bins[0].mean_confidence == pytest.approx(0.1)
    assert (r.bins[2].mean_confidence, r.bins[2].accuracy, r.bins[2].weight) == (None, None, 0.0)


def test_all_in_one_bin_and_a_single_bin() -> None:
    p = np.array([0.61, 0.62, 0.65, 0.7])
    y = np.array([1, 0, 1, 1])
    r = calibration_report(p, y, n_bins=5)
    assert [b.count for b in r.bins] == [0, 0, 0, 4, 0]
    gap = abs(0.75 - p.mean())
    assert r.ece == pytest.approx(gap) and r.mce == pytest.approx(gap)
    assert r.rmsce == pytest.approx(gap)
    one = calibration_report(p, y, n_bins=1)
    assert len(one.bins) == 1 and (one.bins[0].lower, one.bins[0].upper) == (0.0, 1.0)
    assert one.ece == pytest.approx(gap) and one.ace == pytest.approx(gap)


def test_hand_computed_binary_case() -> None:
    r = calibration_report([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], n_bins=2)
    assert [(b.lower, b.upper, b.count) for b in r.bins] == [(0.0, 0.5, 3), (0.5, 1.0, 1)]
    assert r.bins[0].mean_confidence == pytest.approx(0.85 / 3)
    assert r.bins[0].accuracy == pytest.approx(1 / 3)
    assert (r.bins[1].mean_confidence, r.bins[1].accuracy) == (0.8, 1.0)
    assert r.ece == pytest.approx(0.75 * 0.05 + 0.25 * 0.2)
    assert r.mce == pytest.approx(0.2)
    assert r.rmsce == pytest.approx(math.sqrt(0.75 * 0.05**2 + 0.25 * 0.2**2))
    # Quantile bins of [0.1, 0.35, 0.4, 0.8]: the edge is 0.35 → {0.1, 0.35}, {0.4, 0.8}.
    assert r.ace == pytest.approx(0.5 * abs(0.5 - 0.225) + 0.5 * abs(0.5 - 0.6))
    assert r.accuracy == 0.75
    assert r.mean_confidence == pytest.approx(0.4125)
    assert r.brier == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert r.nll == pytest.approx(-(math.log(0.9) + math.log(0.6) + math.log(0.35)
                                    + math.log(0.8)) / 4)
    q = calibration_report([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], n_bins=2, binning="quantile")
    assert [(b.lower, b.upper, b.count) for b in q.bins] == [(0.0, 0.35, 2), (0.35, 1.0, 2)]


def test_hand_computed_multiclass_case() -> None:
    probs = [[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.2, 0.2, 0.6], [0.4, 0.4, 0.2]]
    r = calibration_report(probs, [0, 2, 2, 1], n_bins=5)
    # Predictions 0, 1, 2, 0 (tie → first index); confidences 0.7, 0.4, 0.6, 0.4.
    assert r.accuracy == 0.5
    assert [b.count for b in r.bins] == [0, 2, 1, 1, 0]
    assert r.ece == pytest.approx((2 * 0.4 + 0.4 + 0.3) / 4)
    assert r.mce == pytest.approx(0.4)
    assert r.rmsce == pytest.approx(math.sqrt((2 * 0.16 + 0.16 + 0.09) / 4))
    assert r.mean_confidence == pytest.approx(0.525)
    assert r.brier == pytest.approx(0.42)
    assert r.nll == pytest.approx(-sum(map(math.log, [0.7, 0.3, 0.6, 0.4])) / 4)
    assert r.per_class is not None
    got = [(c.class_index, c.count, c.frequency, c.recall) for c in r.per_class]
    assert got == [(0, 1, 0.25, 1.0), (1, 1, 0.25, 0.0), (2, 2, 0.5, 0.5)]
    np.testing.assert_allclose([c.mean_probability for c in r.per_class], [0.4, 0.3, 0.3])
    np.testing.assert_allclose([c.ece for c in r.per_class], [0.3, 0.15, 0.35])
    assert r.n_classes == 3 and r.n_samples == 4


def test_recall_is_none_for_a_class_without_samples() -> None:
    r = calibration_report([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]], [0, 1])
    assert r.per_class is not None
    assert r.per_class[2].count == 0 and r.per_class[2].recall is None
    assert r.per_class[2].frequency == 0.0
    assert r.per_class[2].ece == pytest.approx(0.1)


def test_quantile_ties_collapse_into_empty_bins() -> None:
    p = np.array([0.3] * 6 + [0.9] * 2)
    r = calibration_report(p, [0, 1] * 4, n_bins=4, binning="quantile")
    assert len(r.bins) == 4
    assert [(b.lower, b.upper, b.count) for b in r.bins] == [
        (0.0, 0.3, 6), (0.3, 0.3, 0), (0.3, 0.3, 0), (0.3, 1.0, 2),
    ]
    assert r.bins[1].accuracy is None
    # Zero-weight samples do not move quantile edges; integer weights act as repeats.
    edges = _quantile_edges([0.1, 0.2, 0.3, 0.4], 2, weights=[1, 0, 0, 1])
    np.testing.assert_array_equal(edges, [0.0, 0.1, 1.0])
    np.testing.assert_array_equal(
        _quantile_edges([0.1, 0.2, 0.3], 3, weights=[2, 1, 3]),
        _quantile_edges([0.1, 0.1, 0.2, 0.3, 0.3, 0.3], 3),
    )
    # Edges 0.1 and 0.3: the value 0.3 closes the second bin, the third stays empty.
    assert _bin_of([0.1, 0.2, 0.3], 3, "quantile", [2, 1, 3]) == [0, 1, 1]


def test_zero_weight_bin_is_reported_empty_but_counted() -> None:
    r = calibration_report([0.1, 0.9], [0, 1], n_bins=2, sample_weights=[1.0, 0.0])
    assert (r.bins[1].count, r.bins[1].weight, r.bins[1].accuracy) == (1, 0.0, None)
    assert r.ece == pytest.approx(0.1) and r.mce == pytest.approx(0.1)


def test_weighted_quantile_edges_match_numpy() -> None:
    rng = np.random.default_rng(5)
    v, w = rng.random(37), rng.random(37)
    for n_bins in (1, 2, 3, 7, 36, 50):
        expected = np.quantile(v, np.arange(1, n_bins) / n_bins, method="inverted_cdf",
                               weights=w)
        np.testing.assert_array_equal(_quantile_edges(v, n_bins, w)[1:-1], expected)


# --------------------------------------------------------------------------------------------
# Cost bounded by the input: the per-class statistics keep only the non-empty bins. Checked
# against the straightforward dense computation (K, n_bins + 1) edges and (K, n_bins) sums.


def _dense_binning(
    values: np.ndarray, outcomes: np.ndarray, w: np.ndarray, n_bins: int, binning: str
) -> dict[str, np.ndarray]:
    """Bins and dense per-bin sums of each row of ``values`` (K, N), the plain way."""
    k_rows, n = values.shape
    edges = np.tile(np.arange(n_bins + 1) / n_bins, (k_rows, 1))
    if binning == "quantile":
        for r in range(k_rows):
            # The default sort, as the library's: the order within ties sets the rounding
            # of the cumulative weights.
            order = np.argsort(values[r])
            cum = np.cumsum(w[order])
            targets = np.arange(1, n_bins) * cum[-1] / n_bins
            idx = np.minimum(np.searchsorted(cum, targets, side="left"), n - 1)
            edges[r, 1:-1] = values[r, order][idx] + 0.0
    bins = np.array([np.searchsorted(edges[r, 1:-1], values[r], side="left")
                     for r in range(k_rows)])
    shift = min(0, int(np.frexp(w.max())[1]))  # the subnormal-weight rule
    ws = np.ldexp(w, -shift)

    def dense(x: np.ndarray | None) -> np.ndarray:
        return np.array([np.bincount(bins[r], weights=None if x is None else x[r],
                                     minlength=n_bins) for r in range(k_rows)])

    weight = dense(np.broadcast_to(ws, values.shape))
    so = dense(ws * outcomes)
    sc = dense(ws * values)
    gap_mass = np.abs(so - sc)
    gap = np.divide(gap_mass, weight, out=np.zeros_like(gap_mass), where=weight > 0)
    return {
        "bins": bins, "count": dense(None), "weight": weight, "sum_outcome": so,
        "sum_confidence": sc,
        "l1": gap_mass.sum(axis=1) / weight.sum(axis=1),
        "max": gap.max(axis=1),
        "l2": np.sqrt((gap_mass * gap).sum(axis=1) / weight.sum(axis=1)),
    }


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 30),
    c=st.integers(1, 6),
    n_bins=st.sampled_from([1, 2, 3, 7, 8, 15, 16, 29, 64, 1000, MAX_BINS]),
    binning=st.sampled_from(["uniform", "quantile"]),
    weights=st.sampled_from(["none", "float", "ints_with_zeros", "subnormal"]),
    rounded=st.booleans(),
)
def test_sparse_class_statistics_equal_the_dense_computation(
    seed: int, n: int, c: int, n_bins: int, binning: str, weights: str, rounded: bool
) -> None:
    rng = np.random.default_rng(seed)
    probs, y = _multiclass_data(rng, n, c)
    if rounded:  # ties, values on edges, 0 and 1
        probs = np.eye(c)[rng.integers(0, c, n)] * 0.5 + 0.5 / c
    w = {
        "none": np.ones(n),
        "float": rng.random(n) + 0.01,
        "ints_with_zeros": np.r_[1, rng.integers(0, 3, n - 1)].astype(float),
        "subnormal": (rng.random(n) + 0.01) * 1e-318,
    }[weights]
    values = np.ascontiguousarray(probs.T)
    outcomes = (np.arange(c)[:, None] == y).astype(float)
    dense = _dense_binning(values, outcomes, w, n_bins, binning)

    np.testing.assert_array_equal(_assign_bins(values, w, n_bins, binning).bins, dense["bins"])
    sparse = _binned(values, outcomes, w, n_bins, binning, every_bin=False)
    assert sparse.weight.shape[1] <= min(n, n_bins)
    for r in range(c):
        # The non-empty bins, in bin order, with identical sums (each accumulated in sample
        # order either way).
        kept, full = sparse.count[r] > 0, dense["count"][r] > 0
        for name in ("count", "weight", "sum_outcome", "sum_confidence"):
            np.testing.assert_array_equal(getattr(sparse, name)[r][kept], dense[name][r][full])
        assert sparse.count[r][~kept].sum() == 0
    for norm in ("l1", "max", "l2"):
        got = _calibration_error(sparse, norm)  # type: ignore[arg-type]
        if n_bins <= n or norm == "max":  # the dense layout itself: identical
            np.testing.assert_array_equal(got, dense[norm])
        else:  # only the association of the sum over bins differs (zeros left out): ulps
            np.testing.assert_allclose(got, dense[norm], rtol=2e-15, atol=0)
    r = calibration_report(probs, y, n_bins=n_bins, binning=binning, sample_weights=w)
    assert r.per_class is not None
    got_ece = [cls.ece for cls in r.per_class]
    if n_bins <= n:
        assert got_ece == dense["l1"].tolist()
    else:
        np.testing.assert_allclose(got_ece, dense["l1"], rtol=2e-15, atol=0)


def _peak_bytes(call: Any) -> tuple[int, int]:
    """(peak, retained) bytes traced while ``call()`` runs; retained is what its result keeps."""
    call()  # warm-up: first-call allocations (imports, caches) are not the cost measured
    tracemalloc.start()
    try:
        result = call()
        retained, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return peak, retained


@pytest.mark.parametrize("binning", ["uniform", "quantile"])
@pytest.mark.parametrize(
    ("n_samples", "n_classes", "logits"), [(1, 4000, False), (1, 4000, True), (40, 2000, False)]
)
def test_memory_is_bounded_by_the_input_not_by_classes_times_bins(
    binning: str, n_samples: int, n_classes: int, logits: bool
) -> None:
    # Issue 11: one sample, thousands of classes and MAX_BINS bins took seconds and GBs,
    # from dense (C, n_bins) per-class arrays (320 MB each for 4000 classes).
    rng = np.random.default_rng(17)
    probs = rng.dirichlet(np.ones(n_classes), size=n_samples)
    y = rng.integers(0, n_classes, n_samples)
    kw: dict[str, Any] = {"n_bins": MAX_BINS, "binning": binning}
    if logits:
        kw.update(logits=np.log(probs), fit_temperature=True)
    else:
        kw.update(probabilities=probs)
    peak, retained = _peak_bytes(lambda: calibration_report(labels=y, **kw))
    # The result itself: one object per bin and per class, a few hundred bytes each.
    assert retained <= 400 * (MAX_BINS + n_classes)
    # Beyond it: a few N×C arrays, and a few float64 vectors of n_bins for the reported bins.
    input_bytes = n_samples * n_classes * 8
    bound = retained + 24 * input_bytes + 16 * 8 * MAX_BINS + 2**18
    assert peak <= bound, (peak, retained, input_bytes)


# --------------------------------------------------------------------------------------------
# Properties


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 80),
    c=st.sampled_from([0, 2, 4]),
    n_bins=st.integers(1, 20),
    binning=st.sampled_from(["uniform", "quantile"]),
)
def test_error_ordering_and_ranges(seed: int, n: int, c: int, n_bins: int, binning: str) -> None:
    rng = np.random.default_rng(seed)
    probs, y = _binary_data(rng, n) if c == 0 else _multiclass_data(rng, n, c, calibrated=False)
    r = calibration_report(probs, y, n_bins=n_bins, binning=binning,
                           sample_weights=rng.random(n) + 0.1)
    assert 0 <= r.ece <= r.rmsce + 1e-12
    assert r.rmsce <= r.mce + 1e-12
    assert r.mce <= 1 and 0 <= r.ace <= 1
    assert 0 <= r.accuracy <= 1 and 0 <= r.brier <= 2 and r.nll >= 0
    for b in r.bins:
        if b.accuracy is not None and b.mean_confidence is not None:
            assert 0 <= b.accuracy <= 1
            assert b.lower <= b.mean_confidence <= b.upper or b.lower == b.mean_confidence == 0


def test_perfectly_calibrated_data_has_small_ece_shrinking_with_n() -> None:
    rng = np.random.default_rng(6)
    small = calibration_report(*_binary_data(rng, 1_000))
    large = calibration_report(*_binary_data(rng, 100_000))
    assert large.ece < 0.01
    assert large.ece < small.ece / 3
    assert large.ace < 0.01
    multi_small = calibration_report(*_multiclass_data(rng, 1_000, 4))
    multi_large = calibration_report(*_multiclass_data(rng, 100_000, 4))
    assert multi_large.ece < 0.01 < multi_small.ece
    assert multi_large.per_class is not None
    assert max(c.ece for c in multi_large.per_class) < 0.01
    # And a miscalibrated model is detected: probabilities pushed towards 1.
    p, y = _binary_data(rng, 100_000)
    assert calibration_report(p**0.5, y).ece > 0.1


def _numeric_fields(r: CalibrationResult) -> dict[str, Any]:
    d = dataclasses.asdict(r)
    d.pop("temperature")
    return d


def _assert_close(a: Any, b: Any, rel: float = 1e-11) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_close(a[key], b[key], rel)
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, z in zip(a, b, strict=True):
            _assert_close(x, z, rel)
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=rel, abs=1e-14)
    else:
        assert a == b


@pytest.mark.parametrize("binning", ["uniform", "quantile"])
@pytest.mark.parametrize("c", [0, 3])
def test_invariant_to_sample_order(binning: str, c: int) -> None:
    rng = np.random.default_rng(7)
    probs, y = _binary_data(rng, 300) if c == 0 else _multiclass_data(rng, 300, c)
    w = rng.random(300)
    perm = rng.permutation(300)
    a = calibration_report(probs, y, binning=binning, sample_weights=w, n_bins=10)
    b = calibration_report(probs[perm], y[perm], binning=binning, sample_weights=w[perm],
                           n_bins=10)
    _assert_close(_numeric_fields(a), _numeric_fields(b))


@pytest.mark.parametrize("binning", ["uniform", "quantile"])
@pytest.mark.parametrize("c", [0, 3])
def test_integer_weights_act_as_repeat_counts(binning: str, c: int) -> None:
    rng = np.random.default_rng(8)
    z = rng.normal(scale=2.0, size=(200,) if c == 0 else (200, c))
    y = rng.integers(0, 2 if c == 0 else c, 200)
    w = rng.integers(0, 4, 200)
    w[0] = 1
    kw: dict[str, Any] = {"binning": binning, "n_bins": 8, "fit_temperature": True}
    weighted = calibration_report(logits=z, labels=y, sample_weights=w.astype(float), **kw)
    repeated = calibration_report(logits=np.repeat(z, w, axis=0), labels=np.repeat(y, w), **kw)
    a, b = _numeric_fields(weighted), _numeric_fields(repeated)
    # ``count`` stays the number of samples: the repeated rows' counts are the weights.
    assert [x["weight"] for x in a["bins"]] == [x["count"] for x in b["bins"]]
    for x in a["bins"] + b["bins"]:
        x.pop("count")
        x.pop("weight")
    if c:
        for x in a["per_class"] + b["per_class"]:
            x.pop("count")
    a.pop("n_samples")
    b.pop("n_samples")
    _assert_close(a, b)
    ta, tb = weighted.temperature, repeated.temperature
    assert ta is not None and tb is not None
    assert ta.temperature == pytest.approx(tb.temperature, rel=1e-10)
    assert ta.nll_after == pytest.approx(tb.nll_after, rel=1e-11)


def test_result_is_json_ready_with_contract_keys() -> None:
    rng = np.random.default_rng(9)
    probs, y = _multiclass_data(rng, 30, 3)
    # The HTTP layer's one encoder, walking the result along the response schema.
    d = encode_result(calibration_report(probs, y, n_bins=40))
    text = json.dumps(d, allow_nan=False)
    assert '"class": 0' in text
    assert set(d) >= {
        "n_samples", "n_classes", "accuracy", "mean_confidence", "nll", "brier", "ece", "mce",
        "rmsce", "ace", "bins", "per_class", "temperature", "units",
    }
    assert set(d["bins"][0]) == {"lower", "upper", "count", "weight", "mean_confidence",
                                 "accuracy"}
    assert set(d["per_class"][0]) == {"class", "count", "frequency", "mean_probability",
                                      "recall", "ece", "nll", "brier"}


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 40),
    c=st.sampled_from([0, 1, 2, 5]),
    use_logits=st.booleans(),
    n_bins=st.integers(1, 30),
    binning=st.sampled_from(["uniform", "quantile"]),
    extreme=st.booleans(),
)
def test_never_nan_or_inf(
    seed: int, n: int, c: int, use_logits: bool, n_bins: int, binning: str, extreme: bool
) -> None:
    rng = np.random.default_rng(seed)
    shape = (n,) if c == 0 else (n, c)
    y = rng.integers(0, 2 if c == 0 else c, n)
    w = rng.integers(0, 3, n).astype(float)
    w[rng.integers(0, n)] = 1e-300 if extreme else 1.0
    if use_logits:
        z = rng.normal(scale=1e4 if extreme else 3.0, size=shape)
        r = calibration_report(logits=z, labels=y, n_bins=n_bins, binning=binning,
                               sample_weights=w, fit_temperature=True)
        assert r.temperature is not None
        assert r.temperature.nll_after <= r.temperature.nll_before
    else:
        probs = rng.random(shape)
        if extreme:
            probs = np.where(probs < 0.5, 0.0, 1.0) if c == 0 else np.eye(c)[y] * 1.0
        elif c:
            probs /= probs.sum(axis=1, keepdims=True)
        r = calibration_report(probs, y, n_bins=n_bins, binning=binning, sample_weights=w)
    json.dumps(dataclasses.asdict(r), allow_nan=False)


# --------------------------------------------------------------------------------------------
# Temperature scaling


def _nll_at(z: np.ndarray, y: np.ndarray, t: float, w: np.ndarray | None = None) -> float:
    rows = np.column_stack([np.zeros_like(z), z]) if z.ndim == 1 else z
    return float(np.average(-scipy_log_softmax(rows / t, axis=1)[np.arange(len(y)), y],
                            weights=w))


def test_exact_temperature_case() -> None:
    z = np.array([[3, 0, 0], [0, 3, 0], [0, 0, 3], [3, 0, 0]], float)
    r = calibration_report(logits=z, labels=[0, 1, 2, 1], fit_temperature=True)
    t = r.temperature
    assert t is not None
    assert t.temperature == pytest.approx(3 / math.log(6), abs=1e-6)
    assert abs(t.temperature - 1.674332) < 1e-6
    assert t.nll_before == pytest.approx(0.844923, abs=1e-6)
    assert t.nll_after == pytest.approx(0.735622, abs=1e-6)
    assert t.note is None
    assert (t.nll_before, t.ece_before) == (r.nll, r.ece)
    assert t.ece_after < t.ece_before
    assert fit_temperature(z, [0, 1, 2, 1]) == (pytest.approx(3 / math.log(6), rel=1e-12), None)
    bits = calibration_report(logits=z, labels=[0, 1, 2, 1], fit_temperature=True, units="bits")
    assert bits.temperature is not None
    assert bits.temperature.nll_after == pytest.approx(0.735622 / LN2, abs=1e-6)


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 40),
    c=st.sampled_from([0, 2, 3, 5]),
    scale=st.sampled_from([0.01, 0.3, 1.0, 5.0, 30.0]),
    weighted=st.booleans(),
)
def test_temperature_never_raises_nll_and_is_optimal(
    seed: int, n: int, c: int, scale: float, weighted: bool
) -> None:
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=scale, size=(n,) if c == 0 else (n, c))
    y = rng.integers(0, 2 if c == 0 else c, n)
    w = rng.random(n) + 0.05 if weighted else None
    r = calibration_report(logits=z, labels=y, sample_weights=w, fit_temperature=True)
    t = r.temperature
    assert t is not None
    assert TEMPERATURE_MIN <= t.temperature <= TEMPERATURE_MAX
    assert t.nll_after <= t.nll_before
    assert t.nll_before == pytest.approx(_nll_at(z, y, 1.0, w), rel=1e-12)
    assert t.nll_after == pytest.approx(_nll_at(z, y, t.temperature, w), rel=1e-12)
    # No nearby temperature (inside the bounds) does better: checked with the oracle NLL.
    for factor in (1.001, 1 / 1.001, 1.1, 1 / 1.1):
        other = t.temperature * factor
        if TEMPERATURE_MIN <= other <= TEMPERATURE_MAX:
            assert t.nll_after <= _nll_at(z, y, other, w) + 1e-12
    if t.note is None:
        assert TEMPERATURE_MIN < t.temperature < TEMPERATURE_MAX


@pytest.mark.parametrize("c", [0, 4])
def test_temperature_matches_scipy_minimize(c: int) -> None:
    rng = np.random.default_rng(10)
    z = rng.normal(scale=4.0, size=(300,) if c == 0 else (300, c))
    probs = expit(z / 2.5) if c == 0 else softmax(z / 2.5, axis=1)  # true T = 2.5
    if c == 0:
        y = (rng.random(300) < probs).astype(int)
    else:
        y = np.minimum((probs.cumsum(axis=1) < rng.random(300)[:, None]).sum(axis=1), c - 1)
    w = rng.random(300)
    res = minimize_scalar(lambda s: _nll_at(z, y, math.exp(s), w), bounds=(-3, 3),
                          method="bounded", options={"xatol": 1e-10})
    t, note = fit_temperature(z, y, sample_weights=w)
    assert note is None
    assert t == pytest.approx(math.exp(res.x), rel=1e-6)
    assert 1.5 < t < 4.0


def test_binary_temperature_equals_two_column_temperature() -> None:
    rng = np.random.default_rng(11)
    z = rng.normal(scale=3.0, size=100)
    y = rng.integers(0, 2, 100)
    t_binary, _ = fit_temperature(z, y)
    t_columns, _ = fit_temperature(np.column_stack([np.zeros(100), z]), y)
    assert t_binary == pytest.approx(t_columns, rel=1e-12)


def test_separable_predictions_clamp_at_the_smallest_temperature() -> None:
    rng = np.random.default_rng(12)
    z = rng.normal(size=(50, 3))
    r = calibration_report(logits=z, labels=z.argmax(axis=1), fit_temperature=True)
    t = r.temperature
    assert t is not None and t.temperature == TEMPERATURE_MIN
    assert t.note is not None and "smallest temperature" in t.note
    assert t.nll_after < t.nll_before
    zb = np.array([2.0, -1.0, 0.5, -3.0])  # binary, every sign right
    tb, note = fit_temperature(zb, [1, 0, 1, 0])
    assert tb == TEMPERATURE_MIN and note is not None


def test_worse_than_uniform_logits_clamp_at_the_largest_temperature() -> None:
    rng = np.random.default_rng(13)
    z = rng.normal(size=(50, 3))
    r = calibration_report(logits=z, labels=z.argmin(axis=1), fit_temperature=True)
    t = r.temperature
    assert t is not None and t.temperature == TEMPERATURE_MAX
    assert t.note is not None and "largest temperature" in t.note
    assert t.nll_after < t.nll_before
    assert t.nll_after == pytest.approx(math.log(3), abs=1e-3)


def test_constant_logits_give_temperature_one_with_a_note() -> None:
    z = np.array([[1.0, 1.0, 1.0], [-2.0, -2.0, -2.0]])
    r = calibration_report(logits=z, labels=[0, 2], fit_temperature=True)
    t = r.temperature
    assert t is not None and t.temperature == 1.0
    assert t.note is not None and "constant" in t.note
    assert t.nll_before == t.nll_after == pytest.approx(math.log(3))
    # Only zero-weight rows vary: still no information about T.
    t2, note = fit_temperature([[0.0, 0.0], [5.0, -5.0]], [0, 1], sample_weights=[1.0, 0.0])
    assert t2 == 1.0 and note is not None
    assert fit_temperature(np.zeros(3), [0, 1, 1])[0] == 1.0


def test_single_class_present() -> None:
    rng = np.random.default_rng(14)
    z = rng.normal(size=(40, 4))
    r = calibration_report(logits=z, labels=np.zeros(40, int), fit_temperature=True)
    t = r.temperature
    assert t is not None and math.isfinite(t.temperature)
    assert t.nll_after <= t.nll_before
    assert r.per_class is not None and r.per_class[1].recall is None


@pytest.mark.parametrize(
    ("logits", "labels", "accuracy"),
    [
        # Multi-class, one sample right: T = 1000, and z / 1000 underflows to [0, 0] rows
        # (which predicted class 0, right for the first sample and wrong for the others).
        ([[0.0, 5e-324], [0.0, 1e-310], [2e-310, 0.0], [0.0, 3e-310]], [0, 0, 1, 1], 0.25),
        # Every prediction wrong; the underflowed rows predict class 0, right for two.
        ([[0, 5e-324, 0], [5e-324, 0, 0], [0, 0, 5e-324], [0, 0, 5e-324]], [0, 1, 0, 1], 0.0),
    ],
)
def test_temperature_scaling_of_subnormal_logits_keeps_the_predictions(
    logits: list[Any], labels: list[int], accuracy: float
) -> None:
    # Issue 11 (Low): scaling by T changes no argmax, also where z / T underflows. The
    # probabilities are uniform before and after (in float64), and so is the ECE.
    r = calibration_report(logits=logits, labels=labels, n_bins=4, fit_temperature=True)
    t = r.temperature
    assert t is not None and t.temperature == TEMPERATURE_MAX
    assert r.accuracy == accuracy
    assert t.ece_after == t.ece_before == r.ece
    assert t.nll_after == t.nll_before


def test_temperature_fit_of_tiny_logits_does_not_depend_on_their_scale() -> None:
    # In the tiny-logit regime the NLL is linear in 1/T, so the sign of dNLL/dβ alone decides
    # the bound: here the logits beat uniform guessing, so T is clamped to TEMPERATURE_MIN at
    # every scale. The products p·z of subnormal logits lost their last bits, which turned
    # the sign at 2**-1074 (and gave TEMPERATURE_MAX, "no better than uniform guessing").
    z = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    y = [0, 2]
    assert fit_temperature(z, y) == (pytest.approx(1 / math.log(2), rel=1e-12), None)
    fits = {scale: fit_temperature(z * scale, y) for scale in (2.0**-60, 2.0**-1000, 2.0**-1074)}
    assert {t for t, _ in fits.values()} == {TEMPERATURE_MIN}
    assert len({note for _, note in fits.values()}) == 1
    # The binary form, with the scale on its class-1 logit.
    zb = np.array([1.0, 1.0, -1.0])
    assert fit_temperature(zb * 2.0**-1074, [1, 0, 0]) == fit_temperature(zb * 2.0**-60, [1, 0, 0])


# --------------------------------------------------------------------------------------------
# Overflow and validation


def test_overflowing_logits_are_input_errors() -> None:
    with pytest.raises(InputError) as info:
        calibration_report(logits=[[0.0, 0.0], [1e308, -1e308]], labels=[0, 1])
    assert info.value.field == "logits" and info.value.position == (1, 1)
    assert info.value.kind == "overflow" and "overflows float64" in info.value.message
    r = calibration_report(logits=[[0.0, 0.0], [1e308, -1e308]], labels=[0, 0])
    assert math.isfinite(r.nll)
    with pytest.raises(InputError) as info:
        calibration_report(logits=[[0.0, 1.0], [1e200, 0.0]], labels=[0, 0],
                           fit_temperature=True)
    assert info.value.field == "logits" and info.value.position == (1,)
    assert info.value.kind == "overflow"
    with pytest.raises(InputError) as info:
        fit_temperature([1.0, -1e160], [0, 1])
    assert info.value.position == (1,)


def _error(**kwargs: Any) -> InputError:
    with pytest.raises(InputError) as info:
        calibration_report(**kwargs)
    return info.value


P3 = [[0.2, 0.8, 0.0], [0.5, 0.25, 0.25]]


@pytest.mark.parametrize(
    "kwargs, field, position, kind, message",
    [
        ({"labels": [0, 1]}, "probabilities", (), "missing",
         "expected exactly one of probabilities and logits, got neither"),
        ({"probabilities": P3, "logits": P3, "labels": [0, 1]}, "logits", (), "exclusive",
         "got both"),
        ({"probabilities": P3}, "labels", (), "missing", "expected one label per sample"),
        ({"probabilities": [[[0.5, 0.5]]], "labels": [0]}, "probabilities", (), "shape_error",
         "expected a 1-D or 2-D array"),
        ({"probabilities": [[0.2, 0.8, 0.0], [0.5, np.nan, 0.5]], "labels": [0, 1]},
         "probabilities", (1, 1), "not_finite", "finite"),
        ({"probabilities": [0.2, 1.5], "labels": [0, 1]}, "probabilities", (1,),
         "out_of_range", "expected a probability in [0, 1], got 1.5"),
        ({"probabilities": [[0.2, 0.8, 0.0], [0.5, 0.25, 0.3]], "labels": [0, 1]},
         "probabilities", (1,), "not_a_distribution", "expected row 1 to sum to 1"),
        ({"logits": [[0.0, np.inf]], "labels": [0]}, "logits", (0, 1), "not_finite", "finite"),
        ({"probabilities": [[0.2] * 5] * 2, "labels": [0, 7]}, "labels", (1,), "out_of_range",
         "label 7 is outside [0, 5)"),
        ({"probabilities": [0.2, 0.7], "labels": [0, 2]}, "labels", (1,), "out_of_range",
         "label 2 is outside [0, 2)"),
        ({"probabilities": P3, "labels": [0, 1.5]}, "labels", (1,), "type_error",
         "expected an integer class index, got 1.5"),
        ({"probabilities": P3, "labels": [0, 1, 2]}, "labels", (), "shape_mismatch",
         "expected 2 values"),
        ({"probabilities": P3, "labels": [0, 1], "sample_weights": [1.0, -1.0]},
         "sample_weights", (1,), "out_of_range", "expected a weight >= 0, got -1"),
        ({"probabilities": P3, "labels": [0, 1], "sample_weights": [1.0]}, "sample_weights",
         (), "shape_mismatch", "expected 2 values"),
        ({"probabilities": P3, "labels": [0, 1], "sample_weights": [0.0, 0.0]},
         "sample_weights", (), "out_of_range", "expected at least one positive weight"),
        ({"probabilities": P3, "labels": [0, 1], "sample_weights": [1e308, 1e308]},
         "sample_weights", (), "overflow", "overflows float64"),
        ({"probabilities": P3, "labels": [0, 1], "n_bins": 0}, "n_bins", (), "out_of_range",
         f"expected an integer in [1, {MAX_BINS}], got 0"),
        ({"probabilities": P3, "labels": [0, 1], "n_bins": MAX_BINS + 1}, "n_bins", (),
         "out_of_range", f"got {MAX_BINS + 1}"),
        ({"probabilities": P3, "labels": [0, 1], "n_bins": 2.5}, "n_bins", (), "type_error",
         "expected an integer, got 2.5"),
        ({"probabilities": P3, "labels": [0, 1], "n_bins": True}, "n_bins", (), "type_error",
         "expected an integer"),
        ({"probabilities": P3, "labels": [0, 1], "binning": "equal"}, "binning", (), "enum",
         "expected one of 'uniform', 'quantile', got 'equal'"),
        ({"probabilities": P3, "labels": [0, 1], "units": "bit"}, "units", (), "enum",
         "got 'bit'"),
        ({"probabilities": P3, "labels": [0, 1], "epsilon": 0.0}, "epsilon", (),
         "out_of_range", "expected a number in (0, 0.5)"),
        ({"probabilities": P3, "labels": [0, 1], "fit_temperature": True}, "fit_temperature",
         (), "value_error", "requires logits"),
        ({"logits": P3, "labels": [0, 1], "fit_temperature": "yes"}, "fit_temperature", (),
         "type_error", "expected a boolean"),
    ],
)
def test_validation(
    kwargs: dict[str, Any], field: str, position: tuple[int, ...], kind: str, message: str
) -> None:
    err = _error(**kwargs)
    assert (err.field, err.position, err.kind) == (field, position, kind)
    assert message in err.message


def test_the_three_norms_agree_with_the_report_and_the_reference() -> None:
    rng = np.random.default_rng(15)
    p, y = _binary_data(rng, 500)
    w = rng.random(500)
    for binning in ("uniform", "quantile"):
        r = calibration_report(p, y, n_bins=12, binning=binning, sample_weights=w)
        sums = _binned(p[None, :], y[None, :].astype(float), w, 12, binning, every_bin=True)
        got = [float(_calibration_error(sums, norm)[0]) for norm in ("l1", "max", "l2")]
        assert got == [r.ece, r.mce, r.rmsce]
        ref = _ref_errors(_ref_bins(p, y.astype(float), w, _ref_edges(p, w, 12, binning)))
        np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_temperature_fit_converges_in_few_newton_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    # Safeguarded Newton converges quadratically: far fewer objective evaluations than the
    # ~45 halvings plain bisection would need for the same accuracy.
    calls = []
    original = temperature_module._nll_terms

    def counting(*args: Any) -> tuple[float, float]:
        calls.append(args[-1])
        return original(*args)

    monkeypatch.setattr(temperature_module, "_nll_terms", counting)
    z = np.array([[3, 0, 0], [0, 3, 0], [0, 0, 3], [3, 0, 0]], float)
    t, _ = fit_temperature(z, [0, 1, 2, 1])
    assert t == pytest.approx(3 / math.log(6), rel=1e-13)
    assert len(calls) <= 12
    rng = np.random.default_rng(16)
    z = rng.normal(scale=6.0, size=(500, 5))
    calls.clear()
    fit_temperature(z, np.where(rng.random(500) < 0.7, z.argmax(axis=1), 0))
    assert len(calls) <= 15


def test_a_fit_that_does_not_lower_the_nll_keeps_t_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_module, "_solve_temperature", lambda *args: (7.0, None))
    z = np.array([[3, 0, 0], [0, 3, 0], [0, 0, 3], [3, 0, 0]], float)
    r = calibration_report(logits=z, labels=[0, 1, 2, 1], fit_temperature=True)
    t = r.temperature
    assert t is not None and t.temperature == 1.0
    assert t.nll_after == t.nll_before and t.ece_after == t.ece_before
    assert t.note is not None and "T = 1 is kept" in t.note


def test_per_class_nll_at_the_edges_of_float64():
    """Per-class means of huge NLLs under huge weights stay finite (shares of the class
    weight, not w·nll), and a class mean beyond float64 in bits is a precise error."""
    z = np.zeros((1, 12))
    z[0, -1] = 1e300
    r = calibration_report(logits=z, labels=[0], n_bins=1, sample_weights=[1e100])
    assert r.per_class[0].nll == r.nll == 1e300
    z = np.zeros((2, 3))
    z[0, 2] = 1.5e308  # class 0's mean NLL 1.5e308 nats; the overall mean 0.75e308
    assert math.isfinite(calibration_report(logits=z, labels=[0, 2]).per_class[0].nll)
    with pytest.raises(InputError) as err:
        calibration_report(logits=z, labels=[0, 2], units="bits")
    assert (err.value.field, err.value.kind) == ("logits", "overflow")
    assert "class 0" in err.value.message
