"""The codec's block parser gives exactly what the strict decoder gives (values, or the
error and its position), whatever the shape, the block size and the whitespace; malformed
bodies are located without parsing them into Python objects."""

from __future__ import annotations

import base64
import binascii
import json

import msgspec
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.api import codec
from app.api.codec import ArraySpec, ElementLimitError, InputError, Span
from app.api.errors import input_error_item

MATRIX = ArraySpec("float", (2,))
EITHER = ArraySpec("float", (1, 2))
VECTOR = ArraySpec("float", (1,))
LABELS = ArraySpec("int", (1,))
MASK = ArraySpec("mask", (1, 2))
SPECS = {"matrix": MATRIX, "either": EITHER, "vector": VECTOR, "labels": LABELS, "mask": MASK}
#: The two checks of a block's rows: simdjson's row lengths (every row "long") or
#: NumPy passes over the text (every row "short").
ROW_CHECKS = {"row-lengths": 0, "text-passes": 1 << 40}


def span(text: bytes | str) -> Span:
    data = text.encode() if isinstance(text, str) else text
    return Span(bytearray(b"  " + data + b" \n"), 2, 2 + len(data))  # inside a larger buffer


def strict(text: bytes, spec: ArraySpec) -> np.ndarray | InputError:
    """The reference: the general path (msgspec's strict decoder over the whole field)."""
    try:
        return codec._finalise(codec._general(span(text), "v", spec), "v", spec)
    except InputError as exc:
        return exc


def fast(text: bytes, spec: ArraySpec) -> np.ndarray | InputError:
    try:
        return codec.decode_array(span(text), field="v", spec=spec)
    except InputError as exc:
        return exc


def same(a: np.ndarray | InputError, b: np.ndarray | InputError, *, in_order: bool = False
         ) -> None:
    """``a`` (the block parser's answer) is ``b`` (the strict decoder's): the same array,
    bit for bit, or the same error at the same position. ``in_order``: ``a`` may be an
    error found earlier in the text (blocks are checked in order, the strict decoder
    parses everything before it checks rows and int64 ranges)."""
    if isinstance(b, InputError):
        assert isinstance(a, InputError), (a, b.kind, b.position, b.message)
        if in_order and (a.kind, a.position) != (b.kind, b.position):
            assert a.position <= b.position, (a.message, a.position, b.message, b.position)
            return
        assert (a.kind, a.position) == (b.kind, b.position), (a.message, b.message)
    else:
        assert isinstance(a, np.ndarray), (a.kind, a.position, a.message)
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a.view(np.int64) if a.dtype == np.float64 else a,
                                      b.view(np.int64) if b.dtype == np.float64 else b)


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (200, 33), (5,), (1000, 1), (700, 3),
                                   (4, 1000)])
@pytest.mark.parametrize("block", [64, 1 << 20])
@pytest.mark.parametrize("rows", ROW_CHECKS)
def test_block_parser_is_bit_identical_to_the_strict_decoder(monkeypatch, shape, block, rows):
    monkeypatch.setattr(codec, "BLOCK_BYTES", block)
    monkeypatch.setattr(codec, "_LONG_ROW_BYTES", ROW_CHECKS[rows])
    rng = np.random.default_rng(sum(shape))
    values = rng.normal(size=shape) * 10.0 ** rng.integers(-300, 300, size=shape)
    values.flat[0] = 5e-324  # subnormal
    text = orjson.dumps(values.tolist())
    got = fast(text, EITHER)
    same(got, strict(text, EITHER))
    np.testing.assert_array_equal(got, values)


@pytest.mark.parametrize("block", [16, 64, 1 << 20])
def test_whitespace_and_integers_anywhere(monkeypatch, block):
    monkeypatch.setattr(codec, "BLOCK_BYTES", block)
    values = np.arange(60.0).reshape(20, 3) - 30
    pretty = json.dumps(values.astype(int).tolist(), indent=3).encode()  # ints, newlines
    np.testing.assert_array_equal(fast(pretty, MATRIX), values)
    labels = json.dumps(list(range(50)), indent=1).encode()
    np.testing.assert_array_equal(fast(labels, LABELS), np.arange(50))


