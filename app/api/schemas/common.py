"""Types shared by every request and response schema: arrays, enums, errors."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sized
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Self, TypeAlias, TypeVar, Union

import msgspec
import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StrictBool,
    create_model,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from app.api.codec import DTYPES, ArraySpec, Span, charge_elements, decode_array
from xentropy._validation import InputError, Param, check_exactly_one
from xentropy.calibration import CALIBRATION_PARAMS
from xentropy.calibration.intervals import INTERVAL_PARAMS
from xentropy.options import CATEGORICAL_PARAMS

M = TypeVar("M", bound=BaseModel)


def choice_enum(name: str, doc: str, param: Param) -> type[StrEnum]:
    """A named enum (an OpenAPI component) of the choices a table row allows."""
    enum = StrEnum(name, {choice: choice for choice in param.choices})  # type: ignore[misc]
    enum.__doc__ = doc
    return enum


if TYPE_CHECKING:  # the enums are made from the tables at import time; mypy sees StrEnum
    Reduction: TypeAlias = StrEnum
    Normalization: TypeAlias = StrEnum
    Units: TypeAlias = StrEnum
    Convention: TypeAlias = StrEnum
    Binning: TypeAlias = StrEnum
    CalibrationMode: TypeAlias = StrEnum
    Estimator: TypeAlias = StrEnum
    BootstrapMethod: TypeAlias = StrEnum
else:
    Reduction = choice_enum(
        "Reduction", "How per-sample values are combined (PyTorch ``reduction``).",
        CATEGORICAL_PARAMS["reduction"],
    )
    Normalization = choice_enum(
        "Normalization",
        'What ``"mean"`` divides by: the sum of effective weights, or the counted samples.',
        CATEGORICAL_PARAMS["normalization"],
    )
    Units = choice_enum(
        "Units", "Logarithm base of every loss, entropy and divergence: e (nats) or 2 (bits).",
        CATEGORICAL_PARAMS["units"],
    )
    Convention = choice_enum(
        "Convention", "The library whose usual call the loss reproduces (xentropy: our own).",
        CATEGORICAL_PARAMS["convention"],
    )
    Binning = choice_enum(
        "Binning",
        "Equal-width bins, or equal-mass bins whose edges are quantiles of the confidence.",
        CALIBRATION_PARAMS["binning"],
    )
    CalibrationMode = choice_enum(
        "CalibrationMode",
        "Top-label calibration, or also every class's probability against its indicator.",
        CALIBRATION_PARAMS["mode"],
    )
    Estimator = choice_enum(
        "Estimator", "An estimator of the calibration error beyond the plug-in ECE.",
        CALIBRATION_PARAMS["estimators"],
    )
    BootstrapMethod = choice_enum(
        "BootstrapMethod",
        "Independent Poisson(1) weights (mergeable), or N draws with replacement.",
        INTERVAL_PARAMS["method"],
    )


class ResponseEncoding(StrEnum):
    """How response arrays are written: nested JSON lists, or encoded float64 arrays."""

    json = "json"
    base64 = "base64"


class FloatDtype(StrEnum):
    """Element type of an encoded array of numbers (integers are read as float64)."""

    float32 = "float32"
    float64 = "float64"
    int32 = "int32"
    int64 = "int64"


class IntDtype(StrEnum):
    """Element type of an encoded array of integers (labels)."""

    int32 = "int32"
    int64 = "int64"


class MaskDtype(StrEnum):
    """Element type of an encoded mask: 0/1 in any of these, or booleans."""

    uint8 = "uint8"
    bool_ = "bool"
    int32 = "int32"
    int64 = "int64"
    float32 = "float32"
    float64 = "float64"


_DTYPE_ENUMS: dict[str, type[StrEnum]] = {"float": FloatDtype, "int": IntDtype, "mask": MaskDtype}

#: Standard base64 (RFC 4648, padded, no line breaks), as the codec decodes it.
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"

# (kind, ranks) -> component name, what the shape is, an example array of that form. The
# examples agree with one another (N = 2, C = 2) so that they combine into valid requests.
_ENCODED_FORMS: dict[tuple[str, tuple[int, ...]], tuple[str, str, Any]] = {
    ("float", (2,)): ("EncodedMatrix", "[N, C]", [[0.5, 0.5], [0.25, 0.75]]),
    ("float", (1,)): ("EncodedVector", "[N] (or [C])", [0.5, 1.0]),
    ("float", (1, 2)): ("EncodedVectorOrMatrix", "[N] or [N, C]", [[0.5, 0.5], [0.25, 0.75]]),
    ("float", (0, 1)): ("EncodedScalarOrVector", "[] (one number) or [C]", 0.25),
    ("int", (1,)): ("EncodedIntVector", "[N]", [0, 1]),
    ("mask", (1, 2)): ("EncodedMask", "[N] or [N, C]", [[1, 0], [1, 1]]),
}
_ENCODED_MODELS: dict[tuple[str, tuple[int, ...]], type[BaseModel]] = {}


def encoded_array_model(kind: str, ndim: tuple[int, ...]) -> type[BaseModel]:
    """The documentation model of an encoded array of one element kind and rank: a named
    component per form, so that the schema says which dtypes and how many sizes a field
    takes (the codec enforces the same rules)."""
    if (kind, ndim) not in _ENCODED_MODELS:
        name, shape_text, value = _ENCODED_FORMS[kind, ndim]
        dtype_enum = _DTYPE_ENUMS[kind]
        dtype = "int64" if kind == "int" else "uint8" if kind == "mask" else "float64"
        array = np.asarray(value, dtype=DTYPES[dtype])
        example: dict[str, Any] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data": base64.b64encode(array.tobytes()).decode("ascii"),
        }
        sizes = Annotated[int, Field(ge=1, le=2**63 - 1)]
        _ENCODED_MODELS[kind, ndim] = create_model(
            name,
            __config__=ConfigDict(
                extra="forbid", title=name, json_schema_extra={"examples": [example]}
            ),
            __doc__=(
                "An array as its raw little-endian C-order bytes, base64 (RFC 4648) encoded; "
                f"shape {shape_text}."
            ),
            dtype=(dtype_enum, Field(description="Element type of `data`.")),
            shape=(
                Annotated[list[sizes], Field(min_length=min(ndim), max_length=max(ndim))],
                Field(description=f"Size of each dimension, at least 1: {shape_text}."),
            ),
            data=(
                Annotated[str, Field(pattern=BASE64_PATTERN)],
                Field(
                    description="base64 of the raw little-endian C-order bytes: "
                    "product of `shape` × the dtype's size in bytes, before encoding."
                ),
            ),
        )
    return _ENCODED_MODELS[kind, ndim]


_JSON_INT64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


def _wire_form(
    kind: str, ndim: tuple[int, ...], *, ge: float | None = None, le: float | None = None
) -> Any:
    """The Python type a field's JSON may take: nested lists of the element (within
    [ge, le]), or the encoded array of that form. Used for the JSON schema only; the codec
    and the core validate (the values inside encoded data included).

    The float64 range of numbers is not stated: its exact bound (2**1024 - 2**970, below
    which every number rounds to a finite float64) is a 309-digit integer that FastAPI's
    OpenAPI models and schemathesis' generator cannot hold, and the nearest float
    (1.7976931348623157e308) as ``maximum`` would refuse numbers the service rightly
    rounds to it. Numbers beyond it get a 422 ``not_finite``."""
    element: Any = {
        "float": Annotated[float, Field(ge=ge, le=le)],
        "int": Annotated[_JSON_INT64, Field(ge=ge, le=le)],
        "mask": Annotated[int, Field(ge=0, le=1)] | bool,
    }[kind]
    forms = []
    for rank in ndim:
        form = element
        for _ in range(rank):
            form = Annotated[list[form], Field(min_length=1)]  # type: ignore[valid-type]
        forms.append(form)
    return Union[(*forms, encoded_array_model(kind, ndim))]


class ArrayField:
    """Annotation for an array field: accepts nested JSON lists or an encoded array and
    validates into an ndarray through the codec (errors carry the element position).

    ``ge`` and ``le`` document the elements' bounds in the schema; the core checks them.
    """

    def __init__(
        self, kind: str, *ndim: int, ge: float | None = None, le: float | None = None
    ) -> None:
        self.spec = ArraySpec(kind, tuple(ndim))
        self.bounds = {"ge": ge, "le": le}

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        spec = self.spec

        def validate(value: Any, info: core_schema.ValidationInfo) -> np.ndarray:
            return decode_array(value, field=info.field_name or "", spec=spec)

        return core_schema.with_info_plain_validator_function(
            validate,
            json_schema_input_schema=handler.generate_schema(
                _wire_form(spec.kind, spec.ndim, **self.bounds)
            ),
        )


class GroupArray(ArrayField):
    """Annotation for ``groups``: N integers (nested list or an encoded int32/int64
    array, through the numeric codec) or N strings (all of one type), validated into an
    int64 array or an object array of str (no fixed-width copy of long strings).

    The strings of such a field do not count towards the body's string limit, which
    bounds its keys (see ``app.api.body``)."""

    def __init__(self) -> None:
        super().__init__("int", 1)

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        spec = self.spec

        def validate(value: Any, info: core_schema.ValidationInfo) -> np.ndarray:
            field = info.field_name or ""
            if _first_is_string(value):
                return decode_strings(value, field)
            return decode_array(value, field=field, spec=spec)

        wire: Any = Union[  # noqa: UP007 (a runtime union of runtime-built forms)
            _wire_form("int", (1,)), Annotated[list[str], Field(min_length=1)]
        ]
        return core_schema.with_info_plain_validator_function(
            validate, json_schema_input_schema=handler.generate_schema(wire)
        )


_FIRST_ITEM = re.compile(rb"[ \t\n\r]*\[[ \t\n\r]*")


def _first_is_string(value: Any) -> bool:
    if isinstance(value, Span):
        found = _FIRST_ITEM.match(value.buf, value.start, value.stop)
        return found is not None and value.buf[found.end():found.end() + 1] == b'"'
    return isinstance(value, list) and bool(value) and isinstance(value[0], str)


def decode_strings(value: Any, field: str) -> np.ndarray:
    """N strings (an object array of str), the position of the first non-string the error's."""
    try:
        if isinstance(value, Span):
            typed = msgspec.json.decode(value.view(), type=list[str])
        else:
            typed = msgspec.convert(value, list[str], strict=True)
    except msgspec.ValidationError as exc:
        match = re.search(r"\$\[(\d+)\]", str(exc))
        raise InputError(
            field, "expected a string (groups are all strings or all integers, as the first "
            "one is)", position=(int(match.group(1)),) if match else (), kind="type_error",
        ) from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise InputError(field, "expected valid JSON: a list of strings",
                         kind="json_invalid") from None
    charge_elements(len(typed))
    out = np.empty(len(typed), dtype=object)
    out[:] = typed
    return out


