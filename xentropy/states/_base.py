"""What every kind of state shares: the error type, reading JSON with positions, pairs.

States arrive as parsed JSON (dicts, lists, numbers, strings, booleans, None) from any
parser; every field is checked here, strictly (no "1" for 1, no true for 1, no NaN), and a
broken rule raises a :class:`StateError` that says where: the path inside the state (and,
during a merge, which state).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import numpy as np

from xentropy._compensated import is_normalised
from xentropy._validation import InputError, Param

#: The state format this library writes and reads.
VERSION = 1
#: Relative slack of the consistency checks between sums that would be equal (or
#: ordered) in exact arithmetic: far above the rounding of compensated sums (about 1e-16)
#: and far below any real inconsistency.
TOLERANCE = 1e-9
_TINY = 2.0**-1000

Path = tuple[str | int, ...]


class StateError(InputError):
    """A state that cannot be read, or states that cannot be merged.

    Attributes:
      path: where inside the state, e.g. ``("options", "n_bins")`` or
        ``("histogram", "count", 3)``; ``()`` for the state as a whole.
      index: which state of a merge (its position in the list), or ``None``.
      message, kind: what rule was broken, and a short machine-readable kind:
        ``missing``, ``extra_forbidden``, ``type_error``, ``enum``, ``out_of_range``,
        ``not_finite``, ``shape_mismatch``, ``not_normalised`` (a pair whose ``hi`` is not
        ``hi + lo`` rounded), ``inconsistent_state`` (sums that contradict the counts or
        each other), ``states_disagree`` (states of a merge whose kind, version or
        options differ), or the kind of the option rule an option breaks.
    """

    def __init__(
        self, message: str, *, path: Sequence[str | int] = (), index: int | None = None,
        kind: str = "value_error",
    ) -> None:
        super().__init__("state", message, kind=kind)
        self.path: Path = tuple(path)
        self.index = index

    def at(self, index: int) -> StateError:
        """The same error, for the state at ``index`` of a merge."""
        return StateError(self.message, path=self.path, index=index, kind=self.kind)

    def under(self, *prefix: str | int) -> StateError:
        return StateError(
            self.message, path=(*prefix, *self.path), index=self.index, kind=self.kind
        )

    def __str__(self) -> str:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.path)
        head = "state" if self.index is None else f"states[{self.index}]"
        return f"{head}{where}: {self.message}"


class State:
    """Base of the state classes: sufficient statistics of one batch (or of several,
    merged), of fixed size whatever the number of samples.

    Every state has ``kind``, ``version`` and ``options`` (what must agree for states to
    merge); :meth:`to_json` is the JSON object the HTTP API sends and takes.
    """

    kind: ClassVar[str]

    def to_json(self) -> dict[str, Any]:  # pragma: no cover - each kind defines it
        raise NotImplementedError

    @classmethod
    def read(cls, obj: dict[str, Any]) -> State:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def merge_all(cls, states: Sequence[Any]) -> State:  # pragma: no cover
        raise NotImplementedError

    def finalize(self) -> Any:  # pragma: no cover
        raise NotImplementedError

    def empty(self) -> State:  # pragma: no cover
        raise NotImplementedError


# --------------------------------------------------------------------------- reading JSON


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def read_object(value: Any, path: Path, fields: Iterable[str],
                nullable: Iterable[str] = ()) -> dict[str, Any]:
    """``value`` as a dict holding exactly ``fields``; a field that may be null may also
    be left out (absent is null, as everywhere in the HTTP API)."""
    if not isinstance(value, dict):
        raise StateError(f"expected an object, got {json_type(value)}", path=path,
                         kind="type_error")
    names = tuple(fields)
    for key in value:
        if key not in names:
            shown = key if len(str(key)) <= 64 else str(key)[:61] + "..."
            raise StateError(f"unknown field {shown!r}: not part of this state",
                             path=(*path, shown), kind="extra_forbidden")
    optional = tuple(nullable)
    for name in names:
        if name not in value and name not in optional:
            raise StateError("field required", path=(*path, name), kind="missing")
    if any(name not in value for name in optional):
        value = {**{name: None for name in optional}, **value}
    return value


def read_choice(value: Any, path: Path, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        shown = ", ".join(repr(c) for c in choices)
        got = repr(value[:64]) if isinstance(value, str) else json_type(value)
        raise StateError(f"expected one of {shown}, got {got}", path=path, kind="enum")
    return value


def read_bool(value: Any, path: Path) -> bool:
    if not isinstance(value, bool):
        raise StateError(f"expected a boolean, got {json_type(value)}", path=path,
                         kind="type_error")
    return value


def read_int(value: Any, path: Path, *, low: int = 0, high: int = 2**63 - 1) -> int:
    """A JSON integer (a number without a fractional part, as JSON Schema's integer)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StateError(f"expected an integer, got {json_type(value)}", path=path,
                         kind="type_error")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise StateError("expected a finite number", path=path, kind="not_finite")
        if not value.is_integer():
            raise StateError(f"expected an integer, got {value!r}", path=path,
                             kind="type_error")
        value = int(value)
    if not low <= value <= high:
        raise StateError(f"expected an integer in [{low}, {high}], got {value}", path=path,
                         kind="out_of_range")
    return value