@pytest.mark.parametrize("block", [16, 1 << 20])
def test_blocks_simdjson_refuses_are_decoded_strictly(monkeypatch, block):
    monkeypatch.setattr(codec, "BLOCK_BYTES", block)
    big = 2**70  # beyond 64 bits: simdjson refuses it, msgspec rounds it to float64
    rows = [[float(i), float(i + 1)] for i in range(30)]
    text = orjson.dumps(rows).replace(b"[29.0,", f"[{big},".encode())
    expected = np.array(rows)
    expected[29, 0] = float(big)
    np.testing.assert_array_equal(fast(text, MATRIX), expected)
    # labels written as whole floats, masks as booleans: allowed, decoded block by block
    np.testing.assert_array_equal(fast(b"[0, 1.0, 2, 3.0]" * 1, LABELS), [0, 1, 2, 3])
    mask = [[True, 0], [1, False]] * 10
    np.testing.assert_array_equal(fast(orjson.dumps(mask), MASK), np.array(mask, dtype=float))


IRREGULAR = {
    "ragged": [[1, 2], [3]],
    "ragged-late": [[1, 2]] * 9 + [[3]],
    "longer-late": [[1, 2]] * 9 + [[3, 4, 5]],
    "deep": [[1, [2]]],
    "deep-first": [[[1, 2]]],
    "mixed": [[1, 2], 3],
    "mixed-number-first": [1, [2, 3]],
    "mixed-long-list-late": [0.5] * 30 + [[1.5] * 40, 2.5],
    "mixed-nan-before-list": [0.5, None, [1.0]],
    "string-with-bracket-in-vector": [0.5, "a[b", [1.0]],
    "bool": [[1, True]],
    "bool-late": [[0.5, 1.5]] * 11 + [[0.0, True]],
    "null": [[1, None]],
    "string": [[1, "2"]],
    "string-with-brackets": [[1, 2], [3, "],[4, 5]"]],
    "string-with-commas": [1.0, 2.0, "3,4,5", 6.0],
    "object": [[1, {"a": [1, 2]}]],
    "vector-with-bool": [1.0, False],
    "empty": [],
    "empty-rows": [[], []],
    "empty-row-late": [[1.0]] * 5 + [[]],
    "huge-int-label": [1, 2**64],
    "huge-int-row": [[1, 2**64]],
    "fractional-label": [0, 1, 2.5],
}


@pytest.mark.parametrize("name", IRREGULAR)
@pytest.mark.parametrize("spec_name", SPECS)
@pytest.mark.parametrize("block", [8, 1 << 20])
@pytest.mark.parametrize("rows", ROW_CHECKS)
def test_irregular_input_gives_the_strict_decoders_error(monkeypatch, name, spec_name, block,
                                                         rows):
    monkeypatch.setattr(codec, "BLOCK_BYTES", block)
    monkeypatch.setattr(codec, "_LONG_ROW_BYTES", ROW_CHECKS[rows])
    text = json.dumps(IRREGULAR[name]).encode()
    spec = SPECS[spec_name]
    got, expected = fast(text, spec), strict(text, spec)
    if isinstance(got, InputError) and got.kind == "empty":
        assert isinstance(expected, InputError) and expected.kind == "empty"
        return  # [[], []]: worded without the shape, loc the same
    same(got, expected, in_order=name in ("huge-int-label", "huge-int-row", "mixed-long-list-late"))


