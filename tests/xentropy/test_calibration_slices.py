"""Slices of the calibration report: multi-label input and groups (xentropy.calibration.slices).

The oracle of every slice is a separate call of ``calibration_report`` on that slice's data
(the contract: "each exactly the report of a request holding that slice alone"), compared
with ``==`` on the frozen result dataclasses, i.e. every float to the last bit; the macro
averages are checked against NumPy's mean of the per-label values, and the merged states
against the report of the whole batch (as tests/xentropy/test_states.py does).
"""

from __future__ import annotations

import dataclasses
import math
import tracemalloc
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import xentropy
from tests.xentropy.test_states import EXAMPLES, _json, _split, assert_same
from xentropy import InputError, calibration_report
from xentropy.calibration.slices import MACRO_METRICS, MAX_GROUPS

RNG = np.random.default_rng(13)


def _plain(result: Any) -> Any:
    """A slice's result without its group value (a separate request has none)."""
    return dataclasses.replace(result, group=None)


def _multiclass(n: int, c: int, rng: np.random.Generator = RNG) -> tuple[np.ndarray, ...]:
    z = rng.normal(scale=2.0, size=(n, c))
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = (p.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1).clip(0, c - 1)
    return z, p, y


def _multilabel(n: int, c: int, rng: np.random.Generator = RNG) -> tuple[np.ndarray, ...]:
    z = rng.normal(scale=2.0, size=(n, c))
    p = 1.0 / (1.0 + np.exp(-z))
    t = (rng.random((n, c)) < p).astype(np.int64)
    return z, p, t


# --------------------------------------------------------------------------- multi-label


@pytest.mark.parametrize("binning", ["uniform", "quantile"])
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_per_label_is_the_binary_report_of_each_column(binning, from_logits, weighted):
    z, p, t = _multilabel(157, 5)
    x = z if from_logits else np.round(p, 2)  # rounded: ties and exact 0 and 1 too
    w = RNG.uniform(0.0, 3.0, 157) if weighted else None
    key = "logits" if from_logits else "probabilities"
    options = {"n_bins": 7, "binning": binning, "units": "bits"}
    r = calibration_report(**{key: x}, targets=t, multilabel=True, sample_weights=w,
                           **options)
    assert len(r.per_label) == 5
    for k, label in enumerate(r.per_label):
        alone = calibration_report(**{key: x[:, k]}, labels=t[:, k], sample_weights=w,
                                   **options)
        assert label == alone, k
    # micro: the binary report of the N·C pairs, row-major, each row's weight C times
    flat = calibration_report(**{key: x.ravel()}, labels=t.ravel(),
                              sample_weights=None if w is None else np.repeat(w, 5),
                              **options)
    assert r.micro == flat
    top = dataclasses.replace(r, per_label=None, macro=None, micro=None)
    assert top == flat  # the top level is the micro report
    for name in MACRO_METRICS:
        values = [getattr(label, name) for label in r.per_label]
        assert getattr(r.macro, name) == pytest.approx(np.mean(values), rel=1e-15), name


def test_multilabel_with_fit_temperature_fits_each_label_and_the_pool():
    z, _, t = _multilabel(120, 3)
    r = calibration_report(logits=z, targets=t, multilabel=True, fit_temperature=True)
    for k in range(3):
        assert r.per_label[k] == calibration_report(logits=z[:, k], labels=t[:, k],
                                                    fit_temperature=True)
    assert r.micro == calibration_report(logits=z.ravel(), labels=t.ravel(),
                                         fit_temperature=True)
    assert r.temperature == r.micro.temperature


@pytest.mark.parametrize(
    ("kwargs", "field", "position", "kind"),
    [
        ({"targets": [[0, 1], [2, 0], [1, 1]]}, "targets", (1, 0), "out_of_range"),
        ({"targets": [[0, 1], [0.5, 0], [1, 1]]}, "targets", (1, 0), "out_of_range"),
        ({"targets": [[0, 1], [1, 0]]}, "targets", (), "shape_mismatch"),
        ({"targets": [0, 1, 1]}, "targets", (), "shape_mismatch"),
        ({"targets": [[0, 1], [1, 0], [1, 1]], "labels": [0, 1, 1]}, "labels", (),
         "not_applicable"),
        ({}, "targets", (), "missing"),
    ],
)
def test_multilabel_input_errors_name_field_and_position(kwargs, field, position, kind):
    with pytest.raises(InputError) as info:
        calibration_report([[0.9, 0.2], [0.3, 0.6], [0.8, 0.1]], multilabel=True, **kwargs)
    assert (info.value.field, info.value.position, info.value.kind) == (field, position, kind)


