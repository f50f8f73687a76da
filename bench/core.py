"""Core benchmark: categorical loss + gradient against PyTorch, scikit-learn and memory."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench._util import best_of, row
from xentropy.losses import softmax_cross_entropy_with_integer_labels

SHAPES = [(256, 10), (4096, 1000), (65536, 100)]


def run(quick: bool = False) -> list[str]:
    torch: Any
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # optional: `pip install torch==2.13.0`
        torch = None
    from sklearn.metrics import log_loss

    lines = ["core: categorical loss + gradient from logits (float64, one thread for torch)"]
    for n, c in SHAPES:
        lines += _shape(n, c, 3 if quick else 7, torch, log_loss)
    return lines


def _shape(n: int, c: int, repeat: int, torch: Any, log_loss: Any) -> list[str]:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(n, c))
    y = rng.integers(0, c, n)
    lines = []
    ours = best_of(
        lambda: softmax_cross_entropy_with_integer_labels(z, y, return_gradient=True), repeat
    )
    scratch, grad = np.empty_like(z), np.empty_like(z)

    def floor() -> None:  # read the logits once, write the gradient once
        np.copyto(scratch, z)
        grad[...] = 0.0

    lines.append(row(f"  {n}x{c} loss+grad", ours, best_of(floor, repeat),
                     "memory floor (copy + write)", "target <= 3"))
    if torch is not None:
        import torch.nn.functional as F

        tz = torch.tensor(z, requires_grad=True)
        ty = torch.tensor(y)

        def torch_fwd_bwd() -> None:
            tz.grad = None
            F.cross_entropy(tz, ty).backward()

        lines.append(row(f"  {n}x{c} loss+grad", ours, best_of(torch_fwd_bwd, repeat),
                         "torch cross_entropy fwd+bwd", "target <= 1"))
    else:
        lines.append(f"  {n}x{c}: torch not installed (pip install torch==2.13.0), skipped")
    ours_loss = best_of(lambda: softmax_cross_entropy_with_integer_labels(z, y), repeat)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    labels = np.arange(c)
    lines.append(row(f"  {n}x{c} loss only", ours_loss,
                     best_of(lambda: log_loss(y, p, labels=labels), repeat),
                     "sklearn log_loss (on probs)"))
    return lines
