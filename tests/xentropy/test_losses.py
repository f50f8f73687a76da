"""The loss core (xentropy/losses.py) against oracles that are not our code.

* literal values documented by Keras (rounded there, hence the 1e-3 tolerance);
* scikit-learn's ``log_loss``;
* textbook formulas written here with SciPy (``log_softmax``, ``log_expit``, ``xlogy``),
  one sample at a time, for every weight, smoothing, focal and reduction option;
* central finite differences for every gradient;
* extreme inputs, and every class of invalid input.

PyTorch reference vectors are in test_pytorch_vectors.py, randomised properties in
test_losses_properties.py.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.special import expit, log_expit, log_softmax, logsumexp, softmax, xlogy
from sklearn.metrics import log_loss

from xentropy import losses as L
from xentropy._validation import InputError

EPS = float(np.finfo(np.float64).eps)
LN2 = math.log(2.0)

CATEGORICAL_FUNCTIONS = [
    L.softmax_cross_entropy_with_integer_labels,
    L.softmax_cross_entropy,
    L.categorical_cross_entropy_with_integer_labels,
    L.categorical_cross_entropy,
]
BINARY_FUNCTIONS = [L.sigmoid_binary_cross_entropy, L.binary_cross_entropy]
ALL_FUNCTIONS = CATEGORICAL_FUNCTIONS + BINARY_FUNCTIONS


def _name(fn) -> str:
    return fn.__name__


def _from_logits(fn) -> bool:
    return fn.__name__.startswith(("softmax", "sigmoid"))


def _with_labels(fn) -> bool:
    return fn.__name__.endswith("integer_labels")


def reduced(result) -> float:
    """What ``gradient`` differentiates: the loss, or the sum of losses for "none"."""
    return float(result.losses.sum()) if result.loss is None else float(result.loss)


def numeric_gradient(f, x: np.ndarray, *, step: float, relative: bool) -> np.ndarray:
    """Central differences of the scalar function ``f`` at ``x``, one entry at a time."""
    grad = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        h = step * max(1.0, abs(x[idx])) if relative else step
        up, down = x.copy(), x.copy()
        up[idx] += h
        down[idx] -= h
        grad[idx] = (f(up) - f(down)) / (2.0 * h)
    return grad


def assert_gradient_matches_finite_differences(fn, x, y, opts):
    result = fn(x, y, return_gradient=True, **opts)
    assert result.gradient is not None and result.gradient.shape == x.shape
    # Logits: relative step 1e-6. Probabilities: step 1e-7 keeps every perturbed row within
    # the 1e-6 row-sum tolerance, so the loss is evaluated through the public function at
    # points off the simplex (the gradient is the plain partial derivative).
    numeric = numeric_gradient(
        lambda v: reduced(fn(v, y, **opts)), x,
        step=1e-6 if _from_logits(fn) else 1e-7, relative=_from_logits(fn),
    )
    np.testing.assert_allclose(result.gradient, numeric, rtol=1e-6, atol=1e-8)
    return result


# --------------------------------------------------------------------------- oracles
#
# Written from the definitions, one sample (or element) at a time, sharing no code with
# the core: PyTorch semantics for weights, ignore_index and label smoothing; Keras /
# torchvision for focal loss; the contract's denominators for "mean".


def oracle_categorical(
    x, *, from_logits, labels=None, targets=None, class_weights=None, sample_weights=None,
    ignore_index=None, label_smoothing=0.0, focal_gamma=0.0, focal_alpha=None, epsilon=EPS,
):
    """Per-sample losses and the two possible denominators of "mean".

    loss_i = s_i Σ_c α_c w_c t'_c (1 - p_c)^γ (-log p_c), t' = (1 - ε) t + ε / C;
    weights denominator Σ_i s_i Σ_c t_ic w_c, samples denominator: counted samples.
    """
    x = np.asarray(x, dtype=np.float64)
    n, c = x.shape
    if from_logits:
        log_p = log_softmax(x, axis=1)
        p = np.exp(log_p)
    else:
        p = np.clip(x, epsilon, 1.0 - epsilon)
        log_p = np.log(p)
    w = np.ones(c) if class_weights is None else np.asarray(class_weights, dtype=float)
    s = np.ones(n) if sample_weights is None else np.asarray(sample_weights, dtype=float)
    if focal_alpha is None:
        alpha = np.ones(c)
    else:
        alpha = np.broadcast_to(np.asarray(focal_alpha, dtype=float), (c,))
    losses = np.zeros(n)
    weight_sum = 0.0
    n_counted = 0
    for i in range(n):
        if labels is not None:
            if ignore_index is not None and labels[i] == ignore_index:
                continue
            t = np.zeros(c)
            t[labels[i]] = 1.0
        else:
            t = np.asarray(targets[i], dtype=float)
        smoothed = (1.0 - label_smoothing) * t + label_smoothing / c
        total = 0.0
        for k in range(c):
            total += alpha[k] * w[k] * smoothed[k] * (1.0 - p[i, k]) ** focal_gamma * -log_p[i, k]
        losses[i] = s[i] * total
        weight_sum += s[i] * float(t @ w)
        n_counted += 1
    return losses, weight_sum, n_counted


def oracle_binary(
    x, t, *, from_logits, pos_weight=None, class_weights=None, sample_weights=None, mask=None,
    label_smoothing=0.0, focal_gamma=0.0, focal_alpha=None, epsilon=EPS,
):
    """Per-element losses and the two denominators of "mean" (RetinaNet focal loss)."""
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    ts = t * (1.0 - label_smoothing) + label_smoothing / 2.0
    if from_logits:
        p = expit(x)
        log_p, log_1mp = log_expit(x), log_expit(-x)
    else:
        p = np.clip(x, epsilon, 1.0 - epsilon)
        log_p, log_1mp = np.log(p), np.log(1.0 - p)
    pw = 1.0 if pos_weight is None else np.asarray(pos_weight, dtype=float)
    bce = -(pw * ts * log_p + (1.0 - ts) * log_1mp)
    p_t = ts * p + (1.0 - ts) * (1.0 - p)
    if focal_alpha is None:
        alpha_t = 1.0
    else:
        alpha_t = focal_alpha * ts + (1.0 - np.asarray(focal_alpha)) * (1.0 - ts)
    element = alpha_t * (1.0 - p_t) ** focal_gamma * bce
    weight = np.ones(x.shape)
    if sample_weights is not None:
        s = np.asarray(sample_weights, dtype=float)
        weight = weight * (s[:, None] if x.ndim == 2 else s)
    if class_weights is not None:
        weight = weight * np.asarray(class_weights, dtype=float)
    m = np.ones(x.shape) if mask is None else np.asarray(mask, dtype=float)
    weight = weight * m
    return weight * element, float(weight.sum()), int(m.sum())


def _oracle_options(opts):
    """The options the oracles take (reduction, normalization and units are applied later)."""
    return {k: v for k, v in opts.items() if k not in ("reduction", "normalization", "units")}


def check_against_oracle(result, losses, weight_sum, n_counted, *, reduction, normalization,
                         units="nats", rtol=1e-10):
    scale = 1.0 / LN2 if units == "bits" else 1.0
    np.testing.assert_allclose(result.losses, losses * scale, rtol=rtol, atol=1e-300)
    denominator = weight_sum if normalization == "weights" else n_counted
    assert result.weight_sum == pytest.approx(denominator, rel=1e-12)
    if reduction == "none":
        assert result.loss is None
    elif reduction == "sum":
        assert result.loss == pytest.approx(losses.sum() * scale, rel=rtol)
    else:
        assert result.loss == pytest.approx(losses.sum() / denominator * scale, rel=rtol)


# --------------------------------------------------------------------------- data


def _categorical_data(seed: int, n: int = 6, c: int = 4):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, c))
    # Probabilities from moderate logits: every entry well inside (eps, 1 - eps), so that
    # finite-difference steps of 1e-7 never cross the clipping boundary.
    probabilities = softmax(rng.normal(size=(n, c)), axis=1)
    labels = rng.integers(0, c, size=n)
    targets = rng.dirichlet(np.ones(c), size=n)
    targets[0] = np.eye(c)[labels[0]]  # a one-hot row among the soft ones
    return rng, logits, probabilities, labels, targets


def _binary_data(seed: int, shape: tuple[int, ...]):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=shape)
    probabilities = rng.uniform(0.02, 0.98, size=shape)
    soft = rng.uniform(0.0, 1.0, size=shape)
    hard = (rng.uniform(size=shape) < 0.5).astype(float)
    return rng, logits, probabilities, soft, hard


# --------------------------------------------------------------------------- literal values


class TestDocumentedValues:
    """Examples from the Keras documentation (values there are rounded to ~3 digits)."""

    Y = np.array([[0.0, 1.0], [0.0, 0.0]])
    P = np.array([[0.6, 0.4], [0.4, 0.6]])

    def test_keras_binary_crossentropy_mean(self):
        assert L.binary_cross_entropy(self.P, self.Y).loss == pytest.approx(0.815, abs=1e-3)

    def test_keras_binary_crossentropy_sample_weight(self):
        # Keras sum_over_batch_size: the zero-weight sample still counts.
        result = L.binary_cross_entropy(
            self.P, self.Y, sample_weights=[1.0, 0.0], normalization="samples"
        )
        assert result.loss == pytest.approx(0.458, abs=1e-3)

    def test_keras_binary_crossentropy_none(self):
        result = L.binary_cross_entropy(self.P, self.Y, reduction="none")
        assert result.loss is None
        assert result.losses.shape == (2, 2)
        np.testing.assert_allclose(result.losses.mean(axis=1), [0.916, 0.714], atol=1e-3)

    def test_keras_binary_crossentropy_from_logits(self):
        result = L.sigmoid_binary_cross_entropy(
            np.array([-18.6, 0.51, 2.94, -12.8]), np.array([0.0, 1.0, 0.0, 0.0])
        )
        assert result.loss == pytest.approx(0.865, abs=1e-3)

    def test_keras_binary_focal_crossentropy_from_logits(self):
        z, y = np.array([-18.6, 0.51, 2.94, -12.8]), np.array([0.0, 1.0, 0.0, 0.0])
        plain = L.sigmoid_binary_cross_entropy(z, y, focal_gamma=2.0)
        assert plain.loss == pytest.approx(0.691, abs=1e-3)
        balanced = L.sigmoid_binary_cross_entropy(z, y, focal_gamma=2.0, focal_alpha=0.25)
        assert balanced.loss == pytest.approx(0.51, abs=1e-3)

    YC = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    PC = np.array([[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]])

    def test_keras_categorical_crossentropy(self):
        assert L.categorical_cross_entropy(self.PC, self.YC).loss == pytest.approx(1.177, abs=1e-3)
        sparse = L.categorical_cross_entropy_with_integer_labels(self.PC, [1, 2])
        assert sparse.loss == pytest.approx(1.177, abs=1e-3)
        weighted = L.categorical_cross_entropy(
            self.PC, self.YC, sample_weights=[0.3, 0.7], normalization="samples"
        )
        assert weighted.loss == pytest.approx(0.814, abs=1e-3)
        summed = L.categorical_cross_entropy(self.PC, self.YC, reduction="sum")
        assert summed.loss == pytest.approx(2.354, abs=1e-3)
        none = L.categorical_cross_entropy(self.PC, self.YC, reduction="none")
        np.testing.assert_allclose(none.losses, [0.0513, 2.303], atol=1e-3)

    def test_keras_categorical_focal_crossentropy(self):
        # Keras defaults: alpha 0.25, gamma 2.
        opts = {"focal_gamma": 2.0, "focal_alpha": 0.25}
        mean = L.categorical_cross_entropy(self.PC, self.YC, **opts)
        assert mean.loss == pytest.approx(0.23315276, abs=1e-6)
        weighted = L.categorical_cross_entropy(
            self.PC, self.YC, sample_weights=[0.3, 0.7], normalization="samples", **opts
        )
        assert weighted.loss == pytest.approx(0.1632, abs=1e-4)
        summed = L.categorical_cross_entropy(self.PC, self.YC, reduction="sum", **opts)
        assert summed.loss == pytest.approx(0.46631, abs=1e-5)
        none = L.categorical_cross_entropy(self.PC, self.YC, reduction="none", **opts)
        np.testing.assert_allclose(none.losses, [3.2058331e-05, 4.6627346e-01], rtol=1e-6)

    def test_bits_of_a_single_prediction(self):
        result = L.categorical_cross_entropy_with_integer_labels(
            np.array([[0.775, 0.116, 0.039, 0.070]]), [0], units="bits"
        )
        assert result.loss == pytest.approx(0.3677, abs=1e-4)
        assert result.units == "bits"


# --------------------------------------------------------------------------- scikit-learn


@pytest.mark.parametrize("seed", range(4))
def test_sparse_probabilities_match_sklearn_log_loss(seed):
    rng, _, probabilities, labels, _ = _categorical_data(seed, n=30, c=5)
    labels[:3] = 0  # class 4 may be absent: labels= fixes the class set
    weights = rng.uniform(0.0, 3.0, size=30)
    ours = L.categorical_cross_entropy_with_integer_labels(probabilities, labels)
    assert ours.loss == pytest.approx(
        log_loss(labels, probabilities, labels=list(range(5))), rel=1e-12
    )
    ours_w = L.categorical_cross_entropy_with_integer_labels(
        probabilities, labels, sample_weights=weights
    )
    assert ours_w.loss == pytest.approx(
        log_loss(labels, probabilities, sample_weight=weights, labels=list(range(5))), rel=1e-12
    )
    assert ours_w.weight_sum == pytest.approx(weights.sum(), rel=1e-14)


def test_sklearn_log_loss_with_a_class_never_seen():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.2, 0.2, 0.6]])
    labels = np.array([0, 1, 1])
    ours = L.categorical_cross_entropy_with_integer_labels(probabilities, labels)
    assert ours.loss == pytest.approx(log_loss(labels, probabilities, labels=[0, 1, 2]), rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_binary_probabilities_match_sklearn_log_loss(seed):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.001, 0.999, size=25)
    y = (rng.uniform(size=25) < 0.4).astype(float)
    weights = rng.uniform(0.0, 2.0, size=25)
    assert L.binary_cross_entropy(p, y).loss == pytest.approx(
        log_loss(y, p, labels=[0, 1]), rel=1e-12
    )
    assert L.binary_cross_entropy(p, y, sample_weights=weights).loss == pytest.approx(
        log_loss(y, p, sample_weight=weights, labels=[0, 1]), rel=1e-12
    )
    # The logits path, through the logit of the same probabilities.
    z = np.log(p) - np.log1p(-p)
    assert L.sigmoid_binary_cross_entropy(z, y, sample_weights=weights).loss == pytest.approx(
        log_loss(y, p, sample_weight=weights, labels=[0, 1]), rel=1e-9
    )


def test_sklearn_clips_exact_zero_and_one_like_us():
    probabilities = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    labels = np.array([0, 0])
    ours = L.categorical_cross_entropy_with_integer_labels(probabilities, labels)
    assert ours.loss == pytest.approx(log_loss(labels, probabilities, labels=[0, 1, 2]), rel=1e-12)


# --------------------------------------------------------------------------- formulas


def _categorical_option_sets(rng, n, c):
    """(id, options, uses_ignore_index): a broad set of option combinations."""
    w = rng.uniform(0.3, 2.5, size=c)
    s = rng.uniform(0.0, 2.0, size=n)
    s[2] = 0.0
    a = rng.uniform(0.1, 1.0, size=c)
    return [
        ("plain", {}, False),
        ("class_weights", {"class_weights": w}, False),
        ("sample_weights", {"sample_weights": s}, False),
        ("ignore_index", {"ignore_index": -100}, True),
        ("ignore_index_in_range", {"ignore_index": 1}, True),
        ("smoothing", {"label_smoothing": 0.15}, False),
        ("weights_ignore_smoothing", {
            "class_weights": w, "sample_weights": s, "ignore_index": -100,
            "label_smoothing": 0.2}, True),
        ("focal_gamma2", {"focal_gamma": 2.0}, False),
        ("focal_gamma0.5_alpha0.25", {"focal_gamma": 0.5, "focal_alpha": 0.25}, False),
        ("focal_gamma1.7_alpha_per_class_weights_smoothing", {
            "focal_gamma": 1.7, "focal_alpha": a, "class_weights": w, "label_smoothing": 0.1},
         False),
        ("focal_alpha_only", {"focal_alpha": a}, False),
        ("focal_gamma0.3_ignore_sample_weights", {
            "focal_gamma": 0.3, "ignore_index": -100, "sample_weights": s}, True),
        ("sum_class_weights", {"reduction": "sum", "class_weights": w}, False),
        ("none_smoothing_sample_weights", {
            "reduction": "none", "label_smoothing": 0.3, "sample_weights": s}, False),
        ("none_focal", {"reduction": "none", "focal_gamma": 2.5, "focal_alpha": a}, False),
        ("samples_normalization", {
            "normalization": "samples", "sample_weights": s, "class_weights": w}, False),
        ("samples_normalization_ignore", {
            "normalization": "samples", "ignore_index": -100, "label_smoothing": 0.05}, True),
        ("bits", {"units": "bits", "label_smoothing": 0.1, "class_weights": w}, False),
        ("bits_focal_sum", {"units": "bits", "focal_gamma": 1.0, "reduction": "sum"}, False),
    ]


_CAT_SETS = _categorical_option_sets(np.random.default_rng(0), 6, 4)
# ignore_index applies to integer labels only.
CATEGORICAL_CASES = [
    (fn, option_id)
    for fn in CATEGORICAL_FUNCTIONS
    for option_id, _, uses_ignore in _CAT_SETS
    if _with_labels(fn) or not uses_ignore
]
CATEGORICAL_IDS = [f"{fn.__name__}-{option_id}" for fn, option_id in CATEGORICAL_CASES]


def _categorical_case(fn, option_id, seed=0):
    rng, logits, probabilities, labels, targets = _categorical_data(seed)
    cases = {k: (o, ig) for k, o, ig in _categorical_option_sets(rng, *logits.shape)}
    opts, uses_ignore = cases[option_id]
    assert _with_labels(fn) or not uses_ignore
    opts = dict(opts)
    labels = labels.copy()
    if "ignore_index" in opts:
        labels[[1, 4]] = opts["ignore_index"]
    x = logits if _from_logits(fn) else probabilities
    y = labels if _with_labels(fn) else targets
    return x, y, opts


@pytest.mark.parametrize(("fn", "option_id"), CATEGORICAL_CASES, ids=CATEGORICAL_IDS)
def test_categorical_matches_formula(fn, option_id):
    x, y, opts = _categorical_case(fn, option_id)
    result = fn(x, y, **opts)
    oracle_opts = _oracle_options(opts)
    if _with_labels(fn):
        oracle_opts["labels"] = y
    else:
        oracle_opts["targets"] = y
    losses, weight_sum, n_counted = oracle_categorical(
        x, from_logits=_from_logits(fn), **oracle_opts
    )
    check_against_oracle(
        result, losses, weight_sum, n_counted, reduction=opts.get("reduction", "mean"),
        normalization=opts.get("normalization", "weights"), units=opts.get("units", "nats"),
    )
    if "ignore_index" in opts:
        ignored = y == opts["ignore_index"]
        assert ignored[[1, 4]].all()
        assert result.n_ignored == int(ignored.sum())
        assert np.all(result.losses[ignored] == 0.0)
    else:
        assert result.n_ignored == 0
    assert (result.n_samples, result.n_classes) == x.shape


def test_pytorch_weighted_smoothing_closed_form():
    """PyTorch: loss_i = (1-ε) w_y (-log p_y) + ε/C Σ_c w_c (-log p_c); mean / Σ w_y."""
    rng = np.random.default_rng(7)
    z = rng.normal(size=(5, 3))
    y = np.array([0, 2, -100, 1, 2])
    w = np.array([0.5, 2.0, 1.5])
    eps = 0.25
    log_p = z - logsumexp(z, axis=1, keepdims=True)
    keep = y != -100
    yk = y[keep]
    per = (1 - eps) * w[yk] * -log_p[keep, yk] + eps / 3 * -(log_p[keep] @ w)
    expected = per.sum() / w[yk].sum()
    result = L.softmax_cross_entropy_with_integer_labels(
        z, y, class_weights=w, ignore_index=-100, label_smoothing=eps
    )
    assert result.loss == pytest.approx(expected, rel=1e-12)
    assert result.weight_sum == pytest.approx(w[yk].sum(), rel=1e-15)


def test_soft_targets_with_class_weights_use_the_contract_denominator():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(4, 3))
    t = rng.dirichlet(np.ones(3), size=4)
    w = np.array([0.2, 1.0, 3.0])
    s = np.array([1.0, 0.5, 2.0, 0.0])
    per = s * -(xlogy(t * w, softmax(z, axis=1))).sum(axis=1)
    denominator = float(s @ (t @ w))
    result = L.softmax_cross_entropy(z, t, class_weights=w, sample_weights=s)
    assert result.weight_sum == pytest.approx(denominator, rel=1e-14)
    assert result.loss == pytest.approx(per.sum() / denominator, rel=1e-12)
    np.testing.assert_allclose(result.losses, per, rtol=1e-12)


def test_one_hot_targets_with_class_weights_equal_labels():
    """For one-hot rows the contract's soft-target denominator equals the labels case."""
    rng = np.random.default_rng(4)
    z = rng.normal(size=(6, 4))
    y = rng.integers(0, 4, size=6)
    w = rng.uniform(0.1, 3.0, size=4)
    by_labels = L.softmax_cross_entropy_with_integer_labels(z, y, class_weights=w)
    by_targets = L.softmax_cross_entropy(z, np.eye(4)[y], class_weights=w)
    assert by_targets.loss == pytest.approx(by_labels.loss, rel=1e-14)
    assert by_targets.weight_sum == pytest.approx(w[y].sum(), rel=1e-14)