def test_multilabel_probabilities_are_independent_but_in_0_1():
    # rows need not sum to 1 ...
    calibration_report([[0.9, 0.9], [0.1, 0.1]], targets=[[1, 1], [0, 0]], multilabel=True)
    # ... but each is a probability
    with pytest.raises(InputError) as info:
        calibration_report([[0.9, 1.5], [0.1, 0.1]], targets=[[1, 1], [0, 0]],
                           multilabel=True)
    assert (info.value.field, info.value.position) == ("probabilities", (0, 1))
    with pytest.raises(InputError) as info:
        calibration_report([0.9, 0.1], targets=[[1, 1], [0, 0]], multilabel=True)
    assert info.value.field == "probabilities" and info.value.kind == "shape_mismatch"
    with pytest.raises(InputError) as info:
        calibration_report([0.9, 0.1], [1, 0], targets=[1, 0])
    assert info.value.field == "targets" and info.value.kind == "not_applicable"


# --------------------------------------------------------------------------- groups


def _separate(groups: np.ndarray, value: Any, x: np.ndarray, y: np.ndarray,
              w: np.ndarray | None, key: str, **options: Any) -> Any:
    rows = np.flatnonzero(groups == value)
    return calibration_report(**{key: x[rows]}, labels=y[rows],
                              sample_weights=None if w is None else w[rows], **options)


def _first_appearance(groups: Any) -> list[Any]:
    seen: dict[Any, None] = {}
    for g in list(groups):
        seen.setdefault(g, None)
    return list(seen)


@pytest.mark.parametrize("binning", ["uniform", "quantile"])
@pytest.mark.parametrize("shape", ["binary", "multiclass"])
@pytest.mark.parametrize("kind", ["ints", "strings"])
@pytest.mark.parametrize("weighted", [False, True])
def test_per_group_is_the_report_of_each_group_alone(binning, shape, kind, weighted):
    n = 240
    z, p, y = _multiclass(n, 4)
    if shape == "binary":
        p, y = p[:, 0], (y == 0).astype(int)
        z = z[:, 0]
    codes = RNG.integers(0, 9, n)
    codes[[5, 77, 200]] = [40, 41, 42]  # one-sample groups
    groups = codes * 7 - 20 if kind == "ints" else np.array([f"g{c}" for c in codes])
    w = RNG.uniform(0.0, 2.0, n) if weighted else None
    if weighted:  # groups of their own scale: products w·c subnormal unless rescaled
        w[codes == 3] *= 1e-310
        w[codes == 5] *= 1e-200
    for key, x in (("probabilities", p), ("logits", z)):
        options = {"n_bins": 6, "binning": binning}
        r = calibration_report(**{key: x}, labels=y, groups=groups, sample_weights=w,
                               **options)
        assert [e.group for e in r.per_group] == _first_appearance(groups)
        assert all(type(e.group) is (int if kind == "ints" else str) for e in r.per_group)
        assert dataclasses.replace(r, per_group=None) == calibration_report(
            **{key: x}, labels=y, sample_weights=w, **options)
        for e in r.per_group:
            assert _plain(e) == _separate(groups, e.group, x, y, w, key, **options), e.group
        assert sum(e.n_samples for e in r.per_group) == n


def test_options_beyond_the_core_apply_per_group():
    # temperature scaling fits a T per group: each group's full report
    z, _, y = _multiclass(150, 3)
    groups = RNG.integers(0, 4, 150)
    r = calibration_report(logits=z, labels=y, groups=groups, fit_temperature=True)
    temperatures = set()
    for e in r.per_group:
        alone = _separate(groups, e.group, z, y, None, "logits", fit_temperature=True)
        assert _plain(e) == alone
        temperatures.add(e.temperature.temperature)
    assert len(temperatures) == 4


