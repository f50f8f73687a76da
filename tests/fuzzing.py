"""Shared by the schemathesis tests (in-process and over HTTP).

Every built-in check runs, except one replaced by a narrower version of itself:
``positive_data_acceptance`` expects every schema-valid request to be accepted. Some of
the service's rules cannot be written in JSON Schema: that fields agree with each other
(N×C input, N labels, labels < C, the same shape for targets and mask), that nested lists
are rectangular, that probability rows sum to 1, that encoded ``data`` holds exactly
``shape`` elements (and what values they hold), that a number is within the float64
range (an exact bound no float can state), and that a result fits in float64. A
schema-valid request may be refused (422) for those rules and for nothing else: a 422 for
a rule the schema states (a type, a range, a rank, a dtype, a required or exclusive
field) means that the schema and the service disagree, and fails the test.
"""

from __future__ import annotations

import math
import os
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings

API_KEY = "fuzzing-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}

#: 422 error types for rules beyond JSON Schema: agreement between fields, rectangular
#: nesting, row sums, encoded sizes, float64 overflow.
BEYOND_SCHEMA = frozenset(
    {
        "shape_mismatch",
        "size_mismatch",
        "ragged",
        "not_a_distribution",
        "not_applicable",
        "zero_denominator",
        "overflow",
        # A convention against the other fields (an option or input form the named
        # library lacks, or an answer it gives as NaN/inf): cross-field rules.
        "not_in_convention",
        "undefined_in_convention",
        # States against one another or against their own counts (/v1/merge).
        "states_disagree",
        "inconsistent_state",
        "not_normalised",
    }
)
#: Value rules: beyond the schema only for values inside encoded data, for labels (their
#: range is [0, C)), for groups (at most 10 000 distinct values), for whole-field rules
#: (sample weights that sum to 0 or overflow), and for numbers beyond the float64 range
#: (see ``beyond_float64``).
VALUE_RULES = frozenset({"out_of_range", "not_finite"})
FLOAT64_MAX = 1.7976931348623157e308


def beyond_float64(body: Any, loc: list[Any]) -> bool:
    """Whether the value at ``loc`` (["body", field, i, j]) is a JSON number that rounds to
    infinity in float64. JSON Schema numbers are unbounded; the exact float64 bound is a
    309-digit integer that FastAPI's OpenAPI models and schemathesis cannot hold, so the
    schema does not state it (app/api/schemas/common.py, ``_wire_form``)."""
    value = body
    for part in loc[1:]:
        if isinstance(value, dict) and isinstance(part, str):
            value = value.get(part)
        elif isinstance(value, list) and isinstance(part, int) and part < len(value):
            value = value[part]
        else:
            return False
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return not math.isfinite(float(value))
    except OverflowError:  # an int beyond float
        return True

EXCLUDED_CHECKS = ["positive_data_acceptance"]


def _beyond_schema(item: dict[str, Any], body: dict[str, Any]) -> bool:
    kind, loc = item.get("type"), item.get("loc", [])
    if kind in BEYOND_SCHEMA:
        return True
    field = loc[1] if len(loc) > 1 else None
    if kind in VALUE_RULES and isinstance(field, str):
        encoded = isinstance(body.get(field), dict)
        whole_field = len(loc) == 2 and field == "sample_weights"
        return (encoded or field in ("labels", "groups") or whole_field
                or beyond_float64(body, loc))
    return False


@schemathesis.check
def refused_only_beyond_the_schema(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """positive_data_acceptance, narrowed to the rules JSON Schema can state (see above)."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if response.status_code < 400:
        return None
    if response.status_code != 422:
        raise AssertionError(f"schema-valid request refused with {response.status_code}")
    body = case.body if isinstance(case.body, dict) else {}
    detail = response.json().get("detail", [])
    wrong = [item for item in detail if not _beyond_schema(item, body)]
    if wrong:
        raise AssertionError(f"schema-valid request refused for a rule the schema states: {wrong}")
    return True


def fuzz_settings(max_examples: int) -> settings:
    """Hypothesis settings: no deadline (the first call of a code path is slow), the
    health checks that only say "this schema is big" off, and deterministic in CI."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=bool(os.environ.get("CI")),
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )
