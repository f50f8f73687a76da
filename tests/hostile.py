"""Hostile requests and the checks every answer to them must pass, shared by the in-process
suite (tests/test_hostile_input.py) and the real-server one (tests/e2e/test_hostile_server.py).

A case is (endpoint, raw body bytes, content type, expected status, expected ``loc`` of the
first error item or None, expected error ``type`` or None). Every answer, whatever the case:

* is never a 5xx;
* carries no NaN or Infinity token, and parses as strict JSON (orjson refuses both);
* a 4xx has FastAPI's shape: a 422 lists items with a ``loc`` starting at ``"body"``, a
  non-empty message and a type; 408/413/415 have a one-line ``detail``;
* a 200 has a finite number wherever the contract promises one (``null`` only where the
  contract allows it: the reduced values under ``"none"``, empty bins, a recall without
  samples).
"""

from __future__ import annotations

import base64
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

CAT = "/v1/losses/categorical"
BIN = "/v1/losses/binary"
DIV = "/v1/divergences"
CAL = "/v1/calibration"
DIA = "/v1/calibration/diagram"
POSTS = (CAT, BIN, DIV, CAL, DIA)
SHORT = {CAT: "categorical", BIN: "binary", DIV: "divergences", CAL: "calibration",
         DIA: "diagram"}
JSON = "application/json"

#: A minimal valid body per endpoint, as a dict (cases are variations of it).
VALID: dict[str, dict[str, Any]] = {
    CAT: {"logits": [[2.0, 1.0, 0.1], [0.5, 2.5, -0.5]], "labels": [0, 1]},
    BIN: {"logits": [[1.5, -0.3], [2.2, 0.1]], "targets": [[1, 0], [0, 1]]},
    DIV: {"p": [[0.5, 0.5], [0.9, 0.1]], "q": [[0.4, 0.6], [0.5, 0.5]]},
    CAL: {"probabilities": [[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]], "labels": [0, 1, 1]},
    DIA: {"probabilities": [0.7, 0.2, 0.9], "labels": [1, 0, 1]},
}
#: The main array field of each endpoint, and a second array field that must agree with it.
MAIN = {CAT: "logits", BIN: "logits", DIV: "p", CAL: "probabilities", DIA: "probabilities"}
OTHER = {CAT: "labels", BIN: "targets", DIV: "q", CAL: "labels", DIA: "labels"}

