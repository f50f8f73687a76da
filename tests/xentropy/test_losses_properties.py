"""Properties of the loss core, on data drawn by hypothesis.

Each property relates two computations that take different code paths (sparse labels vs
one-hot targets, logits vs probabilities, the focal path vs the plain one, a sigmoid vs a
two-class softmax), or states an invariance (sample order, memory layout, units, dtype).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import expit, softmax

from xentropy import losses as L

LN2 = math.log(2.0)

# Modest example counts keep the whole core suite well under a minute on two cores.
PROFILE = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

finite = st.floats(min_value=-8.0, max_value=8.0, allow_nan=False, allow_infinity=False)
weight = st.floats(min_value=0.05, max_value=3.0, allow_nan=False)
smoothing = st.sampled_from([0.0, 0.1, 0.37])
gamma = st.sampled_from([0.0, 0.5, 1.0, 2.0, 2.7])


@st.composite
def categorical_problems(draw, *, min_classes=2, max_classes=5):
    n = draw(st.integers(1, 6))
    c = draw(st.integers(min_classes, max_classes))
    logits = draw(hnp.arrays(np.float64, (n, c), elements=finite))
    labels = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    opts = {}
    if draw(st.booleans()):
        opts["class_weights"] = draw(hnp.arrays(np.float64, (c,), elements=weight))
    if draw(st.booleans()):
        opts["sample_weights"] = draw(hnp.arrays(np.float64, (n,), elements=weight))
    opts["label_smoothing"] = draw(smoothing)
    return logits, labels, opts


@st.composite
def focal_options(draw, c):
    opts = {"focal_gamma": draw(gamma)}
    kind = draw(st.sampled_from(["none", "scalar", "per_class"]))
    if kind == "scalar":
        opts["focal_alpha"] = draw(st.floats(0.05, 1.0))
    elif kind == "per_class":
        opts["focal_alpha"] = draw(hnp.arrays(np.float64, (c,), elements=st.floats(0.05, 2.0)))
    return opts


@st.composite
def binary_problems(draw):
    shape = draw(st.sampled_from([(5,), (1,), (3, 2), (4, 3), (2, 1)]))
    logits = draw(hnp.arrays(np.float64, shape, elements=finite))
    soft = draw(st.booleans())
    t_elements = st.floats(0.0, 1.0) if soft else st.sampled_from([0.0, 1.0])
    targets = draw(hnp.arrays(np.float64, shape, elements=t_elements))
    opts = {"label_smoothing": draw(smoothing)}
    if draw(st.booleans()):
        opts["sample_weights"] = draw(hnp.arrays(np.float64, (shape[0],), elements=weight))
    if draw(st.booleans()):
        opts["pos_weight"] = draw(weight)
    if len(shape) == 2 and draw(st.booleans()):
        opts["class_weights"] = draw(hnp.arrays(np.float64, (shape[1],), elements=weight))
    if draw(st.booleans()):
        opts["focal_gamma"] = draw(gamma)
        if draw(st.booleans()):
            opts["focal_alpha"] = draw(st.floats(0.0, 1.0))
    return logits, targets, opts


def _close(a, b, rtol=1e-10, atol=1e-12):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


# --------------------------------------------------------------------------- label forms


@PROFILE
@given(data=st.data(), problem=categorical_problems(), from_logits=st.booleans())
def test_sparse_labels_equal_one_hot_targets(data, problem, from_logits):
    logits, labels, opts = problem
    opts.update(data.draw(focal_options(logits.shape[1])))
    one_hot = np.eye(logits.shape[1])[labels]
    if from_logits:
        x = logits
        sparse = L.softmax_cross_entropy_with_integer_labels(x, labels, return_gradient=True,
                                                             **opts)
        dense = L.softmax_cross_entropy(x, one_hot, return_gradient=True, **opts)
    else:
        x = softmax(logits, axis=1)
        sparse = L.categorical_cross_entropy_with_integer_labels(
            x, labels, return_gradient=True, **opts
        )
        dense = L.categorical_cross_entropy(x, one_hot, return_gradient=True, **opts)
    _close(sparse.loss, dense.loss)
    _close(sparse.losses, dense.losses)
    _close(sparse.gradient, dense.gradient)
    assert sparse.weight_sum == pytest.approx(dense.weight_sum, rel=1e-14)


@PROFILE
@given(problem=categorical_problems(), from_logits=st.booleans())
def test_focal_with_gamma_zero_is_plain_cross_entropy(problem, from_logits):
    logits, labels, opts = problem
    if from_logits:
        fn, x = L.softmax_cross_entropy_with_integer_labels, logits
    else:
        fn, x = L.categorical_cross_entropy_with_integer_labels, softmax(logits, axis=1)
    plain = fn(x, labels, return_gradient=True, **opts)
    gamma0 = fn(x, labels, return_gradient=True, focal_gamma=0.0, **opts)
    # alpha = 1 for every class takes the focal code path with a factor that changes nothing.
    ones = fn(x, labels, return_gradient=True, focal_gamma=0.0,
              focal_alpha=np.ones(x.shape[1]), **opts)
    ones_scalar = fn(x, labels, return_gradient=True, focal_alpha=1.0, **opts)
    for other in (gamma0, ones, ones_scalar):
        _close(other.loss, plain.loss)
        _close(other.losses, plain.losses)
        _close(other.gradient, plain.gradient)


@PROFILE
@given(problem=binary_problems(), from_logits=st.booleans())
def test_binary_focal_with_gamma_zero_is_plain_bce(problem, from_logits):
    logits, targets, opts = problem
    opts = {k: v for k, v in opts.items() if k not in ("focal_gamma", "focal_alpha")}
    fn = L.sigmoid_binary_cross_entropy if from_logits else L.binary_cross_entropy
    x = logits if from_logits else expit(logits)
    plain = fn(x, targets, return_gradient=True, **opts)
    focal = fn(x, targets, return_gradient=True, focal_gamma=0.0, **opts)
    # alpha = 1/2 takes the focal path and halves everything but the denominator.
    half = fn(x, targets, return_gradient=True, focal_gamma=0.0, focal_alpha=0.5, **opts)
    _close(focal.loss, plain.loss)
    _close(focal.gradient, plain.gradient)
    _close(half.losses, plain.losses / 2)
    _close(half.gradient, plain.gradient / 2)
    assert half.weight_sum == plain.weight_sum


# --------------------------------------------------------------------------- links


@PROFILE
@given(data=st.data(), problem=categorical_problems(), soft=st.booleans())
def test_logits_path_equals_probabilities_after_softmax(data, problem, soft):
    logits, labels, opts = problem
    opts.update(data.draw(focal_options(logits.shape[1])))
    p = softmax(logits, axis=1)
    if soft:
        y = data.draw(hnp.arrays(np.float64, logits.shape, elements=st.floats(0.0, 1.0)))
        assume(y.sum(axis=1).min() > 0.1)
        y = y / y.sum(axis=1, keepdims=True)
        from_z = L.softmax_cross_entropy(logits, y, return_gradient=True, **opts)
        from_p = L.categorical_cross_entropy(p, y, return_gradient=True, **opts)
    else:
        y = labels
        from_z = L.softmax_cross_entropy_with_integer_labels(logits, y, return_gradient=True,
                                                             **opts)
        from_p = L.categorical_cross_entropy_with_integer_labels(p, y, return_gradient=True,
                                                                 **opts)
    assert from_p.n_clipped == 0  # logits within ±8: no probability near the clip
    # Focal terms use 1 - p, computed from rounded probabilities on one side: 1e-8 relative.
    _close(from_z.losses, from_p.losses, rtol=1e-8, atol=1e-13)
    # Chain rule through the softmax Jacobian diag(p) - p pᵀ.
    g = from_p.gradient
    chained = p * (g - (p * g).sum(axis=1, keepdims=True))
    _close(from_z.gradient, chained, rtol=1e-7, atol=1e-10)


@PROFILE
@given(problem=binary_problems())
def test_logits_path_equals_probabilities_after_sigmoid(problem):
    logits, targets, opts = problem
    p = expit(logits)
    from_z = L.sigmoid_binary_cross_entropy(logits, targets, return_gradient=True, **opts)
    from_p = L.binary_cross_entropy(p, targets, return_gradient=True, **opts)
    assert from_p.n_clipped == 0
    _close(from_z.losses, from_p.losses, rtol=1e-8, atol=1e-13)
    # dσ/dz = σ(1 - σ).
    _close(from_z.gradient, from_p.gradient * p * (1 - p), rtol=1e-7, atol=1e-10)


@PROFILE
@given(problem=binary_problems())
def test_sigmoid_is_a_two_class_softmax(problem):
    """BCE of logit z equals CE of logits [0, z]: values and gradients."""
    z, t, opts = problem
    z, t = z.ravel(), t.ravel()
    n = z.size
    two = np.stack([np.zeros(n), z], axis=1)
    targets2 = np.stack([1 - t, t], axis=1)
    cat_opts = {"label_smoothing": opts["label_smoothing"], "reduction": "sum"}
    bin_opts = dict(cat_opts)
    if "sample_weights" in opts:
        s = np.resize(opts["sample_weights"], n)
        cat_opts["sample_weights"] = bin_opts["sample_weights"] = s
    if "pos_weight" in opts:
        # pos_weight weighs the positive term: class weights [1, pw] with "sum".
        bin_opts["pos_weight"] = opts["pos_weight"]
        cat_opts["class_weights"] = np.array([1.0, opts["pos_weight"]])
    binary = L.sigmoid_binary_cross_entropy(z, t, return_gradient=True, **bin_opts)
    categorical = L.softmax_cross_entropy(two, targets2, return_gradient=True, **cat_opts)
    _close(binary.losses, categorical.losses, rtol=1e-9, atol=1e-13)
    _close(binary.loss, categorical.loss, rtol=1e-9, atol=1e-13)
    _close(binary.gradient, categorical.gradient[:, 1], rtol=1e-8, atol=1e-12)
    # The logit of class 0 is fixed; its gradient is minus that of class 1.
    _close(categorical.gradient[:, 0], -categorical.gradient[:, 1], rtol=1e-12, atol=1e-15)
    if set(np.unique(t)) <= {0.0, 1.0}:
        # With hard labels, mean and focal loss agree too (alpha: 1 - α for class 0).
        labels = t.astype(np.int64)
        gamma_, alpha = opts.get("focal_gamma", 1.0), opts.get("focal_alpha", 0.25)
        focal_b = L.sigmoid_binary_cross_entropy(
            z, t, focal_gamma=gamma_, focal_alpha=alpha, return_gradient=True
        )
        focal_c = L.softmax_cross_entropy_with_integer_labels(
            two, labels, focal_gamma=gamma_, focal_alpha=np.array([1 - alpha, alpha]),
            normalization="samples", return_gradient=True,
        )
        _close(focal_b.loss, focal_c.loss, rtol=1e-9, atol=1e-13)
        _close(focal_b.gradient, focal_c.gradient[:, 1], rtol=1e-8, atol=1e-12)


# --------------------------------------------------------------------------- invariances


@PROFILE
@given(data=st.data(), problem=categorical_problems())
def test_sample_order_does_not_matter(data, problem):
    logits, labels, opts = problem
    opts.update(data.draw(focal_options(logits.shape[1])))
    perm = data.draw(st.permutations(range(logits.shape[0])))
    perm = np.asarray(perm, dtype=np.int64)
    base = L.softmax_cross_entropy_with_integer_labels(logits, labels, return_gradient=True,
                                                       **opts)
    permuted_opts = dict(opts)
    if "sample_weights" in opts:
        permuted_opts["sample_weights"] = opts["sample_weights"][perm]
    permuted = L.softmax_cross_entropy_with_integer_labels(
        logits[perm], labels[perm], return_gradient=True, **permuted_opts
    )
    _close(permuted.losses, base.losses[perm], rtol=1e-15, atol=0)
    _close(permuted.gradient, base.gradient[perm], rtol=1e-13, atol=1e-16)
    assert permuted.loss == pytest.approx(base.loss, rel=1e-13)
    assert permuted.weight_sum == pytest.approx(base.weight_sum, rel=1e-14)


@PROFILE
@given(problem=binary_problems())
def test_binary_row_order_does_not_matter(problem):
    logits, targets, opts = problem
    perm = np.arange(logits.shape[0])[::-1]
    base = L.sigmoid_binary_cross_entropy(logits, targets, return_gradient=True, **opts)
    popts = dict(opts)
    if "sample_weights" in opts:
        popts["sample_weights"] = opts["sample_weights"][perm]
    permuted = L.sigmoid_binary_cross_entropy(logits[perm], targets[perm],
                                              return_gradient=True, **popts)
    _close(permuted.losses, base.losses[perm], rtol=1e-15, atol=0)
    _close(permuted.gradient, base.gradient[perm], rtol=1e-13, atol=1e-16)
    assert permuted.loss == pytest.approx(base.loss, rel=1e-13)


@PROFILE
@given(data=st.data(), problem=categorical_problems())
def test_bits_are_nats_over_ln2(data, problem):
    logits, labels, opts = problem
    opts.update(data.draw(focal_options(logits.shape[1])))
    reduction = data.draw(st.sampled_from(["mean", "sum", "none"]))
    nats = L.softmax_cross_entropy_with_integer_labels(
        logits, labels, return_gradient=True, reduction=reduction, **opts
    )
    bits = L.softmax_cross_entropy_with_integer_labels(
        logits, labels, return_gradient=True, reduction=reduction, units="bits", **opts
    )
    _close(bits.losses, nats.losses / LN2, rtol=1e-14, atol=0)
    # The label entry of a softmax gradient is p·A - a: where p is near 1 it cancels, so
    # the units factor applied before or after the subtraction moves it by a few ulps of
    # the terms (|terms| <= 9 with these weights and "sum"), not of the result.
    _close(bits.gradient, nats.gradient / LN2, rtol=1e-14, atol=1e-14)
    if reduction == "none":
        assert bits.loss is None and nats.loss is None
    else:
        assert bits.loss == pytest.approx(nats.loss / LN2, rel=1e-14)


@PROFILE
@given(data=st.data(), problem=categorical_problems())
def test_losses_are_finite_and_non_negative(data, problem):
    logits, labels, opts = problem
    opts.update(data.draw(focal_options(logits.shape[1])))
    for result in (
        L.softmax_cross_entropy_with_integer_labels(logits, labels, return_gradient=True, **opts),
        L.categorical_cross_entropy_with_integer_labels(
            softmax(logits, axis=1), labels, return_gradient=True, **opts
        ),
    ):
        assert np.isfinite(result.losses).all() and np.isfinite(result.gradient).all()
        assert np.all(result.losses >= 0.0)
        assert result.loss >= 0.0


@PROFILE
@given(problem=binary_problems())
def test_binary_losses_are_finite_and_non_negative(problem):
    logits, targets, opts = problem
    for result in (
        L.sigmoid_binary_cross_entropy(logits, targets, return_gradient=True, **opts),
        L.binary_cross_entropy(expit(logits), targets, return_gradient=True, **opts),
    ):
        assert np.isfinite(result.losses).all() and np.isfinite(result.gradient).all()
        # BCE of soft targets is >= 0 but not 0 at the target: nothing negative, ever.
        assert np.all(result.losses >= 0.0)


@PROFILE
@given(data=st.data(), problem=categorical_problems(), binary=binary_problems())
def test_unweighted_mean_lies_between_min_and_max(data, problem, binary):
    logits, labels, opts = problem
    opts = {"label_smoothing": opts["label_smoothing"]}
    opts.update(data.draw(focal_options(logits.shape[1])))
    result = L.softmax_cross_entropy_with_integer_labels(logits, labels, **opts)
    spread = result.losses.max() - result.losses.min()
    tol = 1e-12 * max(1.0, spread)
    assert result.losses.min() - tol <= result.loss <= result.losses.max() + tol
    z, t, bopts = binary
    bres = L.sigmoid_binary_cross_entropy(z, t, label_smoothing=bopts["label_smoothing"])
    assert bres.losses.min() - 1e-12 <= bres.loss <= bres.losses.max() + 1e-12


# --------------------------------------------------------------------------- representation


@PROFILE
@given(data=st.data(), problem=categorical_problems())
def test_float32_input_agrees_with_float64(data, problem):
    logits, labels, opts = problem
    opts.update(data.draw(focal_options(logits.shape[1])))
    x32 = logits.astype(np.float32)
    r32 = L.softmax_cross_entropy_with_integer_labels(x32, labels, return_gradient=True, **opts)
    # Computed in float64: exactly the result of the up-cast values ...
    r_up = L.softmax_cross_entropy_with_integer_labels(
        x32.astype(np.float64), labels, return_gradient=True, **opts
    )
    assert r32.losses.dtype == np.float64 and r32.gradient.dtype == np.float64
    np.testing.assert_array_equal(r32.losses, r_up.losses)
    np.testing.assert_array_equal(r32.gradient, r_up.gradient)
    # ... and within float32 rounding of the float64 input.
    r64 = L.softmax_cross_entropy_with_integer_labels(logits, labels, return_gradient=True,
                                                      **opts)
    _close(r32.loss, r64.loss, rtol=1e-5, atol=1e-6)
    _close(r32.gradient, r64.gradient, rtol=1e-4, atol=1e-5)


@PROFILE
@given(problem=binary_problems())
def test_binary_float32_input_agrees_with_float64(problem):
    logits, targets, opts = problem
    p64 = expit(logits)
    r32 = L.binary_cross_entropy(p64.astype(np.float32), targets.astype(np.float32),
                                 return_gradient=True, **opts)
    r64 = L.binary_cross_entropy(p64, targets, return_gradient=True, **opts)
    _close(r32.loss, r64.loss, rtol=1e-4, atol=1e-5)
    assert r32.gradient.dtype == np.float64


@PROFILE
@given(data=st.data(), problem=categorical_problems())
def test_memory_layout_does_not_matter(data, problem):
    logits, labels, opts = problem
    opts.update(data.draw(focal_options(logits.shape[1])))
    n, c = logits.shape
    base = L.softmax_cross_entropy_with_integer_labels(logits, labels, return_gradient=True,
                                                       **opts)
    fortran = np.asfortranarray(logits)
    # A strided view: every other row and column of a bigger array.
    big = np.zeros((2 * n, 2 * c))
    big[::2, ::2] = logits
    strided = big[::2, ::2]
    # Labels as a strided view too.
    big_labels = np.zeros(2 * n, dtype=np.int64)
    big_labels[::2] = labels
    assert not strided.flags.c_contiguous
    for x, y in ((fortran, labels), (strided, big_labels[::2])):
        other = L.softmax_cross_entropy_with_integer_labels(x, y, return_gradient=True, **opts)
        np.testing.assert_array_equal(other.losses, base.losses)
        np.testing.assert_array_equal(other.gradient, base.gradient)
        assert other.loss == base.loss


@PROFILE
@given(problem=binary_problems())
def test_binary_memory_layout_does_not_matter(problem):
    logits, targets, opts = problem
    base = L.sigmoid_binary_cross_entropy(logits, targets, return_gradient=True, **opts)
    big = np.zeros((*logits.shape[:-1], 2 * logits.shape[-1]))
    big[..., ::2] = logits
    strided = big[..., ::2]  # every other element of the last axis: a non-contiguous view
    big_t = np.zeros_like(big)
    big_t[..., ::2] = targets
    assert strided.size == 1 or not strided.flags.c_contiguous
    for x, t in ((np.asfortranarray(logits), np.asfortranarray(targets)),
                 (strided, big_t[..., ::2])):
        other = L.sigmoid_binary_cross_entropy(x, t, return_gradient=True, **opts)
        np.testing.assert_array_equal(other.losses, base.losses)
        np.testing.assert_array_equal(other.gradient, base.gradient)
