"""Cross-entropy losses and their analytic gradients: the categorical (softmax) family and
the binary / multi-label (sigmoid) family.

Naming follows optax's ``losses`` module: the link comes first (``softmax_`` /
``sigmoid_`` for logits, none for probabilities), then the label form
(``_with_integer_labels`` for class indices). Data come first, options are keyword-only
(:mod:`xentropy.options`).
"""

from xentropy.losses._common import LossDiagnostics, LossResult
from xentropy.losses.binary import binary_cross_entropy, sigmoid_binary_cross_entropy
from xentropy.losses.categorical import (
    categorical_cross_entropy,
    categorical_cross_entropy_with_integer_labels,
    softmax_cross_entropy,
    softmax_cross_entropy_with_integer_labels,
)

__all__ = [
    "LossDiagnostics",
    "LossResult",
    "binary_cross_entropy",
    "categorical_cross_entropy",
    "categorical_cross_entropy_with_integer_labels",
    "sigmoid_binary_cross_entropy",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
]