FloatMatrix = Annotated[np.ndarray, ArrayField("float", 2)]
GroupVector = Annotated[np.ndarray, GroupArray()]
FloatVector = Annotated[np.ndarray, ArrayField("float", 1)]
FloatVectorOrMatrix = Annotated[np.ndarray, ArrayField("float", 1, 2)]
FloatScalarOrVector = Annotated[np.ndarray, ArrayField("float", 0, 1)]
IntVector = Annotated[np.ndarray, ArrayField("int", 1)]
MaskArray = Annotated[np.ndarray, ArrayField("mask", 1, 2)]
# The same forms with the bounds of their elements.
ProbabilityMatrix = Annotated[np.ndarray, ArrayField("float", 2, ge=0.0, le=1.0)]
ProbabilityVectorOrMatrix = Annotated[np.ndarray, ArrayField("float", 1, 2, ge=0.0, le=1.0)]
WeightVector = Annotated[np.ndarray, ArrayField("float", 1, ge=0.0)]
WeightScalarOrVector = Annotated[np.ndarray, ArrayField("float", 0, 1, ge=0.0)]
FractionScalarOrVector = Annotated[np.ndarray, ArrayField("float", 0, 1, ge=0.0, le=1.0)]
ClassIndexVector = Annotated[np.ndarray, ArrayField("int", 1, ge=0)]


