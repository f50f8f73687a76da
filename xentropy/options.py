"""Loss options as objects: one constraint table, one frozen dataclass per group.

Every option of the loss functions is declared once, as a row of a constraint table
(:data:`CATEGORICAL_PARAMS`, :data:`BINARY_PARAMS`): its kind, default, bounds or allowed
values, and meaning. The library validates against it, and the HTTP schema's fields are
generated from it. A validated set of options travels through the core as one
:class:`LossOptions`, made of one frozen dataclass per group, and the response echoes it.

Adding an option: a row in the table and a field in its group (this file), and its use in
the kernel (``losses/categorical.py`` or ``losses/binary.py``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from xentropy._numerics import FLOAT64_EPS, UNITS
from xentropy._validation import InputError, Param

REDUCTIONS = ("mean", "sum", "none")
NORMALIZATIONS = ("weights", "samples")
CONVENTIONS = ("xentropy", "pytorch", "keras", "sklearn")

# --------------------------------------------------------------------------- the table

_REDUCTION = Param(
    "choice", "mean", '`"mean"`, `"sum"` or `"none"` (per-sample values only), as in PyTorch.',
    choices=REDUCTIONS,
)
_NORMALIZATION = Param(
    "choice", "weights",
    '`"weights"`: `"mean"` divides by the sum of the effective weights of the counted '
    "samples (PyTorch index-target mode, scikit-learn `sample_weight`). `\"samples\"`: by the "
    "number of counted samples (Keras `sum_over_batch_size`). Note: with soft `targets`, "
    "PyTorch divides by N; we divide by Σ sample_weight × Σ_c target_c × class_weight_c, "
    "which is N without weights.",
    choices=NORMALIZATIONS,
)
_UNITS = Param(
    "choice", "nats", '`"nats"` (natural log) or `"bits"` (log base 2): losses and gradients '
    "alike.", choices=UNITS,
)
_EPSILON = Param(
    "number", FLOAT64_EPS,
    "With `probabilities`: clip to [epsilon, 1 - epsilon] before the log; in (0, 0.5). "
    "Default: the float64 machine epsilon (1e-7 under the Keras convention). The gradient "
    "of a clipped entry is 0.",
    low=0.0, high=0.5, low_open=True, high_open=True,
)
_FOCAL_GAMMA = Param(
    "number", 0.0, "Focal loss exponent γ ≥ 0 (Lin et al. 2017); 0 is plain cross-entropy.",
    low=0.0,
)
_RETURN_GRADIENT = Param(
    "boolean", False,
    "Include `gradient`: the derivative of the reduced loss (with `\"none\"`: of the sum of "
    "`losses`) with respect to the input that was sent.",
)
_CONVENTION = Param(
    "choice", "xentropy",
    "A named bundle of defaults and behaviours that reproduces one library's usual call in "
    'float64: `"xentropy"` (the default), `"pytorch"`, `"keras"` or `"sklearn"`. Options '
    "sent explicitly win over the convention's defaults; an option the library lacks is a "
    "422 `not_in_convention`; `resolved` in the response shows every value it set.",
    choices=CONVENTIONS,
)
_RETURN_STATE = Param(
    "boolean", False,
    "Include `state`: the sufficient statistics of the batch (counts and compensated sums, "
    "of fixed size) that `POST /v1/merge` combines with those of other batches into the "
    'answer for all of them. Needs reduction `"mean"` or `"sum"`.',
)
_SAMPLE_WEIGHTS = Param("array", None, "N non-negative sample weights.", low=0.0)
#: The options both families share, after their own.
_SHARED = {
    "reduction": _REDUCTION,
    "normalization": _NORMALIZATION,
    "epsilon": _EPSILON,
    "units": _UNITS,
    "return_gradient": _RETURN_GRADIENT,
    "return_state": _RETURN_STATE,
    "convention": _CONVENTION,
}

#: The categorical losses' options (``/v1/losses/categorical``).
CATEGORICAL_PARAMS: dict[str, Param] = {
    "class_weights": Param(
        "array", None, "C non-negative weights, one per class (PyTorch `weight`).", low=0.0
    ),
    "sample_weights": _SAMPLE_WEIGHTS,
    "ignore_index": Param(
        "integer", None,
        "With `labels`: samples with this label are left out (PyTorch `ignore_index`; "
        "-100 under the PyTorch convention).",
        low=-(2**63), high=2**63 - 1,
    ),
    "label_smoothing": Param(
        "number", 0.0, "Uniform smoothing: targets become (1 - ε) t + ε/C (PyTorch semantics).",
        low=0.0, high=1.0, high_open=True,
    ),
    "focal_gamma": _FOCAL_GAMMA,
    "focal_alpha": Param(
        "array", None,
        "Focal class balancing factor α ≥ 0: one number, or C numbers; null: none "
        "(0.25 under the Keras convention).",
        low=0.0, ranks=(0, 1),
    ),
    **_SHARED,
}

#: The binary / multi-label losses' options (``/v1/losses/binary``).
BINARY_PARAMS: dict[str, Param] = {
    "pos_weight": Param(
        "array", None,
        "Weight of the positive term (PyTorch `pos_weight`), ≥ 0: one number or C.", low=0.0,
        ranks=(0, 1),
    ),
    "class_weights": Param(
        "array", None, "C non-negative per-column weights (N×C input only).", low=0.0
    ),
    "sample_weights": _SAMPLE_WEIGHTS,
    "mask": Param(
        "array", None,
        "Same shape as the input, 0/1 (or booleans): 0 leaves an element out.",
        low=0.0, high=1.0, ranks=(1, 2), element="mask",
    ),
    "label_smoothing": Param(
        "number", 0.0, "Targets move toward 0.5: t (1 - ε) + ε/2 (Keras semantics).",
        low=0.0, high=1.0, high_open=True,
    ),
    "focal_gamma": Param(
        "number", 0.0, "Binary focal loss exponent γ ≥ 0; 0: plain BCE.", low=0.0
    ),
    "focal_alpha": Param(
        "array", None,
        "Weight of positives, 1 - alpha for negatives (RetinaNet), in [0, 1]: one number "
        "or C; null: no balancing (0.25 under the PyTorch convention's focal loss).",
        low=0.0, high=1.0, ranks=(0, 1),
    ),
    **_SHARED,
}

PARAMS = {"categorical": CATEGORICAL_PARAMS, "binary": BINARY_PARAMS}

# --------------------------------------------------------------------------- the groups


@dataclass(frozen=True)
class Reduction:
    """How per-sample losses are combined and in which units."""

    reduction: str = "mean"
    normalization: str = "weights"
    units: str = "nats"


@dataclass(frozen=True)
class Smoothing:
    """Label smoothing ε: uniform ε/C (categorical) or toward 0.5 (binary)."""

    label_smoothing: float = 0.0


@dataclass(frozen=True)
class Focal:
    """Focal loss (Lin et al. 2017): modulating exponent γ and balancing factor α."""

    focal_gamma: float = 0.0
    focal_alpha: Any = None

    @property
    def active(self) -> bool:
        return self.focal_gamma > 0 or self.focal_alpha is not None


@dataclass(frozen=True)
class Weights:
    """Per-class, per-sample and per-element weights, and what is left out.

    Arrays as given (their shapes depend on the data: the kernels check them).
    """

    class_weights: Any = None
    sample_weights: Any = None
    ignore_index: int | None = None
    pos_weight: Any = None
    mask: Any = None


@dataclass(frozen=True)
class Clipping:
    """Probabilities are clipped to [epsilon, 1 - epsilon] before the log; ``None``: never."""

    epsilon: float | None = FLOAT64_EPS


@dataclass(frozen=True)
class Behaviour:
    """How a reproduced library computes where libraries differ (set by conventions only).

    Attributes:
      renormalize: divide probability rows by their sum before clipping (Keras).
      clip_after_link: clip the softmax/sigmoid of logits too (Keras focal, scikit-learn).
      one_minus: compute log(1 - p) and the focal 1 - p_t as the library writes them,
        from a rounded 1 - p, instead of the exact log1p / softplus forms.
      log_floor: lower bound of each log term (PyTorch ``binary_cross_entropy``: -100).
      pytorch_bce_backward: PyTorch's derivative of ``binary_cross_entropy``,
        (p - t) / max(p (1 - p), 1e-12), which ignores the log clamp.
      sample_mean: binary N×C losses are averaged over the last axis per sample (Keras).
      library: the library's name, for messages; ``None`` for xentropy's own convention.
      empty_mean: what the library returns for a mean over nothing (``None``: 0, as
        xentropy answers; else a 422 ``undefined_in_convention`` says it returns this).
      nan_gradient_at_zero: autograd of an unclipped log gives 0/0 at p = 0 (PyTorch).
      hard_targets: binary targets must be 0/1 labels of shape-N input, as
        scikit-learn's ``log_loss`` takes them.
      torch_logits: PyTorch's ``binary_cross_entropy_with_logits`` expression,
        ``(1 - t) x - (1 + (pw - 1) t) log_sigmoid(x)``, evaluated as PyTorch writes it
        (it cancels for t = 0 and x << 0, and that is the number PyTorch gives).
    """

    renormalize: bool = False
    clip_after_link: bool = False
    one_minus: bool = False
    log_floor: float | None = None
    pytorch_bce_backward: bool = False
    sample_mean: bool = False
    library: str | None = None
    empty_mean: str | None = None
    nan_gradient_at_zero: bool = False
    hard_targets: bool = False
    torch_logits: bool = False


_GROUPS = {
    "reduction": Reduction, "smoothing": Smoothing, "focal": Focal, "weights": Weights,
    "clipping": Clipping,
}
_GROUP_OF = {f.name: group for group, cls in _GROUPS.items() for f in dataclasses.fields(cls)}


@dataclass(frozen=True)
class LossOptions:
    """Every option of one loss call, validated, by group; built by :meth:`build`.

    Attributes:
      family: ``"categorical"`` or ``"binary"``.
      convention: the convention that set the defaults and the behaviour.
      reduction, smoothing, focal, weights, clipping: the option groups.
      behaviour: the reproduced library's numerics (see :class:`Behaviour`).
      return_gradient: whether the gradient is computed.
      return_state: whether the result carries its state (:mod:`xentropy.states`).
      resolved: the effective value of every option the convention set, by name.
    """

    family: str
    convention: str = "xentropy"
    reduction: Reduction = field(default_factory=Reduction)
    smoothing: Smoothing = field(default_factory=Smoothing)
    focal: Focal = field(default_factory=Focal)
    weights: Weights = field(default_factory=Weights)
    clipping: Clipping = field(default_factory=Clipping)
    behaviour: Behaviour = field(default_factory=Behaviour)
    return_gradient: bool = False
    return_state: bool = False
    resolved: dict[str, Any] = field(default_factory=dict)
    #: Options (flat names) whose effective value differs from the table's default, and
    #: ``"behaviour.<field>"`` for each library behaviour that is not xentropy's.
    changed: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls, family: str, given: dict[str, Any], *, from_logits: bool, labelled: bool
    ) -> LossOptions:
        """Validate the options ``given`` (name -> value, only those the caller set) for
        one call, complete them with the convention's defaults, and group them.

        Args:
          family: ``"categorical"`` or ``"binary"``.
          given: the options set explicitly; a ``None`` value counts as not set.
          from_logits: the input is logits (else probabilities).
          labelled: the targets are integer labels (categorical only).

        Raises:
          TypeError: for a name that is not an option of ``family`` (as Python does for
            an unknown keyword argument).
          InputError: for a value that breaks its rule, or an option the convention's
            library does not have (``not_in_convention``).
        """
        key = _cache_key(family, given, from_logits, labelled)
        cached = _BUILT.get(key) if key is not None else None
        if cached is not None:
            return cached
        built = cls._build(family, given, from_logits=from_logits, labelled=labelled)
        if key is not None and len(_BUILT) < _MAX_BUILT:
            _BUILT[key] = built
        return built

    @classmethod
    def _build(
        cls, family: str, given: dict[str, Any], *, from_logits: bool, labelled: bool
    ) -> LossOptions:
        from xentropy.conventions import describe, resolve  # they build on the table above

        params = PARAMS[family]
        unknown = sorted(set(given) - set(params))
        if unknown:
            raise TypeError(f"unknown {family} loss option(s): {', '.join(unknown)}")
        convention = params["convention"].check(
            given.get("convention", "xentropy"), "convention"
        )
        # Scalars are checked before the convention looks at them, so that an invalid
        # value is reported as such whatever the convention.
        used = {
            name: params[name].check(value, name) for name, value in given.items()
            if value is not None and name != "convention"
        }
        # The convention refuses the options that would do something its library cannot
        # (a value other than the table's default); every explicit value wins over the
        # convention's own defaults.
        departures = {
            name: value for name, value in used.items()
            if not _same(value, params[name].default)
        }
        defaults, behaviour = resolve(
            convention, family, departures, from_logits=from_logits, labelled=labelled
        )
        values = {name: param.default for name, param in params.items()}
        values.update(defaults)
        values.update(used)
        if values["return_state"] and values["reduction"] == "none":
            raise InputError(
                "return_state",
                "expected reduction 'mean' or 'sum' with return_state: a state holds sums, "
                "and per-sample values ('none') do not merge",
                kind="not_applicable",
            )
        groups: dict[str, dict[str, Any]] = {group: {} for group in _GROUPS}
        for name, value in values.items():
            if name in _GROUP_OF:
                groups[_GROUP_OF[name]][name] = value
        changed = {
            name for name, value in values.items()
            if name != "convention" and not _same(value, params[name].default)
        }
        changed.update(
            f"behaviour.{f.name}" for f in dataclasses.fields(Behaviour)
            if getattr(behaviour, f.name) != f.default
        )
        return cls(
            family=family,
            convention=convention,
            behaviour=behaviour,
            changed=frozenset(changed),
            return_gradient=bool(values["return_gradient"]),
            return_state=bool(values["return_state"]),
            resolved=describe(family, values, behaviour, from_logits=from_logits,
                              labelled=labelled),
            **{group: _GROUPS[group](**kwargs) for group, kwargs in groups.items()},
        )

    def value(self, name: str) -> Any:
        """The effective value of the flat option ``name`` (e.g. ``"focal_gamma"``)."""
        if name == "return_gradient":
            return self.return_gradient
        if name == "return_state":
            return self.return_state
        if name == "convention":
            return self.convention
        return getattr(getattr(self, _GROUP_OF[name]), name)


#: Options built from scalars only (no arrays), by call: most calls repeat a handful of
#: option sets, and a LossOptions is immutable, so it is built once per set.
_BUILT: dict[tuple[Any, ...], LossOptions] = {}
_MAX_BUILT = 1024


def _cache_key(
    family: str, given: dict[str, Any], from_logits: bool, labelled: bool
) -> tuple[Any, ...] | None:
    """A hashable key for ``given``, or None when it holds an array (or anything else
    whose value is not its identity). The type is part of the key: True == 1, but only
    one of them is a valid boolean."""
    items = []
    for name, value in given.items():
        if not isinstance(value, str | bool | int | float | type(None)):
            return None
        items.append((name, type(value), value))
    return (family, from_logits, labelled, *sorted(items))


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    try:
        return bool(a == b)
    except ValueError:  # an array compared with a scalar default
        return False


def not_in_convention(name: str, library: str, why: str) -> InputError:
    """The error for an option that the convention's library does not have."""
    return InputError(
        name, f"{library} has no equivalent of {name} here ({why}); use convention "
        "'xentropy' or leave the option out", kind="not_in_convention",
    )