def test_groups_with_multilabel_are_multilabel_reports_of_each_group():
    _, p, t = _multilabel(90, 3)
    groups = np.array(["a", "b", "c"])[RNG.integers(0, 3, 90)]
    w = RNG.uniform(0.5, 1.5, 90)
    r = calibration_report(p, targets=t, multilabel=True, groups=groups, sample_weights=w,
                           binning="quantile", n_bins=4)
    assert [e.group for e in r.per_group] == _first_appearance(groups)
    for e in r.per_group:
        rows = groups == e.group
        alone = calibration_report(p[rows], targets=t[rows], multilabel=True,
                                   sample_weights=w[rows], binning="quantile", n_bins=4)
        assert _plain(e) == alone


def test_groups_errors():
    p, y = [0.2, 0.7, 0.9], [0, 1, 1]
    cases = [
        ([1, 2], "shape_mismatch", ()),
        ([0.5, 1.0, 2.0], "type_error", ()),
        (np.array([1, "a", 2], dtype=object), "type_error", ()),
        (np.array([True, False, True]), "type_error", ()),
    ]
    for groups, kind, position in cases:
        with pytest.raises(InputError) as info:
            calibration_report(p, y, groups=groups)
        assert (info.value.field, info.value.kind, info.value.position) == (
            "groups", kind, position)
    with pytest.raises(InputError) as info:
        calibration_report(p, y, groups=[1, 2, 1], sample_weights=[1.0, 0.0, 1.0])
    assert (info.value.field, info.value.position) == ("sample_weights", (1,))
    with pytest.raises(InputError) as info:  # multi-label: the row, not the pair
        calibration_report([[0.2, 0.3]] * 3, targets=[[0, 1]] * 3, multilabel=True,
                           groups=[1, 2, 2], sample_weights=[1.0, 0.0, 0.0])
    assert (info.value.field, info.value.position) == ("sample_weights", (1,))


def test_at_most_max_groups_distinct_values():
    n = MAX_GROUPS + 1
    p = RNG.random(n)
    y = (RNG.random(n) < p).astype(int)
    groups = np.arange(n)[::-1]  # the 10 001st value to appear is in the last row
    with pytest.raises(InputError) as info:
        calibration_report(p, y, groups=groups)
    assert (info.value.field, info.value.kind, info.value.position) == (
        "groups", "out_of_range", (n - 1,))
    assert str(MAX_GROUPS) in info.value.message


def test_max_groups_of_one_sample_each_within_a_memory_bound():
    """The worst case the library allows (MAX_GROUPS groups, each a full report): the
    answer itself (10 000 reports of 15 bins) dominates; the binned sums are
    O(groups × bins) and nothing is O(groups × N)."""
    n = 3 * MAX_GROUPS
    p = RNG.random(n)
    y = (RNG.random(n) < p).astype(int)
    groups = np.arange(n) % MAX_GROUPS
    tracemalloc.start()
    r = calibration_report(p, y, groups=groups)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(r.per_group) == MAX_GROUPS
    assert peak < 400e6  # about 16 bins' objects per group, far below G × N × 8 = 2.4 GB
    e = r.per_group[1234]
    assert _plain(e) == calibration_report(p[1234::MAX_GROUPS], y[1234::MAX_GROUPS])


# --------------------------------------------------------------------------- states


@st.composite
def sliced_cases(draw: Any) -> tuple[Any, ...]:
    n = draw(st.integers(1, 120))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    multilabel = draw(st.booleans())
    c = draw(st.integers(1, 4)) if multilabel else draw(st.integers(2, 4))
    if multilabel:
        z, p, y = _multilabel(n, c, rng)
    else:
        z, p, y = _multiclass(n, c, rng)
    from_logits = draw(st.booleans())
    n_groups = draw(st.integers(1, 6))
    strings = draw(st.booleans())
    codes = rng.integers(0, n_groups, n)
    groups = np.array([f"s{c}" for c in codes]) if strings else codes * 3
    options: dict[str, Any] = {
        "n_bins": draw(st.sampled_from([1, 4, 15])),
        "binning": draw(st.sampled_from(["uniform", "quantile"])),
    }
    if draw(st.booleans()):
        options["sample_weights"] = rng.uniform(0.1, 3.0, n)
    if from_logits and draw(st.booleans()):  # beyond the core: full reports per slice
        options["fit_temperature"] = True
    return (z if from_logits else p), y, from_logits, multilabel, groups, options


