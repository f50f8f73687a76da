"""Conventions: named bundles of defaults and behaviours that reproduce a library's call.

``convention="pytorch" | "keras" | "sklearn"`` gives, in float64, the number that library's
usual call gives for the same data (losses and gradients, relative difference <= 1e-12),
without learning where the libraries disagree; ``"xentropy"`` (the default) is the
documented behaviour of this library. An option set explicitly wins over the convention's
default for it; an option the library does not have is an ``InputError`` of kind
``not_in_convention``. The reference calls:

=========  =====================================================  ==========================
convention categorical                                            binary
=========  =====================================================  ==========================
pytorch    ``F.cross_entropy(logits, y, weight, ignore_index=-100, ``F.binary_cross_entropy``
           label_smoothing)``; probabilities: ``F.nll_loss(         (log clamped at -100),
           torch.log(p), y, weight, ignore_index)``, targets         ``..._with_logits(weight,
           ``-(t log p).sum(1)`` (mean divides by N)                 pos_weight)``; focal:
                                                                     torchvision
                                                                     ``sigmoid_focal_loss``
                                                                     (alpha 0.25, gamma 2)
keras      ``CategoricalCrossentropy`` / ``Sparse...(ignore_class)`` ``BinaryCrossentropy`` /
           / ``CategoricalFocalCrossentropy(alpha=0.25, gamma=2)``, ``BinaryFocal...``; N×C
           ``sum_over_batch_size``; probabilities renormalised and   averaged over the last
           clipped to [1e-7, 1 - 1e-7]                               axis per sample
sklearn    ``log_loss(y, p, sample_weight, normalize, labels)``;     ``log_loss`` on shape-N
           logits through the softmax first                          input
=========  =====================================================  ==========================

>>> import xentropy
>>> r = xentropy.binary_cross_entropy([0.6, 0.4], [1.0, 0.0], convention="keras")
>>> round(r.loss, 6), r.resolved["epsilon"]
(0.510826, 1e-07)
"""

from __future__ import annotations

from typing import Any

from xentropy.options import Behaviour, not_in_convention

KERAS_EPSILON = 1e-7
#: PyTorch's binary_cross_entropy clamps each log term at this value.
PYTORCH_LOG_FLOOR = -100.0
#: torchvision's and Keras' focal defaults.
FOCAL_DEFAULTS = {"focal_alpha": 0.25, "focal_gamma": 2.0}

#: Options every convention takes: how to reduce and report, not what to compute. An
#: explicit ``normalization`` (or any option the convention sets a default for) wins over
#: the convention, and ``resolved`` says so.
_ALWAYS = {"reduction", "normalization", "units", "return_gradient", "return_state"}


def resolve(
    convention: str, family: str, used: dict[str, Any], *, from_logits: bool, labelled: bool
) -> tuple[dict[str, Any], Behaviour]:
    """The defaults and the behaviour a convention sets for one call.

    Args:
      convention: a name from :data:`xentropy.options.CONVENTIONS`.
      family: ``"categorical"`` or ``"binary"``.
      used: the options set explicitly to something other than the table's default.
      from_logits, labelled: the input and target forms.

    Returns:
      ``(defaults, behaviour)``: option values that replace the table's defaults (explicit
      options still win over them), and the library's numerics.

    Raises:
      InputError: ``not_in_convention`` for an option the library does not have.
    """
    if convention == "xentropy":
        return {}, Behaviour()
    rules = _RULES[convention]
    return rules(family, used, from_logits, labelled)


def describe(
    family: str, values: dict[str, Any], behaviour: Behaviour, *, from_logits: bool,
    labelled: bool,
) -> dict[str, Any]:
    """The effective value of every option a convention sets (the response's ``resolved``)."""
    clipped = not from_logits or behaviour.clip_after_link
    epsilon = values["epsilon"] if clipped else None
    if not clipped:
        clipping = "none: logits go through the exact log-softmax / log-sigmoid"
    elif epsilon is None:
        clipping = "none: the log of the probabilities as sent"
        if behaviour.log_floor is not None:
            clipping += f", each log term clamped at {behaviour.log_floor:g}"
    else:
        link = "" if not from_logits else "the softmax or sigmoid of the logits, "
        renorm = "rows renormalised to sum 1, then " if behaviour.renormalize else ""
        clipping = f"{link}{renorm}clipped to [epsilon, 1 - epsilon]"
        if behaviour.log_floor is not None:
            clipping += f", each log term clamped at {behaviour.log_floor:g}"
    alpha = values["focal_alpha"]
    return {
        "normalization": values["normalization"],
        "epsilon": epsilon,
        "clipping": clipping,
        "ignore_index": values.get("ignore_index") if labelled else None,
        "focal_gamma": values["focal_gamma"],
        "focal_alpha": alpha.tolist() if hasattr(alpha, "tolist") else alpha,
        "label_smoothing_form": "(1 - ε) t + ε / C" if family == "categorical"
        else "t (1 - ε) + ε / 2",
        "aggregation": "mean over the last axis per sample" if behaviour.sample_mean
        else "per sample" if family == "categorical" else "per element",
    }


