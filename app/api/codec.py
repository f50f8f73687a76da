"""Request bytes <-> NumPy arrays, both directions.

Requests: a body is split once into its top-level fields without parsing any value
(``Span``: where the field's JSON lies in the body, no copy). Array fields are parsed
block by block (about a megabyte of text at a time) by simdjson straight into a
preallocated ndarray: no Python object per number or per row, whatever the shape. A block
simdjson refuses is decoded again by msgspec's strict typed decoder, which locates the
offending element; errors carry its exact position. Encoded arrays
(``{"dtype", "shape", "data"}``) have their declared shape checked against the element
limit before anything is allocated, and are base64-decoded straight from the body and
viewed with ``np.frombuffer``. Scalar options go to pydantic.

Malformed bodies cost what valid ones cost: the error is located from msgspec's byte
offset. The only tokens outside JSON that get a field and a position are NaN, Infinity and
-Infinity; they are masked (same length) in a copy of the body only to find the fields,
and each field is then validated from the original bytes.

Responses: arrays are written by orjson straight from the ndarray buffer (no per-element
Python objects), or as encoded float64 arrays with ``response_encoding: "base64"``.
"""

from __future__ import annotations

import binascii
import codecs
import json
import math
import queue
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import orjson
import pybase64
import simdjson

from xentropy._validation import InputError, check_finite, first_index

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
#: Error messages quote at most this many characters of a value the client sent.
MAX_QUOTED = 64


def quoted(value: Any) -> str:
    """``repr(value)``, cut to MAX_QUOTED characters: errors never echo large input."""
    text = repr(value)
    return text if len(text) <= MAX_QUOTED else text[: MAX_QUOTED - 3] + "..."


class Span:
    """One JSON value of a request body, not parsed yet: ``buf[start:stop]`` (no copy)."""

    __slots__ = ("buf", "parsed", "start", "stop")

    def __init__(self, buf: bytes | bytearray, start: int, stop: int,
                 parsed: np.ndarray | None = None) -> None:
        self.buf = buf
        self.start = start
        self.stop = stop
        #: The float64 matrix of this JSON text, when ``split_body`` parsed it already.
        self.parsed = parsed

    @classmethod
    def of(cls, value: bytes | bytearray | msgspec.Raw) -> Span:
        """A Span over the whole of ``value`` (a Raw is copied: tests and small values)."""
        data = bytes(value) if isinstance(value, msgspec.Raw) else value
        return cls(data, 0, len(data))

    def __len__(self) -> int:
        return self.stop - self.start

    def view(self) -> memoryview:
        return memoryview(self.buf)[self.start : self.stop]

    def to_bytes(self) -> bytes:
        return bytes(self.view())

    def is_null(self) -> bool:
        return len(self) == 4 and self.buf[self.start : self.stop] == b"null"

    def head(self) -> int:
        """The first byte that is not JSON whitespace (0 for an empty span)."""
        i = _WS.match(self.buf, self.start, self.stop).end()  # type: ignore[union-attr]
        return self.buf[i] if i < self.stop else 0


_WS = re.compile(rb"[ \t\n\r]*")

_COUNT_BLOCK = 1 << 20


def count_byte(buf: bytes | bytearray, byte: bytes, lo: int = 0, hi: int | None = None) -> int:
    """``buf.count(byte, lo, hi)`` for a one-byte ``byte``. Spans beyond 16 KiB are counted
    by NumPy a megabyte at a time: bytes.count is a byte loop (0.44 against 0.08 ms for
    800 kB; 11 ms for a 20 MB body, the GIL held throughout), while the comparisons run
    vectorised and the GIL can change hands between blocks."""
    hi = len(buf) if hi is None else hi
    if hi - lo <= 16 * 1024:
        return buf.count(byte, lo, hi)
    a = np.frombuffer(buf, np.uint8)
    value = byte[0]
    return sum(int(np.count_nonzero(a[p : min(p + _COUNT_BLOCK, hi)] == value))
               for p in range(lo, hi, _COUNT_BLOCK))