def _sliced(x: Any, y: Any, from_logits: bool, multilabel: bool, **options: Any) -> Any:
    key = "logits" if from_logits else "probabilities"
    truth = {"targets": y, "multilabel": True} if multilabel else {"labels": y}
    return calibration_report(**{key: x}, **truth, **options)


def _assert_same_result(whole: Any, result: Any) -> None:
    approximate = {a.statistic: a.error_bound for a in result.approximate}
    assert_same(dataclasses.replace(whole, per_label=None, micro=None, macro=None,
                                    per_group=None),
                dataclasses.replace(result, per_label=None, micro=None, macro=None,
                                    per_group=None),
                approximate=approximate, abs_tol=1e-13)
    if whole.per_label is not None:
        assert len(result.per_label) == len(whole.per_label)
        for a, b in zip(whole.per_label, result.per_label, strict=True):
            _assert_same_result(a, b)
        for name in MACRO_METRICS:  # the merged labels' mean (each label checked above)
            values = [getattr(label, name) for label in result.per_label]
            assert getattr(result.macro, name) == pytest.approx(np.mean(values), rel=1e-15)


@given(case=sliced_cases(), data=st.data())
@EXAMPLES
def test_sliced_states_merge_per_group_and_per_label(case: Any, data: Any) -> None:
    x, y, from_logits, multilabel, groups, options = case
    whole = _sliced(x, y, from_logits, multilabel, groups=groups, **options)
    parts = [s for s in _split(data.draw, y.shape[0]) if s.start < s.stop]

    def state_of(s: slice) -> Any:
        part = {k: (v[s] if isinstance(v, np.ndarray) else v) for k, v in options.items()}
        return _json(_sliced(x[s], y[s], from_logits, multilabel, groups=groups[s],
                             return_state=True, **part).state)

    states = [state_of(s) for s in parts]
    # in batch order: the groups in order of first appearance in the whole batch
    in_order = xentropy.finalize(_json(xentropy.merge(states)))
    assert [e.group for e in in_order.per_group] == [e.group for e in whole.per_group]
    # any order and tree: the same groups, each merged to its whole-batch report
    order = data.draw(st.permutations(range(len(states))))
    shuffled = [states[i] for i in order]
    while len(shuffled) > 1:
        width = data.draw(st.integers(2, min(4, len(shuffled))))
        shuffled[:width] = [_json(xentropy.merge(shuffled[:width]))]
    result = xentropy.finalize(shuffled[0])
    _assert_same_result(whole, result)
    by_group = {e.group: e for e in result.per_group}
    assert set(by_group) == {e.group for e in whole.per_group}
    for e in whole.per_group:
        _assert_same_result(e, by_group[e.group])
        assert by_group[e.group].group == e.group


def test_sliced_state_errors_name_their_path():
    state = calibration_report([0.2, 0.7, 0.9], [0, 1, 1], groups=["a", "b", "a"],
                               return_state=True).state.to_json()
    broken = {**state, "per_group": [state["per_group"][0], state["per_group"][0]]}
    with pytest.raises(xentropy.StateError) as info:
        xentropy.state_from_json(broken)
    assert info.value.path == ("per_group", 1, "group")
    lost = {**state, "per_group": state["per_group"][:1]}
    with pytest.raises(xentropy.StateError) as info:
        xentropy.state_from_json(lost)
    assert info.value.path == ("per_group",) and info.value.kind == "inconsistent_state"
    nested = {**state, "per_group": [{"group": "a", "state": {
        **state["per_group"][0]["state"], "kind": "calibration"}}, state["per_group"][1]]}
    with pytest.raises(xentropy.StateError) as info:
        xentropy.state_from_json(nested)
    assert info.value.path == ("per_group", 0, "state", "kind")
    plain = calibration_report([0.2, 0.7, 0.9], [0, 1, 1], return_state=True).state
    with pytest.raises(xentropy.StateError) as info:
        xentropy.merge([xentropy.state_from_json(state), plain])
    assert info.value.path == ("per_group",) and info.value.index == 1
    assert math.isfinite(xentropy.finalize(xentropy.state_from_json(state)).ece)