_NUMBER = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, 0.0, 1.0, -0.0, 5e-324, 1e308]),
)
_ODD = st.one_of(st.booleans(), st.none(), st.text(alphabet="[],\" 1", max_size=4))
_ELEMENT = st.one_of(_NUMBER, _NUMBER, _NUMBER, _ODD)
_ROW = st.lists(_ELEMENT, min_size=0, max_size=5)
_ARRAY = st.one_of(
    st.lists(_ELEMENT, max_size=12),
    st.lists(st.one_of(_ELEMENT, st.lists(_NUMBER, max_size=8)), max_size=12),  # mixed
    st.lists(_ROW, max_size=12),
    st.integers(1, 4).flatmap(lambda c: st.lists(st.lists(_NUMBER, min_size=c, max_size=c),
                                                 min_size=1, max_size=12)),
)


@settings(max_examples=300, deadline=None, database=None)
@given(value=_ARRAY, spec_name=st.sampled_from(list(SPECS)), block=st.sampled_from([4, 16, 64]),
       indent=st.sampled_from([None, 1]), rows=st.sampled_from(list(ROW_CHECKS)))
def test_block_parser_agrees_with_the_strict_decoder_on_anything(value, spec_name, block,
                                                                  indent, rows):
    original = codec.BLOCK_BYTES, codec._LONG_ROW_BYTES
    codec.BLOCK_BYTES, codec._LONG_ROW_BYTES = block, ROW_CHECKS[rows]
    try:
        text = json.dumps(value, indent=indent).encode()
        spec = SPECS[spec_name]
        same(fast(text, spec), strict(text, spec), in_order=True)
    finally:
        codec.BLOCK_BYTES, codec._LONG_ROW_BYTES = original


# ------------------------------------------------------------------ NaN, Infinity, syntax


def split(body: bytes) -> dict[str, Span]:
    return codec.split_body(bytearray(body))


def test_non_finite_tokens_are_located_exactly(monkeypatch):
    monkeypatch.setattr(codec, "BLOCK_BYTES", 32)
    rows = [[0.5, 1.5, 2.5]] * 40
    text = orjson.dumps({"logits": rows, "labels": [0] * 40})
    for token, at in ((b"NaN", (37, 2)), (b"-Infinity", (0, 0)), (b"Infinity", (21, 1))):
        poked = [list(map(orjson.dumps, row)) for row in rows]
        poked[at[0]][at[1]] = token
        array = b"[" + b",".join(b"[" + b",".join(r) + b"]" for r in poked) + b"]"
        body = text.replace(orjson.dumps(rows), array)
        fields = split(body)
        with pytest.raises(InputError) as info:
            codec.decode_array(fields["logits"], field="logits", spec=MATRIX)
        assert (info.value.kind, info.value.position) == ("not_finite", at)
        assert b"NaN" not in orjson.dumps(input_error_item(info.value))


def test_masking_keeps_keys_and_strings_that_hold_the_tokens():
    body = b'{"NaN-key": "Infinity", "logits": [[1, NaN]], "units": "NaN"}'
    fields = split(body)
    assert set(fields) == {"NaN-key", "logits", "units"}
    assert fields["units"].to_bytes() == b'"NaN"'
    assert codec.decode_scalar("NaN-key", fields["NaN-key"]) == "Infinity"
    with pytest.raises(InputError) as info:
        codec.decode_array(fields["logits"], field="logits", spec=MATRIX)
    assert info.value.position == (0, 1)


def test_duplicate_keys_are_found_when_masking_too():
    with pytest.raises(InputError) as info:
        split(b'{"logits": [[1, NaN]], "labels": [0], "labels": [1]}')
    assert info.value.field == "labels" and info.value.kind == "duplicate_key"


SYNTAX = [
    (b'{"a": [1, 2],}', 13, "trailing comma in object"),
    (b'{"a": [1, 2,]}', 12, "trailing comma in array"),
    (b'{"a": [1, 2]', 12, "ends before"),
    (b'{"a": [1, 2]} x', 15, "trailing characters"),
    (b'{"a": [1 2]}', 9, "expected ','"),
    (b'{"a": [NaN, 1,]}', 14, "trailing comma"),  # after masking, the real error
    (b'{\n  "a": [1,\n 2 3]}', 16, "line 3, column 4"),
]