def test_samples_normalization_is_keras_sum_over_batch_size():
    z = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, -0.5]])
    y = np.array([0, 1, 0, -1])
    s = np.array([2.0, 0.0, 1.0, 5.0])
    per = s[:3] * -log_softmax(z[:3], axis=1)[np.arange(3), y[:3]]
    result = L.softmax_cross_entropy_with_integer_labels(
        z, y, sample_weights=s, ignore_index=-1, normalization="samples"
    )
    # Three counted samples (the zero-weight one included, the ignored one not).
    assert result.weight_sum == 3.0
    assert result.loss == pytest.approx(per.sum() / 3.0, rel=1e-14)


def _binary_option_sets(rng, shape):
    n = shape[0]
    s = rng.uniform(0.0, 2.0, size=n)
    s[1] = 0.0
    mask = (rng.uniform(size=shape) < 0.75).astype(float)
    sets = [
        ("plain", {}),
        ("pos_weight", {"pos_weight": 2.5}),
        ("sample_weights", {"sample_weights": s}),
        ("mask", {"mask": mask}),
        ("smoothing", {"label_smoothing": 0.2}),
        ("focal_gamma2", {"focal_gamma": 2.0}),
        ("focal_gamma0.5_alpha0.25", {"focal_gamma": 0.5, "focal_alpha": 0.25}),
        ("focal_alpha_only", {"focal_alpha": 0.7}),
        ("focal_pos_weight_smoothing_mask", {
            "focal_gamma": 1.3, "focal_alpha": 0.4, "pos_weight": 3.0, "label_smoothing": 0.1,
            "mask": mask}),
        ("sum_sample_weights", {"reduction": "sum", "sample_weights": s}),
        ("none_focal", {"reduction": "none", "focal_gamma": 2.5, "pos_weight": 0.5}),
        ("samples_normalization", {
            "normalization": "samples", "sample_weights": s, "mask": mask}),
        ("bits", {"units": "bits", "label_smoothing": 0.05, "focal_gamma": 0.7}),
    ]
    if len(shape) == 2:
        c = shape[1]
        pw = rng.uniform(0.2, 3.0, size=c)
        cw = rng.uniform(0.2, 3.0, size=c)
        alpha = rng.uniform(0.1, 0.9, size=c)
        sets += [
            ("pos_weight_per_column", {"pos_weight": pw}),
            ("class_weights", {"class_weights": cw}),
            ("per_column_everything", {
                "pos_weight": pw, "class_weights": cw, "focal_gamma": 2.0, "focal_alpha": alpha,
                "sample_weights": s, "mask": mask}),
            ("per_column_samples_sum", {
                "class_weights": cw, "reduction": "sum", "normalization": "samples"}),
        ]
    return sets


