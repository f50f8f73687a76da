"""The element limit counts the answer too.

XENTROPY_MAX_ELEMENTS bounded only what a request carries, but the answer can hold more
numbers than the request: a loss request with ``reduction: "none"`` and
``return_gradient`` answers per-sample losses *and* a gradient as large as the input, so
a request at the limit made an answer of twice its elements (as JSON, up to 24 bytes per
number: 61 MiB of encoded float32 came back as 253 MiB). With this check, the arrays of
a request and of its answer together stay within ``max_elements``, so an answer is at
most about ``24 × max_elements`` bytes of JSON whatever the request asks for.

Call it in the route, after ``parse_request`` and before the computation (nothing is
allocated for the answer yet)::

    req = parse_request(CategoricalLossRequest, body, settings)
    check_answer_elements(req, settings, loss_answer_elements(req, per_element_losses=False))

(``per_element_losses=True`` for /v1/losses/binary, whose per-sample losses have the
input's shape.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel

from app.api.errors import BodyError
from app.settings import Settings


def request_elements(req: BaseModel) -> int:
    """Elements of every array field of a parsed request."""
    return sum(v.size for v in vars(req).values() if isinstance(v, np.ndarray))


def _value(option: Any) -> Any:
    return getattr(option, "value", option)  # an Enum member or its plain value


def loss_answer_elements(req: BaseModel, *, per_element_losses: bool) -> int:
    """Elements of the arrays a /v1/losses/* answer will hold: the per-sample ``losses``
    (with ``reduction: "none"`` or ``return_gradient``; one per row for categorical
    losses, one per input element for binary ones) and the ``gradient`` (the input's
    size)."""
    scores = getattr(req, "logits", None)
    if scores is None:
        scores = getattr(req, "probabilities", None)
    if not isinstance(scores, np.ndarray):
        return 0
    gradient = bool(getattr(req, "return_gradient", False))
    total = 0
    if gradient or _value(getattr(req, "reduction", "mean")) == "none":
        total += scores.size if per_element_losses or scores.ndim < 2 else scores.shape[0]
    if gradient:
        total += scores.size
    return int(total)


def check_answer_elements(req: BaseModel, settings: Settings, answer_elements: int) -> None:
    """413 unless the request's arrays and the answer's fit ``settings.max_elements``
    together."""
    limit = settings.max_elements
    carried = request_elements(req)
    if carried + answer_elements > limit:
        raise BodyError(
            413,
            f"the request holds {carried} array elements and its answer would hold "
            f"{answer_elements}; together they may hold at most {limit} (the limit counts "
            "the answer: ask for fewer per-sample values or no gradient, or send fewer rows)",
        )
