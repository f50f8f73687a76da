"""The estimators of :mod:`xentropy.calibration.estimators` against their oracles.

* ``ece_debiased`` and the class-wise ECE: Kumar et al.'s ``uncertainty-calibration``
  (import name ``calibration``), with the same bins.
* ``ece_sweep``: a brute-force sweep written here, trying every bin count with loops.
* ``smooth_ece``: ``relplot.smECE`` and relplot's kernel smoother for the curve.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from xentropy._validation import InputError
from xentropy.calibration import calibration_report
from xentropy.calibration.binning import _assign_bins
from xentropy.calibration.estimators import (
    classwise_calibration,
    ece_debiased,
    ece_sweep,
    smooth_ece,
)

kumar = pytest.importorskip("calibration.utils")
calibration = pytest.importorskip("calibration")
relplot = pytest.importorskip("relplot")


def _binary(n: int, seed: int, power: float = 1.4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=n)
    y = (rng.uniform(size=n) < p**power).astype(np.int64)
    return p, y


def _multiclass(n: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, c)) * 2.0
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(c, p=row**0.7 / (row**0.7).sum()) for row in probs])
    return probs, y


def _our_edges(n_bins: int):
    """A binning scheme for Kumar's functions that returns our quantile edges."""

    def scheme(probs, num_bins=n_bins):
        values = np.asarray(probs, dtype=np.float64)[None, :]
        edges = _assign_bins(values, np.ones(values.shape[1]), n_bins, "quantile", edges=True)
        return list(edges.edges[1:])

    return scheme


# ----------------------------------------------------------------------------- debiased


@pytest.mark.parametrize("n", [40, 301, 2000])
@pytest.mark.parametrize("n_bins", [1, 5, 15])
def test_debiased_matches_kumar_on_uniform_bins(n: int, n_bins: int) -> None:
    p, y = _binary(n, seed=n + n_bins)
    ours = ece_debiased(p, y, n_bins=n_bins, binning="uniform")
    theirs = kumar.lower_bound_scaling_ce(
        p, y, p=2, debias=True, num_bins=n_bins, binning_scheme=kumar.get_equal_prob_bins,
        mode="top-label",
    )
    assert ours.ece == pytest.approx(theirs, abs=1e-12)
    assert ours.ece == math.sqrt(max(ours.squared, 0.0))


@pytest.mark.parametrize("n", [45, 3000, 6000])
def test_debiased_equals_kumars_default_call_when_the_bin_count_divides_n(n: int) -> None:
    """Kumar's default: 15 equal-mass bins (midpoint edges of np.array_split parts):
    the same bins as our quantile bins when 15 divides N and the values are distinct."""
    p, y = _binary(n, seed=7)
    theirs = calibration.get_calibration_error(p, y, p=2, debias=True)
    assert ece_debiased(p, y, n_bins=15, binning="quantile").ece == pytest.approx(
        theirs, abs=1e-12
    )


def test_debiased_top_label_matches_kumar_top_label_mode() -> None:
    probs, y = _multiclass(1500, 4, seed=3)
    correct = (probs.argmax(axis=1) == y).astype(float)
    theirs = calibration.get_calibration_error(probs, y, p=2, debias=True, mode="top-label")
    ours = ece_debiased(probs.max(axis=1), correct, n_bins=15, binning="quantile")
    assert ours.ece == pytest.approx(theirs, abs=1e-12)


@pytest.mark.parametrize("n", [37, 1001, 2024])
def test_debiased_with_any_n_matches_kumar_given_our_edges(n: int) -> None:
    """Where 15 does not divide N the two equal-mass rules may move a value to the
    neighbouring bin; given the same edges, the estimates agree."""
    p, y = _binary(n, seed=n)
    theirs = kumar.lower_bound_scaling_ce(
        p, y, p=2, debias=True, num_bins=15, binning_scheme=_our_edges(15), mode="top-label"
    )
    assert ece_debiased(p, y, n_bins=15, binning="quantile").ece == pytest.approx(
        theirs, abs=1e-12
    )


def test_debiased_by_hand_and_its_sign() -> None:
    # One bin of 4: conf 0.7, acc 0.75: 0.05² − 0.75·0.25/3 < 0 -> reported as 0.
    r = ece_debiased([0.7, 0.7, 0.7, 0.7], [1, 1, 1, 0], n_bins=1)
    assert r.squared == pytest.approx(0.05**2 - 0.75 * 0.25 / 3, abs=1e-15)
    assert r.ece == 0.0
    # Two bins, one of a single sample (contributes 0 but counts in W).
    r = ece_debiased([0.1, 0.9, 0.9, 0.9], [0, 0, 0, 1], n_bins=2)
    expected = (3 / 4) * ((0.9 - 1 / 3) ** 2 - (1 / 3) * (2 / 3) / 2)
    assert r.squared == pytest.approx(expected, abs=1e-15)
    assert r.ece == pytest.approx(math.sqrt(expected), abs=1e-15)


