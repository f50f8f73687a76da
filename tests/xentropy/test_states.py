"""States: any split of a batch, merged in any order and any tree shape, finalizes to the
whole batch's answer (counts exactly, floats within 1e-12); what a state gives only
approximately is listed with a bound that holds; invalid states are refused with a path.

Splits have 1 to 64 parts, empty parts (the identity state) and parts of one sample
included; every part's state goes through its JSON form before it is merged.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xentropy
from xentropy import StateError
from xentropy.states.calibration import histogram_edges

#: XENTROPY_STATE_EXAMPLES=2000 for a longer hunt.
EXAMPLES = settings(max_examples=int(os.environ.get("XENTROPY_STATE_EXAMPLES", "60")),
                    deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

REL = 1e-12


# --------------------------------------------------------------------------- helpers


def _split(draw: Any, n: int) -> list[slice]:
    """1 to 64 consecutive parts of range(n), some empty, often of one sample."""
    parts = draw(st.integers(1, 64))
    cuts = sorted(draw(st.lists(st.integers(0, n), min_size=parts - 1, max_size=parts - 1)))
    bounds = [0, *cuts, n]
    return [slice(bounds[i], bounds[i + 1]) for i in range(parts)]


def _json(state: xentropy.State) -> xentropy.State:
    """Through the wire form, as a client would store and send it back."""
    return xentropy.state_from_json(json.loads(orjson.dumps(state.to_json())))


def _merge_tree(draw: Any, states: list[xentropy.State]) -> xentropy.State:
    """Merge in a random order and a random tree shape (nodes of 1 to 4 children)."""
    order = draw(st.permutations(range(len(states))))
    items = [states[i] for i in order]
    while len(items) > 1:
        width = draw(st.integers(1, min(4, len(items))))
        at = draw(st.integers(0, len(items) - width))
        node = xentropy.merge(items[at:at + width])
        if draw(st.booleans()):
            node = _json(node)
        items[at:at + width] = [node]
    return items[0]


def _merged(draw: Any, n: int, state_of: Callable[[slice], xentropy.State]) -> xentropy.State:
    parts = _split(draw, n)
    states = [state_of(s) for s in parts if s.start < s.stop]
    template = states[0]
    states += [xentropy.empty_like(template) for s in parts if s.start == s.stop]
    return _json(_merge_tree(draw, [_json(s) for s in states]))


SKIP = {"state", "options", "losses", "gradient", "per_row", "temperature", "approximate"}


def assert_same(exact: Any, merged: Any, *, approximate: dict[str, float] | None = None,
                path: str = "", abs_tol: float = 0.0) -> None:
    """Counts equal, floats within 1e-12 relative (``abs_tol`` for differences of sums),
    approximate statistics within their bound."""
    approximate = approximate or {}
    if dataclasses.is_dataclass(exact):
        for f in dataclasses.fields(exact):
            if f.name in SKIP:
                continue
            name = f"{path}.{f.name}" if path else f.name
            key = name if not name.startswith("per_class[") else "per_class." + f.name
            a, b = getattr(exact, f.name), getattr(merged, f.name)
            if key in approximate or name in approximate:
                bound = approximate.get(key, approximate.get(name, 0.0))
                if isinstance(a, float):
                    assert abs(a - b) <= bound + 1e-13, (name, a, b, bound)
                continue
            assert_same(a, b, approximate=approximate, path=name, abs_tol=abs_tol)
    elif isinstance(exact, tuple):
        assert isinstance(merged, tuple) and len(exact) == len(merged), path
        for i, (a, b) in enumerate(zip(exact, merged, strict=True)):
            assert_same(a, b, approximate=approximate, path=f"{path}[{i}]", abs_tol=abs_tol)
    elif isinstance(exact, float) and not isinstance(exact, bool):
        assert isinstance(merged, float), (path, exact, merged)
        assert merged == pytest.approx(exact, rel=REL, abs=abs_tol), path
    else:
        assert exact == merged, (path, exact, merged)


# --------------------------------------------------------------------------- losses

CONVENTION_OPTIONS = {
    # convention -> the options its library has (beyond reduction, normalization, units)
    "xentropy": {"class_weights", "sample_weights", "ignore_index", "label_smoothing",
                 "focal_gamma", "focal_alpha", "epsilon"},
    "pytorch": {"class_weights", "ignore_index", "label_smoothing"},
    "keras": {"sample_weights", "label_smoothing", "focal_gamma", "focal_alpha", "epsilon"},
    "sklearn": {"sample_weights"},
}


def _state_of_part(call: Callable[..., Any], args: tuple[Any, ...], options: dict[str, Any]
                   ) -> xentropy.State:
    """A part's state. A part whose own mean is undefined under its convention (every
    PyTorch label ignored) has none with "mean"; its sums do not depend on the reduction,
    so it is computed with "sum" and given the reduction of the others."""
    try:
        return call(*args, return_state=True, **options).state
    except xentropy.InputError as error:
        if error.kind != "undefined_in_convention" or options.get("reduction") == "sum":
            raise
    state = call(*args, return_state=True, **{**options, "reduction": "sum"}).state
    return dataclasses.replace(state, options=dataclasses.replace(
        state.options, reduction=options.get("reduction", "mean")))


@st.composite
def categorical_cases(draw: Any) -> tuple[Any, ...]:
    n = draw(st.integers(1, 80))
    c = draw(st.integers(2, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    convention = draw(st.sampled_from(sorted(CONVENTION_OPTIONS)))
    from_logits = draw(st.booleans())
    labelled = convention == "sklearn" or draw(st.booleans())
    x = rng.normal(scale=draw(st.sampled_from([0.5, 3.0, 30.0])), size=(n, c))
    if not from_logits:
        x = np.exp(x - x.max(axis=1, keepdims=True))
        x /= x.sum(axis=1, keepdims=True)
    if labelled:
        target = rng.integers(0, c, n)
    else:
        target = rng.dirichlet(np.ones(c) * 0.5, n)
    allowed = CONVENTION_OPTIONS[convention]
    options: dict[str, Any] = {"convention": convention}
    options["reduction"] = draw(st.sampled_from(["mean", "sum"]))
    options["normalization"] = draw(st.sampled_from(["weights", "samples"]))
    options["units"] = draw(st.sampled_from(["nats", "bits"]))
    wants = draw(st.sets(st.sampled_from(sorted(allowed))))
    if convention == "pytorch" and not from_logits:
        wants.discard("label_smoothing")
    if "class_weights" in wants:
        options["class_weights"] = rng.uniform(0.1, 3.0, c)
    if "sample_weights" in wants:
        options["sample_weights"] = rng.uniform(0.0, 3.0, n) * (rng.random(n) > 0.1)
    if "ignore_index" in wants and labelled:
        ignored = -100 if convention == "pytorch" else 0
        target = np.where(rng.random(n) < 0.2, ignored, target)
        options["ignore_index"] = ignored
    elif convention == "pytorch" and labelled:
        target = np.where(rng.random(n) < 0.2, -100, target)  # its default ignore_index
    if "label_smoothing" in wants:
        options["label_smoothing"] = draw(st.sampled_from([0.05, 0.3]))
    if "focal_gamma" in wants:
        options["focal_gamma"] = draw(st.sampled_from([0.5, 2.0]))
    if "focal_alpha" in wants:
        options["focal_alpha"] = draw(st.sampled_from([0.25, "per class"]))
        if options["focal_alpha"] == "per class":
            options["focal_alpha"] = rng.uniform(0.1, 1.0, c)
    if "epsilon" in wants and not from_logits:
        options["epsilon"] = 1e-3
    if convention == "keras" and "ignore_index" in options and (
        "label_smoothing" in options or "focal_gamma" in options or "focal_alpha" in options
    ):
        options.pop("ignore_index")
        target = np.abs(target) % c
    if not labelled:
        options.pop("ignore_index", None)
    call = {
        (True, True): xentropy.softmax_cross_entropy_with_integer_labels,
        (True, False): xentropy.softmax_cross_entropy,
        (False, True): xentropy.categorical_cross_entropy_with_integer_labels,
        (False, False): xentropy.categorical_cross_entropy,
    }[from_logits, labelled]
    return call, x, target, options


def _part_options(options: dict[str, Any], part: slice, per_sample: tuple[str, ...]
                  ) -> dict[str, Any]:
    return {k: (v[part] if k in per_sample else v) for k, v in options.items()}


@given(case=categorical_cases(), data=st.data())
@EXAMPLES
def test_categorical_loss_states_merge_to_the_whole_batch(case: Any, data: Any) -> None:
    call, x, target, options = case
    try:
        whole = call(x, target, **options)
    except xentropy.InputError as error:  # e.g. a PyTorch mean over no counted sample
        assert error.kind in ("undefined_in_convention", "zero_denominator")
        return
    merged = _merged(data.draw, x.shape[0], lambda s: _state_of_part(
        call, (x[s], target[s]), _part_options(options, s, ("sample_weights",))))
    result = xentropy.finalize(merged)
    assert_same(whole, result)
    assert result.resolved == whole.resolved and result.losses is None
    assert (result.n_samples, result.n_ignored, result.n_clipped) == (
        whole.n_samples, whole.n_ignored, whole.n_clipped)


@st.composite
def binary_cases(draw: Any) -> tuple[Any, ...]:
    n = draw(st.integers(1, 60))
    matrix = draw(st.booleans())
    c = draw(st.integers(1, 4)) if matrix else 1
    shape = (n, c) if matrix else (n,)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    from_logits = draw(st.booleans())
    convention = draw(st.sampled_from(["xentropy", "pytorch", "keras", "sklearn"]))
    x = rng.normal(scale=draw(st.sampled_from([0.5, 4.0, 40.0])), size=shape)
    if not from_logits:
        x = 1.0 / (1.0 + np.exp(-x))
    soft = draw(st.booleans()) and convention != "sklearn"
    t = rng.random(shape) if soft else (rng.random(shape) < 0.5).astype(float)
    options: dict[str, Any] = {
        "convention": convention,
        "reduction": draw(st.sampled_from(["mean", "sum"])),
        "normalization": draw(st.sampled_from(["weights", "samples"])),
        "units": draw(st.sampled_from(["nats", "bits"])),
    }
    allowed = {
        "xentropy": {"pos_weight", "class_weights", "sample_weights", "mask", "label_smoothing",
                     "focal_gamma", "focal_alpha", "epsilon"},
        "pytorch": {"class_weights", "sample_weights"} | ({"pos_weight"} if from_logits else set())
        | ({"focal"} if from_logits else set()),
        "keras": {"sample_weights", "label_smoothing", "focal_gamma", "focal_alpha", "epsilon"},
        "sklearn": {"sample_weights"},
    }[convention]
    wants = draw(st.sets(st.sampled_from(sorted(allowed))))
    if "focal" in wants:
        wants = {"focal_gamma", "focal_alpha"}
    if convention == "sklearn" and matrix:
        return binary_cases_fallback(x[:, 0], t[:, 0], options, wants, rng, n, from_logits)
    if "pos_weight" in wants:
        options["pos_weight"] = 2.0 if draw(st.booleans()) or not matrix else rng.uniform(
            0.5, 3.0, c)
    if "class_weights" in wants and matrix:
        options["class_weights"] = rng.uniform(0.1, 2.0, c)
    if "sample_weights" in wants:
        options["sample_weights"] = rng.uniform(0.0, 3.0, n)
    if "mask" in wants:
        options["mask"] = (rng.random(shape) < 0.8).astype(float)
    if "label_smoothing" in wants:
        options["label_smoothing"] = 0.1
    if "focal_gamma" in wants:
        options["focal_gamma"] = 2.0
    if "focal_alpha" in wants:
        options["focal_alpha"] = 0.25
    if "epsilon" in wants and not from_logits:
        options["epsilon"] = 1e-4
    call = xentropy.sigmoid_binary_cross_entropy if from_logits else xentropy.binary_cross_entropy
    return call, x, t, options


def binary_cases_fallback(x: Any, t: Any, options: dict[str, Any], wants: set[str], rng: Any,
                          n: int, from_logits: bool) -> tuple[Any, ...]:
    if "sample_weights" in wants:
        options["sample_weights"] = rng.uniform(0.1, 3.0, n)
    call = xentropy.sigmoid_binary_cross_entropy if from_logits else xentropy.binary_cross_entropy
    return call, x, t, options


@given(case=binary_cases(), data=st.data())
@EXAMPLES
def test_binary_loss_states_merge_to_the_whole_batch(case: Any, data: Any) -> None:
    call, x, t, options = case
    try:
        whole = call(x, t, **options)
    except xentropy.InputError as error:
        assert error.kind in ("undefined_in_convention", "zero_denominator")
        return
    merged = _merged(data.draw, x.shape[0], lambda s: _state_of_part(
        call, (x[s], t[s]), _part_options(options, s, ("sample_weights", "mask"))))
    result = xentropy.finalize(merged)
    assert_same(whole, result)
    assert result.resolved == whole.resolved


# --------------------------------------------------------------------------- divergences


@given(data=st.data())
@EXAMPLES
def test_divergence_states_merge_to_the_whole_batch(data: Any) -> None:
    draw = data.draw
    n, c = draw(st.integers(1, 80)), draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    p = rng.dirichlet(np.ones(c) * 0.5, n)
    p[rng.random((n, c)) < 0.2] = 0.0
    p[p.sum(axis=1) == 0, 0] = 1.0
    p /= p.sum(axis=1, keepdims=True)
    options = {"units": draw(st.sampled_from(["nats", "bits"])),
               "reduction": draw(st.sampled_from(["mean", "sum"]))}
    if draw(st.booleans()):
        q = {"q_logits": rng.normal(scale=3.0, size=(n, c))}
    else:
        q = {"q": rng.dirichlet(np.ones(c), n), "epsilon": 1e-8}
    whole = xentropy.divergences(p, **q, **options)
    merged = _merged(draw, n, lambda s: xentropy.divergences(
        p[s], **{k: (v[s] if k != "epsilon" else v) for k, v in q.items()}, return_state=True,
        **options).state)
    result = xentropy.finalize(merged)
    assert_same(whole, result)
    assert result.per_row is None and result.gradient is None


# --------------------------------------------------------------------------- calibration


@st.composite
def calibration_cases(draw: Any) -> tuple[Any, ...]:
    n = draw(st.integers(1, 200))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    binary = draw(st.booleans())
    from_logits = draw(st.booleans())
    c = 2 if binary else draw(st.integers(2, 7))
    scale = draw(st.sampled_from([0.5, 3.0, 12.0]))
    z = rng.normal(scale=scale, size=(n,) if binary else (n, c))
    if binary:
        p = 1.0 / (1.0 + np.exp(-z))
        y = (rng.random(n) < p).astype(int)
    else:
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        y = np.array([rng.choice(c, p=row) for row in p])
    if not from_logits and draw(st.booleans()):
        # ties, exact 0 and 1 (cells of one value, never split)
        p = np.round(p, 1)
        if not binary:
            p[:, 0] += 1.0 - p.sum(axis=1)
            p = np.clip(p, 0.0, 1.0)
            p /= p.sum(axis=1, keepdims=True)
    options: dict[str, Any] = {
        "n_bins": draw(st.sampled_from([1, 2, 5, 15, 40, 300])),
        "binning": draw(st.sampled_from(["uniform", "quantile"])),
        "units": draw(st.sampled_from(["nats", "bits"])),
    }
    if draw(st.booleans()):
        magnitude = draw(st.sampled_from([1e-300, 1.0, 1e200]))
        options["sample_weights"] = rng.uniform(0.05, 3.0, n) * magnitude
    if not from_logits and draw(st.booleans()):
        options["epsilon"] = 1e-6
    return (z if from_logits else p), y, from_logits, options


def _calibration(x: Any, y: Any, from_logits: bool, **options: Any) -> Any:
    if from_logits:
        return xentropy.calibration_report(logits=x, labels=y, **options)
    return xentropy.calibration_report(x, y, **options)


@given(case=calibration_cases(), data=st.data())
@EXAMPLES
def test_calibration_states_merge_to_the_whole_batch(case: Any, data: Any) -> None:
    x, y, from_logits, options = case
    whole = _calibration(x, y, from_logits, **options)
    merged = _merged(data.draw, y.shape[0], lambda s: _calibration(
        x[s], y[s], from_logits, return_state=True,
        **_part_options(options, s, ("sample_weights",))).state)
    result = xentropy.finalize(merged)
    approximate = {a.statistic: a.error_bound for a in result.approximate}
    quantile = options["binning"] == "quantile"
    expected = {"ace"} | ({"ece", "mce", "rmsce", "bins"} if quantile else set())
    if quantile and result.per_class is not None:
        expected.add("per_class.ece")
    assert set(approximate) == expected
    assert result.temperature is None
    for name, bound in approximate.items():
        assert 0 <= bound and math.isfinite(bound), name
    # Differences of sums (|Σw·outcome − Σw·confidence|) are exact to the rounding of the
    # sums, about N·u of Σw: an absolute tolerance on the calibration errors.
    assert_same(whole, result, approximate=approximate, abs_tol=1e-13)
    if quantile:
        assert len(result.bins) == len(whole.bins)
        assert sum(b.count for b in result.bins) == whole.n_samples
        if approximate["bins"] == 0:  # no ambiguous cell: the bins are exact
            assert_same(whole.bins, result.bins, abs_tol=1e-13)


def test_quantile_bounds_hold_and_are_useful():
    """20 000 calibrated predictions (labels drawn from them, the hardest case for the
    bound: bins with gaps near 0) in 8 parts: every bound holds, the ECE bound is below
    0.02 and the error itself below 0.005."""
    rng = np.random.default_rng(5)
    p = rng.dirichlet(np.ones(5), 20_000)
    y = np.array([rng.choice(5, p=row) for row in p])
    whole = xentropy.calibration_report(p, y, binning="quantile")
    states = [xentropy.calibration_report(p[s], y[s], binning="quantile",
                                          return_state=True).state
              for s in np.array_split(np.arange(20_000), 8)]
    result = xentropy.finalize(xentropy.merge(states))
    bounds = {a.statistic: a.error_bound for a in result.approximate}
    for name in ("ece", "ace", "mce", "rmsce"):
        assert abs(getattr(result, name) - getattr(whole, name)) <= bounds[name], name
    for mine, exact in zip(result.per_class, whole.per_class, strict=True):
        assert abs(mine.ece - exact.ece) <= bounds["per_class.ece"]
    assert bounds["ece"] < 0.02 and abs(result.ece - whole.ece) < 0.005
    # An overconfident model (every bin's gap of one sign): the flows between bins cancel
    overconfident = xentropy.calibration_report(p ** 3 / (p ** 3).sum(1, keepdims=True), y,
                                                return_state=True).state
    ace = next(a for a in xentropy.finalize(overconfident).approximate if a.statistic == "ace")
    assert ace.error_bound < 0.002


@pytest.mark.parametrize("binning", ["uniform", "quantile"])
def test_calibration_state_sizes(binning):
    """JSON bytes of a 15-bin state of 1000 classes (weighted, so that every pair has a
    lo) stay under 1 MB with every histogram cell a top-label confidence can reach, and
    every class-bin, in use: 0.95 MB with uniform bins, 0.95 MB with quantile bins (2.2 MB
    before their class cells were rounded to CELL_DIGITS digits), per-class NLL and Brier
    sums included."""
    from xentropy.calibration import calibration_state_of

    c, n_bins = 1000, 15
    rng = np.random.default_rng(3)
    edges = histogram_edges(n_bins)
    middles = edges[1:]  # the value a cell (lower, upper] surely holds
    middles = middles[middles > 2.0 / c]
    n = c * n_bins
    b = (np.arange(n) // c) % n_bins
    level = np.empty(n)
    for bin_ in range(n_bins):  # cover the cells of each bin, and each bin for every class
        inside = middles[(middles > bin_ / n_bins) & (middles <= (bin_ + 1) / n_bins)]
        at = np.flatnonzero(b == bin_)
        level[at] = inside[np.arange(at.shape[0]) % inside.shape[0]]
    k = np.arange(n) % c
    p = np.repeat(((1.0 - level) / (c - 1))[:, None], c, axis=1)
    p[np.arange(n), k] = level
    y = np.where(rng.random(n) < level, k, (k + 1) % c)
    w = rng.uniform(0.5, 2.0, n)
    state = calibration_state_of(p, y, sample_weights=w, binning=binning)
    assert len(state.per_class.cells.index) == c * n_bins
    assert len(state.histogram.index) == middles.shape[0]
    size = len(orjson.dumps(state.to_json()))  # compact, as the service and the library write
    assert size < 1_000_000, size


def test_identity_and_single_state():
    r = xentropy.calibration_report([0.2, 0.9, 0.6], [0, 1, 1], return_state=True)
    s = r.state
    alone = xentropy.finalize(xentropy.merge([s]))
    with_empty = xentropy.finalize(xentropy.merge([xentropy.empty_like(s), s,
                                                   xentropy.empty_like(s)]))
    for out in (alone, with_empty):
        assert_same(r, out, approximate={"ace": 0.0})
    with pytest.raises(xentropy.InputError, match="no samples"):
        xentropy.finalize(xentropy.empty_like(s))


def test_state_needs_return_state_and_a_reduction():
    r = xentropy.softmax_cross_entropy_with_integer_labels([[1.0, 2.0]], [0])
    with pytest.raises(ValueError, match="return_state=True"):
        xentropy.state(r)
    with pytest.raises(xentropy.InputError) as error:
        xentropy.softmax_cross_entropy_with_integer_labels([[1.0, 2.0]], [0], reduction="none",
                                                           return_state=True)
    assert (error.value.field, error.value.kind) == ("return_state", "not_applicable")
    with pytest.raises(xentropy.InputError):
        xentropy.divergences([[1.0]], [[1.0]], reduction="none", return_state=True)


def test_histogram_cells_refine_every_bin_count():
    for n_bins in (1, 2, 3, 7, 15, 100, 255, 256, 257, 1000, 10_000):
        edges = histogram_edges(n_bins)
        assert np.isin(np.arange(n_bins + 1) / n_bins, edges).all(), n_bins
        assert (np.diff(edges) > 0).all()


# --------------------------------------------------------------------------- validation

LOSS = xentropy.softmax_cross_entropy_with_integer_labels(
    [[2.0, 1.0, 0.1], [0.5, 2.5, -0.5]], [0, 1], sample_weights=[0.5, 2.0], return_state=True,
).state.to_json()
SMOOTHED = xentropy.softmax_cross_entropy_with_integer_labels(
    [[2.0, 1.0, 0.1]], [0], label_smoothing=0.1, return_state=True).state.to_json()
CALIBRATION = xentropy.calibration_report(
    [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.6, 0.3, 0.1]], [0, 1, 2, 1],
    binning="quantile", n_bins=3, return_state=True,
).state.to_json()
DIVERGENCE = xentropy.divergences([[0.5, 0.5]], [[0.9, 0.1]], return_state=True).state.to_json()


def _set(obj: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    target = out
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


_DELETE = object()

INVALID = [
    # (state, path, value, the error's path, kind)
    (LOSS, ("surprise",), 1, ("surprise",), "extra_forbidden"),
    (LOSS, ("n_counted",), _DELETE, ("n_counted",), "missing"),
    (LOSS, ("kind",), "entropy", ("kind",), "enum"),
    (LOSS, ("version",), 2, ("version",), "unsupported_version"),
    (LOSS, ("n_samples",), -1, ("n_samples",), "out_of_range"),
    (LOSS, ("n_samples",), 2.5, ("n_samples",), "type_error"),
    (LOSS, ("n_samples",), True, ("n_samples",), "type_error"),
    (LOSS, ("loss",), [float("nan"), 0.0], ("loss", 0), "not_finite"),
    (LOSS, ("loss",), [1.0, 1.0], ("loss",), "not_normalised"),
    (LOSS, ("loss",), ["1", 0.0], ("loss", 0), "type_error"),
    (LOSS, ("loss",), [1.0], ("loss",), "shape_mismatch"),
    (LOSS, ("loss",), [-1.0, 0.0], ("loss",), "inconsistent_state"),
    (LOSS, ("n_samples",), 3, ("n_counted",), "inconsistent_state"),
    (LOSS, ("n_clipped",), 1, ("n_clipped",), "inconsistent_state"),
    (LOSS, ("options", "units"), "decibels", ("options", "units"), "enum"),
    (LOSS, ("options", "reduction"), "none", ("options", "reduction"), "enum"),
    (LOSS, ("options", "epsilon"), 0.1, ("options", "epsilon"), "inconsistent_state"),
    (LOSS, ("options", "class_weights"), [1.0, 2.0], ("options", "class_weights"),
     "shape_mismatch"),
    (LOSS, ("options", "label_smoothing"), 1.5, ("options", "label_smoothing"), "out_of_range"),
    (LOSS, ("options", "convention"), "sklearn", ("options", "epsilon"), "inconsistent_state"),
    (SMOOTHED, ("options", "convention"), "sklearn", ("options", "label_smoothing"),
     "not_in_convention"),
    (DIVERGENCE, ("js_divergence",), [1.0, 0.0], ("js_divergence",), "inconsistent_state"),
    (DIVERGENCE, ("cross_entropy",), [9.0, 0.0], ("cross_entropy",), "inconsistent_state"),
    (DIVERGENCE, ("options", "epsilon"), None, ("options", "epsilon"), "not_applicable"),
    (CALIBRATION, ("histogram", "count", 0), 5, ("histogram", "count"), "inconsistent_state"),
    (CALIBRATION, ("histogram", "count", 0), 0, ("histogram", "count", 0), "out_of_range"),
    (CALIBRATION, ("histogram", "index", 0), 10**6, ("histogram", "index", 0),
     "inconsistent_state"),
    (CALIBRATION, ("histogram", "min"), [0.5], ("histogram", "min"), "shape_mismatch"),
    (CALIBRATION, ("totals", "correct"), [100.0, 0.0], ("totals", "correct"),
     "inconsistent_state"),
    (CALIBRATION, ("per_class", "count"), [1, 1, 1], ("per_class", "count"),
     "inconsistent_state"),
    (CALIBRATION, ("per_class", "cells", "min"), [0.1], ("per_class", "cells", "min"),
     "not_applicable"),
    (CALIBRATION, ("per_class", "cells", "weight"), None, ("per_class", "cells", "weight"),
     "not_applicable"),
    (CALIBRATION, ("per_class", "cells", "rounding"), 0.5, ("per_class", "cells", "rounding"),
     "out_of_range"),
    (CALIBRATION, ("per_class", "cells", "gap", 0), 0.5, ("per_class", "cells", "gap", 0),
     "inconsistent_state"),
    (CALIBRATION, ("options", "n_bins"), 0, ("options", "n_bins"), "out_of_range"),
    (CALIBRATION, ("options", "binary"), True, ("options", "n_classes"), "not_applicable"),
    (CALIBRATION, ("totals", "weight"), [0.5, 0.0], ("totals", "weight"), "inconsistent_state"),
    (CALIBRATION, ("totals", "weight"), [9.0, 0.0], ("totals", "weight"), "inconsistent_state"),
    (CALIBRATION, ("weight_exponent",), 5000, ("weight_exponent",), "out_of_range"),
]


@pytest.mark.parametrize(("state", "where", "value", "path", "kind"), INVALID,
                         ids=[f"{s['kind']}-{'.'.join(map(str, w))}-{k}"
                              for s, w, _, _, k in INVALID])
def test_invalid_states_are_refused_with_their_path(state, where, value, path, kind):
    with pytest.raises(StateError) as error:
        xentropy.state_from_json(_set(state, where, value))
    assert (error.value.path, error.value.kind) == (path, kind), str(error.value)


def test_valid_states_read_back_to_the_same_json():
    for obj in (LOSS, CALIBRATION, DIVERGENCE):
        assert xentropy.state_from_json(obj).to_json() == obj


def test_states_that_disagree_do_not_merge():
    a = xentropy.calibration_report([0.2, 0.7], [0, 1], return_state=True).state
    for options, field in (({"n_bins": 10}, "n_bins"), ({"binning": "quantile"}, "binning"),
                           ({"units": "bits"}, "units")):
        b = xentropy.calibration_report([0.4, 0.9], [1, 1], return_state=True, **options).state
        with pytest.raises(StateError) as error:
            xentropy.merge([a, a, b])
        assert (error.value.index, error.value.path, error.value.kind) == (
            2, ("options", field), "states_disagree")
    loss = xentropy.softmax_cross_entropy_with_integer_labels([[1.0, 2.0]], [0],
                                                              return_state=True).state
    with pytest.raises(StateError) as error:
        xentropy.merge([a, loss])
    assert (error.value.index, error.value.path) == (1, ("kind",))
    for options, field in (({"convention": "pytorch"}, "convention"),
                           ({"normalization": "samples"}, "normalization"),
                           ({"label_smoothing": 0.1}, "label_smoothing")):
        other = xentropy.softmax_cross_entropy_with_integer_labels(
            [[1.0, 2.0]], [0], return_state=True, **options).state
        with pytest.raises(StateError) as error:
            xentropy.merge([loss, other])
        assert error.value.path[:2] == ("options", field) or error.value.path[0] == "options"
    three = xentropy.softmax_cross_entropy_with_integer_labels([[1.0, 2.0, 3.0]], [0],
                                                               return_state=True).state
    with pytest.raises(StateError) as error:
        xentropy.merge([loss, three])
    assert error.value.path == ("options", "n_classes")


# --------------------------------------------------------------------------- sizes

#: A state written before the class cells of quantile binning were rounded (exact pairs,
#: ``min`` and ``max``): the weighted 4-sample example of the tests below.
QUANTILE_STATE_BEFORE_ROUNDING: dict[str, Any] = {'kind': 'calibration',
     'version': 1,
     'options': {'input': 'probabilities',
                 'binary': False,
                 'n_classes': 3,
                 'n_bins': 3,
                 'binning': 'quantile',
                 'units': 'nats',
                 'epsilon': 2.220446049250313e-16},
     'n_samples': 4,
     'weight_exponent': 1,
     'totals': {'weight': [2.0, -2.7755575615628914e-17],
                'correct': [1.65, 8.326672684688674e-17],
                'confidence': [1.08, -8.326672684688674e-17],
                'nll': [1.5494902180547303, -3.469446951953614e-17],
                'brier': [0.92, -5.204170427930421e-17]},
     'histogram': {'index': [610, 815, 918, 1020],
                   'count': [1, 1, 1, 1],
                   'weight': [[1.0, 0.0], [0.35, 0.0], [0.5, 0.0], [0.15, 0.0]],
                   'confidence': [[0.4, 0.0], [0.21, 0.0], [0.35, 0.0], [0.12, 0.0]],
                   'outcome': [[1.0, 0.0], [0.0, 0.0], [0.5, 0.0], [0.15, 0.0]],
                   'abs_gap': [[0.6, 0.0], [0.21, 0.0], [0.15000000000000002, 0.0],
                               [0.029999999999999992, 0.0]],
                   'min': [0.4, 0.6, 0.7, 0.8],
                   'max': [0.4, 0.6, 0.7, 0.8]},
     'per_class': {'count': [1, 2, 1],
                   'weight': [[0.5, 0.0], [0.5, -2.7755575615628914e-17], [1.0, 0.0]],
                   'correct': [[0.5, 0.0], [0.15, 0.0], [1.0, 0.0]],
                   'probability': [[0.875, -4.163336342344337e-17],
                                   [0.625, -1.3877787807814457e-17],
                                   [0.5, 2.0816681711721685e-17]],
                   'cells': {'index': [0, 1, 2, 3, 5, 6, 7],
                             'gap': [[-0.315, 1.3877787807814457e-17], [-0.21, 0.0],
                                     [0.15000000000000002, 0.0], [-0.155, 0.0], [0.03, 0.0],
                                     [-0.1, 6.938893903907228e-18], [0.6, 0.0]],
                             'weight': [[1.15, 8.326672684688674e-17], [0.35, 0.0], [0.5, 0.0],
                                        [1.85, -1.1102230246251565e-16], [0.15, 0.0],
                                        [1.0, -2.7755575615628914e-17], [1.0, 0.0]],
                             'abs_gap': [[0.315, -1.3877787807814457e-17], [0.21, 0.0],
                                         [0.15000000000000002, 0.0],
                                         [0.645, -2.7755575615628914e-17], [0.03, 0.0],
                                         [0.1, -6.938893903907228e-18], [0.6, 0.0]],
                             'min': [0.1, 0.6, 0.7, 0.2, 0.8, 0.1, 0.4],
                             'max': [0.3, 0.6, 0.7, 0.3, 0.8, 0.1, 0.4]}}}
_QUANTILE_EXAMPLE = ([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.6, 0.3, 0.1]],
                     [0, 1, 2, 1], [1.0, 0.3, 2.0, 0.7])


def test_quantile_states_written_before_the_rounded_cells_still_read_and_merge():
    p, y, w = _QUANTILE_EXAMPLE
    exact = xentropy.calibration_report(p, y, sample_weights=w, binning="quantile", n_bins=3)
    old = xentropy.state_from_json(QUANTILE_STATE_BEFORE_ROUNDING)
    cells = old.to_json()["per_class"]["cells"]
    assert "min" not in cells and cells["rounding"] > 0
    assert all(isinstance(x, float) for x in cells["gap"])
    new = xentropy.calibration_report(p, y, sample_weights=w, binning="quantile", n_bins=3,
                                      return_state=True).state
    written = new.to_json()  # the old state also predates the per-class NLL and Brier sums
    del written["per_class"]["nll"], written["per_class"]["brier"]
    assert written == old.to_json()  # the same rounded cells from either layout
    result = xentropy.finalize(xentropy.merge([old, new.empty(), new]))
    bound = next(a.error_bound for a in result.approximate if a.statistic == "per_class.ece")
    twice = xentropy.calibration_report(p + p, y + y, sample_weights=w + w,
                                        binning="quantile", n_bins=3)
    for mine, whole in zip(result.per_class, twice.per_class, strict=True):
        assert abs(mine.ece - whole.ece) <= bound
    assert [c.count for c in result.per_class] == [2 * c.count for c in exact.per_class]


def test_cell_rounding_is_decimal_rounding_to_6_digits():
    """The rounding of quantile class cells against Python's own decimal formatting."""
    from xentropy.states.calibration import (
        CELL_DIGITS,
        ROUNDING_STEP,
        _round_significant,
    )

    rng = np.random.default_rng(11)
    wide = rng.uniform(-1, 1, 5000) * 10.0 ** rng.integers(-300, 300, 5000)
    assert (np.abs(_round_significant(wide) - wide) <= ROUNDING_STEP * np.abs(wide)).all()
    # Where the powers of ten are exact floats (the sums of cells live there), the result
    # is the float nearest the 6-digit decimal, so that JSON writes it in 6 digits.
    x = rng.uniform(-1, 1, 5000) * 10.0 ** rng.integers(-15, 15, 5000)
    x[:4] = [0.0, 1.0, 999999.5, 9.999995e-7]
    mine = _round_significant(x)
    oracle = np.array([float(f"{v:.{CELL_DIGITS}g}") for v in x.tolist()])
    assert (np.abs(mine - x) <= ROUNDING_STEP * np.abs(x)).all()
    assert np.mean(mine == oracle) > 0.999  # halfway cases may round either way
    assert all(len(repr(v).replace("-", "").replace(".", "").split("e")[0].strip("0")) <= 6
               for v in mine.tolist())


def test_rounded_cells_keep_their_bound_through_chains_of_written_merges():
    """States merged, written and read again 12 times over (ρ grows one step per written
    merge): per_class.ece stays within its bound of the exact quantile report."""
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.ones(4) * 0.5, 3000)
    y = np.array([rng.choice(4, p=row) for row in p])
    w = rng.uniform(0.1, 3.0, 3000)
    exact = xentropy.calibration_report(p, y, sample_weights=w, binning="quantile")
    parts = np.array_split(np.arange(3000), 13)
    state = None
    for s in parts:
        part = xentropy.calibration_report(p[s], y[s], sample_weights=w[s], binning="quantile",
                                           return_state=True).state
        merged = part if state is None else xentropy.merge([state, part])
        state = xentropy.state_from_json(json.loads(json.dumps(merged.to_json())))
    rho = state.to_json()["per_class"]["cells"]["rounding"]
    assert 12 * 5e-6 < rho < 14 * 5.1e-6
    result = xentropy.finalize(state)
    bound = next(a.error_bound for a in result.approximate if a.statistic == "per_class.ece")
    for mine, whole in zip(result.per_class, exact.per_class, strict=True):
        assert abs(mine.ece - whole.ece) <= bound
    assert bound < 0.5
