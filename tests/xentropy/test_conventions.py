"""``convention=`` against the real libraries: PyTorch, Keras and scikit-learn.

Contract: ../shared/design/api.md, section "Conventions" (issue 10, item 7): a convention
reproduces, in float64, the number the named library's usual call gives, losses and
gradients, to ≤ 1e-12 relative, for every option that library has; options it lacks are
``InputError(kind="not_in_convention")``; answers the library gives as NaN/inf are
``InputError(kind="undefined_in_convention")``.

The references are ``tests/xentropy/oracles.py`` (the libraries called for real; see its
docstring for the Keras float32 patch and the mapping choices) — never xentropy itself.

Layout:
1. the option grids: every combination of each library's options (``itertools.product``
   over small grids), seeded random inputs, all three reductions per combination;
   ``loss``, per-sample ``losses`` and ``gradient`` compared;
2. edges of each library's numerics (PyTorch's −100 clamp, BCE backward epsilon and
   BCE-with-logits cancellation; Keras' 1e-7 clipping and renormalisation; sklearn's
   machine-eps clipping);
3. the libraries' literal documented examples, through xentropy;
4. refusals: ``not_in_convention`` and ``undefined_in_convention``;
5. ``resolved``.

Tolerances: reduced ``loss`` and per-sample ``losses``: ``rtol=1e-12`` entrywise
(``atol=1e-300``). ``gradient``: ``rtol=1e-12`` entrywise, plus an absolute floor of
1e-15 × the largest |entry| of the reference gradient — a few ulps of the array's scale,
for entries that the library itself forms by cancellation (e.g. PyTorch's
``(pw·t + 1 − t)·σ(x) − pw·t`` for t = 1, x ≫ 0) and are round-off of larger terms.
"""

from __future__ import annotations

import itertools
import math
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

pytest.importorskip(
    "xentropy.conventions", reason="convention= is not merged yet (no xentropy.conventions)"
)

import xentropy
from tests.xentropy import oracles as O
from xentropy import InputError

N, C = 7, 4
REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip(
        "torch", reason="PyTorch oracle not installed (pip install -e '.[dev,oracles]')"
    )


@pytest.fixture(scope="module")
def keras():
    k = O.keras_or_none()
    if k is None:
        pytest.skip("Keras oracle not installed (keras + jax: pip install -e '.[dev,oracles]')")
    return k


@pytest.fixture(scope="module")
def sklearn():
    return pytest.importorskip("sklearn", reason="scikit-learn not installed")


ORACLE_FIXTURE = {"pytorch": "torch", "keras": "keras", "sklearn": "sklearn"}


def assert_value(actual: Any, expected: Any, what: str) -> None:
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64),
        rtol=1e-12, atol=1e-300, err_msg=what,
    )


def assert_gradient(actual: Any, expected: Any, what: str) -> None:
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    floor = 1e-15 * float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=max(floor, 1e-300),
                               err_msg=what)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


FUNCTIONS = {
    ("categorical", True, True): "softmax_cross_entropy_with_integer_labels",
    ("categorical", True, False): "softmax_cross_entropy",
    ("categorical", False, True): "categorical_cross_entropy_with_integer_labels",
    ("categorical", False, False): "categorical_cross_entropy",
    ("binary", True, False): "sigmoid_binary_cross_entropy",
    ("binary", False, False): "binary_cross_entropy",
}


@dataclass(frozen=True)
class Case:
    """One option combination of one library: what is sent, and how the data look."""

    convention: str
    family: str  # "categorical" | "binary"
    from_logits: bool
    labels: bool = False  # categorical: integer labels (else targets)
    opts: dict = field(default_factory=dict)  # options sent (others left to the convention)
    ignore: str = "none"  # categorical labels: "none" | "default" (-100 in data) | "explicit"
    shape_n: bool = False  # binary: shape-N input
    hard: bool = False  # 0/1 targets (sklearn binary)

    @property
    def function(self) -> Any:
        return getattr(xentropy, FUNCTIONS[(self.family, self.from_logits, self.labels)])

    @property
    def id(self) -> str:
        form = ("logits" if self.from_logits else "probs") + (
            "-labels" if self.labels else ("-N" if self.shape_n else "-targets"
                                           if self.family == "categorical" else "-NxC"))
        opts = ",".join(f"{k}={'vec' if isinstance(v, str) and v == 'vec' else v}"
                        for k, v in sorted(self.opts.items()))
        ign = f",ignore={self.ignore}" if self.ignore != "none" else ""
        return f"{self.convention}-{self.family}-{form}[{opts}{ign}]"