def _refuse(used: dict[str, Any], allowed: set[str], library: str, why: str) -> None:
    for name in sorted(set(used) - allowed - _ALWAYS):
        raise not_in_convention(name, library, why)


def _focal_used(used: dict[str, Any]) -> bool:
    return "focal_gamma" in used or "focal_alpha" in used


def _pytorch(
    family: str, used: dict[str, Any], from_logits: bool, labelled: bool
) -> tuple[dict[str, Any], Behaviour]:
    library = "PyTorch"
    if family == "categorical":
        if from_logits:
            allowed = {"class_weights", "label_smoothing"}
            call = "F.cross_entropy"
        else:
            allowed = {"class_weights"}
            call = "F.nll_loss(torch.log(p), ...)" if labelled else "-(t * log p).sum(1)"
        if labelled:
            allowed.add("ignore_index")
        _refuse(used, allowed, library, f"{call} has no such argument")
        # Index targets: "mean" divides by Σ weight[y] of the counted samples; probability
        # targets: by N, whatever the weights.
        normalization = "weights" if labelled else "samples"
        defaults: dict[str, Any] = {"normalization": normalization}
        if labelled:
            defaults["ignore_index"] = -100
        behaviour = Behaviour(
            library=library,
            empty_mean="nan" if labelled else None,
            nan_gradient_at_zero=not from_logits,
        )
        if not from_logits:
            defaults["epsilon"] = None  # torch.log(p): no clipping
        return defaults, behaviour
    # binary
    if _focal_used(used):
        if not from_logits:
            raise not_in_convention(
                "focal_gamma" if "focal_gamma" in used else "focal_alpha", library,
                "torchvision's sigmoid_focal_loss takes logits",
            )
        _refuse(used, {"focal_gamma", "focal_alpha"}, library,
                "torchvision's sigmoid_focal_loss(inputs, targets, alpha, gamma, reduction) "
                "has no such argument")
        return {**FOCAL_DEFAULTS, "normalization": "samples"}, Behaviour(
            library=library, one_minus=True, torch_logits=True
        )
    allowed = {"class_weights", "sample_weights"}
    if from_logits:
        allowed.add("pos_weight")
    call = "F.binary_cross_entropy_with_logits" if from_logits else "F.binary_cross_entropy"
    _refuse(used, allowed, library, f"{call} has no such argument")
    defaults = {"normalization": "samples"}
    if from_logits:
        return defaults, Behaviour(library=library, torch_logits=True)
    defaults["epsilon"] = None  # no clipping: each log term is clamped at -100 instead
    return defaults, Behaviour(
        library=library, log_floor=PYTORCH_LOG_FLOOR, pytorch_bce_backward=True
    )


def _keras(
    family: str, used: dict[str, Any], from_logits: bool, labelled: bool
) -> tuple[dict[str, Any], Behaviour]:
    library = "Keras"
    allowed = {"sample_weights", "label_smoothing", "focal_gamma", "focal_alpha", "epsilon"}
    if family == "categorical" and labelled:
        allowed.add("ignore_index")
        if "ignore_index" in used and ("label_smoothing" in used or _focal_used(used)):
            raise not_in_convention(
                "label_smoothing" if "label_smoothing" in used else "focal_gamma", library,
                "only SparseCategoricalCrossentropy has ignore_class (ignore_index), and it "
                "has neither label smoothing nor a focal term",
            )
    _refuse(used, allowed, library, "its losses have no such argument (class weights go "
            "into sample_weight in Keras)")
    defaults: dict[str, Any] = {"normalization": "samples", "epsilon": KERAS_EPSILON}
    focal = _focal_used(used)
    if focal:
        defaults["focal_gamma"] = FOCAL_DEFAULTS["focal_gamma"]
        if family == "categorical":  # CategoricalFocalCrossentropy always applies alpha
            defaults["focal_alpha"] = FOCAL_DEFAULTS["focal_alpha"]
    if family == "categorical":
        return defaults, Behaviour(
            library=library,
            renormalize=not from_logits or focal,
            clip_after_link=focal,
            one_minus=focal,
        )
    return defaults, Behaviour(
        library=library, one_minus=True, clip_after_link=focal, sample_mean=True
    )


def _sklearn(
    family: str, used: dict[str, Any], from_logits: bool, labelled: bool
) -> tuple[dict[str, Any], Behaviour]:
    library = "scikit-learn"
    _refuse(used, {"sample_weights"}, library,
            "log_loss(y_true, y_pred, normalize, sample_weight, labels) has no such argument")
    if family == "categorical" and not labelled:
        raise not_in_convention(
            "targets", library,
            "log_loss(y_true, ..., labels=range(C)) takes class labels, not target rows",
        )
    return {"normalization": "weights"}, Behaviour(
        library=library, clip_after_link=True, one_minus=True, hard_targets=True,
        empty_mean="a ValueError (sample weights must contain a non-zero number)",
    )


_RULES = {"pytorch": _pytorch, "keras": _keras, "sklearn": _sklearn}
