"""State of :func:`xentropy.divergences`: ``"divergences"``.

The number of rows and the compensated sums of the four per-row values (H(p), H(p, q),
KL(p‖q), JS(p, q)) in the state's units: ``"mean"`` divides them by the rows, ``"sum"`` is
them. ``options``: the form of q (``"q"`` or ``"q_logits"``), C, units, the reduction and
the clipping margin (``None`` with ``q_logits``, where nothing is clipped).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from xentropy import _compensated
from xentropy._divergences import DIVERGENCE_PARAMS, DivergenceResult, DivergenceRows
from xentropy._numerics import LN2, to_units
from xentropy._validation import ROW_SUM_TOLERANCE, InputError
from xentropy.states._base import (
    VERSION,
    Path,
    State,
    check_agree,
    check_at_most,
    check_close,
    check_non_negative,
    inconsistent,
    pair_json,
    read_choice,
    read_clip_margin,
    read_int,
    read_object,
    read_pair,
)
from xentropy.states.losses import STATE_REDUCTIONS

_SUMS = ("entropy", "cross_entropy", "kl_divergence", "js_divergence")


@dataclass(frozen=True)
class DivergenceOptions:
    """What two divergence states must share to merge.

    Attributes:
      input: ``"q"`` or ``"q_logits"``; n_classes: C.
      units; reduction: ``"mean"`` or ``"sum"``.
      epsilon: the clipping margin of q; ``None`` with ``q_logits`` (not clipped).
    """

    input: str
    n_classes: int
    units: str
    reduction: str
    epsilon: float | None


@dataclass(frozen=True, kw_only=True, eq=False)
class DivergenceState(State):
    """State of :func:`xentropy.divergences` (``kind`` ``"divergences"``).

    Attributes:
      n_samples: N, the number of rows.
      entropy, cross_entropy, kl_divergence, js_divergence: compensated sums over the
        rows, in ``options.units``, each ``[hi, lo]``.
    """

    kind: ClassVar[str] = "divergences"
    version: int = field(default=VERSION, init=False)
    options: DivergenceOptions
    n_samples: int
    entropy: np.ndarray
    cross_entropy: np.ndarray
    kl_divergence: np.ndarray
    js_divergence: np.ndarray

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "version": self.version,
            "options": dataclasses.asdict(self.options),
            "n_samples": self.n_samples,
            **{name: pair_json(getattr(self, name)) for name in _SUMS},
        }

    @classmethod
    def read(cls, obj: dict[str, Any]) -> DivergenceState:
        read_object(obj, (), ("kind", "version", "options", "n_samples", *_SUMS))
        path: Path = ("options",)
        o = read_object(obj["options"], path, DivergenceOptions.__dataclass_fields__,
                        ("epsilon",))
        options = DivergenceOptions(
            input=read_choice(o["input"], (*path, "input"), ("q", "q_logits")),
            n_classes=read_int(o["n_classes"], (*path, "n_classes"), low=1),
            units=read_choice(o["units"], (*path, "units"), DIVERGENCE_PARAMS["units"].choices),
            reduction=read_choice(o["reduction"], (*path, "reduction"), STATE_REDUCTIONS),
            epsilon=read_clip_margin(
                o["epsilon"], (*path, "epsilon"), clipped=o["input"] == "q",
                param=DIVERGENCE_PARAMS["epsilon"], what="q",
            ),
        )
        state = cls(
            options=options,
            n_samples=read_int(obj["n_samples"], ("n_samples",)),
            **{name: read_pair(obj[name], (name,)) for name in _SUMS},
        )
        state._check()
        return state

    def _check(self) -> None:
        n = self.n_samples
        units = self.options.units
        for name in _SUMS:
            check_non_negative(getattr(self, name), (name,), name)
            if n == 0 and getattr(self, name)[0] != 0:
                raise inconsistent("expected 0: the state holds no rows", (name,))
        h, ce, kl = (float(getattr(self, name)[0]) for name in _SUMS[:3])
        # A row summing to s has an entropy of at most s log C − s log s: log C, up to
        # the 1e-6 slack of the row sums.
        log_c = math.log(self.options.n_classes)
        slack = ROW_SUM_TOLERANCE * (2 + log_c)
        check_at_most(np.asarray(h), n * to_units(log_c + slack, units), ("entropy",),
                      "expected at most N log C (the entropy of each row is at most log C)")
        check_at_most(self.js_divergence[0], n * to_units(LN2, units), ("js_divergence",),
                      "expected at most N ln 2 (JS is at most ln 2 per row)")
        check_close(ce, h + kl, ("cross_entropy",),
                    "expected entropy + kl_divergence (H(p, q) = H(p) + KL(p‖q) per row)")

    def empty(self) -> DivergenceState:
        zeros: dict[str, Any] = {name: np.zeros(2) for name in _SUMS}
        return dataclasses.replace(self, n_samples=0, **zeros)

    @classmethod
    def merge_all(cls, states: Sequence[Any]) -> DivergenceState:
        check_agree(states)
        sums: dict[str, Any] = {}
        for name in _SUMS:
            pair = _compensated.merge_pairs(np.stack([getattr(s, name) for s in states]))
            if not np.isfinite(pair).all():
                raise InputError("states", f"the sum of {name} of the merged states "
                                 "overflows float64", kind="overflow")
            sums[name] = pair
        return dataclasses.replace(
            states[0], n_samples=sum(s.n_samples for s in states), **sums
        )

    def finalize(self) -> DivergenceResult:
        """The :class:`DivergenceResult` of the rows the state describes (``per_row`` and
        ``gradient`` are ``None``)."""
        n = self.n_samples
        if n == 0:
            raise InputError("states", "the merged states hold no rows: no mean exists",
                             kind="zero_denominator")
        reduced = [float(getattr(self, name)[0]) for name in _SUMS]
        if self.options.reduction == "mean":
            reduced = [value / n for value in reduced]
        return DivergenceResult(
            entropy=reduced[0], cross_entropy=reduced[1], kl_divergence=reduced[2],
            js_divergence=reduced[3], per_row=None, gradient=None, n_samples=n,
            n_classes=self.options.n_classes, units=self.options.units,
            reduction=self.options.reduction, state=self,
        )


def divergence_state(
    rows: DivergenceRows, *, n_classes: int, from_logits: bool, units: str, reduction: str,
    epsilon: float,
) -> DivergenceState:
    """The state of one call's per-row values."""
    if reduction not in STATE_REDUCTIONS:
        raise InputError(
            "return_state",
            "expected reduction 'mean' or 'sum' with return_state: a state holds sums, and "
            "per-row values ('none') do not merge",
            kind="not_applicable",
        )
    sums: dict[str, Any] = {name: _compensated.total(getattr(rows, name)) for name in _SUMS}
    for name, pair in sums.items():
        if not np.isfinite(pair).all():
            raise InputError("q_logits" if from_logits else "q",
                             f"the sum of {name} over the rows overflows float64, so the "
                             "batch has no state (a state holds sums); split the batch",
                             kind="overflow")
    return DivergenceState(
        options=DivergenceOptions(
            input="q_logits" if from_logits else "q", n_classes=n_classes, units=units,
            reduction=reduction, epsilon=None if from_logits else epsilon,
        ),
        n_samples=int(rows.entropy.shape[0]),
        **sums,
    )