def make_data(case: Case) -> tuple[np.ndarray, np.ndarray, dict]:
    """Seeded inputs for a case, and its option values (``"vec"`` placeholders filled)."""
    rng = np.random.default_rng(zlib.crc32(case.id.encode()))
    c = C
    if case.family == "categorical":
        x = rng.normal(size=(N, c)) * 2.0
        scores = x if case.from_logits else _softmax(x)
        if case.labels:
            y = rng.integers(0, c, size=N)
            y[0], y[1] = 2, 0  # at least one label 2 and one other
            if case.ignore == "default":
                y[[1, 4]] = -100
            second = y
        else:
            second = _softmax(rng.normal(size=(N, c)) * 1.5)
    else:
        shape = (N,) if case.shape_n else (N, c)
        if case.from_logits:
            scores = rng.normal(size=shape) * 2.0
        else:
            scores = rng.uniform(0.02, 0.98, size=shape)
        if case.hard:
            second = rng.integers(0, 2, size=shape).astype(np.float64)
            second.flat[0], second.flat[1] = 0.0, 1.0
        else:
            second = rng.uniform(size=shape)
            second.flat[0], second.flat[1] = 0.0, 1.0
    opts = {}
    for k, v in case.opts.items():
        if isinstance(v, str) and v == "vec":
            v = {
                "class_weights": lambda: rng.uniform(0.3, 2.0, size=c),
                "sample_weights": lambda: np.concatenate([[0.0], rng.uniform(0.1, 2.0, N - 1)]),
                "pos_weight": lambda: rng.uniform(0.5, 3.0, size=c),
                "focal_alpha": lambda: rng.uniform(0.1, 0.9, size=c),
            }[k]()
        opts[k] = v
    if case.ignore == "explicit":
        opts["ignore_index"] = 2
    return scores, second, opts


def call(case: Case, scores: np.ndarray, second: np.ndarray, opts: dict,
         reduction: str) -> Any:
    return case.function(scores, second, convention=case.convention, reduction=reduction,
                         return_gradient=True, **opts)


def oracle(case: Case, scores: np.ndarray, second: np.ndarray, opts: dict,
           reduction: str) -> O.Answer:
    conv, fam, lg = case.convention, case.family, case.from_logits
    if conv == "pytorch" and fam == "categorical":
        kw = dict(labels=second) if case.labels else dict(targets=second)
        return O.pytorch_categorical(
            scores, from_logits=lg, class_weights=opts.get("class_weights"),
            ignore_index=opts.get("ignore_index", -100),
            label_smoothing=opts.get("label_smoothing", 0.0), reduction=reduction, **kw,
        )
    if conv == "pytorch":
        if "focal_gamma" in opts or "focal_alpha" in opts:
            return O.pytorch_focal(scores, second, focal_gamma=opts.get("focal_gamma", 2.0),
                                   focal_alpha=opts.get("focal_alpha"), reduction=reduction)
        return O.pytorch_binary(
            scores, second, from_logits=lg, class_weights=opts.get("class_weights"),
            sample_weights=opts.get("sample_weights"), pos_weight=opts.get("pos_weight"),
            reduction=reduction,
        )
    if conv == "keras" and fam == "categorical":
        kw = dict(labels=second) if case.labels else dict(targets=second)
        return O.keras_categorical(
            scores, from_logits=lg, sample_weights=opts.get("sample_weights"),
            ignore_index=opts.get("ignore_index"),
            label_smoothing=opts.get("label_smoothing", 0.0),
            focal_gamma=opts.get("focal_gamma"), focal_alpha=opts.get("focal_alpha"),
            reduction=reduction, **kw,
        )
    if conv == "keras":
        return O.keras_binary(
            scores, second, from_logits=lg, sample_weights=opts.get("sample_weights"),
            label_smoothing=opts.get("label_smoothing", 0.0),
            focal_gamma=opts.get("focal_gamma"), focal_alpha=opts.get("focal_alpha"),
            reduction=reduction,
        )
    assert conv == "sklearn"
    return O.sklearn_log_loss(scores, second, from_logits=lg,
                              sample_weights=opts.get("sample_weights"), reduction=reduction)


def compare(case: Case, scores: np.ndarray, second: np.ndarray, opts: dict) -> None:
    """All three reductions: loss, per-sample losses and gradient against the oracle."""
    per_sample = oracle(case, scores, second, opts, "none")
    for reduction in REDUCTIONS:
        what = f"{case.id} reduction={reduction}"
        result = call(case, scores, second, opts, reduction)
        assert isinstance(result.resolved, dict), what
        assert_value(result.losses, per_sample.value, f"{what}: losses")
        if reduction == "none":
            assert result.loss is None, what
            assert_gradient(result.gradient, per_sample.gradient, f"{what}: gradient")
            continue
        ref = oracle(case, scores, second, opts, reduction)
        assert_value(result.loss, ref.value, f"{what}: loss")
        assert_gradient(result.gradient, ref.gradient, f"{what}: gradient")


def _grid(**axes: tuple) -> list[dict]:
    """Every combination; a value None means "not sent"."""
    keys = list(axes)
    return [{k: v for k, v in zip(keys, combo, strict=True) if v is not None}
            for combo in itertools.product(*(axes[k] for k in keys))]


