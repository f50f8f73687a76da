"""Request bytes <-> NumPy arrays, both directions.

Requests: a body is split once into its top-level fields without parsing the arrays
(msgspec ``Raw``); each array field is then decoded by a typed msgspec decoder, which
rejects strings, booleans and nulls with the exact position, and turned into an ndarray
in one vectorised pass. Encoded arrays (``{"dtype", "shape", "data"}``) are base64-decoded
and viewed with ``np.frombuffer`` without copying. Scalar options go to pydantic.

Responses: arrays are written by orjson straight from the ndarray buffer (no per-element
Python objects), or as encoded float64 arrays with ``response_encoding: "base64"``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import orjson
import simdjson

from xentropy._validation import InputError, check_finite

DTYPES: dict[str, np.dtype[Any]] = {
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "uint8": np.dtype("u1"),
    "bool": np.dtype("?"),
}
FLOAT_DTYPES = ("float32", "float64", "int32", "int64")
INT_DTYPES = ("int32", "int64")
MASK_DTYPES = ("uint8", "bool", "int32", "int64", "float32", "float64")


class EncodedArrayStruct(msgspec.Struct, forbid_unknown_fields=True):
    """Wire form of an encoded array (the pydantic twins in schemas are for the docs).

    ``shape`` takes any JSON number: JSON Schema's ``integer`` includes 2.0, so sizes are
    checked for being whole numbers (and at least 1) by ``_decode_encoded``."""

    dtype: str
    shape: list[int | float]
    data: str


@dataclass(frozen=True)
class ArraySpec:
    """What an array field accepts.

    Attributes:
      kind: "float" (numbers), "int" (integers: labels) or "mask" (0/1 or booleans).
      ndim: the allowed ranks; 0 means a bare JSON number is accepted too.
    """

    kind: str
    ndim: tuple[int, ...]

    @property
    def dtypes(self) -> tuple[str, ...]:
        return {"float": FLOAT_DTYPES, "int": INT_DTYPES, "mask": MASK_DTYPES}[self.kind]


def _element_type(kind: str, *, lenient: bool = False) -> Any:
    """The element type of a JSON array. ``lenient``: integers may also be written as
    floats (JSON Schema's ``integer`` is any number without a fractional part, so 1.0 is
    one); the fast path tries the strict type first."""
    if lenient and kind != "float":
        return {"int": int | float, "mask": int | float | bool}[kind]
    return {"float": float, "int": int, "mask": int | bool}[kind]


def _wire_type(spec: ArraySpec, *, lenient: bool = False) -> Any:
    """The msgspec type of a JSON array field: nested lists of the element type."""
    elem: Any = _element_type(spec.kind, lenient=lenient)
    ranks = set(spec.ndim)
    nested: Any
    if ranks == {1}:
        nested = list[elem]
    elif ranks == {0, 1}:
        nested = elem | list[elem]
    else:
        # Rank 2 (and 1 or 2): msgspec allows one array-like member per union, so rows are
        # "element or list of elements"; numpy then rejects a mixture as ragged.
        nested = list[elem | list[elem]]
    return nested | EncodedArrayStruct


_DECODERS: dict[tuple[ArraySpec, bool], msgspec.json.Decoder[Any]] = {}
_PATH = re.compile(r"\[(\d+)\]|\.(\w+)")
_TYPE_WORDS = {
    "float": "a number",
    "int": "an integer",
    "bool": "a boolean",
    "str": "a string",
    "null": "null",
    "array": "an array",
    "object": "an object",
}


def _decoder(spec: ArraySpec, *, lenient: bool = False) -> msgspec.json.Decoder[Any]:
    if (spec, lenient) not in _DECODERS:
        _DECODERS[spec, lenient] = msgspec.json.Decoder(_wire_type(spec, lenient=lenient))
    return _DECODERS[spec, lenient]


def _wire_error(exc: msgspec.ValidationError, field: str, spec: ArraySpec) -> InputError:
    """Translate a msgspec path error ("Expected `float`, got `str` - at `$[3][1]`")."""
    text = str(exc)
    message, _, path = text.partition(" - at `")
    position: list[Any] = []
    for index, name in _PATH.findall(path.rstrip("`")):
        position.append(int(index) if index else name)
    expected_word = {"float": "a number", "int": "an integer", "mask": "0, 1 or a boolean"}
    got = re.search(r"got `(\w+)`", message)
    if message.startswith("Expected") and got:
        what = _TYPE_WORDS.get(got.group(1), got.group(1))
        inside_encoded = any(isinstance(p, str) for p in position)  # e.g. ["shape", 2]
        whole_field = not position and "`object | array`" in message  # e.g. null, a string
        if whole_field or (got.group(1) in ("array", "object") and not position):
            msg = f"expected an array (nested lists) or an encoded array, got {what}"
        elif inside_encoded or message.startswith("Expected `object"):
            msg = f"{message[0].lower()}{message[1:]}"
        elif got.group(1) == "array":
            msg = (
                f"expected {expected_word[spec.kind]}, "
                "got an array nested deeper than the field allows"
            )
        else:
            msg = f"expected {expected_word[spec.kind]}, got {what}"
        kind = "type_error"
    elif message.startswith("Number out of range"):
        msg = (
            "expected a finite float64 number, got a literal outside the float64 range"
            if spec.kind == "float"
            else "expected an integer that fits in int64"
        )
        kind = "not_finite" if spec.kind == "float" else "out_of_range"
    else:
        msg = message[0].lower() + message[1:]
        kind = "value_error"
    return _positioned_error(field, msg, position, kind)


def _positioned_error(field: str, msg: str, position: list[Any], kind: str) -> InputError:
    error = InputError(field, msg, kind=kind)
    error.position = tuple(position)  # may hold a key name for encoded-array parts
    return error


def decode_array(value: Any, *, field: str, spec: ArraySpec) -> np.ndarray:
    """Turn one array field (Raw JSON, Python lists, an encoded dict or an ndarray) into
    an ndarray: float64 for "float", int64 for "int", bool for "mask".

    Raises:
      InputError: with the field and the position of the first offending element.
    """
    if isinstance(value, np.ndarray):
        arr = value
    elif (
        isinstance(value, msgspec.Raw)
        and spec.kind == "float"
        and (fast := _fast_float_array(value, field, spec)) is not None
    ):
        arr = fast
    else:
        try:
            try:
                wire = _parse_wire(value, spec, lenient=False)
            except msgspec.ValidationError as exc:
                if spec.kind == "float" or "got `float`" not in str(exc):
                    raise
                # Integers written as floats (1.0): parse again, then check each is whole.
                wire = _whole_numbers(_parse_wire(value, spec, lenient=True), field, spec)
        except msgspec.ValidationError as exc:
            raise _wire_error(exc, field, spec) from None
        except RecursionError:
            raise InputError(field, "arrays are nested too deeply", kind="type_error") from None
        except (msgspec.DecodeError, UnicodeDecodeError):
            raise InputError(field, "expected valid UTF-8 JSON", kind="json_invalid") from None
        if isinstance(wire, EncodedArrayStruct):
            arr = _decode_encoded(wire, field, spec)
        else:
            arr = _from_lists(wire, field, spec)
    return _finalise(arr, field, spec)


def _fast_float_array(raw: msgspec.Raw, field: str, spec: ArraySpec) -> np.ndarray | None:
    """A JSON vector or matrix of numbers parsed without Python float objects, or None
    when ``raw`` is something else (an encoded array, a bare number, irregular nesting),
    which the general path then handles with the same error messages."""
    head = memoryview(raw)[:64].tobytes().lstrip()
    if not head.startswith(b"["):
        return None
    if head[1:].lstrip().startswith(b"["):
        return _float_rows(raw, field, spec) if 2 in spec.ndim else None
    if 1 not in spec.ndim:
        return None
    text = memoryview(raw).tobytes()
    flat = _simd_numbers(simdjson.Parser(), text, n_rows=None)
    return None if flat is None or flat.size == 0 else flat


def _simd_numbers(parser: Any, text: bytes, *, n_rows: int | None) -> np.ndarray | None:
    """Parse ``text``, a JSON vector (``n_rows`` None) or a matrix of ``n_rows`` rows, with
    simdjson straight into float64 (correctly rounded, as msgspec; several times faster).
    None when it is not exactly that: simdjson refuses non-numbers and bad literals, and
    flattens any nesting, so the brackets and row lengths are checked here."""
    try:
        doc = parser.parse(text)
        flat = np.frombuffer(doc.as_buffer(of_type="d"), dtype=np.float64)
        if n_rows is None:
            ok = text.count(b"[") == 1
            shape: tuple[int, ...] = (len(doc),)
        else:
            n_cols = len(doc[0])
            ok = (
                text.count(b"[") == n_rows + 1
                and len(doc) == n_rows
                and all(len(row) == n_cols for row in doc)
            )
            shape = (n_rows, n_cols)
        del doc  # the parser refuses to parse again while its proxies live
    except (TypeError, ValueError, RuntimeError, IndexError):
        return None
    if not ok or flat.size != math.prod(shape):
        return None
    return flat.reshape(shape)


_ROW_SPLITTER = msgspec.json.Decoder(list[msgspec.Raw])
#: Matrices are parsed this many numbers at a time, so that neither Python floats nor a
#: parser's buffers ever exist for the whole matrix at once.
BLOCK_ELEMENTS = 1 << 16


def _float_rows(raw: msgspec.Raw, field: str, spec: ArraySpec) -> np.ndarray | None:
    """A JSON matrix parsed block by block straight into a float64 array.

    Each block of rows goes through simdjson; a block it refuses is parsed again by the
    strict decoder, which locates the offending element. Returns None when the rows are
    not lists of numbers (the general path words that error). Errors carry the same
    positions as the general path.
    """
    rows = _ROW_SPLITTER.decode(raw)  # one Raw slice per row: no number parsed yet
    parser = simdjson.Parser()
    decoder = _decoder(spec, lenient=False)
    out: np.ndarray | None = None
    step = 1
    start = 0
    while start < len(rows):
        stop = min(len(rows), start + step)
        text = b"[" + b",".join(rows[start:stop]) + b"]"
        block = _simd_numbers(parser, text, n_rows=stop - start)
        if block is None:
            try:
                wire = decoder.decode(text)
            except msgspec.ValidationError as exc:
                raise _shifted(_wire_error(exc, field, spec), start) from None
            try:
                block = np.asarray(wire, dtype=np.float64)
            except ValueError:
                raise _shifted(_ragged_error(wire, field), start) from None
        if out is None:
            if block.ndim != 2 or block.shape[1] == 0:
                return None  # numbers or empty rows: the general path words the error
            out = np.empty((len(rows), block.shape[1]))
            step = max(1, BLOCK_ELEMENTS // block.shape[1])
        elif block.ndim != 2 or block.shape[1] != out.shape[1]:
            got = f"a row of length {block.shape[1]}" if block.ndim == 2 else "a number"
            raise InputError(
                field, f"expected rows of equal length {out.shape[1]}, got {got}",
                position=(start,), kind="ragged",
            )
        out[start:stop] = block
        start = stop
    return out


def _shifted(error: InputError, rows: int) -> InputError:
    """An error found in a block of rows, re-based to the position in the whole array."""
    if error.position and isinstance(error.position[0], int):
        error.position = (error.position[0] + rows, *error.position[1:])
    return error


def _parse_wire(value: Any, spec: ArraySpec, *, lenient: bool) -> Any:
    if isinstance(value, msgspec.Raw):
        return _decoder(spec, lenient=lenient).decode(value)
    return msgspec.convert(value, _wire_type(spec, lenient=lenient), strict=True)


def _whole_numbers(wire: Any, field: str, spec: ArraySpec) -> Any:
    """Nested lists from the lenient parse with every float turned into an int, or an
    InputError at the first float with a fractional part (error path only: the strict
    parse refused a float)."""
    if not isinstance(wire, list):
        return wire  # an encoded array: its own checks follow

    def whole(v: Any, position: tuple[int, ...]) -> Any:
        if not isinstance(v, float):
            return v
        if not v.is_integer():
            expected = "an integer" if spec.kind == "int" else "0, 1 or a boolean"
            raise InputError(
                field, f"expected {expected}, got {v:g}", position=position, kind="type_error"
            )
        return int(v)

    return [
        [whole(v, (i, j)) for j, v in enumerate(row)] if isinstance(row, list) else whole(row, (i,))
        for i, row in enumerate(wire)
    ]


def _from_lists(wire: Any, field: str, spec: ArraySpec) -> np.ndarray:
    if not isinstance(wire, list):  # a bare number, for fields that also take a scalar
        return np.asarray(wire, dtype=np.float64)
    dtype = {"float": np.float64, "int": np.int64, "mask": None}[spec.kind]
    try:
        return np.asarray(wire, dtype=dtype)
    except ValueError:  # numpy refuses ragged nesting
        raise _ragged_error(wire, field) from None
    except OverflowError:  # an integer beyond int64
        pos = _first(wire, lambda v: not -(2**63) <= v < 2**63)
        raise _positioned_error(
            field, "expected an integer that fits in int64", list(pos), "out_of_range"
        ) from None


def _first(wire: Any, predicate: Any) -> tuple[int, ...]:
    """Position of the first scalar in nested lists satisfying ``predicate`` (error path only)."""
    for i, row in enumerate(wire):
        if isinstance(row, list):
            for j, v in enumerate(row):
                if predicate(v):
                    return (i, j)
        elif predicate(row):
            return (i,)
    return ()


def _ragged_error(wire: list[Any], field: str) -> InputError:
    """Locate the first row that breaks rectangularity (only runs on the error path)."""
    first = wire[0]
    first_len = len(first) if isinstance(first, list) else None
    for i, row in enumerate(wire):
        row_len = len(row) if isinstance(row, list) else None
        if row_len != first_len:
            if first_len is None or row_len is None:
                msg = "expected every row to be a list, or none (mixed numbers and lists)"
            else:
                msg = f"expected rows of equal length {first_len}, got a row of length {row_len}"
            return InputError(field, msg, position=(i,), kind="ragged")
    return InputError(field, "expected a rectangular array", kind="ragged")


def _decode_encoded(wire: EncodedArrayStruct, field: str, spec: ArraySpec) -> np.ndarray:
    if wire.dtype not in spec.dtypes:
        allowed = ", ".join(spec.dtypes)
        raise _positioned_error(
            field, f"expected dtype one of {allowed}, got {wire.dtype!r}", ["dtype"], "enum"
        )
    dtype = DTYPES[wire.dtype]
    for i, size in enumerate(wire.shape):
        if isinstance(size, float) and not size.is_integer():
            raise _positioned_error(
                field, f"expected whole-number sizes, got {size:g}", ["shape", i], "type_error"
            )
        if size < 1:  # a zero size would make an empty array, refused below anyway
            raise _positioned_error(
                field, f"expected sizes of at least 1, got {size:g}", ["shape", i], "empty"
            )
    shape = [int(size) for size in wire.shape]
    if len(shape) not in spec.ndim:
        ranks = " or ".join(str(d) for d in spec.ndim)
        raise _positioned_error(
            field, f"expected a shape of {ranks} sizes, got {shape}", ["shape"], "shape_error"
        )
    n_items = math.prod(shape)  # Python ints: no overflow whatever the shape
    try:
        raw = base64.b64decode(wire.data, validate=True)
    except (binascii.Error, ValueError):
        raise _positioned_error(
            field, "expected standard base64 (RFC 4648) data", ["data"], "base64"
        ) from None
    expected = n_items * dtype.itemsize
    if len(raw) != expected:
        raise _positioned_error(
            field,
            f"expected {expected} bytes of data for shape {shape} and dtype {wire.dtype}, "
            f"got {len(raw)}",
            ["data"], "size_mismatch",
        )
    # Every size is >= 1 and their product matched the data: reshape cannot overflow.
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _finalise(arr: np.ndarray, field: str, spec: ArraySpec) -> np.ndarray:
    if arr.size == 0:
        raise InputError(field, f"expected a non-empty array, got shape {list(arr.shape)}",
                         kind="empty")
    if arr.ndim not in spec.ndim:
        ranks = " or ".join(f"{d}-D" for d in spec.ndim if d) or "a number"
        raise InputError(
            field, f"expected a {ranks} array, got {arr.ndim}-D shape {list(arr.shape)}",
            kind="shape_error",
        )
    if spec.kind == "float":
        if arr.dtype != np.float32:  # float32 stays: the core widens it in its first pass
            arr = arr.astype(np.float64, copy=False)
        check_finite(arr, field)
    elif spec.kind == "int":
        arr = arr.astype(np.int64, copy=False)
    else:
        if arr.dtype.kind == "f":
            check_finite(arr, field)
        arr = arr.astype(np.float64, copy=False)
    return arr


# --------------------------------------------------------------------------- bodies

_TOP_LEVEL = msgspec.json.Decoder(dict[str, msgspec.Raw])


def split_body(body: bytes | bytearray) -> dict[str, Any]:
    """Split a JSON object into its top-level fields, each left as unparsed ``Raw`` JSON.

    Falls back to the standard library (which accepts the non-standard NaN and Infinity
    tokens) only when the fast parser refuses the body, so that such a token is reported
    by the array validation with its exact position instead of as a parse error.

    Raises:
      InputError: field "body" (loc ["body"]) for anything that is not a JSON object.
    """
    if not body.strip():
        raise InputError("", "expected a JSON object, got an empty body", kind="json_invalid")
    try:
        fields = _TOP_LEVEL.decode(body)
        _check_unique_keys(body, fields)
        return fields
    except msgspec.ValidationError:
        raise InputError(
            "", f"expected a JSON object, got {_json_kind(body)}", kind="json_type"
        ) from None
    except RecursionError:
        raise InputError("", "JSON nested too deeply", kind="json_invalid") from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        # FIX: msgspec raises UnicodeDecodeError (not DecodeError) for invalid UTF-8 inside
        # an object key; it escaped as a 500. The fallback below reports the byte offset.
        pass
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            "", f"expected UTF-8, got an invalid byte at offset {exc.start}", kind="json_invalid"
        ) from None
    try:
        # parse_constant maps NaN/Infinity to floats; the array checks then reject them.
        obj = json.loads(text, parse_constant=float, object_pairs_hook=_unique_pairs)
    except json.JSONDecodeError as exc:
        raise InputError(
            "", f"JSON decode error: {exc.msg} (line {exc.lineno} column {exc.colno})",
            position=(exc.pos,), kind="json_invalid",
        ) from None
    except RecursionError:
        raise InputError("", "JSON nested too deeply", kind="json_invalid") from None
    if not isinstance(obj, dict):
        raise InputError("", f"expected a JSON object, got {_json_kind(body)}", kind="json_type")
    return obj


#: What lies between two top-level values: "{" or ",", one key, ":".
_ONE_KEY = re.compile(rb'[ \t\n\r]*[{,][ \t\n\r]*("(?:[^"\\]|\\.)*")[ \t\n\r]*:[ \t\n\r]*')


def _check_unique_keys(body: bytes | bytearray, fields: dict[str, msgspec.Raw]) -> None:
    """Refuse a key sent twice: msgspec keeps the last value silently (msgspec#648), and
    which value counts is not defined by JSON. Each Raw value points into ``body``, so the
    text between two consecutive values must be exactly one key; where it holds more, a
    value was dropped and the key before it is the duplicate. Bodies with more fields than
    any endpoint has are refused as unknown fields anyway, so they are not scanned."""
    if len(fields) > 256:
        return
    base = np.frombuffer(body, np.uint8).ctypes.data
    spans = sorted(
        (np.frombuffer(raw, np.uint8).ctypes.data - base, len(raw)) for raw in fields.values()
    )
    view = memoryview(body)
    end = 0
    for start, length in spans:
        if not _ONE_KEY.fullmatch(view[end:start]):
            key = _ONE_KEY.match(view[end:start])
            _duplicate(json.loads(key.group(1)) if key else "")
        end = start + length


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` of the fallback parser: refuse a key sent twice."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                _duplicate(key)
            seen.add(key)
    return out


def _duplicate(key: str) -> None:
    raise InputError(
        key,
        "the field is sent more than once; send each field once (which value would count "
        "is not defined by JSON)",
        kind="duplicate_key",
    )


def _json_kind(body: bytes | bytearray) -> str:
    head = bytes(body.lstrip()[:1])
    return {b"[": "an array", b'"': "a string"}.get(head, "a number, boolean or null")


def decode_scalar(field: str, raw: msgspec.Raw) -> Any:
    """Parse one non-array field's JSON (small: options, not data)."""
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        text = bytes(raw)
        try:
            text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(
                field, f"expected UTF-8 text, got an invalid byte at offset {exc.start}",
                kind="json_invalid",
            ) from None
        try:
            return json.loads(text, parse_constant=float)
        except (ValueError, RecursionError):
            raise InputError(field, "expected valid JSON", kind="json_invalid") from None


# --------------------------------------------------------------------------- responses


def encode_array(arr: np.ndarray, encoding: str) -> Any:
    """An ndarray for a response: itself (orjson writes it) or an encoded float64 dict."""
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if encoding == "base64":
        return {
            "dtype": "float64",
            "shape": list(arr.shape),
            "data": base64.b64encode(arr.astype("<f8", copy=False).tobytes()).decode("ascii"),
        }
    return arr


def dumps(content: Any) -> bytes:
    """Serialise a response body; ndarrays are written natively by orjson."""
    return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