def test_the_core_of_every_group_comes_from_one_pass(monkeypatch):
    """Without options beyond the core, a grouped report is one report of the whole batch
    plus the group-major pass: calibration_report runs once whatever the number of groups
    (a spy that counts calls and runs the real function); options beyond the core (here
    temperature scaling) run it once more per group, by construction."""
    import xentropy.calibration.report as report

    calls = []
    real = report.calibration_report

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("groups") is not None)
        return real(*args, **kwargs)

    monkeypatch.setattr(report, "calibration_report", spy)
    z, _, y = _multiclass(500, 3)
    groups = np.arange(500) % 50
    r = spy(logits=z, labels=y, groups=groups)
    assert len(r.per_group) == 50 and len(calls) == 2  # the call itself and the whole batch
    calls.clear()
    spy(logits=z, labels=y, groups=groups, fit_temperature=True)
    assert len(calls) == 2 + 50


def test_the_report_options_apply_per_group_and_per_label():
    """mode, estimators, intervals and risk–coverage (added to the report after the
    slices) apply per slice by construction: each slice equals its separate request."""
    z, p, y = _multiclass(240, 3)
    groups = np.array(list("abcd"))[RNG.integers(0, 4, 240)]
    options = {"mode": "classwise", "estimators": ["ece_debiased", "ece_sweep", "smooth_ece"],
               "confidence_level": 0.9, "bootstrap": {"n_resamples": 40},
               "risk_coverage": True}
    r = calibration_report(p, y, groups=groups, **options)
    for e in r.per_group:
        assert e.classwise_ece is not None and e.estimates is not None
        assert _plain(e) == _separate(groups, e.group, p, y, None, "probabilities", **options)
    _, _, t = _multilabel(240, 3)
    ml = {"estimators": ["ece_debiased"], "confidence_level": 0.9, "risk_coverage": True}
    r = calibration_report(logits=z, targets=t, multilabel=True, groups=groups, **ml)
    for k in range(3):
        assert r.per_label[k] == calibration_report(logits=z[:, k], labels=t[:, k], **ml)
    for e in r.per_group:
        rows = groups == e.group
        assert _plain(e) == calibration_report(logits=z[rows], targets=t[rows],
                                               multilabel=True, **ml)


def test_states_of_groups_carry_the_report_options():
    """A group's state is that of its separate request: class-wise cells, ece_debiased sums
    and Poisson replicates merge per group (batches on distinct bootstrap streams)."""
    _, p, y = _multiclass(300, 3)
    groups = np.array(list("abcd"))[RNG.integers(0, 4, 300)]
    options = {"mode": "classwise", "estimators": ["ece_debiased"], "confidence_level": 0.9}
    parts = [slice(0, 90), slice(90, 300)]
    states = [_json(calibration_report(p[s], y[s], groups=groups[s], return_state=True,
                                       bootstrap={"stream": i}, **options).state)
              for i, s in enumerate(parts)]
    merged = xentropy.finalize(_json(xentropy.merge(states)))
    whole = calibration_report(p, y, groups=groups, **options)
    assert [e.group for e in merged.per_group] == [e.group for e in whole.per_group]
    for got, want in zip(merged.per_group, whole.per_group, strict=True):
        assert got.classwise_ece == pytest.approx(want.classwise_ece, rel=1e-12, abs=1e-14)
        assert got.estimates.ece_debiased == pytest.approx(want.estimates.ece_debiased,
                                                           rel=1e-12, abs=1e-14)
        lower, upper = got.intervals.ece
        assert lower <= upper  # replicates merged: the interval survives the merge