@pytest.mark.parametrize(("body", "offset", "says"), SYNTAX)
def test_syntax_errors_name_the_byte_line_and_column(body, offset, says):
    with pytest.raises(InputError) as info:
        split(body)
    assert info.value.kind == "json_invalid" and info.value.position == (offset,)
    assert says in info.value.message


def test_invalid_utf8_is_located_without_decoding_the_body():
    body = b'{"a": [' + b"1, " * 1000 + b'1], "\xc3\x28": 1}'
    with pytest.raises(InputError) as info:
        split(body)
    bad = body.index(b"\xc3")
    assert info.value.message.endswith(f"offset {bad}")
    assert codec._first_invalid_utf8(b"ok \xe2\x82\xac " * 200_000 + b"\xff") == 1_400_000


# ------------------------------------------------------------------ options and encoded data


def test_a_large_array_for_an_option_is_never_parsed():
    value = Span.of(b"[" + b"0.5," * 100_000 + b"0.5]")
    assert codec.decode_scalar("focal_gamma", value, containers=False) == []
    assert len(codec.decode_scalar("focal_gamma", value, containers=True)) == 100_001
    small = Span.of(b"[0.5, 1.5]")
    assert codec.decode_scalar("focal_gamma", small, containers=False) == [0.5, 1.5]


@pytest.mark.parametrize("text", [b"1" * 4301, b"-" + b"9" * 5000, b"1e400", b"-2e308"])
def test_numbers_beyond_float64_in_options_are_a_clean_refusal(text):
    with pytest.raises(InputError) as info:
        codec.decode_scalar("n_bins", Span.of(text))
    assert info.value.kind == "out_of_range" and "float64" in info.value.message


def encoded(values: object, dtype: str, data: str | None = None, shape=None) -> bytes:
    arr = np.asarray(values, dtype=codec.DTYPES[dtype])
    return orjson.dumps({
        "dtype": dtype, "shape": list(arr.shape) if shape is None else shape,
        "data": base64.b64encode(arr.tobytes()).decode() if data is None else data,
    })


@pytest.mark.parametrize("data", ["AAAAAAAA8D8==", "AAAAAAAA8D8=AAAA", "AAAAAAAAAAA=====",
                                  "AAAAAAAAAAA", "AAAA AAAAAA=", "=AAAAAAAAAA"])
def test_base64_beyond_its_padding_is_refused(data):
    with pytest.raises(InputError) as info:
        codec.decode_array(span(encoded([1.0], "float64", data=data)), field="v", spec=VECTOR)
    assert (info.value.kind, info.value.position) == ("base64", ("data",))


def _decoded_or_refused(decode, text: bytes):
    try:
        return decode(text)
    except (binascii.Error, ValueError):
        return "refused"


@settings(max_examples=2000, deadline=None, database=None)
@given(st.binary(max_size=40), st.text(alphabet="AB+/=\n -_*\x00é", max_size=24))
def test_the_simd_base64_decoder_refuses_what_binascii_strict_mode_refuses(raw, text):
    """The oracle for pybase64 (the service's decoder) is the standard library's strict
    decoder, on valid base64 and on strings of its alphabet, padding and junk."""
    for candidate in (base64.b64encode(raw), text.encode(), base64.b64encode(raw) + b"=",
                      base64.b64encode(raw)[:-1]):
        assert _decoded_or_refused(lambda t: codec._strict_base64(memoryview(t)), candidate) \
            == _decoded_or_refused(_binascii_strict, candidate)


def _binascii_strict(text: bytes) -> bytes:
    n = len(text)
    if n % 4 or b"=" in text[max(0, n - 8) : max(0, n - 2)]:  # codec's own padding rule
        raise ValueError("padding")
    return binascii.a2b_base64(text, strict_mode=True)


