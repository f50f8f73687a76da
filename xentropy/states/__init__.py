"""Composable statistics: states that merge, and the results they finalize to.

Every reduction of xentropy has a *state*: the sufficient statistics of a batch, of fixed
size whatever the number of samples (counts as exact integers, sums as compensated pairs
``[hi, lo]``, see :mod:`xentropy._compensated`). States of batches computed with the same
options merge into the state of the concatenated batch, in any order and any tree shape,
and finalize to what one call on the whole batch returns: counts exactly, every float
within 1e-12 relative (the state's sums are more accurate than the call's own float64
sums; the difference is the call's rounding).

* Ask for one with ``return_state=True`` (every loss function, :func:`xentropy.divergences`,
  :func:`xentropy.calibration_report`): the result's ``state``, also ``state(result)``.
* :func:`merge` combines states, :func:`finalize` gives the result (the function's own
  result class, without the per-sample fields ``losses``, ``gradient``, ``per_row``).
* :meth:`State.to_json` is the JSON object of the HTTP API (``"return_state": true`` and
  ``POST /v1/merge``), and :func:`from_json` (``xentropy.state_from_json``) reads one
  back, checking it as the service does: a state made in a notebook can be merged by the
  service and the other way round.

Kinds: ``"categorical_loss"``, ``"binary_loss"``, ``"divergences"``, ``"calibration"``.
What a state cannot give exactly is never silently approximated: a calibration result
finalized from a state lists its quantile-based statistics (``ace``; with quantile
binning also the bins, ECE, MCE, RMSCE and class-wise ECE) under ``approximate``, each
with a bound on its error, and has no temperature fit (see
:mod:`xentropy.states.calibration`).

>>> import xentropy
>>> logits, labels = [[2.0, 1.0, 0.1], [0.5, 2.5, -0.5], [0.3, 0.2, 0.1]], [0, 1, 2]
>>> a = xentropy.softmax_cross_entropy_with_integer_labels(logits[:2], labels[:2],
...                                                        return_state=True)
>>> b = xentropy.softmax_cross_entropy_with_integer_labels(logits[2:], labels[2:],
...                                                        return_state=True)
>>> merged = xentropy.merge([a.state, b.state])
>>> whole = xentropy.softmax_cross_entropy_with_integer_labels(logits, labels)
>>> abs(xentropy.finalize(merged).loss - whole.loss) <= 1e-12 * whole.loss
True
>>> xentropy.state_from_json(merged.to_json()).n_samples
3
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from xentropy._wire import to_wire
from xentropy.states._base import VERSION, State, StateError, json_type, read_int
from xentropy.states.calibration import CalibrationState
from xentropy.states.divergences import DivergenceState
from xentropy.states.losses import BinaryLossState, CategoricalLossState

__all__ = [
    "KINDS",
    "VERSION",
    "BinaryLossState",
    "CalibrationState",
    "CategoricalLossState",
    "DivergenceState",
    "State",
    "StateError",
    "empty_like",
    "finalize",
    "from_json",
    "merge",
    "merged_json",
    "state",
]

#: The state class of each kind.
KINDS: dict[str, type[State]] = {
    cls.kind: cls
    for cls in (CategoricalLossState, BinaryLossState, DivergenceState, CalibrationState)
}


def state(result: Any) -> State:
    """The state of a result computed with ``return_state=True``.

    Raises:
      ValueError: the result was computed without ``return_state=True`` (the state needs
        sums the result does not keep, such as the per-bin sums of a calibration).
    """
    found = getattr(result, "state", None)
    if not isinstance(found, State):
        raise ValueError(
            "this result has no state: compute it with return_state=True (a state needs "
            "sums that the result does not keep)"
        )
    return found


@np.errstate(over="ignore")
def merge(states: Iterable[State]) -> State:
    """The state of the concatenation of the batches of ``states`` (one kind, options
    that agree; at least one).

    Raises:
      StateError: kind ``states_disagree`` (with ``index``, the first state that differs
        from ``states[0]``, and ``path``, the option) when the states cannot be merged.
      InputError: kind ``overflow`` when a merged sum is beyond float64.
    """
    items = list(states)
    if not items:
        raise ValueError("merge() needs at least one state")
    for i, item in enumerate(items):
        if not isinstance(item, State):
            raise TypeError(f"states[{i}] is {type(item).__name__}, not a State")
    kind = items[0].kind
    for i, item in enumerate(items):
        if item.kind != kind:
            raise StateError(
                f"expected kind {kind!r} (the kind of states[0]), got {item.kind!r}: states "
                "of different statistics do not merge",
                path=("kind",), index=i, kind="states_disagree",
            )
    return KINDS[kind].merge_all(items)


@np.errstate(over="ignore")
def finalize(state: State) -> Any:
    """The result of the batch a state describes: a ``LossResult``, ``DivergenceResult``
    or ``CalibrationResult`` (no per-sample fields; see :mod:`xentropy.states`)."""
    return state.finalize()


#: What a result finalized from a state does not have: the per-sample fields.
PER_SAMPLE = frozenset({"losses", "gradient", "per_row", "state"})


def merged_json(state: State) -> dict[str, Any]:
    """What ``POST /v1/merge`` answers for the states that merged into ``state``:
    ``{"state": state.to_json(), "result": ...}``, the result as the endpoint the states
    come from writes it (:mod:`xentropy._wire`), without the per-sample fields. Arrays
    stay ndarrays (orjson writes them with ``OPT_SERIALIZE_NUMPY``, as the service does).

    Raises:
      InputError: kind ``overflow`` when finalizing overflows (as :func:`finalize`).
    """
    return {"state": state.to_json(), "result": to_wire(finalize(state), omit=PER_SAMPLE)}


def empty_like(state: State) -> State:
    """The state of an empty batch with the options of ``state``: merging it changes
    nothing (the identity of :func:`merge`)."""
    return state.empty()


@np.errstate(over="ignore")
def from_json(obj: Any) -> State:
    """A state from its JSON object (parsed: dicts, lists, numbers, strings), checked.

    Raises:
      StateError: naming the path of the first broken rule inside the state (unknown or
        missing fields, wrong types, kind or version, negative or fractional counts,
        non-finite sums, pairs that are not normalised, sums inconsistent with the counts
        or with each other, options a call could not have).
    """
    if not isinstance(obj, dict):
        raise StateError(f"expected a state object, got {json_type(obj)}", kind="type_error")
    if "kind" not in obj:
        raise StateError("field required", path=("kind",), kind="missing")
    kind = obj["kind"]
    if not isinstance(kind, str) or kind not in KINDS:
        shown = ", ".join(repr(k) for k in KINDS)
        got = repr(kind[:64]) if isinstance(kind, str) else json_type(kind)
        raise StateError(f"expected one of {shown}, got {got}", path=("kind",), kind="enum")
    if "version" not in obj:
        raise StateError("field required", path=("version",), kind="missing")
    version = read_int(obj["version"], ("version",), low=0)
    if version != VERSION:
        raise StateError(f"expected version {VERSION} (the state format this library "
                         f"reads), got {version}", path=("version",), kind="unsupported_version")
    return KINDS[kind].read(obj)