def read_number(value: Any, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StateError(f"expected a number, got {json_type(value)}", path=path,
                         kind="type_error")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise StateError("expected a finite number", path=path, kind="not_finite")
    return number


def _check_list(value: Any, path: Path, length: int | None) -> list[Any]:
    if not isinstance(value, list):
        raise StateError(f"expected an array, got {json_type(value)}", path=path,
                         kind="type_error")
    if length is not None and len(value) != length:
        raise StateError(f"expected {length} values, got {len(value)}", path=path,
                         kind="shape_mismatch")
    return value


_NUMBER_TYPES = frozenset({int, float})


def _number_array(values: list[Any], path: Path, positions: Any) -> np.ndarray:
    """float64 of a flat list of JSON numbers; ``positions(i)`` maps a flat index to the
    path suffix of that element."""
    if not set(map(type, values)) <= _NUMBER_TYPES:
        i = next(i for i, v in enumerate(values) if type(v) not in _NUMBER_TYPES)
        raise StateError(f"expected a number, got {json_type(values[i])}",
                         path=(*path, *positions(i)), kind="type_error")
    try:
        arr = np.array(values, dtype=np.float64)
    except OverflowError:  # an integer beyond float64
        arr = np.array([read_number(v, ()) if isinstance(v, int) and abs(v) > 2**1000
                        else v for v in values], dtype=np.float64)
    if not np.isfinite(arr).all():
        i = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise StateError("expected a finite number", path=(*path, *positions(i)),
                         kind="not_finite")
    return arr


def read_clip_margin(
    value: Any, path: Path, *, clipped: bool, param: Param, what: str
) -> float | None:
    """A state's clipping margin: a number obeying ``param`` where the input is clipped
    (``what`` names it), null where it is not (logits)."""
    if not clipped:
        if value is not None:
            raise StateError(f"expected null: {what} is not clipped", path=path,
                             kind="not_applicable")
        return None
    if value is None:
        raise StateError(f"expected the clipping margin of {what}, got null", path=path,
                         kind="not_applicable")
    try:
        return float(param.check(read_number(value, path), str(path[-1])))
    except StateError:
        raise
    except InputError as error:
        raise StateError(error.message, path=path, kind=error.kind) from None


def read_numbers(value: Any, path: Path, length: int | None = None) -> np.ndarray:
    """An array of finite numbers, shape (K,)."""
    values = _check_list(value, path, length)
    return _number_array(values, path, lambda i: (i,))


def read_counts(value: Any, path: Path, length: int | None = None, *, low: int = 0) -> np.ndarray:
    """An array of integers >= ``low`` (whole numbers), int64, shape (K,)."""
    values = _check_list(value, path, length)
    if set(map(type, values)) <= {int}:
        try:
            arr = np.array(values, dtype=np.int64) if values else np.zeros(0, np.int64)
        except OverflowError:
            arr = None
        if arr is not None and (arr >= low).all():
            return arr
    # The slow path, which finds and names the offending element.
    return np.array([read_int(v, (*path, i), low=low) for i, v in enumerate(values)],
                    dtype=np.int64).reshape(len(values))


def read_pair(value: Any, path: Path) -> np.ndarray:
    """A compensated sum ``[hi, lo]``: two finite numbers, normalised."""
    values = _check_list(value, path, None)
    if len(values) != 2:
        raise StateError(f"expected a pair [hi, lo], got {len(values)} values", path=path,
                         kind="shape_mismatch")
    pair = _number_array(values, path, lambda i: (i,))
    if not is_normalised(pair):
        raise StateError(_NOT_NORMALISED, path=path, kind="not_normalised")
    return pair


_NOT_NORMALISED = (
    "expected a normalised pair [hi, lo] (hi + lo rounded to float64 is hi), as states "
    "write them"
)


def read_pairs(value: Any, path: Path, length: int | None = None) -> np.ndarray:
    """An array of pairs ``[[hi, lo], ...]``, shape (K, 2)."""
    values = _check_list(value, path, length)
    if not values:
        return np.zeros((0, 2))
    if set(map(type, values)) != {list}:
        i = next(i for i, v in enumerate(values) if not isinstance(v, list))
        raise StateError(f"expected a pair [hi, lo], got {json_type(values[i])}",
                         path=(*path, i), kind="type_error")
    if set(map(len, values)) != {2}:
        i = next(i for i, v in enumerate(values) if len(v) != 2)
        raise StateError(f"expected a pair [hi, lo], got {len(values[i])} values",
                         path=(*path, i), kind="shape_mismatch")
    flat = list(itertools.chain.from_iterable(values))
    pairs = _number_array(flat, path, lambda i: (i // 2, i % 2)).reshape(-1, 2)
    bad = ~is_normalised(pairs)
    if bad.any():
        raise StateError(_NOT_NORMALISED, path=(*path, int(np.flatnonzero(bad)[0])),
                         kind="not_normalised")
    return pairs


def pair_json(pair: np.ndarray) -> list[float]:
    return [float(pair[0]), float(pair[1])]


# --------------------------------------------------------------------------- checks


def inconsistent(message: str, path: Path) -> StateError:
    return StateError(message, path=path, kind="inconsistent_state")


def check_at_most(
    value: np.ndarray, bound: np.ndarray | float, path: Path, what: str, *,
    slack: float = TOLERANCE, scale: np.ndarray | float = 0.0,
) -> None:
    """``value <= bound`` elementwise, within the relative ``slack`` (of ``scale`` too: the
    magnitude of the sums a difference ``value`` was taken of)."""
    bad = np.asarray(value > np.asarray(bound) * (1.0 + slack) + slack * np.asarray(scale)
                     + _TINY)
    if bad.any():
        pos = np.unravel_index(int(np.flatnonzero(bad)[0]), bad.shape) if bad.ndim else ()
        raise inconsistent(what, (*path, *(int(p) for p in pos)))


def check_close(a: float, b: float, path: Path, what: str, *, slack: float = TOLERANCE) -> None:
    """``a == b`` within the relative ``slack`` of the larger magnitude."""
    if abs(a - b) > slack * max(abs(a), abs(b)) + _TINY:
        raise inconsistent(what, path)


def check_non_negative(pairs: np.ndarray, path: Path, what: str) -> None:
    """Sums of non-negative terms: ``hi >= 0`` (the pair is normalised)."""
    hi = pairs[..., 0]
    bad = np.asarray(hi < 0)
    if bad.any():
        pos = np.unravel_index(int(np.flatnonzero(bad)[0]), bad.shape) if bad.ndim else ()
        raise inconsistent(f"expected {what} >= 0 (a sum of non-negative terms)",
                           (*path, *(int(p) for p in pos)))


def check_agree(states: Sequence[Any], name: str = "options") -> None:
    """Raise ``states_disagree`` at the first state whose ``name`` differs from the first's."""
    first = getattr(states[0], name)
    for i, s in enumerate(states):
        value = getattr(s, name)
        if value != first:
            field = next(
                (f for f in _fields(first) if getattr(value, f) != getattr(first, f)), None
            )
            path: Path = (name,) if field is None else (name, field)
            shown = "" if field is None else (
                f": {field} is {_shown(getattr(value, field))} here, "
                f"{_shown(getattr(first, field))} in states[0]"
            )
            raise StateError(
                f"expected the options of states[0] (states merge only when they describe "
                f"the same statistic){shown}", path=path, index=i, kind="states_disagree",
            )


def _fields(options: Any) -> tuple[str, ...]:
    return tuple(getattr(options, "__dataclass_fields__", {}))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