def test_base64_with_json_escapes_is_decoded():
    values = np.frombuffer(bytes([0xFF, 0xEF] * 12), "<f8").copy()  # -3.1e231: "/+//7//v"
    text = encoded(values, "float64")
    assert b"/" in text
    escaped = text.replace(b"/", b"\\/")  # "\/" is legal JSON for "/"
    np.testing.assert_array_equal(codec.decode_array(span(escaped), field="v", spec=VECTOR),
                                  values)
    finite = np.array([1.5e-300, -2.0, 3.0])
    text = encoded(finite, "float64").replace(b"A", b"\\u0041")  # any escape
    np.testing.assert_array_equal(codec.decode_array(span(text), field="v", spec=VECTOR),
                                  finite)


def test_encoded_arrays_as_python_dicts():
    value = {"dtype": "float64", "shape": [1], "data": "AAAAAAAA8D8="}
    np.testing.assert_array_equal(codec.decode_array(value, field="v", spec=VECTOR), [1.0])


def test_bool_mask_bytes_other_than_0_and_1_are_refused():
    data = base64.b64encode(bytes([1, 0, 2, 1])).decode()
    text = orjson.dumps({"dtype": "bool", "shape": [2, 2], "data": data})
    with pytest.raises(InputError) as info:
        codec.decode_array(span(text), field="mask", spec=MASK)
    assert (info.value.kind, info.value.position) == ("out_of_range", (1, 0))
    assert "2" in info.value.message
    ok = orjson.dumps({"dtype": "bool", "shape": [4], "data": "AQABAQ=="})
    np.testing.assert_array_equal(codec.decode_array(span(ok), field="mask", spec=MASK),
                                  [1, 0, 1, 1])


def test_declared_shapes_are_charged_before_any_decoding(monkeypatch):
    decoded = []
    monkeypatch.setattr(codec.binascii, "a2b_base64",
                        lambda *a, **k: decoded.append(1) or b"")  # must not be reached
    text = encoded(np.ones(45_000, np.uint8), "uint8")  # shape [45000], 45000 bytes
    with codec.element_budget(20_000), pytest.raises(ElementLimitError):
        codec.decode_array(span(text), field="mask", spec=MASK)
    assert not decoded


def test_counted_elements_are_charged_before_the_array_is_allocated(monkeypatch):
    allocated = []
    real_empty = np.empty

    def empty(shape, dtype=float, **kwargs):
        if np.dtype(dtype) != np.uint8:  # the output array (uint8: block checks)
            allocated.append(shape)
        return real_empty(shape, dtype, **kwargs)

    monkeypatch.setattr(codec.np, "empty", empty)
    with codec.element_budget(99), pytest.raises(ElementLimitError):
        codec.decode_array(span(orjson.dumps([[0.5] * 10] * 10)), field="v", spec=MATRIX)
    with codec.element_budget(99), pytest.raises(ElementLimitError):
        codec.decode_array(span(orjson.dumps([0.5] * 100)), field="v", spec=VECTOR)
    assert not allocated
    with codec.element_budget(100):
        codec.decode_array(span(orjson.dumps([[0.5] * 10] * 10)), field="v", spec=MATRIX)


def test_values_are_quoted_with_all_their_digits():
    with pytest.raises(InputError) as info:
        codec.decode_array(span(b"[0, 1.0000001]"), field="labels", spec=LABELS)
    assert "1.0000001" in info.value.message
    with pytest.raises(InputError) as info:
        codec.decode_array(span(encoded([1.0], "float64", shape=[1.0000001])), field="v",
                           spec=VECTOR)
    assert "1.0000001" in info.value.message


def test_raw_values_are_still_accepted():
    raw = msgspec.json.decode(b'{"v": [[1, 2]]}', type=dict[str, msgspec.Raw])["v"]
    np.testing.assert_array_equal(codec.decode_array(raw, field="v", spec=MATRIX), [[1, 2]])