def _whole_float_to_int(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


#: Marks an integer option, after its bounds: ``Annotated[int, Field(ge=1), WholeFloats]``
#: (after them, so that the schema says ``minimum``). JSON Schema's ``integer`` is any
#: number without a fractional part (2.0 is one), so such floats are taken as integers;
#: 2.5, "2" and true stay errors.
WholeFloats = BeforeValidator(_whole_float_to_int)

# Response arrays are documented, never validated (handlers return serialised bytes).
OutVector = _wire_form("float", (1,))
OutMatrix = _wire_form("float", (2,))
OutVectorOrMatrix = _wire_form("float", (1, 2))


#: More unknown fields than this in one body are refused as a single error.
MAX_UNKNOWN_FIELDS = 20
#: Field names are cut to this many characters when an error message quotes them.
MAX_NAME_SHOWN = 64


def short_name(name: str) -> str:
    """A field name as error messages quote it: cut to MAX_NAME_SHOWN characters (a
    megabyte-long key is not echoed back)."""
    return name if len(name) <= MAX_NAME_SHOWN else name[: MAX_NAME_SHOWN - 3] + "..."


def check_few_unknown_fields(model: type[BaseModel], keys: Iterable[str]) -> None:
    """Raise one InputError (loc ["body"]) when ``keys`` hold more than MAX_UNKNOWN_FIELDS
    names that are not fields of ``model``; fewer are left to pydantic, one error each."""
    fields = model.model_fields
    if not isinstance(keys, Sized) or len(keys) > len(fields) + MAX_UNKNOWN_FIELDS:
        unknown = [key for key in keys if key not in fields]
        if len(unknown) > MAX_UNKNOWN_FIELDS:
            shown = ", ".join(repr(short_name(key)) for key in unknown[:3])
            raise InputError(
                "",
                f"expected only the fields of this endpoint, got {len(unknown)} unknown "
                f"fields ({shown}, ...)",
                kind="extra_forbidden",
            )


class RequestModel(BaseModel):
    """Base of every request body: strict types, unknown fields refused.

    ``exactly_one_of`` and ``not_with`` declare the rules between fields; they are both
    validated and written into the JSON schema (``allOf``), so the two cannot disagree.
    A field counts as sent when it is present and not null.
    """

    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # no "1" for 1 or false for 0.0: a wrong type is a 422, not a guess
        allow_inf_nan=False,
        arbitrary_types_allowed=True,
        use_enum_values=True,
        validate_default=True,
    )

    #: Pairs of fields of which exactly one must be sent.
    exactly_one_of: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: (field, other, reason): ``field`` must be null or absent when ``other`` is sent.
    not_with: ClassVar[tuple[tuple[str, str, str], ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _few_unknown_fields(cls, data: Any) -> Any:
        """Up to MAX_UNKNOWN_FIELDS unknown keys are reported one by one (pydantic's
        ``extra_forbidden``, with every other error); more are one error at ``["body"]``.

        FIX: a body of a million unknown keys (12 MB) took 13 s and 2 GB of memory to
        answer with a 118 MB list of errors."""
        if isinstance(data, dict):
            check_few_unknown_fields(cls, data)
        return data

    @model_validator(mode="after")
    def _field_rules(self) -> Self:
        for first, second in self.exactly_one_of:
            check_exactly_one(first, getattr(self, first), second, getattr(self, second))
        for field, other, reason in self.not_with:
            if getattr(self, field) is not None and getattr(self, other) is not None:
                raise InputError(
                    field, f"expected null with {other}: {reason}", kind="not_applicable"
                )
        return self

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        target = handler.resolve_ref_schema(json_schema)
        rules: list[dict[str, Any]] = [
            {
                "description": f"Exactly one of `{first}` and `{second}`.",
                "oneOf": [_sent(first), _sent(second)],
            }
            for first, second in cls.exactly_one_of
        ]
        rules += [
            {
                "description": f"`{field}` must be null or absent with `{other}`: {reason}.",
                "anyOf": [_not_sent(field), _not_sent(other)],
            }
            for field, other, reason in cls.not_with
        ]
        if rules:
            target["allOf"] = rules
        return json_schema


def _sent(field: str) -> dict[str, Any]:
    return {"required": [field], "properties": {field: {"not": {"type": "null"}}}}


def _not_sent(field: str) -> dict[str, Any]:
    return {"properties": {field: {"type": "null"}}}


class ExactlyOneInput(RequestModel):
    """A request with exactly one of ``logits`` and ``probabilities``."""

    exactly_one_of: ClassVar[tuple[tuple[str, str], ...]] = (("logits", "probabilities"),)

    logits: object = None
    probabilities: object = None


#: Every enum generated from a table, by its choices (one component per set of choices).
ENUMS: dict[tuple[str, ...], type[StrEnum]] = {
    enum_choices: enum
    for enum in (Reduction, Normalization, Units, Convention, Binning, CalibrationMode,
                 Estimator, BootstrapMethod)
    for enum_choices in [tuple(member.value for member in enum)]
}


def _json_bounds(param: Param) -> dict[str, Any]:
    """A row's interval as JSON Schema keywords (documentation: the library validates)."""
    bounds: dict[str, Any] = {}
    if param.low is not None:
        bounds["exclusiveMinimum" if param.low_open else "minimum"] = param.low
    if param.high is not None:
        bounds["exclusiveMaximum" if param.high_open else "maximum"] = param.high
    return bounds


def option_fields(params: dict[str, Param]) -> dict[str, Any]:
    """Pydantic fields (for ``create_model``) of every option in a constraint table.

    Types, enums, bounds and descriptions all come from the table. Bounds are written into
    the JSON schema but not validated by pydantic: the library checks them (one error kind
    per rule, ``out_of_range``), with the same message as for a library call.
    """
    fields: dict[str, Any] = {}
    for name, param in params.items():
        bounds = _json_bounds(param)
        annotation: Any
        if param.kind == "choice":
            enum = ENUMS[param.choices]
            fields[name] = (enum, option(enum(param.default), param.doc))
            continue
        if param.kind == "choices":
            item = Annotated[ENUMS[param.choices], Field(strict=False)]  # type: ignore[valid-type,name-defined]
            fields[name] = (list[item], Field(list(param.default), description=param.doc))
            continue
        if param.kind == "object":
            sub: Any = object_model(name, param)
            annotation = StrictBool | sub if param.flag else sub
            fields[name] = (annotation | None if param.default is None else annotation,
                            Field(param.default, description=param.doc))
            continue
        if param.kind == "boolean":
            annotation = StrictBool
        elif param.kind == "number":
            annotation = Annotated[float, Field(json_schema_extra=bounds)]
        elif param.kind == "integer":
            annotation = Annotated[int, Field(json_schema_extra=bounds), WholeFloats]
        else:
            annotation = Annotated[
                np.ndarray,
                ArrayField(param.element, *param.ranks, ge=param.low, le=param.high),
            ]
        if param.default is None:
            annotation = annotation | None
        fields[name] = (annotation, Field(param.default, description=param.doc))
    return fields


_OBJECT_MODELS: dict[str, type[BaseModel]] = {}


def object_model(name: str, param: Param) -> type[BaseModel]:
    """The sub-model (an OpenAPI component, ``bootstrap`` -> ``BootstrapOptions``) of an
    object option: its fields from the row's ``fields``, unknown keys refused; bounds are
    documented here and checked by the library, as for every option."""
    if name not in _OBJECT_MODELS:
        title = "".join(part.title() for part in name.split("_")) + "Options"
        # RequestModel's rules (strict, unknown keys refused, and a flood of them refused
        # as one error), a title of its own.
        _OBJECT_MODELS[name] = create_model(
            title,
            __base__=RequestModel,
            __doc__=param.doc,
            **option_fields(dict(param.fields)),
        )
        _OBJECT_MODELS[name].model_config["title"] = title
    return _OBJECT_MODELS[name]


def option_values(req: BaseModel, params: dict[str, Param]) -> dict[str, Any]:
    """The options of a parsed request as the library takes them (sub-models as dicts)."""
    values = {name: getattr(req, name) for name in params}
    return {name: value.model_dump() if isinstance(value, BaseModel) else value
            for name, value in values.items()}


def request_model(base: type[M], params: dict[str, Param]) -> type[M]:
    """The request body: ``base`` (the data fields and the rules between them) with every
    option of the library's constraint table ``params``, named by ``base``'s title."""
    name = str(base.model_config.get("title", base.__name__))
    model: type[M] = create_model(
        name, __base__=base, __doc__=base.__doc__, **option_fields(params)
    )
    return model


def option(default: Any, description: str, **constraints: Any) -> Any:
    """A scalar option field. Enum options are validated leniently (a JSON string is the
    only way to send them); everything else stays strict."""
    lenient = isinstance(default, Enum)
    return Field(default, description=description, strict=False if lenient else None, **constraints)


class ErrorItem(BaseModel):
    """One validation problem, in FastAPI's shape."""

    loc: list[str | int] = Field(description='Where: ["body", field, position...].')
    msg: str = Field(description="The rule that was broken, phrased so the request can be fixed.")
    type: str = Field(description="A short machine-readable error kind.")


class ValidationErrorBody(BaseModel):
    """422: the request body broke a rule."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "detail": [
                        {
                            "loc": ["body", "labels", 0],
                            "msg": "label 7 is outside [0, 3)",
                            "type": "out_of_range",
                        }
                    ]
                }
            ]
        }
    )

    detail: list[ErrorItem] = Field(description="The problems found, each with its location.")


class ErrorBody(BaseModel):
    """401, 408, 413, 415: a single message."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"detail": "expected Content-Type application/json, got text/plain"}]
        }
    )

    detail: str = Field(description="What was refused and why.")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorBody,
        "description": "API keys are configured and the request carries none or a wrong one "
        "(send `Authorization: Bearer KEY` or `X-API-Key: KEY`).",
        "headers": {
            "WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}
        },
    },
    408: {
        "model": ErrorBody,
        "description": "The body was not received within XENTROPY_BODY_TIMEOUT seconds "
        "(the connection is closed).",
    },
    413: {"model": ErrorBody, "description": "Body or element count over the configured limit."},
    415: {"model": ErrorBody, "description": "The body is not `application/json`, or is sent "
          "with a `Content-Encoding` other than identity (compressed bodies are refused)."},
    422: {"model": ValidationErrorBody, "description": "Invalid body: field, position and rule."},
}