def test_integer_weights_are_repeat_counts_for_every_estimator() -> None:
    p, y = _binary(200, seed=11)
    w = np.random.default_rng(0).integers(0, 4, size=200)
    rep_p, rep_y = np.repeat(p, w), np.repeat(y, w)
    for binning in ("uniform", "quantile"):
        a = ece_debiased(p, y, sample_weights=w, binning=binning)
        b = ece_debiased(rep_p, rep_y, binning=binning)
        assert a.squared == pytest.approx(b.squared, abs=1e-14)
    assert ece_sweep(p, y, sample_weights=w).n_bins == ece_sweep(rep_p, rep_y).n_bins
    assert ece_sweep(p, y, sample_weights=w).ece == pytest.approx(
        ece_sweep(rep_p, rep_y).ece, abs=1e-14
    )
    assert smooth_ece(p, y, sample_weights=w).ece == pytest.approx(
        relplot.smECE(rep_p, rep_y), abs=1e-9
    )


# ----------------------------------------------------------------------------- sweep


def _brute_force_sweep(p: np.ndarray, y: np.ndarray) -> tuple[int, float]:
    """Try every bin count with loops: equal-mass bins (edge k after the first
    ceil(k·N/b) sorted values, ties never split), accuracies of non-empty bins
    non-decreasing, stop at the first count that breaks it."""
    n = len(p)
    order = np.argsort(p, kind="stable")
    ps, ys = p[order].tolist(), y[order].tolist()

    def bins_of(b: int) -> list[list[int]]:
        edges = [ps[-(-k * n // b) - 1] for k in range(1, b)]
        out: list[list[int]] = [[] for _ in range(b)]
        for i, v in enumerate(ps):
            out[sum(1 for e in edges if e < v)].append(i)
        return out

    def monotone(b: int) -> bool:
        accs = [sum(ys[i] for i in members) / len(members) for members in bins_of(b) if members]
        return all(a <= c for a, c in itertools.pairwise(accs))

    best = 1
    for b in range(2, n + 1):
        if not monotone(b):
            break
        best = b
    ece = sum(
        abs(sum(ys[i] for i in m) - sum(ps[i] for i in m)) for m in bins_of(best) if m
    ) / n
    return best, ece


@pytest.mark.parametrize("seed", range(6))
def test_sweep_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 160))
    p = rng.uniform(size=n)
    if seed % 2:  # ties: confidences on a coarse grid
        p = np.round(p * 8) / 8
    y = (rng.uniform(size=n) < p ** (1 + seed / 3)).astype(np.int64)
    ours = ece_sweep(p, y)
    b, ece = _brute_force_sweep(p, y)
    assert ours.n_bins == b
    assert ours.ece == pytest.approx(ece, abs=1e-12)


def test_sweep_ece_is_the_reports_quantile_ece() -> None:
    p, y = _binary(5000, seed=5)
    r = ece_sweep(p, y)
    assert r.n_bins > 5
    report = calibration_report(p, y, n_bins=r.n_bins, binning="quantile")
    assert r.ece == report.ece


def test_sweep_of_sorted_outcomes_reaches_every_count_unless_capped() -> None:
    p = np.linspace(0.01, 0.99, 120)
    y = (p > 0.4).astype(int)
    assert ece_sweep(p, y).n_bins == 120
    capped = ece_sweep(p, y, max_n_bins=30)
    assert (capped.n_bins, capped.max_n_bins) == (30, 30)
    assert capped.ece == calibration_report(p, y, n_bins=30, binning="quantile").ece


# ----------------------------------------------------------------------------- smooth


@pytest.mark.parametrize(
    ("n", "kind"), [(5, "uniform"), (200, "uniform"), (3000, "overconfident"),
                    (20000, "calibrated"), (2000, "extremes")]
)
def test_smooth_ece_matches_relplot(n: int, kind: str) -> None:
    rng = np.random.default_rng(n)
    if kind == "extremes":
        p = np.clip(rng.beta(0.2, 0.2, size=n), 0, 1)
        p[:5] = [0.0, 1.0, 0.0, 1.0, 0.5]
    else:
        p = rng.uniform(size=n)
    g = {"uniform": p, "overconfident": 0.5 + 0.6 * (p - 0.5), "calibrated": p,
         "extremes": p**1.2}[kind]
    y = (rng.uniform(size=n) < g).astype(np.int64)
    ours = smooth_ece(p, y)
    ece, sigma = relplot.smECE(p, y, return_width=True)
    assert ours.bandwidth == sigma
    assert ours.ece == pytest.approx(ece, abs=1e-6)
    assert ours.ece == pytest.approx(ece, abs=1e-12)  # in fact to rounding
    # The curve: relplot's kernel smoother and density at the same bandwidth.
    from relplot.kernels import ReflectedGaussianKernel

    mesh = np.linspace(0, 1, 200)
    kernel = ReflectedGaussianKernel(sigma)
    mu = kernel.smooth(p.astype(float), y.astype(float), mesh)[0]
    density = kernel.kde(p.astype(float), mesh)
    np.testing.assert_allclose(ours.curve.mesh, mesh, rtol=0, atol=0)
    np.testing.assert_allclose(ours.curve.accuracy, mu, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours.curve.density, density, rtol=1e-9, atol=1e-9)


def test_smooth_ece_curve_matches_relplots_diagram_data() -> None:
    p, y = _binary(800, seed=2)
    data = relplot.prepare_rel_diagram(p, y, plot_confidence_band=False)
    ours = smooth_ece(p, y)
    np.testing.assert_allclose(ours.curve.accuracy, data["mu"], atol=1e-9)
    np.testing.assert_allclose(ours.curve.density, data["density"], atol=1e-9)
    assert ours.ece == pytest.approx(data["ce"], abs=1e-12)


# ----------------------------------------------------------------------------- class-wise


@pytest.mark.parametrize("binning", ["uniform", "quantile"])
def test_classwise_matches_kumar_marginal(binning: str) -> None:
    probs, y = _multiclass(1500, 5, seed=1)
    ours = classwise_calibration(probs, y, n_bins=15, binning=binning)
    scheme = kumar.get_equal_prob_bins if binning == "uniform" else kumar.get_equal_bins
    theirs = kumar.lower_bound_scaling_ce(
        probs, y, p=1, debias=False, num_bins=15, binning_scheme=scheme, mode="marginal"
    )
    assert ours.classwise_ece == pytest.approx(theirs, abs=1e-12)
    if binning == "quantile":  # 15 divides 1500: Kumar's default call, literally
        default = calibration.get_calibration_error(probs, y, p=1, debias=False,
                                                    mode="marginal")
        assert ours.classwise_ece == pytest.approx(default, abs=1e-12)
    # The identity, and agreement with the report's per-class ECE.
    assert ours.classwise_ece == pytest.approx(
        np.mean([k.ece for k in ours.per_class]), abs=1e-15
    )
    report = calibration_report(probs, y, n_bins=15, binning=binning)
    assert [k.ece for k in ours.per_class] == [k.ece for k in report.per_class]
    for k in ours.per_class:
        assert k.ece <= k.rmsce + 1e-15 <= k.mce + 2e-15
        assert len(k.bins) == 15
        assert sum(b.count for b in k.bins) == 1500
        # ECE from the reported bins.
        ece = sum(b.weight * abs(b.accuracy - b.mean_confidence) for b in k.bins
                  if b.accuracy is not None) / 1500
        assert ece == pytest.approx(k.ece, abs=1e-12)


def test_classwise_hand_computed() -> None:
    r = classwise_calibration([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]], [0, 1, 1], n_bins=2)
    # Class 0: (0, .5] holds 0.2 (label 0): gap 0.2; (.5, 1] holds .7, .6 (1 of 2): 0.15.
    assert r.per_class[0].ece == pytest.approx((0.2 + 2 * 0.15) / 3, abs=1e-15)
    assert r.per_class[0].mce == pytest.approx(0.2, abs=1e-15)
    assert r.per_class[0].bins[1].accuracy == 0.5


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "field", "kind"),
    [
        ({"confidences": [0.1, 1.2], "outcomes": [0, 1]}, "confidences", "out_of_range"),
        ({"confidences": [0.1, 0.2], "outcomes": [0, 2]}, "outcomes", "out_of_range"),
        ({"confidences": [0.1, 0.2], "outcomes": [0]}, "outcomes", "shape_mismatch"),
        ({"confidences": [0.1, 0.2], "outcomes": [0, 1], "sample_weights": [0, 0]},
         "sample_weights", "out_of_range"),
        ({"confidences": [[0.1]], "outcomes": [0]}, "confidences", "shape_error"),
    ],
)
def test_invalid_input_names_the_field(kwargs: dict, field: str, kind: str) -> None:
    for fn in (ece_debiased, ece_sweep, smooth_ece):
        with pytest.raises(InputError) as err:
            fn(**kwargs)
        assert (err.value.field, err.value.kind) == (field, kind)


def test_invalid_options() -> None:
    with pytest.raises(InputError) as err:
        ece_debiased([0.1], [0], n_bins=0)
    assert err.value.field == "n_bins"
    with pytest.raises(InputError) as err:
        ece_debiased([0.1], [0], binning="equal")
    assert err.value.field == "binning"
    with pytest.raises(InputError) as err:
        ece_sweep([0.1], [0], max_n_bins=0)
    assert err.value.field == "max_n_bins"
    with pytest.raises(InputError) as err:
        classwise_calibration([[0.5, 0.6]], [0])
    assert err.value.kind == "not_a_distribution"