@pytest.mark.parametrize("lo,hi", [(0, None), (3, 2_500_001), (1_048_577, 2_000_000), (7, 9),
                                   (5, 20_000)])
def test_count_byte_counts_as_bytes_count(lo, hi):
    rng = np.random.default_rng(0)
    buf = bytearray(rng.integers(0x2A, 0x2E, 2_500_003, dtype=np.uint8).tobytes())
    end = len(buf) if hi is None else hi
    assert codec.count_byte(buf, b",", lo, hi) == buf.count(b",", lo, end) > 0


def _split_outcome(split, body: bytes):
    try:
        fields = split(bytearray(body))
    except InputError as exc:
        return (exc.field, exc.message, exc.kind, exc.position)
    for key, span in fields.items():
        if span.parsed is not None:  # the matrix the decoder would have parsed, bit for bit
            again = codec.decode_array(Span(span.buf, span.start, span.stop), field=key,
                                       spec=codec.ArraySpec("float", (2,)))
            assert span.parsed.shape == again.shape
            assert span.parsed.tobytes() == again.tobytes()
    return {key: (span.start, span.stop) for key, span in fields.items()}


_SPLIT_BODY = st.fixed_dictionaries(
    {"logits": st.one_of(
        st.lists(st.lists(_NUMBER, min_size=1, max_size=4), min_size=1, max_size=8),
        st.lists(_NUMBER, min_size=1, max_size=12),
        _ARRAY)},
    optional={"labels": st.lists(st.integers(0, 9), max_size=6),
              "label_smoothing": st.floats(allow_nan=True, allow_infinity=True),
              "name[": st.text(alphabet="[],\" a", max_size=5)},
)
_MUTATION_BYTES = b'[],{}":0 1-.eNaI\\\xff\n'


@settings(max_examples=400, deadline=None, database=None)
@given(value=_SPLIT_BODY, indent=st.sampled_from([None, 1]), block=st.sampled_from([2, 8, 64]),
       cut=st.integers(0, 10_000), mutation=st.sampled_from(
           ["none", "insert", "replace", "delete", "duplicate-key", "bom"]),
       byte=st.integers(0, len(_MUTATION_BYTES) - 1))
def test_splitting_around_the_matrix_gives_the_whole_splits_fields_and_errors(
        value, indent, block, cut, mutation, byte):
    """The same fields (offsets) or the same error, for valid and broken bodies alike."""
    body = json.dumps(value, indent=indent).encode()
    at = cut % (len(body) + 1)
    new = _MUTATION_BYTES[byte : byte + 1]
    if mutation == "insert":
        body = body[:at] + new + body[at:]
    elif mutation == "replace":
        body = body[:at] + new + body[at + 1 :]
    elif mutation == "delete":
        body = body[:at] + body[at + 1 :]
    elif mutation == "duplicate-key":
        body = body[:-1] + b', "logits": [[1]]}'
    elif mutation == "bom":
        body = b"\xef\xbb\xbf" + body
    original = codec.BLOCK_BYTES
    codec.BLOCK_BYTES = block
    try:
        assert _split_outcome(codec.split_body, body) == _split_outcome(codec._split_whole, body)
    finally:
        codec.BLOCK_BYTES = original


@pytest.mark.parametrize("block", [4096, 1 << 20])
def test_a_body_whose_bulk_is_a_matrix_has_it_parsed_by_the_split(monkeypatch, block):
    """The path above is the one a logits-and-labels request takes, in one block or in
    many, and the decoder uses its matrix instead of parsing the text again."""
    monkeypatch.setattr(codec, "BLOCK_BYTES", block)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(300, 20))
    body = bytearray(orjson.dumps({"logits": logits.tolist(), "labels": [1, 2],
                                   "reduction": "sum"}))
    fields = codec._split_around_matrix(body)
    assert fields is not None
    whole = codec._split_whole(body)
    assert {k: (v.start, v.stop) for k, v in fields.items()} == \
        {k: (v.start, v.stop) for k, v in whole.items()}
    assert all(span.buf is body for span in fields.values())
    parsed = fields["logits"].parsed
    assert parsed is not None and parsed.tobytes() == logits.tobytes()
    assert fields["labels"].parsed is None
    decoded = codec.decode_array(fields["logits"], field="logits",
                                 spec=codec.ArraySpec("float", (2,)))
    assert np.shares_memory(decoded, parsed)