_BIN_1D_IDS = [k for k, _ in _binary_option_sets(np.random.default_rng(0), (7,))]
_BIN_2D_IDS = [k for k, _ in _binary_option_sets(np.random.default_rng(0), (5, 3))]
BINARY_CASES = [((7,), k) for k in _BIN_1D_IDS] + [((5, 3), k) for k in _BIN_2D_IDS]


def _binary_case(fn, shape, option_id, soft, seed=1):
    rng, logits, probabilities, soft_t, hard_t = _binary_data(seed, shape)
    opts = dict(_binary_option_sets(rng, shape))[option_id]
    x = logits if _from_logits(fn) else probabilities
    return x, (soft_t if soft else hard_t), dict(opts)


@pytest.mark.parametrize("soft", [True, False], ids=["soft", "hard"])
@pytest.mark.parametrize(("shape", "option_id"), BINARY_CASES,
                         ids=[f"{len(s)}d-{k}" for s, k in BINARY_CASES])
@pytest.mark.parametrize("fn", BINARY_FUNCTIONS, ids=_name)
def test_binary_matches_formula(fn, shape, option_id, soft):
    x, t, opts = _binary_case(fn, shape, option_id, soft)
    result = fn(x, t, **opts)
    losses, weight_sum, n_counted = oracle_binary(
        x, t, from_logits=_from_logits(fn), **_oracle_options(opts)
    )
    check_against_oracle(
        result, losses, weight_sum, n_counted, reduction=opts.get("reduction", "mean"),
        normalization=opts.get("normalization", "weights"), units=opts.get("units", "nats"),
        rtol=1e-9,
    )
    assert result.losses.shape == shape
    assert result.n_classes == (shape[1] if len(shape) == 2 else 1)
    mask = opts.get("mask")
    assert result.n_ignored == (0 if mask is None else int((mask == 0).sum()))
    if mask is not None:
        assert np.all(result.losses[mask == 0] == 0.0)


