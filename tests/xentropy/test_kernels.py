"""The categorical family's two kernels give the same answers for every option.

The fast kernel (logits with integer labels) runs only when every option it does not
handle is at its default; these tests run every option, and every combination of the
options it does handle, through both kernels, so that no option can be skipped by the
fast path without a test failing.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np
import pytest

from xentropy._validation import InputError
from xentropy.losses import categorical
from xentropy.options import CATEGORICAL_PARAMS, LossOptions

RNG = np.random.default_rng(11)
N, C = 9, 5
LOGITS = RNG.normal(scale=3.0, size=(N, C))
LABELS = RNG.integers(0, C, N)
LABELS[2] = -100  # ignored where ignore_index is -100

#: A value other than the default for every option of the table.
NON_DEFAULT: dict[str, Any] = {
    "class_weights": RNG.uniform(0.2, 2.0, C),
    "sample_weights": RNG.uniform(0.0, 3.0, N),
    "ignore_index": -100,
    "label_smoothing": 0.15,
    "focal_gamma": 1.5,
    "focal_alpha": 0.4,
    "reduction": "sum",
    "normalization": "samples",
    "epsilon": 1e-6,
    "units": "bits",
    "return_gradient": True,
    "return_state": True,
    "convention": "pytorch",
}


def _both(labels: np.ndarray, given: dict[str, Any], x: np.ndarray = LOGITS) -> tuple[Any, Any]:
    fast = categorical._categorical(x, labels, None, from_logits=True, given=given)
    general = categorical._categorical(
        x, labels, None, from_logits=True, given=given, fast=False
    )
    return fast, general


def _assert_same(fast: Any, general: Any) -> None:
    for f in dataclasses.fields(fast):
        a, b = getattr(fast, f.name), getattr(general, f.name)
        if f.name == "state" and a is not None:
            # the same counts and options; sums of losses equal to the kernels' agreement
            sa, sb = a.to_json(), b.to_json()
            assert sa["loss"][0] == pytest.approx(sb["loss"][0], rel=1e-13, abs=1e-15)
            assert {**sa, "loss": None} == {**sb, "loss": None}
        elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
            assert a is not None and b is not None, f.name
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15, err_msg=f.name)
        elif isinstance(a, float):
            assert a == pytest.approx(b, rel=1e-13, abs=1e-15), f.name
        else:
            assert a == b, f.name


def test_every_option_of_the_table_has_a_non_default_value_here():
    assert set(NON_DEFAULT) == set(CATEGORICAL_PARAMS)


@pytest.mark.parametrize("name", sorted(NON_DEFAULT))
def test_each_option_alone_gives_the_same_answer_through_both_kernels(name):
    given = {name: NON_DEFAULT[name], "return_gradient": True}
    labels = LABELS if name in ("ignore_index", "convention") else np.abs(LABELS) % C
    _assert_same(*_both(labels, given))


# A convention is a bundle: its behaviours decide (the next test).
@pytest.mark.parametrize(
    "name", sorted(set(NON_DEFAULT) - categorical._FAST_OPTIONS - {"convention"})
)
def test_an_option_the_fast_kernel_does_not_handle_sends_the_call_to_the_general_one(name):
    options = LossOptions.build(
        "categorical", {name: NON_DEFAULT[name]}, from_logits=True, labelled=True
    )
    assert not categorical._fast_path_applies(options, from_logits=True, labelled=True)


def test_a_convention_with_a_behaviour_beyond_the_reduction_takes_the_general_kernel():
    keras_focal = LossOptions.build(
        "categorical", {"convention": "keras", "focal_gamma": 2.0}, from_logits=True,
        labelled=True,
    )
    assert not categorical._fast_path_applies(keras_focal, from_logits=True, labelled=True)
    pytorch = LossOptions.build(
        "categorical", {"convention": "pytorch"}, from_logits=True, labelled=True
    )
    assert categorical._fast_path_applies(pytorch, from_logits=True, labelled=True)


FAST_GRID = {
    "class_weights": [None, NON_DEFAULT["class_weights"]],
    "sample_weights": [None, NON_DEFAULT["sample_weights"]],
    "ignore_index": [None, -100],
    "label_smoothing": [0.0, 0.15],
    "reduction": ["mean", "sum", "none"],
    "normalization": ["weights", "samples"],
    "units": ["nats", "bits"],
    "convention": ["xentropy", "pytorch", "keras"],
}


@pytest.mark.parametrize(
    "combo", list(itertools.product(*FAST_GRID.values())), ids=lambda c: "-".join(map(
        lambda v: "arr" if isinstance(v, np.ndarray) else str(v), c)),
)
def test_every_combination_the_fast_kernel_handles(combo):
    given = {k: v for k, v in zip(FAST_GRID, combo, strict=True) if v is not None}
    given["return_gradient"] = True
    if given["convention"] == "keras" and "class_weights" in given:
        return  # not_in_convention under Keras (tested with the conventions)
    if given["convention"] == "pytorch" and "sample_weights" in given:
        return  # not_in_convention under PyTorch
    if given["convention"] == "keras" and "ignore_index" in given and given["label_smoothing"]:
        return  # not_in_convention: Keras' ignore_class loss has no smoothing
    labels = LABELS if "ignore_index" in given or given["convention"] == "pytorch" else (
        np.abs(LABELS) % C
    )
    _assert_same(*_both(labels, given))


def test_float32_and_strided_logits_give_the_same_answer_through_both_kernels():
    given = {"label_smoothing": 0.1, "return_gradient": True}
    labels = np.abs(LABELS) % C
    _assert_same(*_both(labels, given, LOGITS.astype(np.float32)))
    _assert_same(*_both(labels, given, np.asfortranarray(LOGITS)))


def test_options_built_once_per_set_still_validate_every_call():
    LossOptions.build("categorical", {"return_gradient": True}, from_logits=True, labelled=True)
    with pytest.raises(InputError) as err:  # 1 == True, but 1 is no boolean
        LossOptions.build("categorical", {"return_gradient": 1}, from_logits=True,
                          labelled=True)
    assert err.value.kind == "type_error"
    a = LossOptions.build("categorical", {"units": "bits"}, from_logits=True, labelled=True)
    b = LossOptions.build("categorical", {"units": "bits"}, from_logits=True, labelled=True)
    assert a is b and a.reduction.units == "bits"