# ---------------------------------------------------------------------------- 1. grids


def pytorch_cases() -> list[Case]:
    cases = []
    for logits, labels in itertools.product((True, False), (True, False)):
        smoothing = (None, 0.15) if logits else (None,)  # nll_loss has no label_smoothing
        for opts in _grid(class_weights=(None, "vec"), label_smoothing=smoothing):
            for ignore in (("none", "default", "explicit") if labels else ("none",)):
                cases.append(Case("pytorch", "categorical", logits, labels, opts, ignore))
    for logits, shape_n in itertools.product((True, False), (False, True)):
        pos = ((None, 1.7) if shape_n else (None, 1.7, "vec")) if logits else (None,)
        cw = (None,) if shape_n else (None, "vec")
        for opts in _grid(class_weights=cw, sample_weights=(None, "vec"), pos_weight=pos):
            cases.append(Case("pytorch", "binary", logits, opts=opts, shape_n=shape_n))
    for shape_n in (False, True):  # torchvision sigmoid_focal_loss: logits, no weights
        for opts in ({"focal_gamma": 2.0}, {"focal_gamma": 1.5, "focal_alpha": 0.4},
                     {"focal_gamma": 0.0, "focal_alpha": 0.6}):
            cases.append(Case("pytorch", "binary", True, opts=opts, shape_n=shape_n))
    return cases


def keras_cases() -> list[Case]:
    cases = []
    focal = ({}, {"focal_gamma": 2.0}, {"focal_gamma": 1.5, "focal_alpha": "vec"})
    for logits, labels in itertools.product((True, False), (True, False)):
        for opts in _grid(sample_weights=(None, "vec"), label_smoothing=(None, 0.1)):
            for f in focal:
                cases.append(Case("keras", "categorical", logits, labels, {**opts, **f}))
            if labels and "label_smoothing" not in opts:  # ignore_class: Sparse only
                cases.append(Case("keras", "categorical", logits, labels, opts, "explicit"))
    focal = ({}, {"focal_gamma": 2.0}, {"focal_gamma": 1.5, "focal_alpha": 0.3})
    for logits, shape_n in itertools.product((True, False), (False, True)):
        for opts in _grid(sample_weights=(None, "vec"), label_smoothing=(None, 0.2)):
            for f in focal:
                cases.append(Case("keras", "binary", logits, opts={**opts, **f},
                                  shape_n=shape_n))
    return cases


def sklearn_cases() -> list[Case]:
    cases = []
    for logits in (True, False):
        for opts in _grid(sample_weights=(None, "vec")):
            cases.append(Case("sklearn", "categorical", logits, True, opts))
            cases.append(Case("sklearn", "binary", logits, opts=opts, shape_n=True, hard=True))
    return cases


GRID = pytorch_cases() + keras_cases() + sklearn_cases()


@pytest.mark.parametrize("case", GRID, ids=[c.id for c in GRID])
def test_convention_matches_library(case: Case, request: pytest.FixtureRequest) -> None:
    request.getfixturevalue(ORACLE_FIXTURE[case.convention])
    scores, second, opts = make_data(case)
    compare(case, scores, second, opts)


def test_the_grid_covers_every_option_of_each_library() -> None:
    sent = {}
    for case in GRID:
        key = (case.convention, case.family)
        sent.setdefault(key, set()).update(case.opts)
        if case.ignore == "explicit":
            sent[key].add("ignore_index")
    assert sent[("pytorch", "categorical")] == {"class_weights", "label_smoothing",
                                                "ignore_index"}
    assert sent[("pytorch", "binary")] == {"class_weights", "sample_weights", "pos_weight",
                                           "focal_gamma", "focal_alpha"}
    assert sent[("keras", "categorical")] == {"sample_weights", "label_smoothing",
                                              "ignore_index", "focal_gamma", "focal_alpha"}
    assert sent[("keras", "binary")] == {"sample_weights", "label_smoothing", "focal_gamma",
                                         "focal_alpha"}
    assert sent[("sklearn", "categorical")] == sent[("sklearn", "binary")] == {"sample_weights"}
    assert any(c.ignore == "default" for c in GRID)  # PyTorch's -100 without sending it


# ---------------------------------------------------------------------------- 2. edges


def test_pytorch_bce_with_logits_extreme_logits(torch: Any) -> None:
    """torch computes (1 − t)·x − (1 + (pw − 1)·t)·log_sigmoid(x): for t = 0 and x ≪ 0 this
    cancels, and its value is then not the exact softplus — the convention must give
    torch's number."""
    rng = np.random.default_rng(1)
    x = np.concatenate([-rng.uniform(10, 40, size=(6, 2)), rng.uniform(10, 40, size=(6, 2))], 1)
    t = np.tile([0.0, 1.0, 0.3, 0.0], (6, 1))
    for opts in ({}, {"pos_weight": 2.5}, {"sample_weights": rng.uniform(0.5, 2, 6)}):
        case = Case("pytorch", "binary", True, opts=opts)
        compare(case, x, t, opts)


