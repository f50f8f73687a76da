"""The library writes results (xentropy._wire); the response models document them: the
same keys, in the same order, with the same ones left out when null."""

from __future__ import annotations

import typing

import pytest
from pydantic import BaseModel

import xentropy
import xentropy.calibration.slices
from app.api.responses import _nested_models
from app.api.schemas.merge import RESULT_MODELS
from xentropy._wire import plan

RESULT_CLASSES = {
    "categorical_loss": xentropy.LossResult,
    "binary_loss": xentropy.LossResult,
    "divergences": xentropy.DivergenceResult,
    "calibration": xentropy.CalibrationResult,
}


def _pairs(cls: type, model: type[BaseModel], seen: list) -> None:
    """(class, model) of the result and of every nested result, by the model's fields."""
    seen.append((cls, model))
    hints = typing.get_type_hints(cls, localns={**vars(xentropy.states), **vars(xentropy),
                                                   **vars(xentropy.calibration.slices)})
    for attribute, _, _ in plan(cls):
        nested = _nested_models(model, attribute)
        inner = _dataclass_in(hints.get(attribute))
        # a state is written by its to_json (its schema: tests/api/test_states_api.py)
        if (nested is not None and inner is not None and not hasattr(inner, "to_json")
                and (inner, nested) not in seen):  # per_group nests the report itself
            _pairs(inner, nested, seen)


def _dataclass_in(annotation: typing.Any) -> type | None:
    if isinstance(annotation, type) and hasattr(annotation, "__dataclass_fields__"):
        return annotation
    for arg in typing.get_args(annotation):
        found = _dataclass_in(arg)
        if found is not None:
            return found
    return None


@pytest.mark.parametrize("kind", sorted(RESULT_MODELS))
def test_the_response_models_document_the_library_keys_in_order(kind):
    pairs: list = []
    _pairs(RESULT_CLASSES[kind], RESULT_MODELS[kind], pairs)
    assert len(pairs) > 1  # nested results were visited (bins, diagnostics, ...)
    for cls, model in pairs:
        keys = [key for _, key, _ in plan(cls)]
        documented = [info.alias or name for name, info in model.model_fields.items()]
        optional = {key for _, key, left_out in plan(cls) if left_out}
        not_required = {info.alias or name for name, info in model.model_fields.items()
                        if not info.is_required()}
        if cls is xentropy.CalibrationResult:
            # `group` is set in the entries of per_group only: documented (required) by
            # their model, GroupCalibration, and by no other.
            if "group" in documented:
                not_required.add("group")
            else:
                keys.remove("group")
                optional.discard("group")
        assert keys == documented, (cls.__name__, model.__name__)
        assert optional == not_required, (cls.__name__, model.__name__)