def test_binary_pos_weight_closed_form():
    z = np.array([[0.3, -1.2], [2.0, 0.1]])
    t = np.array([[1.0, 0.0], [0.25, 1.0]])
    pw = np.array([3.0, 0.5])
    per = -(pw * t * np.log(expit(z)) + (1 - t) * np.log(expit(-z)))
    result = L.sigmoid_binary_cross_entropy(z, t, pos_weight=pw)
    # pos_weight does not enter the denominator: the mean is over the 4 elements.
    assert result.weight_sum == 4.0
    assert result.loss == pytest.approx(per.mean(), rel=1e-13)


def test_binary_label_smoothing_moves_targets_toward_half():
    p = np.array([0.9, 0.2, 0.6])
    t = np.array([1.0, 0.0, 1.0])
    eps = 0.3
    smoothed = t * (1 - eps) + eps / 2  # 0.85, 0.15, 0.85
    expected = -(xlogy(smoothed, p) + xlogy(1 - smoothed, 1 - p))
    result = L.binary_cross_entropy(p, t, label_smoothing=eps, reduction="none")
    np.testing.assert_allclose(result.losses, expected, rtol=1e-13)


def test_binary_focal_soft_targets_closed_form():
    """torchvision sigmoid_focal_loss / Keras: α_t (1 - p_t)^γ BCE, soft targets included."""
    z = np.array([-1.5, 0.2, 3.0, 0.7])
    t = np.array([0.3, 1.0, 0.0, 0.8])
    gamma, alpha = 1.5, 0.25
    p = expit(z)
    ce = -(t * log_expit(z) + (1 - t) * log_expit(-z))
    p_t = p * t + (1 - p) * (1 - t)
    alpha_t = alpha * t + (1 - alpha) * (1 - t)
    expected = alpha_t * (1 - p_t) ** gamma * ce
    result = L.sigmoid_binary_cross_entropy(
        z, t, focal_gamma=gamma, focal_alpha=alpha, reduction="none"
    )
    np.testing.assert_allclose(result.losses, expected, rtol=1e-12)


def test_categorical_focal_closed_form():
    z = np.array([[1.0, -0.5, 2.0], [0.0, 0.3, -1.0]])
    t = np.array([[0.1, 0.2, 0.7], [1.0, 0.0, 0.0]])
    alpha = np.array([0.5, 1.0, 2.0])
    gamma = 2.5
    p = softmax(z, axis=1)
    expected = -(alpha * t * (1 - p) ** gamma * np.log(p)).sum(axis=1)
    result = L.softmax_cross_entropy(
        z, t, focal_gamma=gamma, focal_alpha=alpha, reduction="none"
    )
    np.testing.assert_allclose(result.losses, expected, rtol=1e-12)


@pytest.mark.parametrize("fn", ALL_FUNCTIONS, ids=_name)
def test_bits_are_nats_over_ln2(fn):
    if fn in CATEGORICAL_FUNCTIONS:
        x, y, _ = _categorical_case(fn, "plain", seed=5)
        opts = {"label_smoothing": 0.1, "focal_gamma": 1.5}
    else:
        x, y, _ = _binary_case(fn, (4, 3), "plain", soft=True, seed=5)
        opts = {"pos_weight": 2.0, "focal_gamma": 1.5}
    nats = fn(x, y, return_gradient=True, **opts)
    bits = fn(x, y, return_gradient=True, units="bits", **opts)
    assert bits.units == "bits" and nats.units == "nats"
    assert bits.loss == pytest.approx(nats.loss / LN2, rel=1e-14)
    np.testing.assert_allclose(bits.losses, nats.losses / LN2, rtol=1e-14)
    np.testing.assert_allclose(bits.gradient, nats.gradient / LN2, rtol=1e-14)
    assert bits.weight_sum == nats.weight_sum


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize(("fn", "option_id"), CATEGORICAL_CASES, ids=CATEGORICAL_IDS)
def test_categorical_gradient_matches_finite_differences(fn, option_id):
    x, y, opts = _categorical_case(fn, option_id, seed=11)
    result = assert_gradient_matches_finite_differences(fn, x, y, opts)
    if "ignore_index" in opts:
        assert np.all(result.gradient[[1, 4]] == 0.0)
    assert np.abs(result.gradient).max() > 1e-3  # not trivially zero


@pytest.mark.parametrize("soft", [True, False], ids=["soft", "hard"])
@pytest.mark.parametrize(("shape", "option_id"), BINARY_CASES,
                         ids=[f"{len(s)}d-{k}" for s, k in BINARY_CASES])
@pytest.mark.parametrize("fn", BINARY_FUNCTIONS, ids=_name)
def test_binary_gradient_matches_finite_differences(fn, shape, option_id, soft):
    x, t, opts = _binary_case(fn, shape, option_id, soft, seed=12)
    result = assert_gradient_matches_finite_differences(fn, x, t, opts)
    if "mask" in opts:
        assert np.all(result.gradient[opts["mask"] == 0] == 0.0)
    assert np.abs(result.gradient).max() > 1e-3


@pytest.mark.parametrize("gamma", [0.0, 0.25, 1.0, 2.0, 3.7])
def test_focal_gradients_near_certainty(gamma):
    """Focal terms near p = 1, where 1 - p is tiny and (1 - p)^(γ-1) is huge for γ < 1."""
    z = np.array([[9.0, -3.0, 0.0], [0.0, 12.0, -1.0]])
    y = np.array([0, 1])
    t = np.array([1.0, 0.0, 1.0, 0.0])
    zb = np.array([9.0, -7.0, 11.5, -12.0])
    for fn, x, target in [
        (L.softmax_cross_entropy_with_integer_labels, z, y),
        (L.sigmoid_binary_cross_entropy, zb, t),
    ]:
        assert_gradient_matches_finite_differences(
            fn, x, target, {"focal_gamma": gamma, "focal_alpha": 0.3, "reduction": "sum"}
        )