_ROWS = b"[1, 2], " * 9 + b"[3, 4]"


@pytest.mark.parametrize("body", [
    b'{"logits": [' + _ROWS + b'] , "labels": [0, 1]}',
    b'{"labels": [0, 1], "logits": [' + _ROWS + b']}',
    b'{"logits": [' + _ROWS.replace(b", [", b",\n [") + b'], "labels": [1]}',
    b'{"labels": [0], "weights": [1], "logits": [ ' + _ROWS + b']}',
])
def test_the_matrix_is_parsed_wherever_it_stands(body):
    fields = codec.split_body(bytearray(body))
    assert fields["logits"].parsed.tolist() == [[1.0, 2.0]] * 9 + [[3.0, 4.0]]


@pytest.mark.parametrize("body", [
    b'{"logits": [' + _ROWS + b', [3, "4"]]}',       # a string: the general path words it
    b'{"logits": [' + _ROWS + b', [3]]}',            # ragged
    b'{"logits": [' + _ROWS + b', [3, NaN]]}',       # not JSON
    b'{"logits": [' + _ROWS + b',]}',                # a trailing comma
    b'{"logits": [' + _ROWS + b'], "p": [' + _ROWS + b']}',  # two matrices: no bulk
    b'{"name": "[[", "logits": [' + _ROWS + b']}',   # a "[" in a string comes first
    b'{"logits": [' + _ROWS + b' ]}',                # no "]]" (pretty-printed): not found
])
def test_anything_but_one_matrix_of_numbers_goes_to_the_whole_split(body):
    assert codec._split_around_matrix(bytearray(body)) is None
    assert _split_outcome(codec.split_body, body) == _split_outcome(codec._split_whole, body)


def _drain_pool() -> None:
    while not codec._POOL.empty():
        codec._POOL.get_nowait()


def test_texts_beyond_a_threads_own_parser_share_a_few_kept_parsers():
    """Arrays between 64 KiB and a block of text reuse the process's kept parsers (a new
    one pays its buffers' page faults at each request); larger ones, and a parse that
    ended in an exception (which may hold a document of its parser alive), do not put a
    parser back; the pool never holds more than its bound; answers are unchanged."""
    _drain_pool()
    z = np.random.default_rng(3).normal(size=(4096, 10))
    text = orjson.dumps(z.tolist())
    assert codec._OWN_PARSER_BYTES < len(text) <= codec.BLOCK_BYTES
    for _ in range(3):
        same(fast(text, MATRIX), strict(text, MATRIX))
        assert codec._POOL.qsize() == 1  # taken, then given back: one parser serves them all
    kept = codec._POOL.get_nowait()
    codec._POOL.put(kept)
    with codec._parser(len(text)) as parser:
        assert parser is kept
    with pytest.raises(KeyError), codec._parser(len(text)):
        assert codec._POOL.empty()
        raise KeyError("an error while the parser is in use")
    assert codec._POOL.empty()  # not given back after the exception
    with codec._parser(codec.BLOCK_BYTES + 1):
        pass
    assert codec._POOL.empty()  # a parser sized for more than a block is not kept
    with codec._parser(len(text)) as a, codec._parser(len(text)) as b, \
            codec._parser(len(text)) as c:
        assert len({id(a), id(b), id(c)}) == 3
    assert codec._POOL.qsize() == codec._SHARED_PARSERS
    _drain_pool()
