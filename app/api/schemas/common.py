"""Types shared by every request and response schema: arrays, enums, errors."""

from __future__ import annotations

from enum import Enum, StrEnum
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler
from pydantic_core import core_schema

from app.api.codec import ArraySpec, decode_array


class Reduction(StrEnum):
    """How per-sample values are combined (PyTorch ``reduction``)."""

    mean = "mean"
    sum = "sum"
    none = "none"


class Normalization(StrEnum):
    """What ``"mean"`` divides by: the sum of effective weights, or the counted samples."""

    weights = "weights"
    samples = "samples"


class Units(StrEnum):
    """Logarithm base of every loss, entropy and divergence: e (nats) or 2 (bits)."""

    nats = "nats"
    bits = "bits"


class ResponseEncoding(StrEnum):
    """How response arrays are written: nested JSON lists, or encoded float64 arrays."""

    json = "json"
    base64 = "base64"


class EncodedArray(BaseModel):
    """An array as raw little-endian C-order bytes, base64 (RFC 4648) encoded."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {"dtype": "float64", "shape": [1, 2], "data": "AAAAAAAAAEAAAAAAAADwPw=="}
        },
    )

    dtype: Literal["float32", "float64", "int32", "int64", "uint8", "bool"] = Field(
        description="Element type of `data`; responses always use float64."
    )
    shape: list[Annotated[int, Field(ge=0)]] = Field(description="Size of each dimension.")
    data: str = Field(description="base64 of the raw little-endian C-order bytes.")


def _wire_form(kind: str, ndim: tuple[int, ...]) -> Any:
    """The Python type a field's JSON may take: nested lists of the element, or an
    EncodedArray. Used for the JSON schema only; the codec does the validation."""
    element: Any = {"float": float, "int": int, "mask": Literal[0, 1] | bool}[kind]
    forms = []
    for rank in ndim:
        form = element
        for _ in range(rank):
            form = Annotated[list[form], Field(min_length=1)]  # type: ignore[valid-type]
        forms.append(form)
    return Union[(*forms, EncodedArray)]


class ArrayField:
    """Annotation for an array field: accepts nested JSON lists or an encoded array and
    validates into an ndarray through the codec (errors carry the element position)."""

    def __init__(self, kind: str, *ndim: int) -> None:
        self.spec = ArraySpec(kind, tuple(ndim))

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        spec = self.spec

        def validate(value: Any, info: core_schema.ValidationInfo) -> np.ndarray:
            return decode_array(value, field=info.field_name or "", spec=spec)

        return core_schema.with_info_plain_validator_function(
            validate,
            json_schema_input_schema=handler.generate_schema(_wire_form(spec.kind, spec.ndim)),
        )


FloatMatrix = Annotated[np.ndarray, ArrayField("float", 2)]
FloatVector = Annotated[np.ndarray, ArrayField("float", 1)]
FloatVectorOrMatrix = Annotated[np.ndarray, ArrayField("float", 1, 2)]
FloatScalarOrVector = Annotated[np.ndarray, ArrayField("float", 0, 1)]
IntVector = Annotated[np.ndarray, ArrayField("int", 1)]
MaskArray = Annotated[np.ndarray, ArrayField("mask", 1, 2)]

# Response arrays are documented, never validated (handlers return serialised bytes).
OutVector = _wire_form("float", (1,))
OutMatrix = _wire_form("float", (2,))
OutVectorOrMatrix = _wire_form("float", (1, 2))


class RequestModel(BaseModel):
    """Base of every request body: strict types, unknown fields refused."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # no "1" for 1 or false for 0.0: a wrong type is a 422, not a guess
        allow_inf_nan=False,
        arbitrary_types_allowed=True,
        use_enum_values=True,
        validate_default=True,
    )


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

    detail: list[ErrorItem]


class ErrorBody(BaseModel):
    """401, 413, 415: a single message."""

    detail: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": "Body or element count over the configured limit."},
    415: {"model": ErrorBody, "description": "The body is not `application/json`."},
    422: {"model": ValidationErrorBody, "description": "Invalid body: field, position and rule."},
}