@pytest.mark.parametrize("fn", [L.categorical_cross_entropy_with_integer_labels,
                                L.categorical_cross_entropy, L.binary_cross_entropy], ids=_name)
@pytest.mark.parametrize("focal_gamma", [0.0, 2.0])
def test_clipped_probabilities_have_exactly_zero_gradient(fn, focal_gamma):
    eps = 0.01
    # 0.004 < eps and 0.9951 > 1 - eps are clipped, and stay clipped within a 1e-7 step.
    x2 = np.array([[0.004, 0.3, 0.696], [0.0048, 0.9951, 0.0001], [0.2, 0.5, 0.3]])
    opts = {"epsilon": eps, "focal_gamma": focal_gamma, "label_smoothing": 0.1}
    if fn is L.binary_cross_entropy:
        x, y = x2, np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.5], [1.0, 1.0, 0.0]])
    elif _with_labels(fn):
        x, y = x2, np.array([0, 1, 2])
    else:
        x, y = x2, np.array([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.2, 0.3, 0.5]])
    clipped = (x < eps) | (x > 1 - eps)
    result = assert_gradient_matches_finite_differences(fn, x, y, opts)
    assert result.n_clipped == int(clipped.sum()) == 4
    assert np.all(result.gradient[clipped] == 0.0)
    assert np.all(result.gradient[~clipped] != 0.0)


# --------------------------------------------------------------------------- extreme inputs


def _no_runtime_warnings(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args, **kwargs)


@pytest.mark.parametrize("big", [1e4, 1e300])
@pytest.mark.parametrize("opts", [
    {}, {"label_smoothing": 0.1}, {"focal_gamma": 2.0}, {"focal_gamma": 0.5, "focal_alpha": 0.3},
    {"class_weights": [0.5, 2.0, 1.0], "sample_weights": [1.0, 3.0]},
], ids=["plain", "smoothing", "focal", "focal_gamma_lt_1", "weights"])
def test_huge_categorical_logits_give_finite_exact_results(big, opts):
    z = np.array([[big, -big, 0.0], [0.0, big, -big]])
    y = np.array([1, 0])
    result = _no_runtime_warnings(
        L.softmax_cross_entropy_with_integer_labels, z, y, return_gradient=True,
        reduction="none", **opts,
    )
    assert np.isfinite(result.losses).all() and np.isfinite(result.gradient).all()
    expected, _, _ = oracle_categorical(z, from_logits=True, labels=y, **opts)
    np.testing.assert_allclose(result.losses, expected, rtol=1e-12)
    if not opts:
        # log-softmax of these rows is exactly z - max: the loss is 2 * big (and big) ...
        np.testing.assert_array_equal(result.losses, [2.0 * big, big])
        # ... and softmax is one-hot at the maximum: gradient = p - onehot(y).
        np.testing.assert_array_equal(
            result.gradient, np.array([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0]])
        )


@pytest.mark.parametrize("big", [1e4, 1e300])
@pytest.mark.parametrize("opts", [
    {}, {"pos_weight": 3.0}, {"label_smoothing": 0.2}, {"focal_gamma": 2.0, "focal_alpha": 0.25},
    {"focal_gamma": 0.5, "label_smoothing": 0.1},
], ids=["plain", "pos_weight", "smoothing", "focal", "focal_gamma_lt_1_smoothing"])
def test_huge_binary_logits_give_finite_results(big, opts):
    z = np.array([big, -big, big, -big, 0.0])
    t = np.array([1.0, 0.0, 0.0, 1.0, 0.5])
    result = _no_runtime_warnings(
        L.sigmoid_binary_cross_entropy, z, t, return_gradient=True, reduction="none", **opts
    )
    assert np.isfinite(result.losses).all() and np.isfinite(result.gradient).all()
    assert np.all(result.losses >= 0.0)
    expected, _, _ = oracle_binary(z, t, from_logits=True, **opts)
    np.testing.assert_allclose(result.losses, expected, rtol=1e-12)
    if not opts:
        np.testing.assert_array_equal(result.losses[:4], [0.0, 0.0, big, big])
        np.testing.assert_array_equal(result.gradient[:4], [0.0, 0.0, 1.0, -1.0])


def test_binary_focal_keeps_relative_precision_near_certainty():
    # 1 - p_t = σ(-z) ≈ 9e-14 here; computed as 1 - σ(z) it would keep only ~3 digits.
    z = np.array([30.0, -30.0, 36.0])
    t = np.array([1.0, 0.0, 1.0])
    result = L.sigmoid_binary_cross_entropy(z, t, focal_gamma=2.0, reduction="none")
    q = expit(-np.abs(z))
    np.testing.assert_allclose(result.losses, q**2 * np.log1p(q / (1 - q)), rtol=1e-12)


def test_a_gradient_that_overflows_after_dividing_by_a_tiny_weight_sum_is_refused():
    # Σ w_y is subnormal while smoothing gives the other classes weight 1: the mean and its
    # gradient exceed float64.
    with pytest.raises(InputError) as info:
        _no_runtime_warnings(
            L.softmax_cross_entropy_with_integer_labels, np.array([[0.0, 0.0, 0.0]]), [0],
            class_weights=[1e-310, 1.0, 1.0], label_smoothing=0.5, return_gradient=True,
        )
    assert (info.value.kind, info.value.field) == ("overflow", "logits")


def test_logits_beyond_float64_range_overflow_with_a_position():
    with pytest.raises(InputError) as info:
        _no_runtime_warnings(
            L.softmax_cross_entropy_with_integer_labels,
            np.array([[0.0, 1.0], [1e308, -1e308]]), [0, 1], return_gradient=True,
        )
    assert info.value.kind == "overflow"
    assert info.value.field == "logits"
    assert info.value.position == (1, 1)
    assert "overflow" in info.value.message


def test_logits_beyond_float64_range_are_fine_for_the_likely_class():
    result = _no_runtime_warnings(
        L.softmax_cross_entropy_with_integer_labels,
        np.array([[1e308, -1e308]]), [0], return_gradient=True, focal_gamma=2.0,
    )
    assert result.loss == 0.0
    np.testing.assert_array_equal(result.gradient, [[0.0, 0.0]])


def test_a_mean_is_finite_when_only_the_sum_overflows():
    z = np.array([[1e308, -1e308 / 2, 0.0], [0.0, 1e308, -1e308 / 2]])
    y = np.array([2, 0])
    mean = _no_runtime_warnings(L.softmax_cross_entropy_with_integer_labels, z, y)
    assert mean.loss == pytest.approx(1e308, rel=1e-15)
    with pytest.raises(InputError) as info:
        _no_runtime_warnings(L.softmax_cross_entropy_with_integer_labels, z, y, reduction="sum")
    assert (info.value.kind, info.value.field, info.value.position) == ("overflow", "logits", ())
    bin_mean = _no_runtime_warnings(
        L.sigmoid_binary_cross_entropy, np.array([1e308, 1e308]), np.array([0.0, 0.0])
    )
    assert bin_mean.loss == pytest.approx(1e308, rel=1e-15)


def test_binary_loss_that_overflows_names_its_element():
    with pytest.raises(InputError) as info:
        _no_runtime_warnings(
            L.sigmoid_binary_cross_entropy, np.array([[0.0, 1.0], [-1e308, 2.0]]),
            np.array([[1.0, 0.0], [1.0, 1.0]]), pos_weight=3.0, focal_gamma=2.0,
            focal_alpha=0.9, return_gradient=True,
        )
    error = info.value
    assert (error.kind, error.field, error.position) == ("overflow", "logits", (1, 0))


@pytest.mark.parametrize("fn", ALL_FUNCTIONS, ids=_name)
def test_huge_sample_weights_overflow_cleanly(fn):
    if fn in CATEGORICAL_FUNCTIONS:
        x, y, _ = _categorical_case(fn, "plain")
        x, y = x[:2], y[:2]
    else:
        x, y, _ = _binary_case(fn, (2, 3), "plain", soft=True)
    for reduction in ("mean", "sum", "none"):
        with pytest.raises(InputError) as info:
            _no_runtime_warnings(
                fn, x, y, sample_weights=[1e308, 1e308], reduction=reduction,
                return_gradient=True,
            )
        assert info.value.kind == "overflow"
        assert info.value.field in ("sample_weights", "logits", "probabilities")
    # A product of weights beyond float64 (each weight finite).
    opts = {"sample_weights": [1e200, 1.0], "class_weights": np.full(x.shape[1], 1e200)}
    with pytest.raises(InputError) as info:
        _no_runtime_warnings(fn, x, y, return_gradient=True, **opts)
    assert info.value.kind == "overflow"


