"""Input validation for the core, in the style of scikit-learn's ``check_*`` helpers.

Every check raises :class:`InputError`, which carries the name of the offending
argument (the same name the HTTP contract uses for the field), the position of the
first offending element inside it, and an "expected ..., got ..." message. The HTTP
layer turns it into a 422 whose ``loc`` is ``["body", field, *position]``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Probability rows (and target rows) must sum to 1 within this absolute tolerance.
ROW_SUM_TOLERANCE = 1e-6


class InputError(Exception):
    """An argument violates a documented rule.

    Deliberately not a ValueError: pydantic converts ValueErrors raised inside validators
    into its own errors and would drop the element position; this one passes through.

    Attributes:
      field: name of the argument (and request field), e.g. ``"labels"``.
      position: index of the first offending element inside it; ``()`` for the whole field.
      message: what rule was broken, phrased so that the sender can fix the request.
      kind: a short machine-readable error type, e.g. ``"out_of_range"``.
    """

    def __init__(
        self,
        field: str,
        message: str,
        *,
        position: Sequence[int | str] = (),
        kind: str = "value_error",
    ) -> None:
        super().__init__(message)
        self.field = field
        # A name inside an object option (``bootstrap.seed``) is kept as a string.
        self.position = tuple(i if isinstance(i, str) else int(i) for i in position)
        self.message = message
        self.kind = kind

    def __str__(self) -> str:
        where = "".join(f"[{i}]" for i in self.position)
        return f"{self.field}{where}: {self.message}"

    def moved(self, rows: int) -> InputError:
        """This error with its row (the first position, when it is one) ``rows`` further:
        the error of a block of rows, counted from the first row of the whole array."""
        if not rows or not self.position or not isinstance(self.position[0], int):
            return self
        moved = copy.copy(self)  # through __reduce__: every attribute
        moved.position = (self.position[0] + rows, *self.position[1:])
        return moved

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable with every attribute (the default rebuilds from args = (message,)):
        # Dask's worker processes send the errors they raise back to the client.
        return _rebuild_error, (type(self), self.message, dict(self.__dict__))


def _rebuild_error(cls: type[InputError], message: str, attributes: dict[str, Any]
                   ) -> InputError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(attributes)
    return error


def first_index(mask: np.ndarray) -> tuple[int, ...]:
    """Position (a tuple of ints) of the first True element of ``mask``, in C order."""
    flat = int(np.flatnonzero(mask.ravel())[0])
    return tuple(int(i) for i in np.unravel_index(flat, mask.shape))


def number_text(value: Any) -> str:
    """An offending number as messages quote it: every digit that tells it apart (repr),
    so that 1.0000001 is not shown as "1"."""
    if isinstance(value, np.integer | int) and not isinstance(value, bool):
        return str(int(value))
    return repr(float(value))


def _shape_text(shape: tuple[int, ...]) -> str:
    return "×".join(str(s) for s in shape) if shape else "a scalar"


def as_float_array(
    value: object, field: str, *, ndim: int | tuple[int, ...], keep_float32: bool = False
) -> np.ndarray:
    """Return ``value`` as a float64 array of the allowed rank, finite and non-empty.

    Args:
      value: array-like.
      field: argument name for error messages.
      ndim: allowed rank(s).
      keep_float32: return float32 input as it is, for callers that widen it to float64
        inside their first arithmetic pass instead of making a float64 copy first.

    Returns:
      float64 array (a view when the input already is float64).
    """
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiub":
        raise InputError(field, f"expected numbers, got dtype {arr.dtype}", kind="type_error")
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if arr.ndim not in allowed:
        ranks = " or ".join(f"{d}-D" for d in allowed)
        raise InputError(
            field, f"expected a {ranks} array, got shape {_shape_text(arr.shape)}",
            kind="shape_error",
        )
    if arr.size == 0 or (arr.ndim == 2 and arr.shape[1] == 0):
        raise InputError(field, f"expected a non-empty array, got shape {arr.shape}", kind="empty")
    if not (keep_float32 and arr.dtype == np.float32):
        arr = arr.astype(np.float64, copy=False)
    check_finite(arr, field)
    return arr


def check_finite(arr: np.ndarray, field: str) -> None:
    """Raise if any element of ``arr`` is NaN or infinite, naming the first one."""
    if arr.dtype.kind != "f":
        return
    # The sum of finite numbers is finite unless it overflows, so one reduction (no
    # temporary array) settles the common case; the elementwise test runs only when the
    # sum is not finite: a NaN or infinity is present, or the sum overflowed.
    with np.errstate(over="ignore", invalid="ignore"):
        total = arr.sum(dtype=np.float64)
    if np.isfinite(total):
        return
    if not np.isfinite(arr).all():
        pos = first_index(~np.isfinite(arr))
        raise InputError(
            field, f"expected a finite number, got {arr[pos]}", position=pos, kind="not_finite"
        )


def check_length(arr: np.ndarray, field: str, expected: int, what: str) -> None:
    """Raise unless ``arr`` is 1-D of length ``expected`` (``what`` says what it counts)."""
    if arr.ndim != 1 or arr.shape[0] != expected:
        raise InputError(
            field,
            f"expected {expected} values ({what}), got shape {_shape_text(arr.shape)}",
            kind="shape_mismatch",
        )


def check_same_shape(arr: np.ndarray, field: str, shape: tuple[int, ...], of: str) -> None:
    """Raise unless ``arr`` has exactly ``shape`` (the shape of argument ``of``)."""
    if arr.shape != shape:
        raise InputError(
            field,
            f"expected the shape of {of}, {_shape_text(shape)}, got {_shape_text(arr.shape)}",
            kind="shape_mismatch",
        )


def check_range(
    arr: np.ndarray,
    field: str,
    *,
    low: float | None = None,
    high: float | None = None,
    what: str = "value",
) -> None:
    """Raise if any element lies outside the closed interval [low, high]."""
    bad = np.zeros(arr.shape, dtype=bool)
    if low is not None:
        bad |= arr < low
    if high is not None:
        bad |= arr > high
    if bad.any():
        pos = first_index(bad)
        if low is not None and high is not None:
            rule = f"in [{low:g}, {high:g}]"
        elif low is not None:
            rule = f">= {low:g}"
        else:
            rule = f"<= {high:g}"
        raise InputError(
            field, f"expected {what} {rule}, got {number_text(arr[pos])}", position=pos,
            kind="out_of_range",
        )


def check_rows_sum_to_one(arr: np.ndarray, field: str) -> None:
    """Raise if a row of the (N, C) array ``arr`` does not sum to 1 within the tolerance."""
    sums = arr.sum(axis=1)
    bad = np.abs(sums - 1.0) > ROW_SUM_TOLERANCE
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(
            field,
            f"expected row {row} to sum to 1 (within {ROW_SUM_TOLERANCE:g}), got "
            f"{number_text(sums[row])}",
            position=(row,),
            kind="not_a_distribution",
        )


def check_distributions(arr: np.ndarray, field: str) -> None:
    """Raise unless every row of the (N, C) array is a probability distribution."""
    check_range(arr, field, low=0.0, high=1.0, what="a probability")
    check_rows_sum_to_one(arr, field)


def check_labels(
    labels: object, n_samples: int, n_classes: int, *, ignore_index: int | None = None
) -> np.ndarray:
    """Return ``labels`` as int64 of shape (N,), each in [0, C) or equal to ``ignore_index``."""
    arr = np.asarray(labels)
    if arr.dtype.kind == "f":
        fractional = arr != np.floor(arr) if arr.size else np.zeros(0, bool)
        if np.any(~np.isfinite(arr)) or np.any(fractional):
            bad = ~np.isfinite(arr) | fractional
            pos = first_index(bad)
            raise InputError(
                "labels", f"expected an integer class index, got {arr[pos]}", position=pos,
                kind="type_error",
            )
    elif arr.dtype.kind not in "iub":
        raise InputError("labels", f"expected integers, got dtype {arr.dtype}", kind="type_error")
    check_length(arr, "labels", n_samples, "one label per sample")
    # Range-check before casting: a float or uint64 label beyond int64 would wrap around.
    bad = (arr < 0) | (arr >= n_classes)
    if ignore_index is not None:
        bad &= arr != ignore_index
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        value = arr[i]
        shown = int(value) if arr.dtype.kind == "f" and abs(value) < 2**53 else value
        raise InputError(
            "labels",
            f"label {shown} is outside [0, {n_classes})",
            position=(i,),
            kind="out_of_range",
        )
    arr = arr.astype(np.int64, copy=False)
    return arr


def check_weights(value: object, field: str, length: int, what: str) -> np.ndarray:
    """Return non-negative finite float64 weights of shape (length,)."""
    arr = as_float_array(value, field, ndim=1)
    check_length(arr, field, length, what)
    check_range(arr, field, low=0.0, what="a weight")
    return arr


def check_scalar(
    value: float,
    field: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as float if it lies in the given interval, else raise."""
    v = float(value)
    ok = np.isfinite(v)
    if low is not None:
        ok = ok and (v > low if low_open else v >= low)
    if high is not None:
        ok = ok and (v < high if high_open else v <= high)
    if not ok:
        interval = interval_text(low, high, low_open, high_open)
        raise InputError(
            field, f"expected a number in {interval}, got {number_text(v)}", kind="out_of_range"
        )
    return v


