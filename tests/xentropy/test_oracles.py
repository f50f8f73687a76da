"""The oracles themselves: the libraries' documented values, and their formulas pinned.

``oracles.py`` answers for PyTorch, Keras and scikit-learn by calling them; these tests
check that those calls reproduce each library's own documented examples, and pin the
exact formulas (clipping, clamps, renormalisation, reductions, backward formulas) that
``convention=`` must reproduce, so a library upgrade that changes one shows up here first.
No xentropy import: this file runs without the convention code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.xentropy import oracles as O

RNG = np.random.default_rng(20240611)


def _close(actual, expected, rtol=1e-13):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-300)


def _softmax(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _logsig(x):
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


# ------------------------------------------------------------------------ PyTorch


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip(
        "torch", reason="PyTorch oracle not installed (pip install -e '.[dev,oracles]')"
    )


def test_pytorch_cross_entropy_literal(torch):
    # README / issue number: -log softmax([2, 1, 0.1])[0].
    expected = math.log(math.exp(2.0) + math.exp(1.0) + math.exp(0.1)) - 2.0
    a = O.pytorch_categorical(np.array([[2.0, 1.0, 0.1]]), np.array([0]), from_logits=True)
    assert a.value == pytest.approx(0.4170300162778335, rel=1e-15)
    assert a.value == pytest.approx(expected, rel=1e-15)
    # uniform logits: log C; gradient softmax - onehot.
    a = O.pytorch_categorical(np.zeros((1, 4)), np.array([2]), from_logits=True)
    assert a.value == pytest.approx(math.log(4), rel=1e-15)
    _close(a.gradient, [[0.25, 0.25, -0.75, 0.25]])


def test_pytorch_label_smoothing_with_weights_formula(torch):
    x = RNG.normal(size=(6, 4))
    y = np.array([0, 1, -100, 3, 2, 1])
    w = np.array([0.5, 2.0, 1.5, 0.7])
    eps = 0.2
    lq = x - np.log(np.exp(x).sum(1, keepdims=True))
    v = y != -100
    yy = np.where(v, y, 0)
    nll = -w[yy] * lq[np.arange(6), yy]
    smooth = -(w * lq).sum(1)
    per = np.where(v, (1 - eps) * nll + eps / 4 * smooth, 0.0)
    d = w[yy][v].sum()
    a = O.pytorch_categorical(x, y, from_logits=True, class_weights=w, label_smoothing=eps,
                              reduction="none")
    _close(a.value, per)
    a = O.pytorch_categorical(x, y, from_logits=True, class_weights=w, label_smoothing=eps)
    _close(a.value, per.sum() / d)
    q = _softmax(x)
    onehot = np.eye(4)[yy]
    g = v[:, None] * ((1 - eps) * w[yy][:, None] * (q - onehot) + eps / 4 * (q * w.sum() - w)) / d
    _close(a.gradient, g, rtol=1e-12)


def test_pytorch_probability_targets_mean_divides_by_n(torch):
    x = RNG.normal(size=(5, 3))
    t = _softmax(RNG.normal(size=(5, 3)))
    w = np.array([0.5, 2.0, 1.5])
    a = O.pytorch_categorical(x, targets=t, from_logits=True, class_weights=w)
    lq = x - np.log(np.exp(x).sum(1, keepdims=True))
    _close(a.value, -(w * t * lq).sum() / 5)
    p = _softmax(x)
    a = O.pytorch_categorical(p, targets=t, from_logits=False, class_weights=w)
    _close(a.value, -(w * t * np.log(p)).sum() / 5)
    _close(a.gradient, -w * t / p / 5)


def test_pytorch_undefined_answers(torch):
    x = RNG.normal(size=(3, 4))
    y = np.full(3, -100)
    for ls in (0.0, 0.1):
        assert math.isnan(O.pytorch_categorical(x, y, from_logits=True, label_smoothing=ls).value)
    p = _softmax(x)
    assert math.isnan(O.pytorch_categorical(p, y, from_logits=False).value)
    assert O.pytorch_categorical(p, y, from_logits=False, reduction="sum").value == 0.0
    # zero total weight of the counted samples: 0/0
    w = np.array([0.0, 0.0, 1.0, 1.0])
    assert math.isnan(O.pytorch_categorical(x, np.array([0, 1, 0]), from_logits=True,
                                            class_weights=w).value)
    # log(0): p_y = 0 gives inf; a zero elsewhere gives a NaN gradient; 0 * log 0 = NaN.
    p0 = np.array([[0.0, 0.5, 0.5]])
    assert O.pytorch_categorical(p0, np.array([0]), from_logits=False).value == math.inf
    a = O.pytorch_categorical(p0, np.array([1]), from_logits=False)
    assert a.value == pytest.approx(math.log(2), rel=1e-15)
    assert math.isnan(a.gradient[0, 0])
    assert math.isnan(O.pytorch_categorical(p0, targets=np.array([[0.0, 1.0, 0.0]]),
                                            from_logits=False).value)


def test_pytorch_bce_clamp_and_backward_formula(torch):
    p = np.concatenate([RNG.uniform(size=200), RNG.uniform(size=50) * 1e-9,
                        1 - RNG.uniform(size=50) * 1e-9, [0.0, 1.0, 1e-300, 1 - 1e-12]])
    t = RNG.uniform(size=p.size)
    t[-4:] = [1.0, 0.0, 1.0, 1.0]
    a = O.pytorch_binary(p, t, from_logits=False, reduction="none")
    with np.errstate(divide="ignore"):
        expected = -(t * np.maximum(np.log(p), -100) + (1 - t) * np.maximum(np.log1p(-p), -100))
    _close(a.value, expected)
    assert a.value[-4] == 100.0 and a.value[-3] == 100.0
    # backward: (p - t) / max((1 - p) p, EPSILON), EPSILON the C++ float 1e-12
    epsilon = float(np.float32(1e-12))
    assert epsilon == 9.999999960041972e-13
    _close(a.gradient, (p - t) / np.maximum((1 - p) * p, epsilon))
    assert a.gradient[-4] == pytest.approx(-1 / epsilon, rel=1e-15)


def test_pytorch_bce_with_logits_cancellation_form(torch):
    x = np.concatenate([RNG.normal(size=300) * 15, -RNG.uniform(10, 40, size=100)])
    t = RNG.uniform(size=x.size)
    t[::3] = 0.0
    t[1::3] = 1.0
    pw = RNG.uniform(0.5, 3.0, size=x.size)
    a = O.pytorch_binary(x, t, from_logits=True, pos_weight=pw, reduction="none")
    lw = 1 + (pw - 1) * t
    torch_form = (1 - t) * x - lw * _logsig(x)
    np.testing.assert_allclose(a.value, torch_form, rtol=1e-15, atol=1e-300)
    # the exact softplus is NOT what torch returns for t = 0, x << 0
    exact = lw * t * np.logaddexp(0, -x) + (1 - t) * np.logaddexp(0, x)
    assert np.max(np.abs(a.value - exact) / exact) > 1e-3
    # backward, in torch's own order: (pw t + 1 - t) σ(x) - pw t (cancels for t=1, x >> 0)
    sig = 1 / (1 + np.exp(-x))
    _close(a.gradient, (pw * t + 1 - t) * sig - pw * t, rtol=1e-12)


def test_torchvision_focal_literal(torch):
    # torchvision documents no number; at x = 0 every factor is known exactly:
    # p = 1/2, ce = log 2, p_t = 1/2, loss = alpha_t (1/2)^gamma log 2.
    a = O.pytorch_focal(np.zeros(2), np.array([1.0, 0.0]), focal_gamma=2.0, reduction="none")
    _close(a.value, [0.25 * 0.25 * math.log(2), 0.75 * 0.25 * math.log(2)], rtol=1e-15)
    assert a.value[0] == pytest.approx(0.04332169878499658, rel=1e-15)
    # x = 2, t = 1, gamma = 1, alpha = 0.4: 0.4 * (1 - σ(2)) * softplus(-2)
    s = 1 / (1 + math.exp(-2.0))
    a = O.pytorch_focal(np.array([2.0]), np.array([1.0]), focal_gamma=1.0, focal_alpha=0.4)
    assert a.value == pytest.approx(0.4 * (1 - s) * math.log1p(math.exp(-2.0)), rel=1e-14)


# ------------------------------------------------------------------------ Keras


@pytest.fixture(scope="module")
def keras():
    k = O.keras_or_none()
    if k is None:
        pytest.skip("Keras oracle not installed (keras + jax: pip install -e '.[dev,oracles]')")
    assert k.backend.backend() == "jax"
    assert O.keras_float32_downcast_is_off()
    return k


KERAS_DOC_CCE = (np.array([[0, 1, 0], [0, 0, 1]], dtype=float),
                 np.array([[0.05, 0.95, 0], [0.1, 0.8, 0.1]]))
KERAS_DOC_BIN = (np.array([[0, 1], [0, 0]], dtype=float),
                 np.array([[-18.6, 0.51], [2.94, -12.8]]))


def _doc(value, printed):
    """Equal to the number the Keras docstring prints, within one unit of its last printed
    digit (the docstrings truncate as often as they round), or 1e-6 relative: the printed
    values were computed in float32 (3.2058331e-05 is 3.20583090e-05 in float64)."""
    mantissa, _, exponent = printed.partition("e")
    digits = len(mantissa.split(".")[1]) if "." in mantissa else 0
    unit = 10.0 ** (-digits + (int(exponent) if exponent else 0))
    assert value == pytest.approx(float(printed), abs=max(unit, 1e-6 * abs(float(printed))))


def test_keras_categorical_doc_examples(keras):
    t, p = KERAS_DOC_CCE
    y = np.array([1, 2])
    for kind, lab in (("targets", None), ("labels", y)):
        kw = dict(targets=t) if kind == "targets" else dict(labels=lab)
        _doc(O.keras_categorical(p, from_logits=False, **kw).value, "1.177")
        _doc(O.keras_categorical(p, from_logits=False, sample_weights=np.array([0.3, 0.7]),
                                 **kw).value, "0.814")
        _doc(O.keras_categorical(p, from_logits=False, reduction="sum", **kw).value, "2.354")
        none = O.keras_categorical(p, from_logits=False, reduction="none", **kw).value
        _doc(none[0], "0.0513")
        _doc(none[1], "2.303")
    # focal (CategoricalFocalCrossentropy docstring)
    _doc(O.keras_categorical(p, targets=t, from_logits=False, focal_gamma=2.0).value,
         "0.23315276")
    _doc(O.keras_categorical(p, targets=t, from_logits=False, focal_gamma=2.0,
                             sample_weights=np.array([0.3, 0.7])).value, "0.1632")
    _doc(O.keras_categorical(p, targets=t, from_logits=False, focal_gamma=2.0,
                             reduction="sum").value, "0.46631")
    none = O.keras_categorical(p, targets=t, from_logits=False, focal_gamma=2.0,
                               reduction="none").value
    _doc(none[0], "3.2058331e-05")
    _doc(none[1], "4.6627346e-01")
    # categorical_focal_crossentropy function docstring
    none = O.keras_categorical(np.array([[0.05, 0.9, 0.05], [0.1, 0.85, 0.05]]), targets=t,
                               from_logits=False, focal_gamma=2.0, reduction="none").value
    _doc(none[0], "2.63401289e-04")
    _doc(none[1], "6.75912094e-01")


def test_keras_binary_doc_examples(keras):
    y1 = np.array([0.0, 1.0, 0.0, 0.0])
    x1 = np.array([-18.6, 0.51, 2.94, -12.8])
    t, x = KERAS_DOC_BIN
    _doc(O.keras_binary(x1, y1, from_logits=True).value, "0.8654")
    _doc(O.keras_binary(x, t, from_logits=True).value, "0.8654")
    _doc(O.keras_binary(x, t, from_logits=True, sample_weights=np.array([0.8, 0.2])).value,
         "0.243")
    _doc(O.keras_binary(x, t, from_logits=True, reduction="sum").value, "1.730")
    none = O.keras_binary(x, t, from_logits=True, reduction="none").value
    _doc(none[0], "0.235")
    _doc(none[1], "1.496")
    none = O.keras_binary(np.array([[0.6, 0.4], [0.4, 0.6]]), t, from_logits=False,
                          reduction="none").value
    _doc(none[0], "0.916")
    _doc(none[1], "0.714")
    # BinaryFocalCrossentropy docstring
    _doc(O.keras_binary(x1, y1, from_logits=True, focal_gamma=2.0).value, "0.691")
    _doc(O.keras_binary(x1, y1, from_logits=True, focal_gamma=2.0, focal_alpha=0.25).value,
         "0.51")
    _doc(O.keras_binary(x, t, from_logits=True, focal_gamma=3.0).value, "0.647")
    _doc(O.keras_binary(x, t, from_logits=True, focal_gamma=3.0, focal_alpha=0.25).value,
         "0.482")
    sw = np.array([0.8, 0.2])
    _doc(O.keras_binary(x, t, from_logits=True, focal_gamma=3.0, sample_weights=sw).value,
         "0.133")
    _doc(O.keras_binary(x, t, from_logits=True, focal_gamma=3.0, focal_alpha=0.25,
                        sample_weights=sw).value, "0.097")
    _doc(O.keras_binary(x, t, from_logits=True, focal_gamma=4.0, reduction="sum").value,
         "1.222")
    _doc(O.keras_binary(x, t, from_logits=True, focal_gamma=4.0, focal_alpha=0.25,
                        reduction="sum").value, "0.914")
    none = O.keras_binary(x, t, from_logits=True, focal_gamma=5.0, reduction="none").value
    _doc(none[0], "0.0017")
    _doc(none[1], "1.1561")
    none = O.keras_binary(x, t, from_logits=True, focal_gamma=5.0, focal_alpha=0.25,
                          reduction="none").value
    _doc(none[0], "0.0004")
    _doc(none[1], "0.8670")
    none = O.keras_binary(np.array([[0.6, 0.4], [0.4, 0.6]]), t, from_logits=False,
                          focal_gamma=2.0, reduction="none").value
    _doc(none[0], "0.330")
    _doc(none[1], "0.206")


def test_keras_categorical_formulas_float64(keras):
    """Renormalise, clip to [1e-7, 1-1e-7], smooth ε/C; gradient includes the
    renormalisation; focal clips after the softmax too; all in float64."""
    n, c = 6, 4
    x = RNG.normal(size=(n, c)) * 6  # some probabilities below 1e-7
    p = _softmax(x)
    t = _softmax(RNG.normal(size=(n, c)))
    s = RNG.uniform(0, 2, size=n)
    eps, ls = 1e-7, 0.1
    tp = t * (1 - ls) + ls / c
    r = np.clip(p / p.sum(1, keepdims=True), eps, 1 - eps)
    live = (p / p.sum(1, keepdims=True) > eps) & (p / p.sum(1, keepdims=True) < 1 - eps)
    assert not live.all()
    a = O.keras_categorical(p, targets=t, from_logits=False, label_smoothing=ls,
                            sample_weights=s)
    per = -(tp * np.log(r)).sum(1)
    _close(a.value, (per * s).sum() / n)
    grad = (-tp * live / p + (tp * live).sum(1, keepdims=True) / p.sum(1, keepdims=True))
    _close(a.gradient, grad * s[:, None] / n, rtol=1e-12)
    # focal from logits: softmax, renormalise, clip, then alpha (1-r)^gamma (-t log r)
    alpha = np.array([0.2, 0.4, 0.6, 0.8])
    a = O.keras_categorical(x, targets=t, from_logits=True, focal_gamma=1.5,
                            focal_alpha=alpha, reduction="none")
    _close(a.value, (alpha * (1 - r) ** 1.5 * -(t * np.log(r))).sum(1), rtol=1e-12)


def test_keras_ignore_class(keras):
    x = RNG.normal(size=(5, 3))
    y = np.array([0, 1, 2, 1, 1])
    s = RNG.uniform(0.5, 2, size=5)
    lq = x - np.log(np.exp(x).sum(1, keepdims=True))
    per = -lq[np.arange(5), y] * s
    valid = y != 1
    a = O.keras_categorical(x, y, from_logits=True, ignore_index=1, sample_weights=s)
    _close(a.value, per[valid].sum() / valid.sum())  # divides by the valid count
    assert (a.gradient[~valid] == 0).all()
    a = O.keras_categorical(x, y, from_logits=True, ignore_index=1, reduction="sum",
                            sample_weights=s)
    _close(a.value, per[valid].sum())
    a = O.keras_categorical(x, y, from_logits=True, ignore_index=1, reduction="none")
    assert (a.value[~valid] == 0).all()
    # all ignored: 0 under every reduction (divide_no_nan), not NaN
    for red in ("mean", "sum"):
        a = O.keras_categorical(x, np.ones(5, int), from_logits=True, ignore_index=1,
                                reduction=red)
        assert a.value == 0.0
        assert (a.gradient == 0).all()


def test_keras_binary_formulas_float64(keras):
    n, c = 5, 3
    p = RNG.uniform(size=(n, c))
    p[0, 0], p[1, 1] = 1e-9, 1 - 1e-9  # clipped
    x = RNG.normal(size=(n, c)) * 8
    t = RNG.uniform(size=(n, c))
    s = RNG.uniform(0, 2, size=n)
    eps, ls = 1e-7, 0.2
    tp = t * (1 - ls) + ls / 2
    pc = np.clip(p, eps, 1 - eps)
    e = -(tp * np.log(pc) + (1 - tp) * np.log(1 - pc))
    a = O.keras_binary(p, t, from_logits=False, label_smoothing=ls, sample_weights=s)
    _close(a.value, (e.mean(1) * s).sum() / n)
    live = (p > eps) & (p < 1 - eps)
    _close(a.gradient, live * (-tp / pc + (1 - tp) / (1 - pc)) * s[:, None] / (n * c),
           rtol=1e-12)
    # logits (JAX backend): stable log-sigmoid, no clipping
    a = O.keras_binary(x, t, from_logits=True, label_smoothing=ls, reduction="none")
    _close(a.value, (-(tp * _logsig(x) + (1 - tp) * _logsig(-x))).mean(1))
    # focal from logits: sigmoid, then the CLIPPED BCE; p_t from the unclipped sigmoid;
    # the alpha weight uses the smoothed target
    sig = 1 / (1 + np.exp(-x))
    sc = np.clip(sig, eps, 1 - eps)
    bce = -(tp * np.log(sc) + (1 - tp) * np.log(1 - sc))
    pt = tp * sig + (1 - tp) * (1 - sig)
    w = 0.3 * tp + 0.7 * (1 - tp)
    a = O.keras_binary(x, t, from_logits=True, label_smoothing=ls, focal_gamma=2.5,
                       focal_alpha=0.3, reduction="none")
    _close(a.value, (w * (1 - pt) ** 2.5 * bce).mean(1), rtol=1e-12)


def test_keras_shape_n_binary_is_n_by_1(keras):
    x = RNG.normal(size=6)
    t = RNG.uniform(size=6)
    a = O.keras_binary(x, t, from_logits=True, reduction="none")
    assert a.value.shape == (6,) and a.gradient.shape == (6,)
    _close(a.value, -(t * _logsig(x) + (1 - t) * _logsig(-x)))
    a = O.keras_binary(x, t, from_logits=True, reduction="sum")
    _close(a.value, -(t * _logsig(x) + (1 - t) * _logsig(-x)).sum())


# ------------------------------------------------------------------------ scikit-learn


def test_sklearn_docstring_example():
    pytest.importorskip("sklearn")
    p = np.array([[0.1, 0.9], [0.9, 0.1], [0.8, 0.2], [0.35, 0.65]])
    y = np.array([1, 0, 0, 1])  # "ham" = 0, "spam" = 1 (sorted)
    assert O.sklearn_value(p, y, from_logits=False) == pytest.approx(0.21616187468057912,
                                                                     rel=1e-15)
    assert O.sklearn_value(p[:, 1], y, from_logits=False) == pytest.approx(
        0.21616187468057912, rel=1e-15)
    assert round(O.sklearn_value(p, y, from_logits=False), 5) == 0.21616


def _central_difference(f, z, h):
    g = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += h
        zm[idx] -= h
        g[idx] = (f(zp) - f(zm)) / (2 * h)
    return g


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("form", ["probabilities", "logits", "binary_p", "binary_logits"])
def test_sklearn_closed_form_gradient_matches_finite_differences(form, reduction):
    pytest.importorskip("sklearn")
    n, c = 5, 3
    s = RNG.uniform(0.2, 2, size=n)
    if form.startswith("binary"):
        y = np.array([0, 1, 1, 0, 1])
        z = RNG.normal(size=n) if form == "binary_logits" else RNG.uniform(0.1, 0.9, size=n)
    else:
        y = np.array([0, 1, 2, 1, 0])
        x = RNG.normal(size=(n, c))
        z = x if form == "logits" else _softmax(x)
    logits = "logits" in form
    kw = dict(from_logits=logits, sample_weights=s, reduction=reduction)

    def f(v):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # perturbed rows do not sum to 1
            return O.sklearn_value(v, y, **kw)

    numeric = _central_difference(f, z, 1e-6)
    np.testing.assert_allclose(O.sklearn_gradient(z, y, **kw), numeric, rtol=1e-6, atol=1e-8)


def test_sklearn_clipping_and_zero_weights():
    pytest.importorskip("sklearn")
    eps = O.SKLEARN_EPSILON
    p = np.array([0.0, 1.0, 0.3])
    y = np.array([1, 1, 0])
    per = O.sklearn_value(p, y, from_logits=False, reduction="none")
    _close(per, [-math.log(eps), -math.log(1 - eps), -math.log(0.7)])
    g = O.sklearn_gradient(p, y, from_logits=False, reduction="sum")
    _close(g, [0.0, 0.0, 1 / 0.7])
    with pytest.raises(ValueError, match="non-zero"):
        O.sklearn_value(p, y, from_logits=False, sample_weights=np.zeros(3))


_NUMPY_BACKEND_SCRIPT = r"""
import json, sys
import numpy as np
import keras
from keras.src.backend.common import dtypes
keras.config.set_floatx("float64")
dtypes.BIT64_TO_BIT32_DTYPE["float64"] = "float64"  # the oracle's patch
assert keras.backend.backend() == "numpy"
d = {k: np.asarray(v) for k, v in json.loads(sys.stdin.read()).items()}
L, out = keras.losses, {}
for red in ("sum_over_batch_size", "sum", None):
    k = str(red)
    out["cce" + k] = L.CategoricalCrossentropy(label_smoothing=0.1, reduction=red)(
        d["t"], d["p"], sample_weight=d["s"])
    out["scce" + k] = L.SparseCategoricalCrossentropy(ignore_class=1, from_logits=True,
                                                      reduction=red)(d["y"], d["x"])
    out["cfce" + k] = L.CategoricalFocalCrossentropy(gamma=1.5, reduction=red)(d["t"], d["p"])
    out["bce" + k] = L.BinaryCrossentropy(reduction=red)(d["tb"], d["pb"])
    out["bcel" + k] = L.BinaryCrossentropy(from_logits=True, reduction=red)(d["tb"], d["x"])
    out["bfce" + k] = L.BinaryFocalCrossentropy(apply_class_balancing=True, from_logits=True,
                                                reduction=red)(d["tb"], d["x"])