def test_weight_sum_overflow_is_reported_not_averaged_to_zero():
    # Per-sample losses below 1, so weighted losses stay finite and only Σ weights overflows.
    z = np.array([[3.0, 0.0], [0.0, 1.0]])
    with pytest.raises(InputError) as info:
        _no_runtime_warnings(
            L.softmax_cross_entropy_with_integer_labels, z, [0, 1],
            sample_weights=[1e308, 1e308], return_gradient=True,
        )
    assert (info.value.kind, info.value.field) == ("overflow", "sample_weights")
    assert "weight" in info.value.message
    with pytest.raises(InputError) as info:
        _no_runtime_warnings(
            L.softmax_cross_entropy_with_integer_labels, z, [0, 0], class_weights=[1e308, 1.0],
        )
    assert (info.value.kind, info.value.field) == ("overflow", "class_weights")


def test_large_but_representable_weights_are_fine():
    z = np.array([[0.0, 3.0], [1.0, 0.0]])
    result = _no_runtime_warnings(
        L.softmax_cross_entropy_with_integer_labels, z, [0, 1], sample_weights=[1e300, 1e300],
        return_gradient=True,
    )
    plain = L.softmax_cross_entropy_with_integer_labels(z, [0, 1], return_gradient=True)
    assert result.loss == pytest.approx(plain.loss, rel=1e-14)
    np.testing.assert_allclose(result.gradient, plain.gradient, rtol=1e-14)
    assert result.weight_sum == pytest.approx(2e300, rel=1e-15)


def test_probabilities_exactly_zero_and_one_are_clipped_and_counted():
    p = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.25, 0.25, 0.5]])
    y = np.array([1, 1, 2])
    result = _no_runtime_warnings(
        L.categorical_cross_entropy_with_integer_labels, p, y, return_gradient=True,
        reduction="none",
    )
    assert result.n_clipped == 4
    np.testing.assert_allclose(result.losses, [-math.log(EPS), math.log(2), math.log(2)],
                               rtol=1e-14)
    expected_grad = np.zeros((3, 3))
    expected_grad[1, 1] = -2.0
    expected_grad[2, 2] = -2.0
    np.testing.assert_array_equal(result.gradient, expected_grad)

    pb = np.array([0.0, 1.0, 0.0, 1.0, 0.5])
    tb = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    for opts in ({}, {"focal_gamma": 0.5}, {"label_smoothing": 0.1, "pos_weight": 2.0}):
        res = _no_runtime_warnings(
            L.binary_cross_entropy, pb, tb, return_gradient=True, reduction="none", **opts
        )
        assert res.n_clipped == 4
        assert np.isfinite(res.losses).all()
        np.testing.assert_array_equal(res.gradient[:4], 0.0)
        expected, _, _ = oracle_binary(pb, tb, from_logits=False, **opts)
        np.testing.assert_allclose(res.losses, expected, rtol=1e-12)
    assert L.binary_cross_entropy(pb, tb, reduction="none").losses[2] == pytest.approx(
        -math.log(EPS), rel=1e-14
    )


def test_custom_epsilon_clips_to_it():
    p = np.array([[0.001, 0.999]])
    result = L.categorical_cross_entropy_with_integer_labels(p, [0], epsilon=0.01)
    assert result.loss == pytest.approx(-math.log(0.01), rel=1e-14)
    assert result.n_clipped == 2


# --------------------------------------------------------------------------- reductions


def test_all_ignored_batch_has_mean_zero():
    z = np.array([[1.0, 2.0], [0.5, -1.0]])
    for normalization in ("weights", "samples"):
        result = L.softmax_cross_entropy_with_integer_labels(
            z, [-100, -100], ignore_index=-100, normalization=normalization,
            return_gradient=True,
        )
        assert result.loss == 0.0
        assert result.weight_sum == 0.0
        assert result.n_ignored == 2
        np.testing.assert_array_equal(result.gradient, 0.0)
    masked = L.sigmoid_binary_cross_entropy(
        np.array([1.0, 2.0]), np.array([0.0, 1.0]), mask=[0, 0], return_gradient=True
    )
    assert (masked.loss, masked.weight_sum, masked.n_ignored) == (0.0, 0.0, 2)


def test_zero_weights_everywhere_have_mean_zero():
    z = np.array([[1.0, 2.0], [0.5, -1.0]])
    result = L.softmax_cross_entropy_with_integer_labels(z, [0, 1], sample_weights=[0.0, 0.0])
    assert (result.loss, result.weight_sum) == (0.0, 0.0)
    samples = L.softmax_cross_entropy_with_integer_labels(
        z, [0, 1], sample_weights=[0.0, 0.0], normalization="samples"
    )
    assert (samples.loss, samples.weight_sum) == (0.0, 2.0)


@pytest.mark.parametrize("fn", [L.softmax_cross_entropy_with_integer_labels,
                                L.categorical_cross_entropy_with_integer_labels], ids=_name)
def test_zero_denominator_with_nonzero_numerator_is_refused(fn):
    # Class 0 has weight 0, so Σ w_y = 0, but smoothing puts mass on classes 1 and 2.
    x = np.array([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2]])
    with pytest.raises(InputError) as info:
        fn(x, [0, 0], class_weights=[0.0, 1.0, 1.0], label_smoothing=0.2)
    assert info.value.kind == "zero_denominator"
    assert info.value.field == "normalization"
    # The same data are fine with "sum" and with "samples".
    assert fn(x, [0, 0], class_weights=[0.0, 1.0, 1.0], label_smoothing=0.2,
              reduction="sum").loss > 0
    assert fn(x, [0, 0], class_weights=[0.0, 1.0, 1.0], label_smoothing=0.2,
              normalization="samples").loss > 0


def test_weight_sum_is_reported_for_every_reduction():
    z = np.array([[1.0, 2.0, 0.0], [0.5, -1.0, 0.0], [0.0, 0.0, 0.0]])
    y = np.array([2, 0, -1])
    w = np.array([2.0, 1.0, 0.5])
    s = np.array([1.0, 3.0, 7.0])
    for reduction in ("mean", "sum", "none"):
        result = L.softmax_cross_entropy_with_integer_labels(
            z, y, class_weights=w, sample_weights=s, ignore_index=-1, reduction=reduction
        )
        assert result.weight_sum == pytest.approx(1.0 * 0.5 + 3.0 * 2.0)
        assert result.reduction == reduction and result.normalization == "weights"
        samples = L.softmax_cross_entropy_with_integer_labels(
            z, y, class_weights=w, sample_weights=s, ignore_index=-1, reduction=reduction,
            normalization="samples",
        )
        assert samples.weight_sum == 2.0


def test_sum_is_sum_of_losses_and_mean_divides_it():
    rng = np.random.default_rng(9)
    z = rng.normal(size=(5, 3))
    t = rng.uniform(size=(5, 3))
    opts = {"pos_weight": 1.5, "class_weights": [1.0, 2.0, 0.5], "sample_weights": rng.uniform(
        size=5), "focal_gamma": 1.0, "focal_alpha": 0.6}
    none = L.sigmoid_binary_cross_entropy(z, t, reduction="none", **opts)
    total = L.sigmoid_binary_cross_entropy(z, t, reduction="sum", **opts)
    mean = L.sigmoid_binary_cross_entropy(z, t, **opts)
    assert total.loss == pytest.approx(none.losses.sum(), rel=1e-14)
    assert mean.loss == pytest.approx(none.losses.sum() / mean.weight_sum, rel=1e-14)
    # pos_weight and focal_alpha never enter the denominator.
    expected_denominator = float((opts["sample_weights"][:, None] * opts["class_weights"]).sum())
    assert mean.weight_sum == pytest.approx(expected_denominator, rel=1e-14)