def interval_text(
    low: float | None, high: float | None, low_open: bool = False, high_open: bool = False
) -> str:
    """An interval as messages and descriptions write it, e.g. ``[0, 1)``."""
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    low_text = "-inf" if low is None else f"{low:g}"
    high_text = "inf" if high is None else f"{high:g}"
    return f"{lo}{low_text}, {high_text}{hi}"


def check_exactly_one(first: str, first_value: Any, second: str, second_value: Any) -> None:
    """Raise unless exactly one of two arguments is given (not None): ``missing`` naming
    the first when neither is, ``exclusive`` naming the second when both are."""
    if (first_value is None) == (second_value is None):
        both = first_value is not None
        raise InputError(
            second if both else first,
            f"expected exactly one of {first} and {second}, got {'both' if both else 'neither'}",
            kind="exclusive" if both else "missing",
        )


def check_choice(value: str, field: str, choices: Sequence[str]) -> str:
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise InputError(field, f"expected one of {options}, got {value!r}", kind="enum")
    return value


@dataclass(frozen=True)
class Param:
    """One row of a constraint table, in the spirit of scikit-learn's ``validate_params``:
    an option's kind, default, bounds or allowed values, and meaning.

    Declared once, in the library; the HTTP schema's fields (bounds, enums, descriptions)
    are generated from it, so the OpenAPI document and the library cannot disagree, and a
    broken rule has one error kind wherever it is checked.

    Attributes:
      kind: ``"number"``, ``"integer"``, ``"boolean"``, ``"choice"``, ``"choices"`` (a list
        of distinct ``choices``), ``"object"`` (a mapping of the sub-options ``fields``;
        with ``flag``, ``true`` stands for all their defaults and ``false`` for off) or
        ``"array"`` (an array option: ``low``/``high`` bound its elements; shapes are
        checked by the kernels).
      default: the value when the option is not given (``None``: off).
      doc: what the option means (the schema's description).
      low, high, low_open, high_open: the interval of allowed numbers.
      choices: the allowed strings of a ``"choice"``.
      ranks: an array option's allowed ranks (0: one number for every class or column).
      element: an array option's element type, ``"float"`` or ``"mask"`` (0/1 or bool).
      fields: an object option's rows, ``(name, Param)`` pairs.
      flag: an object option that may also be ``true`` or ``false``.

    >>> Param("object", None, "", fields=(("k", Param("integer", 2, "", low=1)),)).check(
    ...     {}, "opt")
    {'k': 2}
    """

    kind: str
    default: Any
    doc: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    ranks: tuple[int, ...] = (1,)
    element: str = "float"
    fields: tuple[tuple[str, Param], ...] = ()
    flag: bool = False

    def check(self, value: Any, field: str) -> Any:
        """``value`` if it obeys this row, else an :class:`InputError` naming ``field``."""
        if value is None and self.default is None:
            return None
        if self.kind == "choice":
            return check_choice(value, field, self.choices)
        if self.kind == "choices":
            return self._check_choices(value, field)
        if self.kind == "object":
            return self._check_object(value, field)
        if self.kind == "boolean":
            if not isinstance(value, bool | np.bool_):
                raise InputError(field, f"expected a boolean, got {value!r}", kind="type_error")
            return bool(value)
        if self.kind == "integer":
            if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
                raise InputError(field, f"expected an integer, got {value!r}", kind="type_error")
            if (self.low is not None and value < self.low) or (
                self.high is not None and value > self.high
            ):
                raise InputError(
                    field, f"expected an integer in {self.interval()}, got {int(value)}",
                    kind="out_of_range",
                )
            return int(value)
        if self.kind == "number":
            if isinstance(value, bool | np.bool_) or not isinstance(
                value, float | int | np.floating | np.integer
            ):
                raise InputError(field, f"expected a number, got {value!r}", kind="type_error")
            return check_scalar(
                float(value), field, low=self.low, high=self.high, low_open=self.low_open,
                high_open=self.high_open,
            )
        return value  # "array": its shape depends on the data; the kernels check it

    def _check_choices(self, value: Any, field: str) -> tuple[str, ...]:
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise InputError(field, f"expected a list of strings, got {value!r}",
                             kind="type_error")
        for i, item in enumerate(value):
            try:
                check_choice(item, field, self.choices)
            except InputError as err:
                raise InputError(field, err.message, position=(i,), kind="enum") from None
            if item in value[:i]:
                raise InputError(field, f"expected each name once, got {item!r} twice",
                                 position=(i,), kind="duplicate")
        return tuple(value)

    def _check_object(self, value: Any, field: str) -> dict[str, Any] | None:
        """The sub-options with their defaults filled in; ``None`` for off (``false``)."""
        if self.flag and isinstance(value, bool | np.bool_):
            value = {} if value else None
        if value is None:
            return None
        if not isinstance(value, Mapping):
            what = "an object or a boolean" if self.flag else "an object"
            raise InputError(field, f"expected {what}, got {value!r}", kind="type_error")
        rows = dict(self.fields)
        for key in value:
            if key not in rows:
                raise InputError(field, f"unknown field {key!r}: expected some of "
                                 f"{', '.join(rows)}", position=(str(key),),
                                 kind="extra_forbidden")
        out = {}
        for key, row in rows.items():
            try:
                out[key] = row.check(value.get(key, row.default), key)
            except InputError as err:
                raise InputError(field, err.message, position=(key, *err.position),
                                 kind=err.kind) from None
        return out

    def interval(self) -> str:
        """The allowed interval as text, e.g. ``[0, 1)``."""
        return interval_text(self.low, self.high, self.low_open, self.high_open)
