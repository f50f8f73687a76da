"""States over HTTP: answers that carry one, and reading the ``states`` of ``/v1/merge``.

A state is written as :meth:`xentropy.states.State.to_json` gives it (plain JSON numbers,
whatever ``response_encoding`` says for arrays), and read back by
:func:`xentropy.states.from_json`; errors inside a state are 422s whose ``loc`` is
``["body", "states", i, ...the path inside the state]``.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

import msgspec
from fastapi import Response
from pydantic_core import PydanticCustomError, ValidationError

from app.api.codec import Span, count_byte, split_body
from app.api.errors import BodyError
from app.api.responses import encode_result, json_response
from app.settings import Settings
from xentropy._validation import InputError
from xentropy.states import State, StateError, from_json

#: The most states one request may merge.
MAX_STATES = 10_000


def answer(
    result: Any, *, encoding: str = "json", omit: frozenset[str] = frozenset(),
) -> Response:
    """The response of a result, with its state when it carries one (``return_state``)."""
    return json_response(encode_result(result, encoding=encoding, omit=omit))


def refuse(loc: tuple[str | int, ...], message: str, kind: str) -> NoReturn:
    """A 422 at ``loc`` (after "body"), through the pydantic error handler."""
    # PydanticCustomError formats {placeholders}: none may come from the message.
    text = message.replace("{", "(").replace("}", ")")
    raise ValidationError.from_exception_data(
        "merge", [{"type": PydanticCustomError(kind, text), "loc": loc, "input": None}]
    )


def refuse_state(error: StateError, index: int | None = None) -> NoReturn:
    where = error.index if error.index is not None else index
    loc: tuple[str | int, ...] = ("states",) if where is None else ("states", where)
    refuse((*loc, *error.path), error.message, error.kind)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Duplicate(key)
            seen.add(key)
    return out


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _parse(raw: Any) -> Any:
    """The ``states`` value, parsed by the standard library: it finds keys sent twice
    (msgspec keeps the last one silently) and reads NaN and Infinity, which the state
    checks then refuse with their position."""
    if isinstance(raw, Span):
        text = raw.to_bytes()
    elif isinstance(raw, msgspec.Raw | bytes | bytearray):
        text = bytes(raw)
    else:
        return raw  # parsed already
    try:
        return json.loads(text, parse_constant=float, object_pairs_hook=_unique_keys)
    except _Duplicate as error:
        refuse(("states",), f"the key {error.key[:64]!r} is sent twice in one object; send "
               "each field once (which value would count is not defined by JSON)",
               "duplicate_key")
    except (ValueError, RecursionError):
        refuse(("states",), "expected valid JSON", "json_invalid")


def read_states(body: bytes | bytearray, settings: Settings) -> list[State]:
    """The states of a ``/v1/merge`` body, each checked (a 422 at its position if not).

    Raises:
      BodyError: 413 when the body holds more numbers than ``max_elements`` (counted
        before parsing, as for every endpoint: a JSON array of n numbers has n − 1 commas).
    """
    if count_byte(body, b",") > settings.max_elements:
        raise BodyError(
            413, f"the states hold more than {settings.max_elements} numbers (the limit)"
        )
    fields = split_body(body)
    for key in fields:
        if key != "states":
            shown = key if len(key) <= 64 else key[:61] + "..."
            refuse((shown,), f"unknown field {shown!r}: not part of this endpoint's body",
                   "extra_forbidden")
    if "states" not in fields:
        refuse(("states",), "Field required", "missing")
    value = _parse(fields["states"])
    if not isinstance(value, list):
        refuse(("states",), "expected an array of states", "list_type")
    if not 1 <= len(value) <= MAX_STATES:
        refuse(("states",), f"expected 1 to {MAX_STATES} states, got {len(value)}",
               "too_short" if not value else "too_long")
    states = []
    for i, item in enumerate(value):
        try:
            state = from_json(item)
        except StateError as error:
            refuse_state(error, i)
        _check_bins(state, i, settings)
        states.append(state)
    return states


def _check_bins(state: State, index: int, settings: Settings) -> None:
    """The service's bounds on the bins of an answer (XENTROPY_MAX_BINS,
    XENTROPY_MAX_CLASS_BINS), as for ``/v1/calibration``."""
    options = getattr(state, "options", None)
    if state.kind != "calibration" or options is None:
        return
    loc = ("states", index, "options", "n_bins")
    if options.n_bins > settings.max_bins:
        refuse(loc, f"expected at most {settings.max_bins} bins (this service's "
               f"XENTROPY_MAX_BINS), got {options.n_bins}", "out_of_range")
    if options.n_classes * options.n_bins > settings.max_class_bins:
        refuse(loc, f"expected classes × bins of at most {settings.max_class_bins} (this "
               f"service's XENTROPY_MAX_CLASS_BINS), got {options.n_classes} × "
               f"{options.n_bins}", "out_of_range")


def input_error_at_states(error: InputError) -> NoReturn:
    """A library error of merging or finalizing, reported at ``["body", "states"]``."""
    if isinstance(error, StateError):
        refuse_state(error)
    refuse(("states",), error.message, error.kind)