def test_inputs_are_not_modified():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(4, 3))
    t = rng.dirichlet(np.ones(3), size=4)
    w = np.array([1.0, 2.0, 3.0])
    s = np.array([1.0, 0.0, 2.0, 1.0])
    copies = [a.copy() for a in (z, t, w, s)]
    L.softmax_cross_entropy(z, t, class_weights=w, sample_weights=s, units="bits",
                            label_smoothing=0.1, focal_gamma=2.0, return_gradient=True)
    L.sigmoid_binary_cross_entropy(z, t, class_weights=w, sample_weights=s, units="bits",
                                   return_gradient=True, reduction="none")
    for before, after in zip(copies, (z, t, w, s), strict=True):
        np.testing.assert_array_equal(before, after)


def test_gradient_is_none_unless_asked():
    z = np.array([[1.0, 2.0]])
    assert L.softmax_cross_entropy_with_integer_labels(z, [0]).gradient is None
    assert L.sigmoid_binary_cross_entropy(z, np.array([[0.0, 1.0]])).gradient is None


# --------------------------------------------------------------------------- validation

Z = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
P = np.array([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])
ZB = np.zeros((2, 3))
sce = L.softmax_cross_entropy_with_integer_labels
cce = L.categorical_cross_entropy_with_integer_labels
sbce = L.sigmoid_binary_cross_entropy
bce = L.binary_cross_entropy

# (id, call, field, position, kind, text that the message must contain)
INVALID = [
    ("rank1_logits", lambda: sce(np.ones(3), [0]), "logits", (), "shape_error", "2-D"),
    ("rank3_logits", lambda: sce(np.ones((1, 2, 3)), [0]), "logits", (), "shape_error", "2-D"),
    ("rank3_binary", lambda: sbce(np.ones((1, 2, 3)), np.ones((1, 2, 3))), "logits", (),
     "shape_error", "1-D or 2-D"),
    ("empty_rows", lambda: sce(np.ones((0, 3)), []), "logits", (), "empty", "non-empty"),
    ("empty_columns", lambda: sce(np.ones((2, 0)), [0, 0]), "logits", (), "empty", "non-empty"),
    ("empty_binary", lambda: bce(np.ones(0), np.ones(0)), "probabilities", (), "empty",
     "non-empty"),
    ("nan_logits", lambda: sce(np.array([[1.0, 2.0], [3.0, np.nan]]), [0, 0]), "logits", (1, 1),
     "not_finite", "finite"),
    ("inf_logits", lambda: sce(np.array([[1.0, np.inf], [3.0, 1.0]]), [0, 0]), "logits", (0, 1),
     "not_finite", "finite"),
    ("nan_probabilities", lambda: cce(np.array([[0.5, 0.5], [np.nan, 0.5]]), [0, 0]),
     "probabilities", (1, 0), "not_finite", "finite"),
    ("nan_binary_logits", lambda: sbce(np.array([0.0, -np.inf, 1.0]), np.zeros(3)), "logits",
     (1,), "not_finite", "finite"),
    ("nan_targets", lambda: sbce(np.zeros(3), np.array([0.0, 1.0, np.nan])), "targets", (2,),
     "not_finite", "finite"),
    ("nan_soft_targets", lambda: L.softmax_cross_entropy(Z, [[1.0, 0.0, 0.0], [np.nan, 0, 1]]),
     "targets", (1, 0), "not_finite", "finite"),
    ("nan_sample_weights", lambda: sce(Z, [0, 1], sample_weights=[1.0, np.nan]),
     "sample_weights", (1,), "not_finite", "finite"),
    ("label_out_of_range", lambda: sce(np.zeros((3, 5)), [1, 7, 0]), "labels", (1,),
     "out_of_range", "label 7 is outside [0, 5)"),
    ("negative_label", lambda: sce(np.zeros((3, 5)), [1, 0, -1]), "labels", (2,),
     "out_of_range", "label -1 is outside [0, 5)"),
    ("negative_label_not_the_ignore_index",
     lambda: sce(np.zeros((3, 5)), [-100, -1, 0], ignore_index=-100), "labels", (1,),
     "out_of_range", "label -1 is outside [0, 5)"),
    ("fractional_label", lambda: sce(np.zeros((2, 5)), [1, 1.5]), "labels", (1,), "type_error",
     "integer"),
    ("string_labels", lambda: sce(np.zeros((2, 5)), ["a", "b"]), "labels", (), "type_error",
     "integers"),
    ("label_length", lambda: sce(np.zeros((2, 5)), [1, 2, 3]), "labels", (), "shape_mismatch",
     "expected 2 values"),
    ("labels_2d", lambda: sce(np.zeros((2, 5)), [[1], [2]]), "labels", (), "shape_mismatch",
     "got shape 2×1"),
    ("class_weights_2d", lambda: sce(Z, [0, 1], class_weights=[[1.0, 1.0, 1.0]]),
     "class_weights", (), "shape_error", "1-D"),
    ("targets_1d", lambda: L.softmax_cross_entropy(Z, [1.0, 0.0, 0.0]), "targets", (),
     "shape_error", "2-D"),
    ("probability_label_length", lambda: cce(P, [1]), "labels", (), "shape_mismatch",
     "expected 2 values"),
    ("targets_shape", lambda: L.softmax_cross_entropy(Z, np.ones((2, 2)) / 2), "targets", (),
     "shape_mismatch", "2×3"),
    ("binary_targets_shape", lambda: sbce(ZB, np.zeros((3, 2))), "targets", (),
     "shape_mismatch", "2×3"),
    ("targets_row_sum", lambda: L.softmax_cross_entropy(Z, [[1.0, 0, 0], [0.5, 0.4, 0]]),
     "targets", (1,), "not_a_distribution", "sum to 1"),
    ("negative_target", lambda: L.softmax_cross_entropy(Z, [[1.0, 0, 0], [1.5, -0.5, 0]]),
     "targets", (1, 0), "out_of_range", "[0, 1]"),
    ("binary_target_above_one", lambda: sbce(ZB, [[0, 0, 0], [0, 1.2, 0]]), "targets", (1, 1),
     "out_of_range", "[0, 1]"),
    ("probability_above_one", lambda: cce([[0.5, 0.5, 0.0], [1.2, -0.2, 0.0]], [0, 0]),
     "probabilities", (1, 0), "out_of_range", "[0, 1]"),
    ("negative_binary_probability", lambda: bce([[0.5, 0.5], [0.2, -0.1]], np.zeros((2, 2))),
     "probabilities", (1, 1), "out_of_range", "[0, 1]"),
    ("probability_row_sum", lambda: cce([[0.5, 0.5, 0.0], [0.2, 0.2, 0.2]], [0, 0]),
     "probabilities", (1,), "not_a_distribution", "row 1 to sum to 1"),
    ("probability_row_sum_just_outside",
     lambda: cce([[0.5, 0.5 + 2e-6], [0.5, 0.5]], [0, 0]), "probabilities", (0,),
     "not_a_distribution", "sum to 1"),
    ("negative_sample_weight", lambda: sce(Z, [0, 1], sample_weights=[1.0, -1.0]),
     "sample_weights", (1,), "out_of_range", ">= 0"),
    ("negative_class_weight", lambda: sce(Z, [0, 1], class_weights=[1.0, 1.0, -2.0]),
     "class_weights", (2,), "out_of_range", ">= 0"),
    ("negative_binary_class_weight", lambda: sbce(ZB, ZB, class_weights=[1.0, -1.0, 1.0]),
     "class_weights", (1,), "out_of_range", ">= 0"),
    ("sample_weights_length", lambda: sce(Z, [0, 1], sample_weights=[1.0, 1.0, 1.0]),
     "sample_weights", (), "shape_mismatch", "expected 2 values"),
    ("class_weights_length", lambda: sce(Z, [0, 1], class_weights=[1.0, 1.0]), "class_weights",
     (), "shape_mismatch", "expected 3 values"),
    ("binary_sample_weights_length", lambda: sbce(ZB, ZB, sample_weights=[1.0]),
     "sample_weights", (), "shape_mismatch", "expected 2 values"),
    ("label_smoothing_one", lambda: sce(Z, [0, 1], label_smoothing=1.0), "label_smoothing", (),
     "out_of_range", "[0, 1)"),
    ("label_smoothing_negative", lambda: sbce(ZB, ZB, label_smoothing=-0.1), "label_smoothing",
     (), "out_of_range", "[0, 1)"),
    ("negative_focal_gamma", lambda: sce(Z, [0, 1], focal_gamma=-1.0), "focal_gamma", (),
     "out_of_range", "-1"),
    ("negative_binary_focal_gamma", lambda: sbce(ZB, ZB, focal_gamma=-0.5), "focal_gamma", (),
     "out_of_range", "-0.5"),
    ("epsilon_zero", lambda: cce(P, [0, 1], epsilon=0.0), "epsilon", (), "out_of_range",
     "(0, 0.5)"),
    ("epsilon_half", lambda: cce(P, [0, 1], epsilon=0.5), "epsilon", (), "out_of_range",
     "(0, 0.5)"),
    ("binary_epsilon", lambda: bce(P, np.zeros((2, 3)), epsilon=0.6), "epsilon", (),
     "out_of_range", "(0, 0.5)"),
    ("negative_focal_alpha", lambda: sce(Z, [0, 1], focal_alpha=-0.5), "focal_alpha", (),
     "out_of_range", "-0.5"),
    ("focal_alpha_length", lambda: sce(Z, [0, 1], focal_alpha=[1.0, 1.0]), "focal_alpha", (),
     "shape_mismatch", "expected 3 values"),
    ("binary_focal_alpha_above_one", lambda: sbce(ZB, ZB, focal_alpha=1.5), "focal_alpha", (),
     "out_of_range", "[0, 1]"),
    ("binary_focal_alpha_column_above_one",
     lambda: sbce(ZB, ZB, focal_alpha=[0.2, 1.5, 0.1]), "focal_alpha", (1,), "out_of_range",
     "[0, 1]"),
    ("class_weights_with_1d_binary", lambda: sbce(np.zeros(3), np.zeros(3),
                                                  class_weights=[1.0, 1.0, 1.0]),
     "class_weights", (), "not_applicable", "1-D"),
    ("mask_not_binary", lambda: sbce(np.zeros((2, 2)), np.zeros((2, 2)),
                                     mask=[[1, 0], [0.5, 1]]),
     "mask", (1, 0), "out_of_range", "0 or 1"),
    ("mask_shape", lambda: sbce(np.zeros((2, 2)), np.zeros((2, 2)), mask=[1, 0]), "mask", (),
     "shape_mismatch", "2×2"),
    ("pos_weight_per_column_with_1d", lambda: sbce(np.zeros(3), np.zeros(3),
                                                   pos_weight=[1.0, 1.0, 1.0]),
     "pos_weight", (), "shape_mismatch", "1-D"),
    ("pos_weight_length", lambda: sbce(ZB, ZB, pos_weight=[1.0, 1.0]), "pos_weight", (),
     "shape_mismatch", "expected 3 values"),
    ("negative_pos_weight", lambda: sbce(ZB, ZB, pos_weight=[1.0, -1.0, 1.0]), "pos_weight",
     (1,), "out_of_range", ">= 0"),
    ("negative_scalar_pos_weight", lambda: sbce(ZB, ZB, pos_weight=-1.0), "pos_weight", (),
     "out_of_range", "-1"),
    ("unknown_reduction", lambda: sce(Z, [0, 1], reduction="avg"), "reduction", (), "enum",
     "'mean', 'sum', 'none'"),
    ("unknown_normalization", lambda: sbce(ZB, ZB, normalization="batch"), "normalization", (),
     "enum", "'weights', 'samples'"),
    ("unknown_units", lambda: sce(Z, [0, 1], units="bit"), "units", (), "enum", "'bits'"),
]