class ElementLimitError(Exception):
    """The arrays of one request hold more elements than the configured limit (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the arrays hold more than {limit} elements (the limit)")
        self.limit = limit
        self.detail = str(self)


_BUDGET: ContextVar[list[int] | None] = ContextVar("xentropy_element_budget", default=None)


@contextmanager
def element_budget(limit: int) -> Iterator[None]:
    """Within this block, the arrays decoded (by ``decode_array``) may hold ``limit``
    elements in all: the count is charged from declared shapes and from counted
    separators before any array is allocated, and ``ElementLimitError`` raised beyond."""
    token = _BUDGET.set([limit, limit])
    try:
        yield
    finally:
        _BUDGET.reset(token)


def charge_elements(n: int) -> None:
    """Count ``n`` elements decoded outside the codec (strings) against the budget."""
    _charge(n)


def _charge(n: int) -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget[0] -= n
        if budget[0] < 0:
            raise ElementLimitError(budget[1])


class EncodedArrayStruct(msgspec.Struct, forbid_unknown_fields=True):
    """Wire form of an encoded array (the pydantic twins in schemas are for the docs).

    ``shape`` takes any JSON number: JSON Schema's ``integer`` includes 2.0, so sizes are
    checked for being whole numbers (and at least 1) by ``_decode_encoded``. ``data`` is
    kept as raw JSON, so that its base64 is decoded straight from the request body."""

    dtype: str
    shape: list[int | float]
    data: msgspec.Raw


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


_EXPECTED = {"float": "a number", "int": "an integer", "mask": "0, 1 or a boolean"}


def _decoder(spec: ArraySpec, *, lenient: bool = False) -> msgspec.json.Decoder[Any]:
    if (spec, lenient) not in _DECODERS:
        _DECODERS[spec, lenient] = msgspec.json.Decoder(_wire_type(spec, lenient=lenient))
    return _DECODERS[spec, lenient]


def _wire_path(text: str) -> list[Any]:
    """The position in a msgspec error ("... - at `$[3][1]`", "... - at `$.shape[0]`")."""
    _, _, path = text.partition(" - at `")
    return [int(index) if index else name for index, name in _PATH.findall(path.rstrip("`"))]


def _wire_error(exc: msgspec.ValidationError, field: str, spec: ArraySpec) -> InputError:
    """Translate a msgspec path error ("Expected `float`, got `str` - at `$[3][1]`")."""
    text = str(exc)
    message = text.partition(" - at `")[0]
    position = _wire_path(text)
    expected_word = _EXPECTED
    got = re.search(r"got `(\w+)`", message)
    inside_encoded = any(isinstance(p, str) for p in position)  # e.g. ["shape", 2]
    if message.startswith("Expected") and got:
        what = _TYPE_WORDS.get(got.group(1), got.group(1))
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
    elif message.startswith(("Number out of range", "Integer value out of range")):
        if inside_encoded and message.startswith("Integer"):
            msg = "expected a size that fits in int64"
            kind = "out_of_range"
        elif inside_encoded:
            msg = "expected a finite size, got a literal outside the float64 range"
            kind = "not_finite"
        elif spec.kind == "float":
            msg = "expected a finite float64 number, got a literal outside the float64 range"
            kind = "not_finite"
        else:
            msg = "expected an integer that fits in int64"
            kind = "out_of_range"
    else:
        msg = message[0].lower() + message[1:]
        kind = "value_error"
    return _positioned_error(field, msg, position, kind)


def _positioned_error(field: str, msg: str, position: list[Any], kind: str) -> InputError:
    error = InputError(field, msg, kind=kind)
    error.position = tuple(position)  # may hold a key name for encoded-array parts
    return error


# --------------------------------------------------------------------------- arrays


def decode_array(value: Any, *, field: str, spec: ArraySpec) -> np.ndarray:
    """Turn one array field (a Span or Raw of JSON, Python lists, an encoded dict or an
    ndarray) into an ndarray: float64 for "float" (float32 encoded arrays stay float32),
    int64 for "int", float64 0/1 for "mask".

    Raises:
      InputError: with the field and the position of the first offending element.
      ElementLimitError: within ``element_budget``, when the arrays hold too many elements.
    """
    if isinstance(value, np.ndarray):
        arr = value
    elif isinstance(value, Span) and value.parsed is not None and spec.kind == "float" \
            and 2 in spec.ndim:
        arr = value.parsed  # split_body's parse: _matrix of this text, as below
        _charge(arr.size)
    else:
        span = Span.of(value) if isinstance(value, msgspec.Raw) else value
        fast = _nested_lists(span, field, spec) if isinstance(span, Span) else None
        arr = fast if fast is not None else _general(span, field, spec)
    return _finalise(arr, field, spec)


def _general(value: Any, field: str, spec: ArraySpec) -> np.ndarray:
    """The strict typed decoder over a whole field: encoded arrays, bare numbers, and
    arrays whose first elements already break a rule (so that it stops early)."""
    try:
        try:
            wire = _parse_wire(value, spec, lenient=False)
        except msgspec.ValidationError as exc:
            if spec.kind == "float" or "got `float`" not in str(exc):
                raise
            # Integers written as floats (1.0): parse again, then check each is whole.
            wire = _whole_numbers(_parse_wire(value, spec, lenient=True), field, spec, 0)
    except msgspec.ValidationError as exc:
        raise _wire_error(exc, field, spec) from None
    except RecursionError:
        raise InputError(field, "arrays are nested too deeply", kind="type_error") from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        if isinstance(value, Span):
            raise _token_error(value.to_bytes(), field, spec, shift=0) from None
        raise InputError(field, "expected valid UTF-8 JSON", kind="json_invalid") from None
    if isinstance(wire, EncodedArrayStruct):
        return _decode_encoded(wire, field, spec)
    if isinstance(wire, list):
        _charge(_count(wire))
    return _from_lists(wire, field, spec)


def _count(wire: list[Any]) -> int:
    return sum(len(row) if isinstance(row, list) else 1 for row in wire)


def _parse_wire(value: Any, spec: ArraySpec, *, lenient: bool) -> Any:
    if isinstance(value, Span):
        return _decoder(spec, lenient=lenient).decode(value.view())
    if isinstance(value, bytes | bytearray):
        return _decoder(spec, lenient=lenient).decode(value)
    if isinstance(value, dict):  # an encoded array as a Python dict: its data as JSON
        return _decoder(spec, lenient=lenient).decode(msgspec.json.encode(value))
    return msgspec.convert(value, _wire_type(spec, lenient=lenient), strict=True)


#: Arrays are parsed this many bytes of JSON text at a time (cut at a row end or a
#: comma), so that neither Python objects nor a parser's buffers exist for the whole
#: array at once: simdjson's tape takes 16 bytes per number, whatever the text.
BLOCK_BYTES = 1 << 20
_BUFFER_TYPE = {"float": ("d", np.float64), "int": ("i", np.int64), "mask": ("i", np.float64)}
_SEPARATOR = re.compile(rb"[ \t\n\r]*,[ \t\n\r]*")
#: Texts up to this size are parsed by their thread's own parser: a new one allocates its
#: buffers at its first parse (26 µs, as long as parsing 256×10 numbers). A parser keeps
#: the buffers of the largest text it parsed (about 12 bytes per byte of text at most),
#: so texts up to BLOCK_BYTES share a few parsers kept for the process instead of one per
#: thread (a new parser's first parse pays the page faults of its buffers: 0.65 ms of the
#: 1.7 ms that a 4096×10 matrix, 820 kB, takes), and larger ones get a new parser.
_OWN_PARSER_BYTES = 1 << 16
_SHARED_PARSERS = 2
_THREAD = threading.local()
_POOL: queue.SimpleQueue[Any] = queue.SimpleQueue()


@contextmanager
def _parser(n_bytes: int) -> Iterator[Any]:
    """A simdjson parser for a text of ``n_bytes`` (or for blocks of a larger one)."""
    if n_bytes <= _OWN_PARSER_BYTES:
        parser = getattr(_THREAD, "parser", None)
        if parser is None:
            parser = _THREAD.parser = simdjson.Parser()
        yield parser
        return
    if n_bytes > BLOCK_BYTES:
        yield simdjson.Parser()
        return
    try:
        parser = _POOL.get_nowait()
    except queue.Empty:
        parser = simdjson.Parser()
    yield parser
    # Not on an exception, which may hold a document of this parser alive (a parser
    # refuses to parse again while its proxies live).
    if _POOL.qsize() < _SHARED_PARSERS:
        _POOL.put(parser)


def _nested_lists(span: Span, field: str, spec: ArraySpec) -> np.ndarray | None:
    """A JSON vector or matrix parsed block by block straight into an ndarray, or None
    when ``span`` is something else (an encoded array, a bare number, an empty array, or
    nesting the field does not take), which the general path words at once.

    The element count (separators counted, no parsing) is charged against the element
    budget before the output is allocated. Rows may be of any length, 1 included: the
    rectangularity of each block is checked with a few vectorised passes over its text.
    """
    buf, lo, hi = span.buf, span.start, span.stop
    lo = _WS.match(buf, lo, hi).end()  # type: ignore[union-attr]
    while hi > lo and buf[hi - 1] in b" \t\n\r":
        hi -= 1
    if hi - lo < 2 or buf[lo] != 0x5B or buf[hi - 1] != 0x5D:  # not "[ ... ]"
        return None
    first = _WS.match(buf, lo + 1, hi - 1).end()  # type: ignore[union-attr]
    if first >= hi - 1:
        return None  # [] : "expected a non-empty array"
    if buf[first] != 0x5B:
        if 1 not in spec.ndim and 2 not in spec.ndim:
            return None
        return _vector(buf, lo + 1, hi - 1, field, spec)
    second = _WS.match(buf, first + 1, hi - 1).end()  # type: ignore[union-attr]
    if 2 not in spec.ndim or buf[second] == 0x5B:
        return None  # nested deeper than the field takes: refused at its first element
    if buf[second] == 0x5D:  # [[], ...: not a Python list per empty row
        raise InputError(field, "expected a non-empty array, got rows of length 0",
                         kind="empty")
    return _matrix(buf, lo + 1, hi - 1, field, spec)


def _vector(buf: bytes | bytearray, lo: int, hi: int, field: str, spec: ArraySpec
            ) -> np.ndarray:
    """The elements between ``lo`` and ``hi`` (inside the brackets) of a JSON vector."""
    quote = buf.find(b'"', lo, hi)
    plain = quote < 0 and buf.find(b"{", lo, hi) < 0
    nested = buf.find(b"[", lo, hi)
    if nested >= 0 and (quote < 0 or nested < quote):  # not a "[" inside a string
        # A list after numbers: the elements before it are parsed (an earlier error
        # comes first), then the list is refused where it stands, whatever its length.
        before = buf.rfind(b",", lo, nested)
        done = 0 if before < 0 else _vector(buf, lo, before, field, spec).size
        if 2 in spec.ndim:
            raise InputError(
                field, "expected every row to be a list, or none (mixed numbers and lists)",
                position=(done,), kind="ragged",
            )
        raise InputError(
            field, f"expected {_EXPECTED[spec.kind]}, got an array nested deeper than the "
            "field allows", position=(done,), kind="type_error",
        )
    n = count_byte(buf, b",", lo, hi) + 1
    if plain:  # separators are exactly the commas: charge before allocating
        _charge(n)
    of_type, dtype = _BUFFER_TYPE[spec.kind]
    out = np.empty(n, dtype=dtype)
    with _parser(hi - lo) as parser:
        done = 0
        p = lo
        while p < hi:
            q = -1 if hi - p <= BLOCK_BYTES else buf.find(b",", p + BLOCK_BYTES, hi)
            q = hi if q < 0 else q  # at a comma
            text = b"".join((b"[", memoryview(buf)[p:q], b"]"))  # one copy
            block = _simd_block(parser, text, of_type, rows=False)
            if block is None:
                block = _strict_block(text, field, spec, done)
            if done + block.size > n:
                raise InputError(field, "expected a vector of numbers", kind="type_error")
            out[done : done + block.size] = block
            done += block.size
            p = q + 1
    if not plain:
        _charge(done)
    return out[:done]


def _matrix(buf: bytes | bytearray, lo: int, hi: int, field: str, spec: ArraySpec
            ) -> np.ndarray:
    """The rows between ``lo`` and ``hi`` (inside the outer brackets) of a JSON matrix."""
    plain = buf.find(b'"', lo, hi) < 0 and buf.find(b"{", lo, hi) < 0
    n_rows = count_byte(buf, b"[", lo, hi)  # exact when plain (no strings, objects or deeper lists)
    of_type, dtype = _BUFFER_TYPE[spec.kind]
    with _parser(hi - lo) as parser:
        out: np.ndarray | None = None
        done = 0
        p = lo
        while p < hi:
            q = -1 if hi - p <= BLOCK_BYTES else buf.find(b"]", p + BLOCK_BYTES, hi)
            q = hi if q < 0 else q + 1  # just after a row's "]"
            text = b"".join((b"[", memoryview(buf)[p:q], b"]"))  # one copy
            block = _simd_block(parser, text, of_type, rows=True)
            if block is None:
                width = None if out is None else out.shape[1]
                block = _strict_block(text, field, spec, done, width=width)
                if block.ndim != 2:
                    raise _ragged_block(text, field, spec, done, width)
            if out is None:
                if block.shape[1] == 0:
                    raise InputError(
                        field, "expected a non-empty array, got rows of length 0", kind="empty"
                    )
                if plain:
                    _charge(n_rows * block.shape[1])
                out = np.empty((max(n_rows, block.shape[0]), block.shape[1]), dtype=dtype)
            elif block.shape[1] != out.shape[1]:
                raise InputError(
                    field, f"expected rows of equal length {out.shape[1]}, got a row of length "
                    f"{block.shape[1]}", position=(done,), kind="ragged",
                )
            if done + block.shape[0] > out.shape[0]:
                raise InputError(field, "expected a matrix of numbers", kind="type_error")
            out[done : done + block.shape[0]] = block
            done += block.shape[0]
            if _WS.match(buf, q, hi).end() >= hi:  # type: ignore[union-attr]
                break
            # Between blocks: one comma, then a row (split_body parses text no decoder has
            # checked yet: see _split_around_matrix).
            m = _SEPARATOR.match(buf, q, hi)
            if m is None or m.end() >= hi:
                raise InputError(field, "expected a matrix of numbers", position=(done,),
                                 kind="type_error")
            p = m.end()
    assert out is not None
    if plain and done != out.shape[0]:
        raise InputError(field, "expected a matrix of numbers", kind="type_error")
    if not plain:
        _charge(done * out.shape[1])
    return out[:done]


def _simd_block(parser: Any, text: bytes, of_type: str, *, rows: bool) -> np.ndarray | None:
    """``text``, a JSON vector (``rows`` False) or matrix of numbers, parsed by simdjson
    into a flat buffer and reshaped; None when it is not exactly that (simdjson refuses
    non-numbers, bad literals and integers beyond 64 bits, and flattens any nesting, so
    the nesting and the row lengths are checked here: by simdjson's own row lengths for
    long rows, from the text for short ones)."""
    try:
        doc = parser.parse(text)
        n = len(doc)
        flat = np.frombuffer(doc.as_buffer(of_type=of_type), dtype="d" if of_type == "d" else "q")
        if not rows:
            return flat if flat.size == n else None  # n elements, none of them a list
        if n == 0 or flat.size % n:
            return None
        width = flat.size // n
        if len(text) > _LONG_ROW_BYTES * n:
            # Every element an array of `width` (numbers, since the buffer was filled), and
            # no "[" but theirs and the outer one (no strings here: no nested lists).
            same = all(type(row) is simdjson.Array and len(row) == width for row in doc)
            square = same and count_byte(text, b"[") == n + 1
        else:
            square = _rectangular(text, n, width)
        del doc  # the parser refuses to parse again while its proxies live
    except (TypeError, ValueError, RuntimeError, IndexError):
        return None
    return flat.reshape(n, width) if square else None


#: Rows longer than this (bytes of text on average) are checked through simdjson's
#: arrays, a Python step per row; shorter ones from the text (``_rectangular``; measured:
#: 0.3 against 0.9 ms for a megabyte of 1000-number rows, 0.06 against 0.04 ms for 256
#: rows of 10).
_LONG_ROW_BYTES = 512


def _rectangular(text: bytes, n_rows: int, n_cols: int) -> bool:
    """Whether ``text`` (which simdjson parsed: numbers in ``n_rows`` top-level values) is
    exactly ``n_rows`` rows of ``n_cols`` numbers: its brackets and commas, in order, are
    "[", then "[" + (n_cols - 1) × "," + "]" per row, joined by ",", then "]". Numbers
    and whitespace are all that is left besides them (simdjson refused strings, objects,
    booleans and null), so deleting those bytes leaves the structure to compare: two C
    loops, no NumPy temporaries (0.04 against 0.05 ms at 256×10, 0.9 against 2.5 ms for a
    megabyte of 1000-number rows, against three masks and a gather)."""
    marks = text.translate(None, _NUMBER_OR_SPACE)
    if len(marks) != n_rows * (n_cols + 2) + 1:
        return False
    row = b"[" + b"," * (n_cols - 1) + b"]"
    return marks == b"[" + b",".join([row] * n_rows) + b"]"


_NUMBER_OR_SPACE = b"0123456789+-.eE \t\n\r"


def _strict_block(text: bytes, field: str, spec: ArraySpec, shift: int,
                  width: int | None = None) -> np.ndarray:
    """One block simdjson refused, through the strict decoder: the error at its exact
    position (``shift`` rows or elements before the block), or the block as an array
    (integers beyond 64 bits, integers written as 1.0, booleans in masks...). ``width``:
    the row length of the matrix so far, if known."""
    decoder = _decoder(spec, lenient=False)
    try:
        try:
            wire = decoder.decode(text)
        except msgspec.ValidationError as exc:
            if spec.kind == "float" or "got `float`" not in str(exc):
                raise
            wire = _whole_numbers(_decoder(spec, lenient=True).decode(text), field, spec, shift)
    except msgspec.ValidationError as exc:
        raise _wire_error(exc, field, spec).moved(shift) from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise _token_error(text, field, spec, shift) from None
    try:
        return _from_lists(wire, field, spec, width=width)
    except InputError as exc:
        raise exc.moved(shift) from None


def _ragged_block(text: bytes, field: str, spec: ArraySpec, shift: int, width: int | None
                  ) -> InputError:
    wire = _decoder(spec, lenient=True).decode(text)
    return _ragged_error(wire, field, width).moved(shift)


#: Tokens outside JSON that Python's json module (and JavaScript) writes for floats.
_NON_FINITE = re.compile(rb"-?(?:NaN|Infinity)")


def _token_error(text: bytes, field: str, spec: ArraySpec, shift: int) -> InputError:
    """The error for ``text`` (one field, or one block of it), which the strict decoder
    refused as malformed: the body passed a JSON syntax check with NaN and Infinity
    masked, so one of those is the first problem. The strict decoder locates it exactly
    once the token is replaced by ``null``, which no element type accepts."""
    offset: int | None = None
    try:
        _decoder(spec).decode(text)
    except msgspec.ValidationError:
        pass
    except msgspec.DecodeError as exc:
        offset = _byte_offset(exc)
    match = None if offset is None else _NON_FINITE.match(text, _token_start(text, offset))
    if match is None:
        quote = text.find(b'"')
        if quote < 0:
            return InputError(field, "expected valid JSON", kind="json_invalid")
        # The block was cut inside a string (msgspec reads a string to its end before it
        # refuses it). Nothing before the first quote is a string, so the brackets there
        # are exact: close them after an empty string, which the decoder then refuses.
        prefix = text[:quote]
        closed = prefix + b'""' + b"]" * (prefix.count(b"[") - prefix.count(b"]"))
        try:
            _decoder(spec).decode(closed)
        except msgspec.ValidationError as exc:
            return _wire_error(exc, field, spec).moved(shift)
        except (msgspec.DecodeError, RecursionError):
            pass
        return InputError(field, "expected valid JSON", kind="json_invalid")
    position: list[Any] = []
    try:
        _decoder(spec).decode(text[: match.start()] + b"null" + text[match.end() :])
    except msgspec.ValidationError as exc:
        position = _wire_path(str(exc))
    except (msgspec.DecodeError, RecursionError):
        pass
    error = _positioned_error(
        field, f"expected a finite number, got {float(match.group())} (a literal that is not JSON)",
        position, "not_finite",
    )
    return error.moved(shift)


def _whole_numbers(wire: Any, field: str, spec: ArraySpec, shift: int) -> Any:
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
                field, f"expected {expected}, got {v!r}",
                position=(position[0] + shift, *position[1:]), kind="type_error",
            )
        return int(v)

    return [
        [whole(v, (i, j)) for j, v in enumerate(row)] if isinstance(row, list) else whole(row, (i,))
        for i, row in enumerate(wire)
    ]


def _from_lists(wire: Any, field: str, spec: ArraySpec, width: int | None = None
                ) -> np.ndarray:
    if not isinstance(wire, list):  # a bare number, for fields that also take a scalar
        return np.asarray(wire, dtype=np.float64)
    dtype = {"float": np.float64, "int": np.int64, "mask": None}[spec.kind]
    try:
        return np.asarray(wire, dtype=dtype)
    except ValueError:  # numpy refuses ragged nesting
        raise _ragged_error(wire, field, width) from None
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


def _ragged_error(wire: list[Any], field: str, width: int | None = None) -> InputError:
    """Locate the first row that breaks rectangularity (only runs on the error path);
    ``width``: the length of the rows before ``wire``, if any."""
    first = wire[0]
    first_len = width if width is not None else len(first) if isinstance(first, list) else None
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
            field, f"expected dtype one of {allowed}, got {quoted(wire.dtype)}", ["dtype"],
            "enum",
        )
    dtype = DTYPES[wire.dtype]
    for i, size in enumerate(wire.shape):
        if isinstance(size, float) and not size.is_integer():
            raise _positioned_error(
                field, f"expected whole-number sizes, got {size!r}", ["shape", i], "type_error"
            )
        if size < 1:  # a zero size would make an empty array, refused below anyway
            raise _positioned_error(
                field, f"expected sizes of at least 1, got {size!r}", ["shape", i], "empty"
            )
    if len(wire.shape) not in spec.ndim:
        ranks = " or ".join(str(d) for d in spec.ndim)
        shown = ", ".join(str(int(s)) for s in wire.shape[:4])
        more = ", ..." if len(wire.shape) > 4 else ""
        raise _positioned_error(
            field, f"expected a shape of {ranks} sizes, got {len(wire.shape)} sizes "
            f"[{shown}{more}]", ["shape"], "shape_error",
        )
    shape = [int(size) for size in wire.shape]
    n_items = math.prod(shape)  # Python ints: no overflow whatever the shape
    expected = n_items * dtype.itemsize
    charged = _base64_size(wire.data) == expected
    if charged:
        _charge(n_items)  # the declared shape, before anything is decoded or allocated
    raw = _base64_bytes(wire.data, field)
    if len(raw) != expected:
        raise _positioned_error(
            field,
            f"expected {expected} bytes of data for shape {shape} and dtype {wire.dtype}, "
            f"got {len(raw)}",
            ["data"], "size_mismatch",
        )
    if not charged:  # JSON escapes made the text longer than its base64
        _charge(n_items)
    # Every size is >= 1 and their product matched the data: reshape cannot overflow.
    arr = np.frombuffer(raw, dtype=dtype).reshape(shape)
    if wire.dtype == "bool":
        _check_bool_bytes(arr, field)
    return arr


_BACKSLASH = re.compile(rb"\\")


def _base64_size(data: msgspec.Raw) -> int:
    """How many bytes ``data`` (a JSON string of padded base64) decodes to, from its
    length alone (without escapes; a wrong guess only delays the element check)."""
    text = memoryview(data)
    n = len(text) - 2
    if n < 0:
        return -1
    pad = (n >= 1 and text[-2] == 0x3D) + (n >= 2 and text[-3] == 0x3D)
    return n // 4 * 3 - pad


def _base64_bytes(data: msgspec.Raw, field: str) -> bytes:
    """The bytes of an encoded array's ``data``: standard base64 (RFC 4648), padded only
    at its end, no line breaks. Decoded from the body's text itself (no Python str);
    only a string that holds JSON escapes ("\\/" is legal JSON for "/") is unescaped first."""
    text = memoryview(data)
    if len(text) < 2 or text[0] != 0x22 or text[-1] != 0x22:
        raise _positioned_error(
            field, "expected a string of base64 data", ["data"], "type_error"
        )
    inner = text[1:-1]
    try:
        return _strict_base64(inner)
    except (binascii.Error, ValueError):
        if _BACKSLASH.search(inner):  # error path only: a scan of the string
            try:
                unescaped = msgspec.json.decode(data, type=str).encode("utf-8", "replace")
                return _strict_base64(memoryview(unescaped))
            except (binascii.Error, ValueError, msgspec.DecodeError):
                pass
    raise _positioned_error(
        field, "expected standard base64 (RFC 4648) data: the alphabet A-Z a-z 0-9 + /, "
        "a length that is a multiple of 4, and = padding only at the end", ["data"],
        "base64",
    )


def _strict_base64(text: memoryview) -> bytes:
    # pybase64's validating decoder (SIMD; binascii's strict mode refuses the same, at a
    # 30th of the speed: tests/api/test_codec.py) refuses anything outside the alphabet,
    # leading padding and data after padding; the length and the last two quanta settle
    # padding after a complete quantum ("AAAA==").
    n = len(text)
    if n % 4 or 0x3D in bytes(text[max(0, n - 8) : max(0, n - 2)]):
        raise binascii.Error("padding")
    return pybase64.b64decode(text, validate=True)


def _check_bool_bytes(arr: np.ndarray, field: str) -> None:
    """NumPy reads any non-zero byte as True; a bool mask is 0 or 1, nothing else."""
    bytes_ = arr.view(np.uint8)
    if bytes_.max(initial=0) > 1:
        pos = first_index(bytes_ > 1)
        raise InputError(
            field, f"expected bytes 0 or 1 for dtype bool, got {int(bytes_[pos])}",
            position=pos, kind="out_of_range",
        )


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
_BOM = b"\xef\xbb\xbf"


def split_body(body: bytes | bytearray) -> dict[str, Span]:
    """Split a JSON object into its top-level fields, each a ``Span`` of ``body``.

    A body msgspec refuses is never parsed into Python objects: the error is located
    from msgspec's byte offset. When the offending token is NaN or Infinity (not JSON,
    but what Python's json module writes), the fields are found in a copy of the body
    with those tokens masked, so that the field holding one is reported with the exact
    position of the token.

    A body whose bulk is one matrix of numbers has that matrix parsed here, straight into
    float64 (``_split_around_matrix``; the field's Span keeps it for ``decode_array``):
    the same fields, and its text is scanned once instead of twice (by msgspec to split,
    by simdjson to parse).

    Raises:
      InputError: field "" (loc ["body", ...]) for anything that is not a JSON object.
    """
    fields = _split_around_matrix(body)
    return fields if fields is not None else _split_whole(body)


def _split_whole(body: bytes | bytearray) -> dict[str, Span]:
    if not body or body.isspace():
        raise InputError("", "expected a JSON object, got an empty body", kind="json_invalid")
    try:
        fields = _TOP_LEVEL.decode(body)
    except msgspec.ValidationError:
        raise InputError(
            "", f"expected a JSON object, got {_json_kind(body)}", kind="json_type"
        ) from None
    except RecursionError:
        raise InputError("", "JSON nested too deeply", kind="json_invalid") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return _split_malformed(body, exc)
    return _spans(body, body, fields, keys_from_body=False)


_MATRIX = ArraySpec("float", (2,))
_NOT_IN_NUMBERS = (b'"', b"N", b"I")


def _first_matrix(body: bytes | bytearray, tries: int = 8) -> int:
    """Where the first "[" followed by "[" (spaces between allowed) is, among the first
    ``tries`` "[" of the body (the arrays before a matrix are a few vectors), or -1. One
    find() of a byte per candidate: a memchr, 5x faster than a regular expression's scan
    of a body without a matrix (an encoded one), 10x faster than find(b"[[")."""
    lo = body.find(b"[")
    for _ in range(tries):
        if lo < 0:
            return -1
        after = _WS.match(body, lo + 1).end()  # type: ignore[union-attr]
        if body[after : after + 1] == b"[":
            return lo
        lo = body.find(b"[", after)
    return -1


def _split_around_matrix(body: bytes | bytearray) -> dict[str, Span] | None:
    """``_split_whole(body)``'s fields when the bulk of the body is one matrix of numbers,
    that matrix parsed into float64 (the field's ``Span.parsed``); otherwise None, and
    ``_split_whole`` answers (and words any error).

    The body's first matrix to its last "]]", ``body[lo : hi + 1]``, is cut out; the rest,
    with ``[]`` in its place, is split whole (a few bytes of options), and the matrix is parsed by
    ``_matrix`` block by block, which checks every block's JSON (simdjson), the commas
    between blocks and the shape. JSON is context-free: the body is valid, with these
    fields, exactly when the rest is valid with "[]" as one field's whole value and the
    cut text is a valid JSON array. Anything else (a matrix with anything but numbers in
    it, NaN, ragged rows, a cut that is not a field's value) returns None, at the cost of
    one more scan for a body that is refused or decoded by the general path anyway."""
    lo = _first_matrix(body)
    if lo < 0:
        return None
    # A matrix ends at the last "]]" when it is the only one (find() of two bytes is a
    # slow scan, rfind() stops at once); any other "]]" fails the checks below.
    hi = body.rfind(b"]]", lo) + 1
    if hi <= lo or 2 * (hi - lo) < len(body):
        return None  # not a body whose bulk is one matrix
    view = memoryview(body)
    try:
        fields = _split_whole(b"".join((view[:lo], b"[]", view[hi + 1 :])))
    except InputError:
        return None
    key = next((k for k, span in fields.items() if (span.start, span.stop) == (lo, lo + 2)),
               None)
    if key is None:
        return None
    # Bytes of what a valid matrix does not hold and malformed bodies do (strings, NaN,
    # Infinity): those are refused by the whole split and the decoder, whose cost is then
    # not paid twice. One memchr each (about 1.5 ms for 20 MB, the GIL held).
    if any(body.find(byte, lo, hi) >= 0 for byte in _NOT_IN_NUMBERS):
        return None
    try:
        matrix = _nested_lists(Span(body, lo, hi + 1), key, _MATRIX)
    except InputError:
        return None
    if matrix is None:
        return None
    shift = hi + 1 - lo - 2
    spans: dict[str, Span] = {}
    for name, span in fields.items():
        if name == key:
            spans[name] = Span(body, lo, hi + 1, matrix)
        else:
            moved = 0 if span.start < lo else shift
            spans[name] = Span(body, span.start + moved, span.stop + moved)
    return spans


def _split_malformed(body: bytes | bytearray, exc: Exception) -> dict[str, Span]:
    if body.startswith(_BOM):
        raise InputError(
            "", "expected JSON without a byte order mark (BOM): the body starts with "
            "EF BB BF", position=(0,), kind="json_invalid",
        )
    offset = _byte_offset(exc)
    if (offset is None and "UTF-8" in str(exc)) or isinstance(exc, UnicodeDecodeError):
        bad = _first_invalid_utf8(body)
        if bad is not None:
            raise InputError(
                "", f"expected UTF-8, got an invalid byte at offset {bad}", kind="json_invalid",
            )
    start = -1 if offset is None else _token_start(body, offset)
    if offset is None or not _NON_FINITE.match(body, start):
        raise _syntax_error(body, exc, offset)
    # Mask NaN and Infinity with numbers of the same length: the copy has the body's
    # offsets, and is only used to find the fields (their values are taken from `body`).
    # msgspec read everything before the first one, so the tokens are looked for from
    # there on: one copy of the body, not two scans and a copy per token.
    masked = bytearray(body)
    masked[start:] = masked[start:].replace(b"NaN", b"0e0").replace(b"Infinity", b"0.0e0000")
    try:
        fields = _TOP_LEVEL.decode(masked)
    except RecursionError:
        raise InputError("", "JSON nested too deeply", kind="json_invalid") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as again:
        raise _syntax_error(body, again, _byte_offset(again)) from None
    return _spans(body, masked, fields, keys_from_body=True)


def _token_start(text: bytes | bytearray, offset: int) -> int:
    """msgspec points at the "I" of "-Infinity"; the token starts at the sign."""
    return offset - 1 if 0 < offset <= len(text) and text[offset - 1] == 0x2D else offset


_BYTE_OFFSET = re.compile(r"\(byte (\d+)\)$")


def _byte_offset(exc: Exception) -> int | None:
    """Where msgspec found the problem (the end of the input when it was truncated)."""
    text = str(exc)
    match = _BYTE_OFFSET.search(text)
    return int(match.group(1)) if match else None


def _first_invalid_utf8(body: bytes | bytearray) -> int | None:
    """Offset of the first byte that is not valid UTF-8, in chunks (no copy of the body)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    step = 1 << 20
    view = memoryview(body)
    for start in range(0, len(body), step):
        try:
            decoder.decode(view[start : start + step], final=start + step >= len(body))
        except UnicodeDecodeError as exc:
            pending = len(decoder.getstate()[0])
            return start - pending + exc.start
    return None


def _syntax_error(body: bytes | bytearray, exc: Exception, offset: int | None) -> InputError:
    """A JSON syntax error, at its byte offset, with line and column."""
    reason = str(exc).removeprefix("JSON is malformed: ")
    reason = _BYTE_OFFSET.sub("", reason).strip()
    if reason == "Input data was truncated":
        reason, offset = "the body ends before the JSON object does", len(body)
    if offset is None:
        return InputError("", f"expected valid JSON: {reason}", kind="json_invalid")
    line = body.count(b"\n", 0, offset) + 1
    column = offset - (body.rfind(b"\n", 0, offset) + 1) + 1
    return InputError(
        "", f"expected valid JSON: {reason} at byte {offset} (line {line}, column {column})",
        position=(offset,), kind="json_invalid",
    )


#: What lies between two top-level values: "{" or ",", one key, ":".
_ONE_KEY = re.compile(rb'[ \t\n\r]*[{,][ \t\n\r]*("(?:[^"\\]|\\.)*")[ \t\n\r]*:[ \t\n\r]*')


def _address(buffer: Any) -> int:
    return int(np.frombuffer(buffer, np.uint8).ctypes.data)


def _spans(body: bytes | bytearray, parsed: bytes | bytearray, fields: dict[str, msgspec.Raw],
           *, keys_from_body: bool) -> dict[str, Span]:
    """Each field of ``fields`` (Raw values pointing into ``parsed``, which has the offsets
    of ``body``) as a Span of ``body``.

    Refuses a key sent twice: msgspec keeps the last value silently (msgspec#648), and
    which value counts is not defined by JSON. The text between two consecutive values
    must be exactly one key; where it holds more, a value was dropped and the key before
    it is the duplicate. ``keys_from_body``: the keys are read from that text (``parsed``
    is a masked copy whose keys may differ)."""
    base = _address(parsed)
    located = sorted((_address(raw) - base, len(raw), key) for key, raw in fields.items())
    view = memoryview(body)
    spans: dict[str, Span] = {}
    end = 0
    for start, length, key in located:
        between = _ONE_KEY.fullmatch(view[end:start])
        if between is None:
            first = _ONE_KEY.match(view[end:start])
            _duplicate(json.loads(first.group(1)) if first else "")
        elif keys_from_body:
            key = json.loads(between.group(1))
        spans[key] = Span(body, start, start + length)
        end = start + length
    return spans


def _duplicate(key: str) -> None:
    raise InputError(
        key,
        "the field is sent more than once; send each field once (which value would count "
        "is not defined by JSON)",
        kind="duplicate_key",
    )


def _json_kind(body: bytes | bytearray) -> str:
    head = bytes(body[:64].lstrip()[:1])
    return {b"[": "an array", b'"': "a string"}.get(head, "a number, boolean or null")


#: A non-array option is a number, string, boolean or null; an array or object larger
#: than this sent in its place is refused by its type alone, never parsed.
MAX_OPTION_CONTAINER = 4096


def decode_scalar(field: str, value: Span | msgspec.Raw, *, containers: bool = True) -> Any:
    """Parse one non-array field's JSON (small: options, not data). ``containers``
    False: the field takes no array or object, so a large one is given to the validator
    as an empty one of the same JSON type (refused for its type, as any would be) instead
    of millions of Python objects."""
    span = Span.of(value) if isinstance(value, msgspec.Raw) else value
    head = span.head()
    if not containers and head in b"[{" and len(span) > MAX_OPTION_CONTAINER:
        return [] if head == 0x5B else {}
    try:
        return msgspec.json.decode(span.view())
    except msgspec.ValidationError:
        # msgspec: "Number out of range" (1e400), "Integer value out of range" (more than
        # 4300 digits); no option takes such a number.
        raise InputError(
            field, "expected a number within the float64 range (integers: within int64)",
            kind="out_of_range",
        ) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        text = span.to_bytes()
    try:
        text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            field, f"expected UTF-8 text, got an invalid byte at offset {exc.start}",
            kind="json_invalid",
        ) from None
    if len(text) <= MAX_OPTION_CONTAINER:
        try:
            # NaN and Infinity (masked when the body was split) become floats here, which
            # the option's validator refuses as not finite.
            return json.loads(text, parse_constant=float)
        except (ValueError, RecursionError):
            pass
    raise InputError(field, "expected valid JSON", kind="json_invalid")


# --------------------------------------------------------------------------- responses


def encode_array(arr: np.ndarray, encoding: str) -> Any:
    """An ndarray for a response: itself (orjson writes it) or an encoded float64 dict."""
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if encoding == "base64":
        return {
            "dtype": "float64",
            "shape": list(arr.shape),
            "data": pybase64.b64encode(arr.astype("<f8", copy=False).data).decode("ascii"),
        }
    return arr


def dumps(content: Any) -> bytes:
    """Serialise a response body; ndarrays are written natively by orjson."""
    return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
