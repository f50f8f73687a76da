"""States of the calibration report's additions: what merges exactly merges (split and
merged equals whole within issue 12's 1e-12 relative), Poisson replicates merge into the
replicates of the concatenated batch (checked against replicate weights multiplied out
here), and what a state cannot carry is absent from a merged result, never approximated."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.xentropy.calibration_science.test_estimators import _multiclass
from xentropy.calibration import calibration_report
from xentropy.calibration.intervals import bootstrap_weights
from xentropy.states import StateError, empty_like, finalize, from_json, merge

REL = 1e-12
CLASSWISE = {"mode": "classwise", "estimators": ["ece_debiased"], "n_bins": 7}
N = 600
PROBS, LABELS = _multiclass(N, 4, seed=12)
WEIGHTS = np.random.default_rng(3).uniform(0.1, 3.0, N)


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= REL * max(abs(a), abs(b)) + 1e-15


def _assert_bins_equal(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert (x.lower, x.upper, x.count) == (y.lower, y.upper, y.count)
        assert _close(x.weight, y.weight)
        assert _close(x.mean_confidence, y.mean_confidence)
        assert _close(x.accuracy, y.accuracy)
        assert x.accuracy_interval == y.accuracy_interval  # counts are exact


def _states(cuts: list[int], weighted: bool, **options):
    w = WEIGHTS if weighted else None
    bounds = [0, *sorted(set(cuts)), N]
    return [
        calibration_report(PROBS[a:b], LABELS[a:b], return_state=True,
                           sample_weights=None if w is None else w[a:b],
                           **options, **(
                               {"bootstrap": {"n_resamples": 40, "stream": i}}
                               if "confidence_level" in options else {})).state
        for i, (a, b) in enumerate(itertools.pairwise(bounds)) if b > a
    ]


@settings(max_examples=12, deadline=None)
@given(cuts=st.lists(st.integers(1, N - 1), min_size=1, max_size=4), weighted=st.booleans())
def test_classwise_split_and_merged_equals_the_whole(cuts: list[int], weighted: bool) -> None:
    whole = calibration_report(PROBS, LABELS, sample_weights=WEIGHTS if weighted else None,
                               confidence_level=0.9, bootstrap={"n_resamples": 40},
                               **CLASSWISE)
    states = _states(cuts, weighted, confidence_level=0.9, **CLASSWISE)
    merged = finalize(merge(states[::-1]))
    assert _close(merged.classwise_ece, whole.classwise_ece)
    assert _close(merged.estimates.ece_debiased, whole.estimates.ece_debiased)
    _assert_bins_equal(merged.bins, whole.bins)
    for m, w in zip(merged.per_class, whole.per_class, strict=True):
        for name in ("ece", "mce", "rmsce", "nll", "brier"):
            assert _close(getattr(m, name), getattr(w, name)), name
        _assert_bins_equal(m.bins, w.bins)


def test_one_batch_state_gives_the_batchs_intervals() -> None:
    r = calibration_report(PROBS, LABELS, confidence_level=0.9, units="bits",
                           bootstrap={"n_resamples": 300, "seed": 4, "stream": 9},
                           return_state=True, **CLASSWISE)
    f = finalize(from_json(json.loads(json.dumps(r.state.to_json()))))
    for name in ("nll", "brier", "accuracy", "ece", "mce", "rmsce", "ece_debiased"):
        a, b = getattr(f.intervals, name), getattr(r.intervals, name)
        assert _close(a[0], b[0]) and _close(a[1], b[1]), name
    # Not mergeable, so absent from the finalized result rather than approximated.
    assert r.intervals.ace is not None and f.intervals.ace is None


def test_merged_replicates_are_those_of_the_concatenated_batch() -> None:
    """Oracle: each batch's Poisson weights (its own stream; columns in the batch's order
    of confidence), the ECE and mean NLL of every replicate of the union multiplied out."""
    cuts = [0, 250, N]
    conf = PROBS.max(axis=1)
    correct = (PROBS.argmax(axis=1) == LABELS).astype(float)
    nll = -np.log(PROBS[np.arange(N), LABELS])
    bins = np.searchsorted((np.arange(8) / 7)[1:-1], conf, side="left")
    gap_sum = np.zeros((200, 7))
    weight, nll_sum = np.zeros(200), np.zeros(200)
    states = []
    for i, (a, b) in enumerate(itertools.pairwise(cuts)):
        order = a + np.argsort(conf[a:b], kind="stable")
        v = bootstrap_weights(b - a, n_resamples=200, seed=5, stream=i + 10)
        for r in range(200):
            gap_sum[r] += np.bincount(bins[order], weights=v[r] * (correct - conf)[order],
                                      minlength=7)
        weight += v.sum(axis=1)
        nll_sum += v @ nll[order]
        states.append(calibration_report(
            PROBS[a:b], LABELS[a:b], n_bins=7, confidence_level=0.8, return_state=True,
            bootstrap={"n_resamples": 200, "seed": 5, "stream": i + 10}).state)
    merged = finalize(merge([states[1], empty_like(states[0]), states[0]]))
    ece = np.abs(gap_sum).sum(axis=1) / weight
    lo, hi = np.quantile(ece, [0.1, 0.9])
    assert _close(merged.intervals.ece[0], lo) and _close(merged.intervals.ece[1], hi)
    lo, hi = np.quantile(nll_sum / weight, [0.1, 0.9])
    assert _close(merged.intervals.nll[0], lo) and _close(merged.intervals.nll[1], hi)
    assert merged.state.replicates.streams.tolist() == [10, 11]


def test_what_a_state_does_not_carry_is_absent_from_merged_results() -> None:
    options = {"estimators": ["ece_sweep", "smooth_ece", "ece_debiased"],
               "risk_coverage": True, "confidence_level": 0.9,
               "bootstrap": {"n_resamples": 30}}
    r = calibration_report(PROBS, LABELS, return_state=True, **options)
    assert r.selective is not None and r.estimates.smooth_ece is not None
    f = finalize(r.state)
    assert f.selective is None and f.temperature is None
    assert (f.estimates.ece_sweep, f.estimates.smooth_ece) == (None, None)
    assert f.estimates.ece_debiased == pytest.approx(r.estimates.ece_debiased, rel=REL)
    assert (f.intervals.ace, f.intervals.ece_sweep, f.intervals.smooth_ece) == (None,) * 3
    assert r.state.options.estimators == ("ece_debiased",)


def test_plain_states_are_unchanged() -> None:
    s = calibration_report(PROBS, LABELS, return_state=True).state.to_json()
    assert "replicates" not in s
    assert {"mode", "estimators", "bootstrap"}.isdisjoint(s["options"])
    assert {"count", "confidence", "hits"}.isdisjoint(s["per_class"]["cells"])


def test_per_class_nll_and_brier_merge_and_older_states_without_them_still_read() -> None:
    whole = calibration_report(PROBS, LABELS)
    a, b = (calibration_report(PROBS[s], LABELS[s], return_state=True).state
            for s in (slice(0, 250), slice(250, None)))
    merged = finalize(merge([a, b]))
    for got, want in zip(merged.per_class, whole.per_class, strict=True):
        assert got.nll == pytest.approx(want.nll, rel=1e-12)
        assert got.brier == pytest.approx(want.brier, rel=1e-12)
    # a state written before the per-class sums were added: read, merged, per-class null
    old = a.to_json()
    del old["per_class"]["nll"], old["per_class"]["brier"]
    again = finalize(merge([from_json(old), b]))
    assert all(k.nll is None and k.brier is None for k in again.per_class)
    assert again.nll == pytest.approx(merged.nll, rel=1e-12)


def test_states_that_disagree_or_lie_are_refused() -> None:
    a, _b = _states([300], False, confidence_level=0.9)
    with pytest.raises(StateError) as err:
        merge([a, a])
    assert (err.value.path, err.value.index, err.value.kind) == (
        ("replicates", "streams"), 1, "states_disagree")
    other = calibration_report(PROBS, LABELS, confidence_level=0.9, return_state=True,
                               bootstrap={"n_resamples": 40, "seed": 1, "stream": 7}).state
    with pytest.raises(StateError) as err:
        merge([a, other])
    assert err.value.path == ("options", "bootstrap") and err.value.kind == "states_disagree"
    good = a.to_json()
    for path, value, kind in [
        (("replicates", "weight", 0), -1.0, "inconsistent_state"),
        (("replicates", "bin_weight", 0, 0), 1e9, "inconsistent_state"),
        (("replicates", "hits", 0), 10**6, "inconsistent_state"),
        (("options", "bootstrap", "n_resamples"), 41, "shape_mismatch"),
        (("options", "estimators"), ["smooth_ece"], "enum"),
        (("options", "bootstrap", "confidence_level"), 1.5, "out_of_range"),
    ]:
        bad = json.loads(json.dumps(good))
        node = bad
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        with pytest.raises(StateError) as err:
            from_json(bad)
        assert err.value.kind == kind, (path, err.value)
    c = calibration_report(PROBS, LABELS, return_state=True, **CLASSWISE).state.to_json()
    c["per_class"]["cells"]["hits"][0] += 1
    with pytest.raises(StateError) as err:
        from_json(c)
    assert err.value.path[:3] == ("per_class", "cells", "hits")


def test_states_through_the_api(client) -> None:
    body = {"probabilities": PROBS[:200].tolist(), "labels": LABELS[:200].tolist(),
            "confidence_level": 0.9, "bootstrap": {"n_resamples": 20}, "return_state": True,
            **CLASSWISE}
    s0 = client.post("/v1/calibration", json=body).json()["state"]
    s1 = client.post("/v1/calibration", json={**body, "bootstrap": {"n_resamples": 20,
                                                                    "stream": 1}}).json()
    out = client.post("/v1/merge", json={"states": [s0, s1["state"]]}).json()
    assert set(out["result"]["intervals"]) == {"nll", "brier", "accuracy", "ece", "mce",
                                                "rmsce", "ece_debiased"}
    assert out["result"]["classwise_ece"] == pytest.approx(s1["classwise_ece"], rel=REL)
    r = client.post("/v1/merge", json={"states": [s0, s0]})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "states", 1, "replicates", "streams"]
