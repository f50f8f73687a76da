"""xentropy: cross-entropy losses with analytic gradients, calibration and divergences.

Pure NumPy, float64 throughout. Public names follow optax's ``losses`` module: the link
first (``softmax_``/``sigmoid_`` for logits, none for probabilities), then the label form
(``_with_integer_labels`` for class indices); data first, options keyword-only.

>>> import xentropy
>>> round(xentropy.softmax_cross_entropy_with_integer_labels([[2.0, 1.0, 0.1]], [0]).loss, 6)
0.417030
"""

from importlib.metadata import PackageNotFoundError, version

from xentropy._divergences import DivergenceResult, DivergenceRows, divergences
from xentropy._validation import InputError
from xentropy.calibration import (
    Approximation,
    CalibrationBin,
    CalibrationResult,
    ClassCalibration,
    TemperatureFit,
    calibration_report,
    reliability_diagram,
)
from xentropy.losses import (
    LossDiagnostics,
    LossResult,
    binary_cross_entropy,
    categorical_cross_entropy,
    categorical_cross_entropy_with_integer_labels,
    sigmoid_binary_cross_entropy,
    softmax_cross_entropy,
    softmax_cross_entropy_with_integer_labels,
)
from xentropy.options import LossOptions
from xentropy.states import (
    State,
    StateError,
    empty_like,
    finalize,
    merge,
    state,
)
from xentropy.states import from_json as state_from_json

try:
    __version__ = version("xentropy")
except PackageNotFoundError:  # a source tree that was not installed
    __version__ = "0.0.0"

__all__ = [
    "Approximation",
    "CalibrationBin",
    "CalibrationResult",
    "ClassCalibration",
    "DivergenceResult",
    "DivergenceRows",
    "InputError",
    "LossDiagnostics",
    "LossOptions",
    "LossResult",
    "State",
    "StateError",
    "TemperatureFit",
    "__version__",
    "binary_cross_entropy",
    "calibration_report",
    "categorical_cross_entropy",
    "categorical_cross_entropy_with_integer_labels",
    "divergences",
    "empty_like",
    "finalize",
    "merge",
    "reliability_diagram",
    "sigmoid_binary_cross_entropy",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
    "state",
    "state_from_json",
]