_NON_FINITE_TOKEN = re.compile(rb"\bNaN\b|Infinity")
_SVG_NON_FINITE = re.compile(rb"\b(?:nan|inf)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Case:
    path: str
    body: bytes
    status: int
    loc: list[Any] | None = None
    kind: str | None = None
    content_type: str | None = JSON
    #: A message fragment the answer must contain (the rule, in words).
    says: str | None = None
    #: Other request headers.
    headers: tuple[tuple[str, str], ...] = ()

    def request_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.content_type is not None:
            headers["content-type"] = self.content_type
        return headers


def raw(obj: Any) -> bytes:
    """JSON of ``obj`` (floats written by repr: 1e308, 5e-324 survive)."""
    return json.dumps(obj).encode()


def encoded(values: Any, dtype: str, shape: list[Any] | None = None,
            data: str | None = None) -> dict[str, Any]:
    arr = np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<"))
    return {
        "dtype": dtype,
        "shape": list(arr.shape) if shape is None else shape,
        "data": base64.b64encode(arr.tobytes()).decode() if data is None else data,
    }


def check_no_non_finite(content: bytes) -> None:
    assert not _NON_FINITE_TOKEN.search(content), content[:300]


def check_refusal(status: int, content: bytes, case: Case) -> None:
    """The answer to a hostile request: the documented status and a fixable error."""
    assert status < 500, (status, content[:500])
    assert status == case.status, (status, content[:500])
    check_no_non_finite(content)
    assert len(content) < 4096, f"a {len(content)}-byte error answer"  # nothing echoed
    body = orjson.loads(content)
    detail = body["detail"]
    if status == 422:
        assert isinstance(detail, list) and detail, body
        for item in detail:
            assert item["loc"] and item["loc"][0] == "body", item
            assert isinstance(item["msg"], str) and len(item["msg"]) >= 10, item
            assert isinstance(item["type"], str) and item["type"], item
        if case.loc is not None:
            assert detail[0]["loc"] == case.loc, detail
        if case.kind is not None:
            assert detail[0]["type"] == case.kind, detail
        if case.says is not None:
            assert case.says in detail[0]["msg"], detail
    else:
        assert isinstance(detail, str) and len(detail) >= 10, body
        if case.says is not None:
            assert case.says in detail, detail


def _numbers_and_nulls(value: Any, path: tuple[Any, ...] = ()) -> Any:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _numbers_and_nulls(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _numbers_and_nulls(item, (*path, i))
    else:
        yield path, value


def _null_allowed(path: str, where: tuple[Any, ...], answer: dict[str, Any]) -> bool:
    name = where[-1]
    if path in (CAT, BIN) and where == ("loss",):
        return answer["reduction"] == "none"
    if path in (CAT, BIN) and where[0] == "resolved":
        return name in ("epsilon", "ignore_index", "focal_alpha")  # null: not used
    if path == DIV and len(where) == 1:
        return answer["reduction"] == "none"
    if path == CAL:
        if where[0] == "bins" and name in ("mean_confidence", "accuracy"):
            return answer["bins"][where[1]]["count"] == 0 or answer["bins"][where[1]]["weight"] == 0
        if where[0] == "per_class" and name in ("recall", "nll", "brier"):
            entry = answer["per_class"][where[1]]
            return entry["count"] == 0 or entry["frequency"] == 0  # no sample (or weight)
        return where in (("per_class",), ("temperature",)) or name == "note"
    return False


def check_answer(path: str, status: int, content: bytes) -> Any:
    """A 200: strict JSON (or an SVG) with finite numbers wherever numbers are promised."""
    assert status == 200, (status, content[:500])
    check_no_non_finite(content)
    if path == DIA:
        assert content.startswith(b"<svg") and content.rstrip().endswith(b"</svg>")
        assert not _SVG_NON_FINITE.search(content), "nan/inf in the SVG"
        return content
    answer = orjson.loads(content)
    for where, value in _numbers_and_nulls(answer):
        if value is None:
            assert _null_allowed(path, where, answer), f"null at {where}"
        elif isinstance(value, float):
            assert math.isfinite(value), where
    return answer


# --------------------------------------------------------------------------- the cases


def _with(path: str, **fields: Any) -> dict[str, Any]:
    body = dict(VALID[path])
    body.update(fields)
    return body


def _matrix_input(path: str) -> bool:
    return path in (CAT, BIN, DIV, CAL)  # the diagram case sends a 1-D input


def _generic_cases(path: str) -> list[tuple[str, Case]]:
    """Hostile variations that apply to every endpoint."""
    main, other = MAIN[path], OTHER[path]
    good = VALID[path][main]
    two_d = _matrix_input(path)
    at = [0, 1] if two_d else [1]  # where a bad element goes

    def poke(token: str) -> bytes:
        """The valid body with the main array's element ``at`` replaced by a raw token."""
        if two_d:
            rows = [[json.dumps(v) for v in row] for row in good]
            rows[0][1] = token
            array = "[" + ", ".join("[" + ", ".join(row) + "]" for row in rows) + "]"
        else:
            items = [json.dumps(v) for v in good]
            items[1] = token
            array = "[" + ", ".join(items) + "]"
        return json.dumps(VALID[path]).replace(json.dumps(good), array, 1).encode()

    deep = 10_000
    cases = [
        ("array-body", Case(path, b"[1, 2]", 422, ["body"], "json_type")),
        ("string-body", Case(path, b'"logits"', 422, ["body"], "json_type")),
        ("null-body", Case(path, b"null", 422, ["body"], "json_type")),
        ("empty-body", Case(path, b"", 422, ["body"], "json_invalid")),
        ("whitespace-body", Case(path, b" \r\n\t ", 422, ["body"], "json_invalid")),
        ("truncated-json", Case(path, raw(VALID[path])[:-1], 422, None, "json_invalid")),
        ("trailing-garbage", Case(path, raw(VALID[path]) + b" x", 422, None, "json_invalid")),
        ("utf8-bom", Case(path, b"\xef\xbb\xbf" + raw(VALID[path]), 422, None, "json_invalid",
                          says="BOM")),
        ("deep-nesting-body", Case(path, b"[" * deep + b"]" * deep, 422, ["body"])),
        ("deep-nesting-in-field", Case(
            path, b'{"' + main.encode() + b'": ' + b"[" * deep + b"]" * deep + b"}",
            422, ["body"], "json_invalid", says="nested too deeply")),
        # 10 000 nested objects are also 10 000 keys: "nested too deeply" today, "too many
        # keys" with the early key count proposed in the report; a 422 at ["body"] both.
        ("deep-objects-in-field", Case(
            path, b'{"' + main.encode() + b'": ' + b'{"a": ' * deep + b"1" + b"}" * deep + b"}",
            422, ["body"])),
        ("invalid-utf8-in-key", Case(path, b'{"\xff\xfe": 1}', 422, ["body"], "json_invalid",
                                     says="UTF-8")),
        ("invalid-utf8-in-value", Case(
            path, raw(_with(path, units="nats"))[:-1].replace(b'"nats"', b'"\xc3\x28"') + b"}",
            422, ["body", "units"], "json_invalid", says="UTF-8")),
        ("nan-literal", Case(path, poke("NaN"), 422, ["body", main, *at], "not_finite")),
        ("infinity-literal", Case(path, poke("-Infinity"), 422, ["body", main, *at],
                                  "not_finite")),
        ("overflowing-literal", Case(path, poke("1e999"), 422, ["body", main, *at],
                                     "not_finite")),
        ("null-in-array", Case(path, poke("null"), 422, ["body", main, *at], "type_error")),
        ("true-in-array", Case(path, poke("true"), 422, ["body", main, *at], "type_error")),
        ("string-in-array", Case(path, poke('"0.5"'), 422, ["body", main, *at], "type_error")),
        ("object-in-array", Case(path, poke("{}"), 422, ["body", main, *at], "type_error")),
        ("empty-array", Case(path, raw(_with(path, **{main: []})), 422, ["body", main],
                             "empty")),
        ("mismatched-lengths", Case(
            path, raw(_with(path, **{other: VALID[path][other][:-1]})), 422, ["body", other],
            "shape_mismatch")),
        ("bad-base64", Case(
            path, raw(_with(path, **{main: {"dtype": "float64", "shape": [1, 2] if two_d
                                            else [2], "data": "@@@="}})),
            422, ["body", main, "data"], "base64")),
        ("declared-shape-larger-than-data", Case(
            path, raw(_with(path, **{main: encoded(good, "float64",
                                                   shape=[len(good) + 1, *np.shape(good)[1:]])})),
            422, ["body", main, "data"], "size_mismatch")),
        ("shape-product-overflows-int64", Case(
            path, raw(_with(path, **{main: encoded(good, "float64",
                                                   shape=[2**62, 2**62] if two_d
                                                   else [2**62 * 4])})),
            422, ["body", main, "data"], "size_mismatch")),
        ("shape-size-zero", Case(
            path, raw(_with(path, **{main: encoded(good, "float64",
                                                   shape=[0, 2] if two_d else [0])})),
            422, ["body", main, "shape", 0], "empty")),
        ("shape-size-beyond-float64", Case(
            path, raw(_with(path, **{main: encoded(good, "float64")})).replace(
                b'"shape": [', b'"shape": [1e999, '),
            422, ["body", main, "shape", 0], "not_finite")),
        ("nan-inside-encoded-float64", Case(
            path, raw(_with(path, **{main: encoded(np.where(
                np.arange(np.size(good)).reshape(np.shape(good)) == 1, np.nan, good),
                "float64")})),
            422, ["body", main, *at], "not_finite")),
        ("many-unknown-keys", Case(
            path, b"{" + b",".join(b'"k%d": 0' % i for i in range(100_000)) + b"}",
            422, ["body"], "extra_forbidden")),
        ("megabyte-key", Case(
            path, raw(_with(path, **{"k" * 1_000_000: 1})), 422,
            ["body", "k" * 61 + "..."], "extra_forbidden")),
        ("unicode-field-name", Case(
            path, raw(_with(path, **{"étiquettes_数据": [0]})), 422,
            ["body", "étiquettes_数据"], "extra_forbidden", says="unknown field")),
        ("long-enum-string", Case(
            path, raw(_with(path, units="bits" * 250_000)), 422, ["body", "units"], "enum")),
        ("number-for-enum", Case(path, raw(_with(path, units=2)), 422, ["body", "units"])),
        ("text-plain", Case(path, raw(VALID[path]), 415, content_type="text/plain",
                            says="application/json")),
        ("no-content-type", Case(path, raw(VALID[path]), 415, content_type=None)),
        ("form-content-type", Case(path, b"logits=1", 415,
                                   content_type="application/x-www-form-urlencoded")),
        ("json-lookalike-content-type", Case(path, raw(VALID[path]), 415,
                                             content_type="application/json-patch+json")),
    ]
    return [(f"{SHORT[path]}-{name}", case) for name, case in cases]


def _specific_cases() -> list[tuple[str, Case]]:
    """Rules of one endpoint: labels, overflow, options."""
    cat, binary, div, cal, dia = (VALID[p] for p in POSTS)
    big = 1e308
    cases = [
        # labels: out of range, fractional, beyond int64, booleans
        ("categorical-label-out-of-range", Case(CAT, raw(dict(cat, labels=[0, 3])), 422,
                                                ["body", "labels", 1], "out_of_range")),
        ("categorical-negative-label", Case(CAT, raw(dict(cat, labels=[-1, 0])), 422,
                                            ["body", "labels", 0], "out_of_range")),
        ("categorical-fractional-label", Case(CAT, raw(dict(cat, labels=[0, 1.5])), 422,
                                              ["body", "labels", 1], "type_error")),
        ("categorical-label-beyond-int64", Case(
            CAT, b'{"logits": [[1, 2]], "labels": [9223372036854775808]}', 422,
            ["body", "labels", 0], "out_of_range")),
        ("categorical-encoded-label-out-of-range", Case(
            CAT, raw(dict(cat, labels=encoded([0, 2**40], "int64"))), 422,
            ["body", "labels", 1], "out_of_range")),
        ("calibration-label-out-of-range", Case(CAL, raw(dict(cal, labels=[0, 1, 2])), 422,
                                                ["body", "labels", 2], "out_of_range")),
        ("calibration-fractional-label", Case(CAL, raw(dict(cal, labels=[0, 0.5, 1])), 422,
                                              ["body", "labels", 1], "type_error")),
        ("diagram-binary-label-2", Case(DIA, raw(dict(dia, labels=[1, 2, 0])), 422,
                                        ["body", "labels", 1], "out_of_range")),
        ("diagram-boolean-label", Case(DIA, raw(dict(dia, labels=[True, False, True])), 422,
                                       ["body", "labels", 0], "type_error")),
        # finite input whose result overflows float64: a 422 "overflow", never inf or null
        ("categorical-loss-overflows", Case(
            CAT, raw({"logits": [[big, -big]], "labels": [1]}), 422, ["body", "logits", 0, 1],
            "overflow")),
        ("categorical-weight-sum-overflows", Case(
            CAT, raw(dict(cat, sample_weights=[big, big])), 422, ["body", "sample_weights"],
            "overflow")),
        ("categorical-weighted-loss-overflows", Case(
            CAT, raw(dict(cat, sample_weights=[big, 1.0], class_weights=[big, 1.0, 1.0])),
            422, None, "overflow")),
        ("categorical-subnormal-epsilon-gradient-overflows", Case(
            CAT, raw({"probabilities": [[5e-324, 1.0]], "labels": [0], "epsilon": 5e-324,
                      "return_gradient": True}),
            422, ["body", "probabilities", 0, 0], "overflow")),
        ("binary-pos-weight-overflows", Case(
            BIN, raw({"logits": [-big, 0.0], "targets": [1, 0], "pos_weight": big}), 422,
            ["body", "logits", 0], "overflow")),
        ("binary-weight-sum-overflows", Case(
            BIN, raw(dict(binary, sample_weights=[big, big])), 422, None, "overflow")),
        ("divergences-q-logits-underflow", Case(
            DIV, raw({"p": [[0.5, 0.5]], "q_logits": [[big, -big]]}), 422,
            ["body", "q_logits", 0, 1], "overflow")),
        ("divergences-subnormal-epsilon-gradient-overflows", Case(
            DIV, raw({"p": [[1.0, 0.0]], "q": [[5e-324, 1.0]], "epsilon": 5e-324,
                      "return_gradient": True}),
            422, ["body", "q", 0, 0], "overflow")),
        ("divergences-kl-beyond-float64-in-bits", Case(
            DIV, raw({"p": [[0.0, 1.0]], "q_logits": [[1.7976931348623157e308, 0.0]],
                      "units": "bits"}),
            422, ["body", "q_logits", 0], "overflow")),
        ("divergences-sum-of-rows-overflows", Case(
            DIV, raw({"p": [[0.0, 1.0]] * 2, "q_logits": [[1e308, 0.0]] * 2,
                      "reduction": "sum"}),
            422, ["body", "q_logits"], "overflow")),
        ("calibration-nll-beyond-float64-in-bits", Case(
            CAL, raw({"logits": [[0.0, 1.4e308]], "labels": [0], "units": "bits"}),
            422, ["body", "logits"], "overflow")),
        ("calibration-logits-underflow", Case(
            CAL, raw({"logits": [[big, -big], [0.0, 1.0]], "labels": [1, 0]}), 422,
            ["body", "logits", 0, 1], "overflow")),
        ("calibration-temperature-fit-overflows", Case(
            CAL, raw({"logits": [big, -big], "labels": [0, 1], "fit_temperature": True}), 422,
            ["body", "logits", 0], "overflow")),
        ("calibration-weight-sum-overflows", Case(
            CAL, raw(dict(cal, sample_weights=[big, big, 1.0])), 422,
            ["body", "sample_weights"], "overflow")),
        ("diagram-weight-sum-overflows", Case(
            DIA, raw(dict(dia, sample_weights=[big, big, 1.0])), 422,
            ["body", "sample_weights"], "overflow")),
        # options out of range, wrong types
        ("categorical-3d-logits", Case(CAT, raw({"logits": [[[1.0, 2.0]]], "labels": [0]}),
                                       422, ["body", "logits", 0, 0], "type_error")),
        ("binary-3d-logits", Case(BIN, raw({"logits": [[[1.0]]], "targets": [[[1.0]]]}),
                                  422, ["body", "logits", 0, 0], "type_error")),
        ("binary-ragged", Case(BIN, raw({"logits": [[1.0], [1.0, 2.0]], "targets": [[1], [1]]}),
                               422, ["body", "logits", 1], "ragged")),
        ("divergences-ragged", Case(DIV, raw({"p": [[0.5, 0.5], [1.0]], "q": div["q"]}),
                                    422, ["body", "p", 1], "ragged")),
        ("calibration-ragged", Case(CAL, raw(dict(cal, probabilities=[[0.5, 0.5], [1.0], [1.0]])),
                                    422, ["body", "probabilities", 1], "ragged")),
        ("calibration-3d", Case(CAL, raw(dict(cal, probabilities=[[[0.5, 0.5]]] * 3)), 422,
                                ["body", "probabilities", 0, 0], "type_error")),
        ("divergences-epsilon-zero", Case(DIV, raw(dict(div, epsilon=0.0)), 422,
                                          ["body", "epsilon"])),
        ("calibration-n-bins-huge", Case(CAL, raw(dict(cal, n_bins=10**30)), 422,
                                         ["body", "n_bins"])),
        ("calibration-n-bins-fractional", Case(CAL, raw(dict(cal, n_bins=2.5)), 422,
                                               ["body", "n_bins"])),
        ("categorical-ignore-index-beyond-int64", Case(
            CAT, raw(dict(cat, ignore_index=2**64)), 422, ["body", "ignore_index"])),
        ("binary-mask-not-0-1", Case(BIN, raw(dict(binary, mask=[[1, 2], [0, 1]])), 422,
                                     ["body", "mask", 0, 1])),
        ("binary-targets-nan", Case(BIN, raw(dict(binary, targets=[[1, 0], [0, 1]])).replace(
            b"[0, 1]]", b"[0, NaN]]"), 422, ["body", "targets", 1, 1], "not_finite")),
    ]
    return cases


def _parsing_cases() -> list[tuple[str, Case]]:
    """What the request parser must refuse, and how: exact values, no echo, no leak."""
    cat, binary = VALID[CAT], VALID[BIN]
    digits = "1" * 4301  # Python's int() refuses more than 4300 digits: never a 500
    rows = json.dumps(cat["logits"])
    mask_bytes = base64.b64encode(bytes([1, 0, 2, 1])).decode()
    cases = [
        # a value is quoted with all its digits (not "%g": 1.0000001 is not "1")
        ("categorical-label-1.0000001", Case(
            CAT, raw(dict(cat, labels=[0, 1.0000001])), 422, ["body", "labels", 1],
            "type_error", says="1.0000001")),
        ("categorical-shape-size-1.0000001", Case(
            CAT, raw(dict(cat, logits=encoded(cat["logits"], "float64",
                                              shape=[2.0000001, 3]))),
            422, ["body", "logits", "shape", 0], "type_error", says="2.0000001")),
        # 4301-digit integers wherever a number goes: a clean 422 at the field
        ("categorical-4301-digit-label", Case(
            CAT, f'{{"logits": {rows}, "labels": [0, {digits}]}}'.encode(), 422,
            ["body", "labels", 1], "out_of_range")),
        ("categorical-4301-digit-logit", Case(
            CAT, f'{{"logits": [[1, {digits}, 0], [0, 0, 0]], "labels": [0, 1]}}'.encode(),
            422, ["body", "logits", 0, 1], "not_finite")),
        ("categorical-4301-digit-option", Case(
            CAT, raw(cat)[:-1] + f', "focal_gamma": {digits}}}'.encode(), 422,
            ["body", "focal_gamma"], "out_of_range")),
        ("categorical-4301-digit-shape", Case(
            CAT, raw(dict(cat, logits=encoded(cat["logits"], "float64"))).replace(
                b'"shape": [2, 3]', f'"shape": [{digits}, 3]'.encode()),
            422, ["body", "logits", "shape", 0], "out_of_range")),
        ("categorical-4301-digits-with-nan", Case(
            CAT, f'{{"logits": [[1, NaN, 0], [0, 0, 0]], "labels": [0, {digits}]}}'.encode(),
            422, ["body", "logits", 0, 1], "not_finite")),
        ("calibration-4301-digit-n-bins", Case(
            CAL, raw(VALID[CAL])[:-1] + f', "n_bins": {digits}}}'.encode(), 422,
            ["body", "n_bins"], "out_of_range")),
        # NaN or Infinity in an option, a trailing comma: located without parsing the rest
        ("categorical-nan-option", Case(
            CAT, raw(cat)[:-1] + b', "focal_gamma": NaN}', 422, ["body", "focal_gamma"])),
        ("categorical-infinity-option", Case(
            CAT, raw(cat)[:-1] + b', "label_smoothing": -Infinity}', 422,
            ["body", "label_smoothing"])),
        ("categorical-trailing-comma", Case(
            CAT, raw(cat)[:-1] + b",}", 422, ["body", len(raw(cat))], "json_invalid",
            says="trailing comma")),
        ("categorical-option-as-a-long-list", Case(
            CAT, raw(dict(cat, focal_gamma=[0.5] * 5000)), 422, ["body", "focal_gamma"])),
        ("categorical-empty-rows", Case(
            CAT, raw({"logits": [[]] * 1000, "labels": [0] * 1000}), 422, ["body", "logits"],
            "empty")),
        # base64 with padding after a complete quantum, bool bytes other than 0/1
        ("categorical-base64-extra-padding", Case(
            CAT, raw(dict(cat, logits={**encoded(cat["logits"], "float64"),
                                       "data": encoded(cat["logits"], "float64")["data"] + "=="})),
            422, ["body", "logits", "data"], "base64")),
        ("binary-bool-mask-byte-2", Case(
            BIN, raw(dict(binary, mask={"dtype": "bool", "shape": [2, 2], "data": mask_bytes})),
            422, ["body", "mask", 1, 0], "out_of_range", says="2")),
        # errors never echo the input: a 10^6-entry shape, a megabyte dtype
        ("categorical-million-entry-shape", Case(
            CAT, raw(dict(cat, logits=encoded(cat["logits"], "float64", shape=[1] * 1_000_000))),
            422, ["body", "logits", "shape"], "shape_error")),
        ("categorical-megabyte-dtype", Case(
            CAT, raw(dict(cat, logits={**encoded(cat["logits"], "float64"),
                                       "dtype": "f" * 1_000_000})),
            422, ["body", "logits", "dtype"], "enum")),
        # (just under the server's 64 KiB head limit, beyond which it is a 431)
        ("categorical-long-content-type", Case(
            CAT, raw(cat), 415, content_type="text/" + "x" * 60_000)),
        # content codings are refused (a compressed body is not JSON; no zip bombs)
        ("categorical-gzip", Case(
            CAT, raw(cat), 415, says="gzip", headers=(("content-encoding", "gzip"),))),
        ("categorical-deflate-and-identity", Case(
            CAT, raw(cat), 415, says="deflate",
            headers=(("content-encoding", "identity, deflate"),))),
    ]
    return cases


def hostile_cases() -> list[tuple[str, Case]]:
    return ([c for path in POSTS for c in _generic_cases(path)] + _specific_cases()
            + _parsing_cases())


#: Valid requests at the edges of float64: each must be a 200 with finite numbers.
EXTREME_BUT_VALID: list[tuple[str, str, dict[str, Any]]] = [
    ("categorical-logits-1e308", CAT,
     {"logits": [[1e308, -1e308], [-1e308, 1e308]], "labels": [0, 1], "return_gradient": True}),
    ("categorical-logits-max-float", CAT,
     {"logits": [[1.7976931348623157e308, 0.0]], "labels": [0], "return_gradient": True}),
    ("categorical-logits-subnormal", CAT,
     {"logits": [[5e-324, 1e-320, -5e-324]], "labels": [2], "return_gradient": True,
      "focal_gamma": 2.0}),
    ("categorical-logits-1e300-wrong-label", CAT,
     {"logits": [[1e300, 0.0]], "labels": [1], "return_gradient": True, "reduction": "sum"}),
    ("categorical-probabilities-subnormal", CAT,
     {"probabilities": [[5e-324, 1.0], [1e-320, 1.0]], "labels": [0, 1],
      "return_gradient": True}),
    ("categorical-subnormal-weights", CAT,
     {"logits": [[1.0, 2.0], [0.5, 0.1]], "labels": [0, 1], "sample_weights": [5e-324, 1e-320],
      "return_gradient": True}),
    ("categorical-extreme-class-weights", CAT,
     {"logits": [[1.0, 2.0], [0.5, 0.1]], "labels": [0, 1], "class_weights": [1e300, 1e-300],
      "return_gradient": True, "label_smoothing": 0.1}),
    ("categorical-soft-targets-1e308", CAT,
     {"logits": [[1e308, -1e308, 0.0]], "targets": [[1.0, 0.0, 0.0]], "return_gradient": True,
      "units": "bits"}),
    ("binary-logits-1e308-right", BIN,
     {"logits": [1e308, -1e308], "targets": [1, 0], "return_gradient": True}),
    ("binary-logits-1e308-wrong", BIN,
     {"logits": [1e308, -1e308], "targets": [0, 1], "return_gradient": True}),
    ("binary-logits-subnormal", BIN,
     {"logits": [[5e-324, -1e-320]], "targets": [[0.5, 1.0]], "return_gradient": True,
      "focal_gamma": 2.0, "focal_alpha": 0.25}),
    ("binary-probabilities-subnormal", BIN,
     {"probabilities": [5e-324, 1.0, 1e-320], "targets": [0, 1, 1], "return_gradient": True}),
    ("binary-pos-weight-1e300", BIN,
     {"logits": [0.0, 1.0], "targets": [1, 0], "pos_weight": 1e300}),
    ("binary-tiny-weights", BIN,
     {"logits": [[0.3, -0.2]], "targets": [[1, 0]], "class_weights": [5e-324, 1e-320],
      "return_gradient": True}),
    ("divergences-subnormal-q", DIV,
     {"p": [[1.0, 0.0], [5e-324, 1.0]], "q": [[5e-324, 1.0], [1.0, 1e-320]],
      "return_gradient": True}),
    ("divergences-subnormal-epsilon", DIV,
     {"p": [[1.0, 0.0]], "q": [[5e-324, 1.0]], "epsilon": 5e-324}),
    ("divergences-q-logits-1e308-where-p-is-0", DIV,
     {"p": [[1.0, 0.0]], "q_logits": [[1e308, -1e308]], "return_gradient": True,
      "reduction": "none"}),
    ("divergences-mean-of-rows-near-float64-max", DIV,
     {"p": [[0.0, 1.0]] * 2, "q_logits": [[1e308, 0.0]] * 2}),
    ("divergences-many-classes-subnormal", DIV,
     {"p": [[5e-324] * 11 + [1.0]], "q": [[1.0] + [1e-320] * 11], "epsilon": 1e-300,
      "return_gradient": True}),
    ("calibration-logits-1e300", CAL,
     {"logits": [[1e300, -1e300], [-1e300, 1e300], [0.0, 0.0]], "labels": [0, 1, 0],
      "binning": "quantile"}),
    ("calibration-subnormal-weights", CAL,
     {"probabilities": [0.5, 1.0, 5e-324], "labels": [0, 1, 1],
      "sample_weights": [5e-324, 1e-320, 1.0]}),
    ("calibration-temperature-extreme-logits", CAL,
     {"logits": [[4e149, -4e149], [-4e149, 4e149]], "labels": [1, 1], "fit_temperature": True}),
    ("calibration-many-bins-few-samples", CAL,
     {"probabilities": [0.5, 0.5, 0.5], "labels": [0, 1, 1], "n_bins": 10_000,
      "binning": "quantile"}),
    ("diagram-logits-1e300", DIA,
     {"logits": [1e300, -1e300, 5e-324], "labels": [1, 0, 1]}),
    ("diagram-subnormal-weights", DIA,
     {"probabilities": [[0.5, 0.5], [1.0, 0.0]], "labels": [0, 1],
      "sample_weights": [5e-324, 1e-320], "n_bins": 10_000}),
]


# ------------------------------------------------------------------ cost of malformed bodies

#: The limit the cost measurement runs under; bodies are built just below it.
COST_LIMIT = 32 << 20


def _filled(head: bytes, unit: bytes, tail: bytes, size: int) -> bytes:
    """``head`` + ``unit`` repeated + ``tail``, as close to ``size`` bytes as units allow."""
    return head + unit * ((size - len(head) - len(tail)) // len(unit)) + tail


def costly_bodies(size: int = COST_LIMIT - 4096) -> dict[str, tuple[str, bytes, int]]:
    """Bodies of about ``size`` bytes with the most numbers a body can hold (3-character
    numbers: 4 bytes each): the valid one, and malformed ones whose error lies at the end,
    so that locating it without parsing the rest matters. name -> (path, body, status)."""
    row = b"[" + b",".join([b"0.5", b"1.5", b"2.5"] * 333 + [b"0.5"]) + b"],"  # 1000 columns
    narrow = b"[0.5,1.5,2.5],"
    n_rows = (size - 64) // (len(row) + 2)
    labels = b"[" + b"0," * (n_rows - 1) + b"0]"
    valid = _filled(b'{"labels": ' + labels + b', "logits": [', row, b"[0.5]]}",
                    size - len(row))
    valid = valid[: -len(b"[0.5]]}") - 1] + b"]}"  # last row complete, no trailing comma
    n_rows = valid.count(b"],[") + 1
    valid = valid.replace(labels, b"[" + b"0," * (n_rows - 1) + b"0]", 1)
    last = valid.rindex(b"0.5]]")
    n_narrow = (size - 64) // (len(narrow) + 2)
    narrow_labels = b"[" + b"0," * (n_narrow - 1) + b"0]"
    narrow_body = (b'{"labels": ' + narrow_labels + b', "logits": ['
                   + narrow * (n_narrow - 1) + b"[0.5,1.5,2.5]]}")
    mask = base64.b64encode(bytes([1]) * ((size - 200) * 3 // 4 // 3 * 3))
    encoded_mask = (b'{"logits": [0.5], "targets": [1], "mask": {"dtype": "uint8", "shape": ['
                    + str(len(mask) * 3 // 4).encode() + b'], "data": "' + mask + b'"}}')
    return {
        "valid": (CAT, valid, 200),
        "valid-narrow": (CAT, narrow_body, 200),
        "nan-option": (CAT, valid[:-1] + b', "focal_gamma": NaN}', 422),
        "nan-last-logit": (CAT, valid[:last] + b"NaN" + valid[last + 3:], 422),
        "string-last-logit": (CAT, valid[:last] + b'"x"' + valid[last + 3:], 422),
        "trailing-comma": (CAT, valid[:-1] + b",}", 422),
        "option-as-a-list": (CAT, _filled(b'{"logits": [[0.5, 1.5]], "labels": [0], '
                                          b'"focal_gamma": [', b"0.5,", b"0.5]}", size), 422),
        "nan-last-label": (CAT, valid.replace(b"0]", b"NaN]", 1), 422),
        "empty-rows": (CAT, _filled(b'{"labels": [0], "logits": [', b"[],", b"[]]}", size), 422),
        "encoded-mask-over-the-element-limit": (BIN, encoded_mask, 413),
    }


def _vm(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(field)


def measure_costs() -> dict[str, dict[str, float]]:
    """Time and peak memory of each costly body through the app in-process, in this
    process: CPU seconds of the process (client and server threads: what the request
    costs, whatever else the machine runs), and the peak (VmHWM, reset through
    /proc/self/clear_refs before each request) above the resident set before it, as a
    multiple of the body size."""
    import time
    import warnings

    from app.api.body import parse_request
    from app.api.schemas.losses import CategoricalLossRequest
    from app.main import create_app
    from app.settings import Settings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from fastapi.testclient import TestClient

    settings = Settings(max_body_bytes=COST_LIMIT, access_log=False)
    results: dict[str, dict[str, float]] = {}
    bodies = costly_bodies()
    for name in ("valid", "valid-narrow"):  # the parser alone, without the computation
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        body = bytearray(bodies[name][1])
        before = _vm("VmRSS")
        start = time.process_time()
        parse_request(CategoricalLossRequest, body, settings)
        results[f"{name}-parse-only"] = {
            "seconds": time.process_time() - start,
            "peak_over_body": (_vm("VmHWM") - before) / len(bodies[name][1]),
            "body_mib": len(bodies[name][1]) / (1 << 20),
        }
        del body
    with TestClient(create_app(settings)) as client:
        client.post(CAT, content=raw(VALID[CAT]), headers={"content-type": JSON})  # warm up
        for name, (path, body, status) in bodies.items():
            assert len(body) <= COST_LIMIT, (name, len(body))
            times, peaks = [], []
            for _ in range(2):  # time: the better of two (the machine is shared)
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # VmHWM := VmRSS
                before = _vm("VmRSS")
                start = time.process_time()
                r = client.post(path, content=body, headers={"content-type": JSON})
                times.append(time.process_time() - start)
                peaks.append((_vm("VmHWM") - before) / len(body))
                assert r.status_code == status, (name, r.status_code, r.content[:300])
                assert len(r.content) < 4096, (name, len(r.content))
            results[name] = {"seconds": min(times), "peak_over_body": max(peaks),
                             "body_mib": len(body) / (1 << 20)}
    return results


def run_measure_costs() -> dict[str, dict[str, float]]:
    """``measure_costs`` in a fresh interpreter, with glibc returning every large block
    at once (a fixed mmap threshold), so that each request's peak is its own."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 << 10), "MALLOC_ARENA_MAX": "2"}
    done = subprocess.run([sys.executable, "-m", "tests.hostile", "costs"], env=env,
                          capture_output=True, text=True, timeout=300,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["costs"]:
        print(json.dumps(measure_costs()))