def test_pytorch_bce_clamp_and_backward_epsilon(torch: Any) -> None:
    """log clamped at −100 (so p = 0 or 1 is finite) and the backward
    (p − t)/max((1 − p)·p, float(1e-12)), which is not the clamped forward's derivative."""
    p = np.array([[0.0, 1.0, 1e-300, 1e-60], [1 - 1e-12, 0.5, 1e-13, 1 - 1e-16]])
    t = np.array([[1.0, 0.0, 1.0, 0.3], [1.0, 0.2, 0.0, 0.0]])
    for opts in ({}, {"class_weights": np.array([0.5, 2.0, 1.0, 3.0])}):
        compare(Case("pytorch", "binary", False, opts=opts), p, t, opts)


def test_keras_clipping_and_renormalisation(keras: Any) -> None:
    """Probabilities below 1e-7: renormalise, clip, the gradient of the clipped function
    (with the renormalisation term); focal clips after the softmax/sigmoid too."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(N, C)) * 9.0
    p = _softmax(x)
    assert (p < 1e-7).any()
    t = _softmax(rng.normal(size=(N, C)))
    y = rng.integers(0, C, size=N)
    for logits, labels, opts in itertools.product(
        (True, False), (True, False), ({}, {"focal_gamma": 2.0}, {"label_smoothing": 0.1})
    ):
        case = Case("keras", "categorical", logits, labels, opts)
        compare(case, x if logits else p, y if labels else t, opts)
    xb = rng.normal(size=(N, C)) * 12.0
    pb = 1 / (1 + np.exp(-xb))
    assert ((pb < 1e-7) | (pb > 1 - 1e-7)).any()
    tb = rng.uniform(size=(N, C))
    for logits, opts in itertools.product((True, False), ({}, {"focal_gamma": 2.0},
                                                           {"focal_gamma": 2.0,
                                                            "focal_alpha": 0.3})):
        compare(Case("keras", "binary", logits, opts=opts), xb if logits else pb, tb, opts)


def test_keras_all_ignored_is_zero(keras: Any) -> None:
    x = np.random.default_rng(3).normal(size=(4, 3))
    y = np.full(4, 1)
    for logits in (True, False):
        scores = x if logits else _softmax(x)
        compare(Case("keras", "categorical", logits, True, {"ignore_index": 1}), scores, y,
                {"ignore_index": 1})
        r = call(Case("keras", "categorical", logits, True), scores, y, {"ignore_index": 1},
                 "mean")
        assert r.loss == 0.0


def test_sklearn_clipping(sklearn: Any) -> None:
    p = np.array([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    y = np.array([0, 1, 2])
    compare(Case("sklearn", "categorical", False, True), p, y, {})
    x = np.array([[-40.0, 0.0, 0.0], [0.0, 40.0, 0.0], [1.0, 2.0, 3.0]])  # softmax < eps
    compare(Case("sklearn", "categorical", True, True), x, y, {})
    pb = np.array([0.0, 1.0, 1.0, 0.0, 0.4])
    tb = np.array([0.0, 1.0, 0.0, 1.0, 1.0])
    compare(Case("sklearn", "binary", False, shape_n=True, hard=True), pb, tb, {})
    xb = np.array([-40.0, 40.0, 38.0, -38.0, 0.3])
    compare(Case("sklearn", "binary", True, shape_n=True, hard=True), xb, tb, {})


def test_pytorch_probability_with_zero_off_the_label_has_a_finite_loss(torch: Any) -> None:
    """F.nll_loss(log p): a 0 outside the label column gives a finite loss (its gradient
    is NaN in torch: see the refusals)."""
    p = np.array([[0.0, 0.5, 0.5], [0.2, 0.3, 0.5]])
    y = np.array([1, 2])
    r = xentropy.categorical_cross_entropy_with_integer_labels(p, y, convention="pytorch")
    assert_value(r.loss, O.pytorch_categorical(p, y, from_logits=False).value, "loss")


# ---------------------------------------------------------------------------- 3. documented


KERAS_CCE = (np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
             np.array([[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]))
KERAS_BIN = (np.array([[0.0, 1.0], [0.0, 0.0]]), np.array([[-18.6, 0.51], [2.94, -12.8]]))
KERAS_BIN_1D = (np.array([0.0, 1.0, 0.0, 0.0]), np.array([-18.6, 0.51, 2.94, -12.8]))
SW_CCE, SW_BIN = np.array([0.3, 0.7]), np.array([0.8, 0.2])
P_BIN = np.array([[0.6, 0.4], [0.4, 0.6]])

# (function, input, second, options, reduction, printed value(s)), from the docstrings of
# keras 3.15 (keras/src/losses/losses.py).
KERAS_DOCS = [
    ("categorical_cross_entropy", KERAS_CCE[1], KERAS_CCE[0], {}, "mean", "1.177"),
    ("categorical_cross_entropy", KERAS_CCE[1], KERAS_CCE[0], {"sample_weights": SW_CCE},
     "mean", "0.814"),
    ("categorical_cross_entropy", KERAS_CCE[1], KERAS_CCE[0], {}, "sum", "2.354"),
    ("categorical_cross_entropy", KERAS_CCE[1], KERAS_CCE[0], {}, "none", ("0.0513", "2.303")),
    ("categorical_cross_entropy_with_integer_labels", KERAS_CCE[1], np.array([1, 2]), {},
     "mean", "1.177"),
    ("categorical_cross_entropy_with_integer_labels", KERAS_CCE[1], np.array([1, 2]),
     {"sample_weights": SW_CCE}, "mean", "0.814"),
    ("categorical_cross_entropy_with_integer_labels", KERAS_CCE[1], np.array([1, 2]), {},
     "none", ("0.0513", "2.303")),
    ("categorical_cross_entropy", KERAS_CCE[1], KERAS_CCE[0], {"focal_gamma": 2.0}, "mean",
     "0.23315276"),
    ("categorical_cross_entropy", KERAS_CCE[1], KERAS_CCE[0],
     {"focal_gamma": 2.0, "sample_weights": SW_CCE}, "mean", "0.1632"),
    ("categorical_cross_entropy", KERAS_CCE[1], KERAS_CCE[0], {"focal_gamma": 2.0}, "sum",
     "0.46631"),
    ("categorical_cross_entropy", KERAS_CCE[1], KERAS_CCE[0], {"focal_gamma": 2.0}, "none",
     ("3.2058331e-05", "4.6627346e-01")),
    ("categorical_cross_entropy", np.array([[0.05, 0.9, 0.05], [0.1, 0.85, 0.05]]),
     KERAS_CCE[0], {"focal_gamma": 2.0}, "none", ("2.63401289e-04", "6.75912094e-01")),
    ("sigmoid_binary_cross_entropy", KERAS_BIN_1D[1], KERAS_BIN_1D[0], {}, "mean", "0.8654"),
    ("sigmoid_binary_cross_entropy", KERAS_BIN[1], KERAS_BIN[0], {}, "mean", "0.8654"),
    ("sigmoid_binary_cross_entropy", KERAS_BIN[1], KERAS_BIN[0], {"sample_weights": SW_BIN},
     "mean", "0.243"),
    ("sigmoid_binary_cross_entropy", KERAS_BIN[1], KERAS_BIN[0], {}, "sum", "1.730"),
    ("sigmoid_binary_cross_entropy", KERAS_BIN[1], KERAS_BIN[0], {}, "none",
     ("0.235", "1.496")),
    ("binary_cross_entropy", P_BIN, KERAS_BIN[0], {}, "none", ("0.916", "0.714")),
    ("sigmoid_binary_cross_entropy", KERAS_BIN_1D[1], KERAS_BIN_1D[0], {"focal_gamma": 2.0},
     "mean", "0.691"),
    ("sigmoid_binary_cross_entropy", KERAS_BIN_1D[1], KERAS_BIN_1D[0],
     {"focal_gamma": 2.0, "focal_alpha": 0.25}, "mean", "0.51"),
    ("sigmoid_binary_cross_entropy", KERAS_BIN[1], KERAS_BIN[0], {"focal_gamma": 3.0}, "mean",
     "0.647"),
    ("sigmoid_binary_cross_entropy", KERAS_BIN[1], KERAS_BIN[0],
     {"focal_gamma": 3.0, "focal_alpha": 0.25}, "mean", "0.482"),
    ("sigmoid_binary_cross_entropy", KERAS_BIN[1], KERAS_BIN[0],
     {"focal_gamma": 3.0, "sample_weights": SW_BIN}, "mean", "0.133"),
    ("sigmoid_binary_cross_entropy", KERAS_BIN[1], KERAS_BIN[0],
     {"focal_gamma": 3.0, "focal_alpha": 0.25, "sample_weights": SW_BIN}, "mean", "0.097"),
    ("sigmoid_binary_cross_entropy", KERAS_BIN[1], KERAS_BIN[0], {"focal_gamma": 4.0}, "sum",
     "1.222"),
    ("sigmoid_binary_cross_entropy", KERAS_BIN[1], KERAS_BIN[0],
     {"focal_gamma": 4.0, "focal_alpha": 0.25}, "sum", "0.914"),
    ("sigmoid_binary_cross_entropy", KERAS_BIN[1], KERAS_BIN[0], {"focal_gamma": 5.0}, "none",
     ("0.0017", "1.1561")),
    ("sigmoid_binary_cross_entropy", KERAS_BIN[1], KERAS_BIN[0],
     {"focal_gamma": 5.0, "focal_alpha": 0.25}, "none", ("0.0004", "0.8670")),
    ("binary_cross_entropy", P_BIN, KERAS_BIN[0], {"focal_gamma": 2.0}, "none",
     ("0.330", "0.206")),
]


def _printed(value: float, printed: str) -> None:
    """Within one unit of the docstring's last printed digit, or 1e-6 relative (the
    docstrings truncate as often as they round, and were computed in float32)."""
    mantissa, _, exponent = printed.partition("e")
    digits = len(mantissa.split(".")[1]) if "." in mantissa else 0
    unit = 10.0 ** (-digits + (int(exponent) if exponent else 0))
    assert value == pytest.approx(float(printed), abs=max(unit, 1e-6 * abs(float(printed))))


@pytest.mark.parametrize("fn, scores, second, opts, reduction, printed", KERAS_DOCS,
                         ids=[f"{d[0]}-{d[4]}-{d[5]}" for d in KERAS_DOCS])
def test_keras_documented_examples(fn, scores, second, opts, reduction, printed) -> None:
    r = getattr(xentropy, fn)(scores, second, convention="keras", reduction=reduction, **opts)
    if reduction == "none":
        assert len(r.losses) == len(printed)
        for v, s in zip(r.losses, printed, strict=True):
            _printed(float(v), s)
    else:
        _printed(r.loss, printed)


def test_sklearn_documented_example() -> None:
    """log_loss docstring: log_loss(["spam", "ham", "ham", "spam"], [[.1, .9], [.9, .1],
    [.8, .2], [.35, .65]]) = 0.21616 (classes sorted: ham = 0, spam = 1)."""
    p = np.array([[0.1, 0.9], [0.9, 0.1], [0.8, 0.2], [0.35, 0.65]])
    y = np.array([1, 0, 0, 1])
    r = xentropy.categorical_cross_entropy_with_integer_labels(p, y, convention="sklearn")
    assert r.loss == pytest.approx(0.21616187468057912, rel=1e-12)
    assert round(r.loss, 5) == 0.21616
    r = xentropy.binary_cross_entropy(p[:, 1], y.astype(float), convention="sklearn")
    assert r.loss == pytest.approx(0.21616187468057912, rel=1e-12)


def test_pytorch_documented_values() -> None:
    """PyTorch's docs print no numbers; these are exact by hand: the README example,
    log C for uniform logits, BCE at p = 1/2, the −100 clamp, and torchvision's focal
    loss at x = 0 (p = 1/2: α (1/2)^γ log 2)."""
    r = xentropy.softmax_cross_entropy_with_integer_labels(
        np.array([[2.0, 1.0, 0.1]]), np.array([0]), convention="pytorch")
    assert r.loss == pytest.approx(0.4170300162778335, rel=1e-12)
    r = xentropy.softmax_cross_entropy_with_integer_labels(
        np.zeros((2, 5)), np.array([1, 4]), convention="pytorch")
    assert r.loss == pytest.approx(math.log(5), rel=1e-12)
    r = xentropy.binary_cross_entropy(np.array([0.5, 0.0]), np.array([1.0, 1.0]),
                                      convention="pytorch", reduction="none")
    assert_value(r.losses, [math.log(2), 100.0], "BCE")
    r = xentropy.sigmoid_binary_cross_entropy(np.zeros(2), np.array([1.0, 0.0]),
                                              convention="pytorch", focal_gamma=2.0,
                                              reduction="none")
    assert_value(r.losses, [0.25 * 0.25 * math.log(2), 0.75 * 0.25 * math.log(2)], "focal")


# ---------------------------------------------------------------------------- 4. refusals


def _x(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(4).normal(size=shape)


LOGITS, PROBS = _x((3, 4)), _softmax(_x((3, 4)))
LABELS, TARGETS = np.array([0, 1, 3]), _softmax(_x((3, 4)) * 2)
BX, BP, BT = _x((3, 4)), 1 / (1 + np.exp(-_x((3, 4)))), np.full((3, 4), 0.5)
BX1, BP1, BT1 = _x((3,)), np.array([0.2, 0.6, 0.9]), np.array([0.0, 1.0, 1.0])

NOT_IN_CONVENTION = [
    # (convention, function, scores, second, options, field)
    ("pytorch", "softmax_cross_entropy_with_integer_labels", LOGITS, LABELS,
     {"sample_weights": np.ones(3)}, "sample_weights"),
    ("pytorch", "softmax_cross_entropy", LOGITS, TARGETS, {"sample_weights": np.ones(3)},
     "sample_weights"),
    ("pytorch", "softmax_cross_entropy_with_integer_labels", LOGITS, LABELS,
     {"focal_gamma": 2.0}, "focal_gamma"),
    ("pytorch", "categorical_cross_entropy_with_integer_labels", PROBS, LABELS,
     {"label_smoothing": 0.1}, "label_smoothing"),  # DECISION: F.nll_loss has none
    ("pytorch", "sigmoid_binary_cross_entropy", BX, BT, {"mask": np.ones((3, 4))}, "mask"),
    ("pytorch", "sigmoid_binary_cross_entropy", BX, BT, {"label_smoothing": 0.1},
     "label_smoothing"),
    ("pytorch", "binary_cross_entropy", BP, BT, {"pos_weight": 2.0}, "pos_weight"),
    ("pytorch", "binary_cross_entropy", BP, BT, {"focal_gamma": 2.0}, "focal_gamma"),
    ("pytorch", "sigmoid_binary_cross_entropy", BX, BT, {"focal_gamma": 2.0, "pos_weight": 2.0},
     "pos_weight"),  # DECISION: torchvision's focal loss has no weights
    ("pytorch", "sigmoid_binary_cross_entropy", BX, BT,
     {"focal_gamma": 2.0, "sample_weights": np.ones(3)}, "sample_weights"),
    ("keras", "softmax_cross_entropy_with_integer_labels", LOGITS, LABELS,
     {"class_weights": np.ones(4)}, "class_weights"),
    ("keras", "categorical_cross_entropy", PROBS, TARGETS, {"class_weights": np.ones(4)},
     "class_weights"),
    ("keras", "sigmoid_binary_cross_entropy", BX, BT, {"pos_weight": 2.0}, "pos_weight"),
    ("keras", "sigmoid_binary_cross_entropy", BX, BT, {"class_weights": np.ones(4)},
     "class_weights"),
    ("keras", "binary_cross_entropy", BP, BT, {"mask": np.ones((3, 4))}, "mask"),
    ("keras", "softmax_cross_entropy_with_integer_labels", LOGITS, LABELS,
     {"ignore_index": 1, "label_smoothing": 0.1}, "label_smoothing"),  # DECISION
    ("keras", "softmax_cross_entropy_with_integer_labels", LOGITS, LABELS,
     {"ignore_index": 1, "focal_gamma": 2.0}, "focal_gamma"),  # DECISION
    ("sklearn", "categorical_cross_entropy_with_integer_labels", PROBS, LABELS,
     {"class_weights": np.ones(4)}, "class_weights"),
    ("sklearn", "softmax_cross_entropy_with_integer_labels", LOGITS, LABELS,
     {"label_smoothing": 0.1}, "label_smoothing"),
    ("sklearn", "softmax_cross_entropy_with_integer_labels", LOGITS, LABELS,
     {"ignore_index": 1}, "ignore_index"),
    ("sklearn", "categorical_cross_entropy_with_integer_labels", PROBS, LABELS,
     {"focal_gamma": 2.0}, "focal_gamma"),
    ("sklearn", "binary_cross_entropy", BP1, BT1, {"mask": np.ones(3)}, "mask"),
    ("sklearn", "sigmoid_binary_cross_entropy", BX1, BT1, {"pos_weight": 2.0}, "pos_weight"),
    ("sklearn", "sigmoid_binary_cross_entropy", BX1, BT1, {"focal_gamma": 2.0},
     "focal_gamma"),
    ("sklearn", "categorical_cross_entropy", PROBS, TARGETS, {}, "targets"),  # DECISION
]


@pytest.mark.parametrize("convention, fn, scores, second, opts, field", NOT_IN_CONVENTION,
                         ids=[f"{d[0]}-{d[1]}-{d[5]}" for d in NOT_IN_CONVENTION])
def test_not_in_convention(convention, fn, scores, second, opts, field) -> None:
    with pytest.raises(InputError) as info:
        getattr(xentropy, fn)(scores, second, convention=convention, **opts)
    assert info.value.kind == "not_in_convention", info.value
    assert info.value.field == field, info.value
    # the message says which library lacks the option
    names = {"pytorch": ("pytorch", "torch"), "keras": ("keras",),
             "sklearn": ("sklearn", "scikit-learn")}[convention]
    assert any(n in str(info.value).lower() for n in names), info.value


def test_sklearn_refuses_soft_and_multilabel_binary_input() -> None:
    with pytest.raises(InputError) as info:
        xentropy.binary_cross_entropy(BP1, np.array([0.3, 1.0, 0.0]), convention="sklearn")
    assert info.value.field == "targets"
    with pytest.raises(InputError):
        xentropy.binary_cross_entropy(BP, (BT > 0.4).astype(float), convention="sklearn")


def _undefined(call_: Any) -> InputError:
    with pytest.raises(InputError) as info:
        call_()
    assert info.value.kind == "undefined_in_convention", info.value
    return info.value


def test_pytorch_mean_over_an_all_ignored_batch_is_undefined(torch: Any) -> None:
    y = np.full(3, -100)
    assert math.isnan(O.pytorch_categorical(LOGITS, y, from_logits=True).value)
    for opts in ({}, {"label_smoothing": 0.1}, {"class_weights": np.ones(4)}):
        err = _undefined(lambda o=opts: xentropy.softmax_cross_entropy_with_integer_labels(
            LOGITS, y, convention="pytorch", **o))
        assert "nan" in str(err).lower()
    _undefined(lambda: xentropy.categorical_cross_entropy_with_integer_labels(
        PROBS, y, convention="pytorch"))
    _undefined(lambda: xentropy.softmax_cross_entropy_with_integer_labels(
        LOGITS, np.array([0, 2, 2]), convention="pytorch", ignore_index=2,
        class_weights=np.array([0.0, 1.0, 1.0, 1.0])))  # counted weights sum to 0: 0/0
    # sum and none of an all-ignored batch are PyTorch's 0
    for red in ("sum", "none"):
        r = xentropy.softmax_cross_entropy_with_integer_labels(
            LOGITS, y, convention="pytorch", reduction=red, return_gradient=True)
        assert np.all(np.asarray(r.losses) == 0) and np.all(np.asarray(r.gradient) == 0)


def test_pytorch_log_of_zero_is_undefined(torch: Any) -> None:
    p0 = np.array([[0.0, 0.5, 0.5], [0.2, 0.3, 0.5]])
    # p_y = 0: torch's loss is inf
    assert O.pytorch_categorical(p0, np.array([0, 1]), from_logits=False).value == math.inf
    err = _undefined(lambda: xentropy.categorical_cross_entropy_with_integer_labels(
        p0, np.array([0, 1]), convention="pytorch"))
    assert "inf" in str(err).lower()
    # a zero off the label: finite loss, but torch's gradient there is 0·(1/0) = NaN
    assert math.isnan(O.pytorch_categorical(p0, np.array([1, 2]), from_logits=False)
                      .gradient[0, 0])
    _undefined(lambda: xentropy.categorical_cross_entropy_with_integer_labels(
        p0, np.array([1, 2]), convention="pytorch", return_gradient=True))
    # probability targets: t·log p = 0·(−inf) = NaN even where t = 0
    t = np.array([[0.0, 0.5, 0.5], [0.2, 0.3, 0.5]])
    assert math.isnan(O.pytorch_categorical(p0, targets=t, from_logits=False).value)
    _undefined(lambda: xentropy.categorical_cross_entropy(p0, t, convention="pytorch"))


def test_sklearn_all_zero_sample_weights_is_undefined(sklearn: Any) -> None:
    with pytest.raises(ValueError):
        O.sklearn_value(PROBS, LABELS, from_logits=False, sample_weights=np.zeros(3))
    _undefined(lambda: xentropy.categorical_cross_entropy_with_integer_labels(
        PROBS, LABELS, convention="sklearn", sample_weights=np.zeros(3)))


# ---------------------------------------------------------------------------- 5. resolved


def test_resolved_shows_the_convention_defaults() -> None:
    r = xentropy.softmax_cross_entropy_with_integer_labels(LOGITS, LABELS, convention="pytorch")
    assert r.resolved["ignore_index"] == -100
    r = xentropy.sigmoid_binary_cross_entropy(BX, BT, convention="pytorch", focal_gamma=2.0)
    assert r.resolved["focal_alpha"] == 0.25
    r = xentropy.softmax_cross_entropy(LOGITS, TARGETS, convention="keras", focal_gamma=1.5)
    assert r.resolved["focal_alpha"] == 0.25 and r.resolved["focal_gamma"] == 1.5
    r = xentropy.categorical_cross_entropy(PROBS, TARGETS, convention="keras")
    assert r.resolved["epsilon"] == 1e-7
    r = xentropy.categorical_cross_entropy_with_integer_labels(PROBS, LABELS,
                                                               convention="sklearn")
    assert r.resolved["epsilon"] == float(np.finfo(np.float64).eps)
    r = xentropy.softmax_cross_entropy_with_integer_labels(LOGITS, LABELS)
    assert isinstance(r.resolved, dict)  # the default convention, "xentropy", too


def test_keras_focal_alpha_alone_defaults_gamma_to_2(keras: Any) -> None:
    """DECISION: focal_alpha sent without focal_gamma → Keras' own default gamma 2.0."""
    alpha = np.array([0.2, 0.4, 0.6, 0.8])
    r = xentropy.softmax_cross_entropy(LOGITS, TARGETS, convention="keras", focal_alpha=alpha,
                                       return_gradient=True)
    ref = O.keras_categorical(LOGITS, targets=TARGETS, from_logits=True, focal_alpha=alpha)
    assert_value(r.loss, ref.value, "loss")
    assert_gradient(r.gradient, ref.gradient, "gradient")
    assert r.resolved["focal_gamma"] == 2.0
