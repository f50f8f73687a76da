"""Tests of xentropy._divergences against scipy oracles, identities and finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.special import log_softmax as scipy_log_softmax
from scipy.special import rel_entr, softmax
from scipy.stats import entropy as scipy_entropy

from xentropy._divergences import DivergenceResult, divergences
from xentropy._numerics import FLOAT64_EPS
from xentropy._validation import InputError

LN2 = math.log(2.0)
FIELDS = ("entropy", "cross_entropy", "kl_divergence", "js_divergence")


def _rows(rng: np.random.Generator, n: int, c: int, *, zeros: float = 0.0) -> np.ndarray:
    """n random probability rows over c classes; a share ``zeros`` of entries set to 0."""
    x = rng.dirichlet(np.full(c, 0.7), size=n)
    if zeros:
        x[rng.random((n, c)) < zeros] = 0.0
        x[np.arange(n), rng.integers(0, c, n)] += 0.1  # every row keeps some mass
        x /= x.sum(axis=1, keepdims=True)
    return x


def _per_row(result: DivergenceResult, name: str) -> np.ndarray:
    return np.asarray(getattr(result.per_row, name))


# --------------------------------------------------------------------------------------------
# Oracles


@pytest.mark.parametrize("units, base", [("nats", None), ("bits", 2.0)])
@pytest.mark.parametrize("zeros", [0.0, 0.3])
def test_matches_scipy(units: str, base: float | None, zeros: float) -> None:
    rng = np.random.default_rng(1)
    p = _rows(rng, 40, 6, zeros=zeros)
    q = _rows(rng, 40, 6)  # strictly positive (Dirichlet), far above ε
    assert q.min() > 1e-10
    r = divergences(p, q, units=units, reduction="none")
    scale = LN2 if units == "bits" else 1.0

    np.testing.assert_allclose(
        _per_row(r, "entropy"), scipy_entropy(p, base=base, axis=1), rtol=1e-12, atol=1e-15
    )
    np.testing.assert_allclose(
        _per_row(r, "kl_divergence"), scipy_entropy(p, q, base=base, axis=1), rtol=1e-10,
        atol=1e-15,
    )
    np.testing.assert_allclose(
        _per_row(r, "kl_divergence"), rel_entr(p, q).sum(axis=1) / scale, rtol=1e-10, atol=1e-15
    )
    cross = -(p * np.log(q)).sum(axis=1) / scale
    np.testing.assert_allclose(_per_row(r, "cross_entropy"), cross, rtol=1e-12)
    js = jensenshannon(p, q, axis=1, base=base) ** 2  # scipy returns the square root
    np.testing.assert_allclose(_per_row(r, "js_divergence"), js, rtol=1e-9, atol=1e-15)


def test_clipping_of_q_matches_rel_entr_of_clipped_q() -> None:
    rng = np.random.default_rng(2)
    p = _rows(rng, 30, 5)
    q = _rows(rng, 30, 5, zeros=0.4)
    q[0, :2] = [1e-300, 5e-324]
    q[0] /= q[0].sum()
    eps = 1e-6
    r = divergences(p, q, epsilon=eps, reduction="none")
    q_clipped = np.maximum(q, eps)
    np.testing.assert_allclose(
        _per_row(r, "kl_divergence"), rel_entr(p, q_clipped).sum(axis=1), rtol=1e-12
    )
    np.testing.assert_allclose(
        _per_row(r, "cross_entropy"), -(p * np.log(q_clipped)).sum(axis=1), rtol=1e-12
    )
    # JS uses the unclipped q.
    np.testing.assert_allclose(
        _per_row(r, "js_divergence"), jensenshannon(p, q, axis=1) ** 2, rtol=1e-9, atol=1e-15
    )


def test_q_logits_matches_scipy_log_softmax_without_clipping() -> None:
    rng = np.random.default_rng(3)
    p = _rows(rng, 20, 4, zeros=0.3)
    z = rng.normal(scale=4.0, size=(20, 4))
    z[0] = [0.0, -800.0, 5.0, 1.0]  # softmax underflows to 0 in column 1: exact log kept
    p[0] = [0.25, 0.25, 0.25, 0.25]
    r = divergences(p, q_logits=z, reduction="none")
    log_q = scipy_log_softmax(z, axis=1)
    ce = -(p * log_q).sum(axis=1)
    np.testing.assert_allclose(_per_row(r, "cross_entropy"), ce, rtol=1e-12)
    assert _per_row(r, "cross_entropy")[0] > 200  # not capped at −log ε ≈ 36
    np.testing.assert_allclose(
        _per_row(r, "entropy") + _per_row(r, "kl_divergence"), ce, rtol=1e-12
    )
    np.testing.assert_allclose(
        _per_row(r, "js_divergence"), jensenshannon(p, softmax(z, axis=1), axis=1) ** 2,
        rtol=1e-9, atol=1e-15,
    )


def test_q_logits_agrees_with_q_when_nothing_is_clipped() -> None:
    rng = np.random.default_rng(4)
    p = _rows(rng, 25, 5, zeros=0.2)
    z = rng.normal(size=(25, 5))
    by_logits = divergences(p, q_logits=z, reduction="none")
    by_probs = divergences(p, softmax(z, axis=1), reduction="none")
    for name in FIELDS:
        np.testing.assert_allclose(
            _per_row(by_logits, name), _per_row(by_probs, name), rtol=1e-12, atol=1e-15
        )


# --------------------------------------------------------------------------------------------
# Identities and bounds


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 8),
    c=st.integers(1, 7),
    zeros=st.sampled_from([0.0, 0.3, 0.7]),
    use_logits=st.booleans(),
)
def test_identity_and_bounds(seed: int, n: int, c: int, zeros: float, use_logits: bool) -> None:
    rng = np.random.default_rng(seed)
    p = _rows(rng, n, c, zeros=zeros)
    if use_logits:
        r = divergences(p, q_logits=rng.normal(scale=10.0, size=(n, c)), reduction="none")
    else:
        r = divergences(p, _rows(rng, n, c, zeros=zeros), reduction="none")
    h, ce, kl, js = (_per_row(r, name) for name in FIELDS)
    for v in (h, ce, kl, js):
        assert v.shape == (n,) and np.isfinite(v).all()
    np.testing.assert_allclose(ce, h + kl, rtol=0, atol=1e-12)
    assert (kl >= 0).all() and (h >= 0).all()
    assert (js >= 0).all() and (js <= LN2).all()


def test_kl_and_js_of_p_with_itself_are_exactly_zero() -> None:
    p = _rows(np.random.default_rng(5), 30, 8, zeros=0.5)
    r = divergences(p, p.copy(), reduction="none")
    assert (_per_row(r, "kl_divergence") == 0).all()
    assert (_per_row(r, "js_divergence") == 0).all()
    np.testing.assert_array_equal(_per_row(r, "cross_entropy"), _per_row(r, "entropy"))


def test_js_is_symmetric_and_ln2_for_disjoint_supports() -> None:
    rng = np.random.default_rng(6)
    p, q = _rows(rng, 30, 6, zeros=0.4), _rows(rng, 30, 6, zeros=0.4)
    forward = _per_row(divergences(p, q, reduction="none"), "js_divergence")
    backward = _per_row(divergences(q, p, reduction="none"), "js_divergence")
    np.testing.assert_array_equal(forward, backward)
    disjoint = divergences([[0.5, 0.5, 0.0, 0.0]], [[0.0, 0.0, 0.3, 0.7]])
    assert disjoint.js_divergence == pytest.approx(LN2, rel=1e-15)
    assert divergences([[1.0, 0.0]], [[0.0, 1.0]], units="bits").js_divergence == pytest.approx(
        1.0, rel=1e-15
    )


def test_p_positive_where_q_is_zero_gives_large_finite_kl() -> None:
    r = divergences([[1.0, 0.0]], [[0.0, 1.0]])
    assert r.kl_divergence == pytest.approx(-math.log(FLOAT64_EPS), rel=1e-15)
    assert r.cross_entropy == pytest.approx(-math.log(FLOAT64_EPS), rel=1e-15)
    assert r.entropy == 0.0
    r = divergences([[0.5, 0.5]], [[0.0, 1.0]], epsilon=1e-3)
    assert r.kl_divergence == pytest.approx(0.5 * math.log(0.5 / 1e-3) + 0.5 * math.log(0.5))
    assert r.cross_entropy == pytest.approx(-0.5 * math.log(1e-3))


def test_zero_p_contributes_nothing_even_against_zero_q() -> None:
    r = divergences([[0.0, 1.0]], [[0.0, 1.0]])
    assert (r.entropy, r.cross_entropy, r.kl_divergence, r.js_divergence) == (0.0, 0.0, 0.0, 0.0)


def test_literal_values() -> None:
    p, q = [[0.5, 0.5]], [[0.25, 0.75]]
    r = divergences(p, q)
    assert r.entropy == pytest.approx(math.log(2))
    assert r.cross_entropy == pytest.approx(-0.5 * math.log(0.25) - 0.5 * math.log(0.75))
    assert r.kl_divergence == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3))
    m = [0.375, 0.625]
    kl_pm = 0.5 * math.log(0.5 / m[0]) + 0.5 * math.log(0.5 / m[1])
    kl_qm = 0.25 * math.log(0.25 / m[0]) + 0.75 * math.log(0.75 / m[1])
    js = 0.5 * kl_pm + 0.5 * kl_qm
    assert r.js_divergence == pytest.approx(js)


def test_subnormal_probabilities_stay_finite() -> None:
    tiny = 5e-324
    p = np.array([[tiny, 1.0 - tiny, 0.0], [0.0, 0.5, 0.5]])
    q = np.array([[0.0, 1.0, 0.0], [tiny, 0.5, 0.5]])
    r = divergences(p, q, reduction="none", return_gradient=True)
    for name in FIELDS:
        assert np.isfinite(_per_row(r, name)).all()
    assert r.gradient is not None and np.isfinite(r.gradient).all()
    js = _per_row(r, "js_divergence")
    assert js[0] == pytest.approx(0.5 * tiny * LN2, abs=1e-323)


# --------------------------------------------------------------------------------------------
# Units and reductions


def test_bits_are_nats_over_ln2() -> None:
    rng = np.random.default_rng(7)
    p, q = _rows(rng, 10, 4, zeros=0.3), _rows(rng, 10, 4)
    nats = divergences(p, q, return_gradient=True)
    bits = divergences(p, q, units="bits", return_gradient=True)
    for name in FIELDS:
        assert getattr(bits, name) == pytest.approx(getattr(nats, name) / LN2, rel=1e-14)
        np.testing.assert_allclose(_per_row(bits, name), _per_row(nats, name) / LN2, rtol=1e-14)
    assert nats.gradient is not None and bits.gradient is not None
    np.testing.assert_allclose(bits.gradient, nats.gradient / LN2, rtol=1e-14)
    assert bits.units == "bits" and nats.units == "nats"


def test_reductions() -> None:
    rng = np.random.default_rng(8)
    p, q = _rows(rng, 9, 3), _rows(rng, 9, 3)
    none = divergences(p, q, reduction="none")
    mean = divergences(p, q)
    total = divergences(p, q, reduction="sum")
    assert (mean.reduction, total.reduction, none.reduction) == ("mean", "sum", "none")
    for name in FIELDS:
        assert getattr(none, name) is None
        rows = _per_row(none, name)
        assert getattr(mean, name) == pytest.approx(rows.mean(), rel=1e-14)
        assert getattr(total, name) == pytest.approx(rows.sum(), rel=1e-14)
        np.testing.assert_array_equal(_per_row(mean, name), rows)  # always computed
    assert (none.n_samples, none.n_classes) == (9, 3)
    assert none.gradient is None


# --------------------------------------------------------------------------------------------
# Gradients


def _reduced_ce(p: np.ndarray, q: np.ndarray, reduction: str) -> float:
    r = divergences(p, q, reduction=reduction, epsilon=1e-3)
    if reduction == "none":
        return float(_per_row(r, "cross_entropy").sum())
    assert r.cross_entropy is not None
    return r.cross_entropy


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradient_wrt_q_matches_central_differences(reduction: str) -> None:
    rng = np.random.default_rng(9)
    p = _rows(rng, 3, 4, zeros=0.3)
    q = 0.05 + 0.8 * _rows(rng, 3, 4)  # entries >= 0.05: far from the clip at ε = 1e-3
    q /= q.sum(axis=1, keepdims=True)
    q[2] = [0.5, 0.4996, 0.0004, 0.0]  # two entries below ε: clipped, gradient exactly 0
    r = divergences(p, q, reduction=reduction, epsilon=1e-3, return_gradient=True)
    assert r.gradient is not None and r.gradient.shape == q.shape
    h = 1e-7  # a row stays within the 1e-6 row-sum tolerance
    numeric = np.zeros_like(q)
    for i, j in np.ndindex(q.shape):
        up, down = q.copy(), q.copy()
        up[i, j] += h
        down[i, j] -= h if q[i, j] >= h else 0.0
        step = up[i, j] - down[i, j]
        diff = _reduced_ce(p, up, reduction) - _reduced_ce(p, down, reduction)
        numeric[i, j] = diff / step
    np.testing.assert_allclose(r.gradient, numeric, rtol=1e-6, atol=1e-8)
    assert (r.gradient[2, 2:] == 0).all()
    scale = 1 / 3 if reduction == "mean" else 1.0
    live = q >= 1e-3
    np.testing.assert_allclose(r.gradient[live], -p[live] / q[live] * scale, rtol=1e-15)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("units", ["nats", "bits"])
def test_gradient_wrt_q_logits_matches_central_differences(reduction: str, units: str) -> None:
    rng = np.random.default_rng(10)
    p = _rows(rng, 4, 5, zeros=0.3)
    z = rng.normal(scale=2.0, size=(4, 5))
    r = divergences(p, q_logits=z, reduction=reduction, units=units, return_gradient=True)
    assert r.gradient is not None

    def f(x: np.ndarray) -> float:
        res = divergences(p, q_logits=x, reduction=reduction, units=units)
        return float(_per_row(res, "cross_entropy").sum()) if reduction == "none" else float(
            res.cross_entropy or 0.0
        )

    h = 1e-6
    numeric = np.zeros_like(z)
    for i, j in np.ndindex(z.shape):
        up, down = z.copy(), z.copy()
        up[i, j] += h
        down[i, j] -= h
        numeric[i, j] = (f(up) - f(down)) / (2 * h)
    np.testing.assert_allclose(r.gradient, numeric, rtol=1e-6, atol=1e-9)
    # The closed form, and: each row of the logit gradient sums to 0 for probability rows.
    expected = softmax(z, axis=1) * p.sum(axis=1, keepdims=True) - p
    expected /= (4 if reduction == "mean" else 1) * (LN2 if units == "bits" else 1)
    np.testing.assert_allclose(r.gradient, expected, rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(r.gradient.sum(axis=1), 0, atol=1e-15)


# --------------------------------------------------------------------------------------------
# Overflow and validation


def test_q_logits_whose_softmax_underflows_where_p_is_positive_is_an_input_error() -> None:
    z = [[0.0, 0.0], [1e308, -1e308]]
    with pytest.raises(InputError) as info:
        divergences([[0.5, 0.5], [0.5, 0.5]], q_logits=z)
    assert info.value.field == "q_logits" and info.value.position == (1, 1)
    assert info.value.kind == "overflow" and "overflows float64" in info.value.message
    # Where p = 0 the same logits are harmless.
    r = divergences([[0.5, 0.5], [1.0, 0.0]], q_logits=z, reduction="none")
    assert np.isfinite(_per_row(r, "cross_entropy")).all()
    assert _per_row(r, "cross_entropy")[1] == 0.0


def _error(*args: object, **kwargs: object) -> InputError:
    with pytest.raises(InputError) as info:
        divergences(*args, **kwargs)  # type: ignore[arg-type]
    return info.value


GOOD = [[0.2, 0.8], [0.5, 0.5]]


@pytest.mark.parametrize(
    "kwargs, field, position, kind, message",
    [
        ({"p": [0.2, 0.8], "q": GOOD}, "p", (), "shape_error", "expected a 2-D array"),
        ({"p": [[0.2, np.nan], [0.5, 0.5]], "q": GOOD}, "p", (0, 1), "not_finite", "finite"),
        ({"p": [[1.2, -0.2], [0.5, 0.5]], "q": GOOD}, "p", (0, 0), "out_of_range",
         "expected a probability in [0, 1], got 1.2"),
        ({"p": [[0.2, 0.8], [0.5, 0.6]], "q": GOOD}, "p", (1,), "not_a_distribution",
         "expected row 1 to sum to 1"),
        ({"p": [["a", "b"]], "q": GOOD}, "p", (), "type_error", "expected numbers"),
        ({"p": GOOD, "q": [[0.2, 0.8]]}, "q", (), "shape_mismatch", "expected the shape of p"),
        ({"p": GOOD, "q": [[0.2, 0.8], [0.5, -0.5]]}, "q", (1, 1), "out_of_range",
         "got -0.5"),
        ({"p": GOOD, "q": [[0.2, 0.7], [0.5, 0.5]]}, "q", (0,), "not_a_distribution",
         "expected row 0 to sum to 1"),
        ({"p": GOOD, "q_logits": [[1.0, 2.0, 3.0]] * 2}, "q_logits", (), "shape_mismatch",
         "expected the shape of p"),
        ({"p": GOOD, "q_logits": [[1.0, np.inf], [0.0, 0.0]]}, "q_logits", (0, 1),
         "not_finite", "finite"),
        ({"p": GOOD}, "q", (), "missing", "expected exactly one of q and q_logits, got neither"),
        ({"p": GOOD, "q": GOOD, "q_logits": GOOD}, "q_logits", (), "exclusive",
         "expected exactly one of q and q_logits, got both"),
        ({"p": GOOD, "q": GOOD, "epsilon": 0.0}, "epsilon", (), "out_of_range", "(0, 0.5)"),
        ({"p": GOOD, "q": GOOD, "epsilon": 0.5}, "epsilon", (), "out_of_range", "got 0.5"),
        ({"p": GOOD, "q": GOOD, "epsilon": float("nan")}, "epsilon", (), "out_of_range", "nan"),
        ({"p": GOOD, "q": GOOD, "reduction": "avg"}, "reduction", (), "enum", "got 'avg'"),
        ({"p": GOOD, "q": GOOD, "units": "bit"}, "units", (), "enum", "got 'bit'"),
    ],
)
def test_validation(
    kwargs: dict[str, object], field: str, position: tuple[int, ...], kind: str, message: str
) -> None:
    err = _error(**kwargs)
    assert (err.field, err.position, err.kind) == (field, position, kind)
    assert message in err.message
    assert "expected" in err.message


def test_empty_input_is_rejected() -> None:
    err = _error(np.zeros((0, 3)), np.zeros((0, 3)))
    assert err.field == "p" and err.kind == "empty"


# --------------------------------------------------------------------------------------------
# Never NaN or inf


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.lists(st.sampled_from([0.0, 5e-324, 1e-300, 1e-17, 0.3, 1.0]), min_size=3,
                     max_size=3),
            st.lists(st.sampled_from([0.0, 5e-324, 1e-300, 1e-17, 0.3, 1.0]), min_size=3,
                     max_size=3),
        ),
        min_size=1, max_size=5,
    ),
    units=st.sampled_from(["nats", "bits"]),
)
def test_extreme_values_never_give_nan_or_inf(
    data: list[tuple[list[float], list[float]]], units: str
) -> None:
    raw_p = np.array([row[0] for row in data]) + np.array([0.0, 0.0, 1e-300])
    raw_q = np.array([row[1] for row in data]) + np.array([1e-300, 0.0, 0.0])
    p = raw_p / raw_p.sum(axis=1, keepdims=True)
    q = raw_q / raw_q.sum(axis=1, keepdims=True)
    for kwargs in ({"q": q}, {"q_logits": np.log(np.maximum(q, 1e-300)) * 3}):
        r = divergences(p, reduction="none", units=units, return_gradient=True, **kwargs)
        h, ce, kl, js = (_per_row(r, name) for name in FIELDS)
        for v in (h, ce, kl, js):
            assert np.isfinite(v).all()
        assert r.gradient is not None and np.isfinite(r.gradient).all()
        js_bound = 1.0 if units == "bits" else LN2
        assert (kl >= 0).all() and (js >= 0).all() and (js <= js_bound).all()
        np.testing.assert_allclose(ce, h + kl, rtol=1e-15, atol=1e-12)


def test_logit_gradient_uses_the_row_mass_of_p() -> None:
    # Rows of p may miss 1 by up to 1e-6; the exact derivative is softmax(z)·Σp − p.
    p = np.array([[0.3, 0.7 + 8e-7], [0.5, 0.5]])
    z = np.array([[0.4, -1.0], [2.0, 0.0]])
    r = divergences(p, q_logits=z, reduction="sum", return_gradient=True)
    assert r.gradient is not None
    expected = softmax(z, axis=1) * p.sum(axis=1, keepdims=True) - p
    np.testing.assert_allclose(r.gradient, expected, rtol=1e-13, atol=1e-17)
    # ... which differs measurably from softmax(z) − p here.
    assert np.abs(r.gradient - (softmax(z, axis=1) - p)).max() > 5e-7