@pytest.mark.parametrize(("call", "field", "position", "kind", "text"),
                         [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_invalid_input_is_refused_with_field_position_and_reason(call, field, position, kind,
                                                                 text):
    with pytest.raises(InputError) as info:
        call()
    error = info.value
    assert (error.field, error.position, error.kind) == (field, position, kind)
    assert text in error.message
    assert str(error).startswith(field)


def test_ignore_index_is_not_accepted_with_targets():
    # ignore_index is an option of the categorical family, but it means something only
    # with labels (contract: ignore_index is "with labels"): refused, never ignored.
    for fn in (L.softmax_cross_entropy, L.categorical_cross_entropy):
        with pytest.raises(InputError) as err:
            fn(P, P, ignore_index=0)
        assert (err.value.field, err.value.kind) == ("ignore_index", "not_applicable")


def test_an_unknown_option_is_a_type_error_as_for_any_keyword():
    with pytest.raises(TypeError, match="ignore_idx"):
        L.softmax_cross_entropy_with_integer_labels(P, [0, 1], ignore_idx=0)


def test_ignored_labels_may_lie_outside_the_class_range():
    result = sce(np.zeros((3, 5)), [1, -100, 4], ignore_index=-100)
    assert result.n_ignored == 1
    assert result.loss == pytest.approx(math.log(5), rel=1e-15)


def test_ignore_index_inside_the_class_range_ignores_that_class():
    z = np.array([[0.0, 1.0], [2.0, 0.0], [0.0, 0.0]])
    result = sce(z, [1, 0, 1], ignore_index=1)
    assert result.n_ignored == 2
    assert result.loss == pytest.approx(-log_softmax(z[1])[0], rel=1e-15)


def test_integral_float_labels_are_accepted():
    z = np.tile(np.arange(5.0), (2, 1))
    a = sce(z, np.array([1.0, 4.0]))
    b = sce(z, np.array([1, 4]))
    assert a.loss == b.loss == pytest.approx(-log_softmax(z, axis=1)[[0, 1], [1, 4]].mean())


def test_rows_within_the_tolerance_are_accepted():
    result = cce(np.array([[0.5, 0.5 + 9e-7], [0.25, 0.75]]), [0, 1])
    assert np.isfinite(result.loss)


def test_huge_integral_float_label_is_reported_as_itself():
    with pytest.raises(InputError) as info:
        sce(np.zeros((2, 5)), np.array([1.0, 1e20]))
    assert (info.value.field, info.value.position) == ("labels", (1,))
    assert "-9223372036854775808" not in info.value.message


# --------------------------------------------------------------------------- tiny and huge


def test_a_dominant_logit_keeps_the_relative_precision_of_its_tiny_loss():
    """Issue 11: logits [40, 0] with label 0 answered 0.0; the loss is log(1 + e^-40)."""
    for fn in (L.softmax_cross_entropy_with_integer_labels,):
        r = fn([[40.0, 0.0]], [0], return_gradient=True)
        assert r.loss == pytest.approx(math.log1p(math.exp(-40.0)), rel=1e-15)
    r = L.softmax_cross_entropy([[40.0, 0.0]], [[1.0, 0.0]])
    assert r.loss == pytest.approx(math.log1p(math.exp(-40.0)), rel=1e-15)


def test_categorical_focal_loss_of_a_confident_correct_prediction():
    """Issue 11: [36, 0], γ = 2 was 12% off (1.095e-47 against 1.248e-47)."""
    e = math.exp(-36.0)
    expected = (e / (1 + e)) ** 2 * math.log1p(e)  # (1 - p)^γ (-log p), p = 1/(1 + e)
    r = L.softmax_cross_entropy_with_integer_labels([[36.0, 0.0]], [0], focal_gamma=2.0)
    assert r.loss == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize("gamma", [1e17, 1e18])
def test_binary_focal_loss_with_a_huge_gamma(gamma):
    """Issue 11: γ = 1e17 or 1e18 at logit -40 gave 40.0 (the modulator rounded to 1)."""
    p = math.exp(-40.0) / (1 + math.exp(-40.0))  # σ(-40); target 1, so 1 - p_t = 1 - p
    expected = math.exp(gamma * math.log1p(-p)) * (40.0 + math.log1p(math.exp(-40.0)))
    r = L.sigmoid_binary_cross_entropy([-40.0], [1.0], focal_gamma=gamma, return_gradient=True)
    assert r.loss == pytest.approx(expected, rel=1e-12)
    assert np.isfinite(r.gradient).all()
