"""The codec's fast paths give exactly what the strict path gives, or step aside."""

from __future__ import annotations

import msgspec
import numpy as np
import orjson
import pytest
import simdjson

from app.api import codec
from xentropy._validation import InputError

MATRIX = codec.ArraySpec("float", (2,))
EITHER = codec.ArraySpec("float", (1, 2))


def raw(obj: object) -> msgspec.Raw:
    return msgspec.json.decode(orjson.dumps({"v": obj}), type=dict[str, msgspec.Raw])["v"]


def strict(value: msgspec.Raw, spec: codec.ArraySpec) -> np.ndarray:
    return np.asarray(codec._decoder(spec, lenient=False).decode(value), dtype=np.float64)


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (200, 33), (5,)])
def test_simdjson_path_is_bit_identical_to_the_strict_parser(shape):
    rng = np.random.default_rng(sum(shape))
    values = rng.normal(size=shape) * 10.0 ** rng.integers(-300, 300, size=shape)
    values.flat[0] = 5e-324  # subnormal
    value = raw(values.tolist())
    fast = codec._fast_float_array(value, "v", EITHER)
    assert fast is not None and fast.shape == shape
    np.testing.assert_array_equal(fast.view(np.int64), strict(value, EITHER).view(np.int64))
    np.testing.assert_array_equal(fast, values)


def test_block_path_matches_for_many_rows(monkeypatch):
    monkeypatch.setattr(codec, "BLOCK_ELEMENTS", 64)
    values = np.random.default_rng(1).normal(size=(101, 10))
    np.testing.assert_array_equal(codec._float_rows(raw(values.tolist()), "v", MATRIX), values)


def test_a_refused_block_falls_back_to_the_strict_parser(monkeypatch):
    monkeypatch.setattr(codec, "BLOCK_ELEMENTS", 20)
    values = np.arange(60.0).reshape(30, 2)
    text = orjson.dumps({"v": values.tolist()}).replace(b"[29.0,", b"[29, ")  # still valid
    value = msgspec.json.decode(text, type=dict[str, msgspec.Raw])["v"]
    np.testing.assert_array_equal(codec._float_rows(value, "v", MATRIX), values)


IRREGULAR = {
    "ragged": [[1, 2], [3]],
    "deep": [[1, [2]]],
    "mixed": [[1, 2], 3],
    "bool": [[1, True]],
    "null": [[1, None]],
    "string": [[1, "2"]],
    "vector-with-bool": [1.0, False],
}


@pytest.mark.parametrize("obj", IRREGULAR.values(), ids=IRREGULAR.keys())
def test_simdjson_refuses_anything_irregular(obj):
    rows = len(obj) if isinstance(obj[0], list) else None
    assert codec._simd_numbers(simdjson.Parser(), orjson.dumps(obj), n_rows=rows) is None


@pytest.mark.parametrize(
    "obj",
    [*IRREGULAR.values(), [], [[]], {"dtype": "float64", "shape": [1], "data": "AAAAAAAA8D8="}],
)
def test_fast_path_never_returns_a_wrong_array(obj):
    try:
        fast = codec._fast_float_array(raw(obj), "v", EITHER)
    except InputError:
        return  # located and worded like the general path (checked below)
    assert fast is None


def test_errors_keep_their_positions_through_the_fast_paths(monkeypatch):
    monkeypatch.setattr(codec, "BLOCK_ELEMENTS", 4)
    rows = [[0.0, 1.0]] * 9 + [[0.0, True]]
    with pytest.raises(InputError) as info:
        codec.decode_array(raw(rows), field="logits", spec=MATRIX)
    assert info.value.position == (9, 1)
    ragged = [[0.0, 1.0]] * 7 + [[0.0]]
    with pytest.raises(InputError) as info:
        codec.decode_array(raw(ragged), field="logits", spec=MATRIX)
    assert info.value.position == (7,) and info.value.kind == "ragged"
