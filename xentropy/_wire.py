"""The JSON form of result objects: one walker, for the HTTP service and the command.

A result (a frozen dataclass) is written as its fields, in their order, each under its
own name, nested dataclasses alike; a state is written as :meth:`State.to_json`. Four
field metadata keys say where the JSON differs from the class:

* ``wire_key``: the JSON key (``ClassCalibration.class_index`` is ``"class"``); ``None``:
  not written (a field for the library's own use, e.g. the diagram's);
* ``wire_optional``: whether the key is left out when the value is None (else null is
  written); by default, for the fields whose default is None (``approximate``, ``state``:
  "present with ..."), and only for them;
* ``wire_expand``: the field is written as these attributes of the result instead, in
  order (``LossResult.options`` as ``units``, ``reduction``, ...);
* ``wire_first``: the key comes before the others (``CalibrationResult.group`` leads an
  entry of ``per_group``).

The service's response models document the same keys in the same order
(``tests/api/test_wire_agreement.py`` checks that they agree).

>>> import xentropy
>>> r = xentropy.calibration_report([0.2, 0.9], [0, 1], n_bins=2)
>>> list(to_wire(r))[:4], to_wire(r)["bins"][1]["count"]
(['n_samples', 'n_classes', 'accuracy', 'mean_confidence'], 1)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

#: Field metadata of the departures from "the fields, by name, null included".
KEY, OPTIONAL, EXPAND, FIRST = "wire_key", "wire_optional", "wire_expand", "wire_first"
OPTIONAL_FIELD = {OPTIONAL: True}
NULLABLE_FIELD = {OPTIONAL: False}  # default None, but written as null
NOT_WRITTEN = {KEY: None}
#: Written before the other keys (a field with a default that leads the JSON object).
WRITTEN_FIRST = {FIRST: True}


@cache
def plan(cls: type) -> tuple[tuple[str, str, bool], ...]:
    """(attribute, JSON key, left out when None) of each key of ``cls``, in order."""
    out: list[tuple[str, str, bool]] = []
    fields = dataclasses.fields(cls)
    for f in sorted(fields, key=lambda f: not f.metadata.get(FIRST, False)):  # stable
        if f.metadata.get(KEY, f.name) is None:
            continue
        if EXPAND in f.metadata:
            out.extend((name, name, False) for name in f.metadata[EXPAND])
        else:
            optional = f.metadata.get(OPTIONAL, f.default is None)
            out.append((f.name, f.metadata.get(KEY, f.name), bool(optional)))
    return tuple(out)


def to_wire(
    result: Any, *, array: Callable[[np.ndarray], Any] | None = None,
    omit: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The JSON object of ``result`` (dicts, lists, numbers, strings; arrays as
    ``array(a)`` gives them, themselves by default), without the attributes in ``omit``."""
    out: dict[str, Any] = {}
    for attribute, key, optional in plan(type(result)):  # type: ignore[arg-type]
        if attribute in omit:
            continue
        value = getattr(result, attribute)
        if value is None and optional:
            continue
        out[key] = _value(value, array)
    return out


def _value(value: Any, array: Callable[[np.ndarray], Any] | None) -> Any:
    if isinstance(value, np.ndarray):
        return value if array is None else array(value)
    if isinstance(value, tuple | list):
        return [_value(item, array) for item in value]
    if hasattr(value, "to_json"):  # a state: its own JSON form
        return value.to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_wire(value, array=array)
    if isinstance(value, np.generic):
        return value.item()
    return value