print(json.dumps({k: np.asarray(v, dtype=np.float64).tolist() for k, v in out.items()}))
"""


def test_keras_numpy_backend_agrees_with_the_jax_oracle(keras):
    """Why JAX and not KERAS_BACKEND=numpy: with the same patch, Keras' NumPy backend gives
    the JAX oracle's numbers (≤ 1e-15) for every loss, except BCE from logits once the
    sigmoid saturates: NumPy clips sigmoid(x) to [1e-7, 1 − 1e-7] there (JAX, TF and torch
    use a stable log-sigmoid). And it has no gradients."""
    import json
    import os
    import subprocess
    import sys

    x = RNG.normal(size=(6, 4)) * 3
    x[0, :2] = [25.0, -30.0]  # saturated sigmoid
    y = np.array([0, 1, 2, 3, 1, 1])
    p, t = _softmax(x), _softmax(RNG.normal(size=(6, 4)))
    tb, pb, s = RNG.uniform(size=(6, 4)), RNG.uniform(0.01, 0.99, size=(6, 4)), RNG.uniform(
        0, 2, size=6)
    data = {"x": x, "y": y, "p": p, "t": t, "tb": tb, "pb": pb, "s": s}
    env = {**os.environ, "KERAS_BACKEND": "numpy"}
    run = subprocess.run(
        [sys.executable, "-c", _NUMPY_BACKEND_SCRIPT], input=json.dumps(
            {k: v.tolist() for k, v in data.items()}), env=env, capture_output=True,
        text=True, timeout=300, check=True,
    )
    got = json.loads(run.stdout.strip().splitlines()[-1])
    for ours, red in (("mean", "sum_over_batch_size"), ("sum", "sum"), ("none", "None")):
        _close(got["cce" + red], O.keras_categorical(p, targets=t, from_logits=False,
                                                     label_smoothing=0.1, sample_weights=s,
                                                     reduction=ours).value, rtol=1e-15)
        _close(got["scce" + red], O.keras_categorical(x, y, from_logits=True, ignore_index=1,
                                                      reduction=ours).value, rtol=1e-15)
        _close(got["cfce" + red], O.keras_categorical(p, targets=t, from_logits=False,
                                                      focal_gamma=1.5, reduction=ours).value,
               rtol=1e-15)
        _close(got["bce" + red], O.keras_binary(pb, tb, from_logits=False,
                                                reduction=ours).value, rtol=1e-15)
        _close(got["bfce" + red], O.keras_binary(x, tb, from_logits=True, focal_gamma=2.0,
                                                 focal_alpha=0.25, reduction=ours).value,
               rtol=1e-15)
    bcel = np.array(got["bcelNone"])
    ref = O.keras_binary(x, tb, from_logits=True, reduction="none").value
    _close(bcel[1:], ref[1:], rtol=1e-15)  # unsaturated rows agree
    sig = np.clip(1 / (1 + np.exp(-x[0])), 1e-7, 1 - 1e-7)  # the NumPy backend's row 0
    _close(bcel[0], np.mean(-(tb[0] * np.log(sig) + (1 - tb[0]) * np.log(1 - sig))),
           rtol=1e-14)
    assert abs(bcel[0] - ref[0]) / ref[0] > 1e-3
