"""`python -m bench evaluate`: `xentropy evaluate` over an N×10 float32 .npy (losses and
calibration with 15 bins) against scikit-learn (`log_loss` + `calibration_curve` + a hand
ECE) and torchmetrics' `MulticlassCalibrationError` on the same data in memory.

Each contender runs in a child process of its own, on one core (`taskset -c 0` where it
exists, one BLAS/OpenMP/torch thread), so that its peak RSS (VmHWM, which starts afresh
at exec) is its own; the time is the computation's (the baselines' loading excluded:
they are "in memory"). Figures are ratios to the baselines of the same run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import numpy as np

from bench._util import ROOT

CLASSES = 10
BINS = 15
_REPORT = (
    "import json, sys\n"
    "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
    "print(json.dumps({'seconds': seconds, 'cpu': cpu, "
    "'peak_mib': int(hwm.split()[1]) / 1024}))\n"
)
_LOAD = (
    "import numpy as np\n"
    "p = np.load({p!r}); y = np.load({y!r})\n"
)
_START = "start = time.perf_counter(); cpu = time.process_time()\n"
_STOP = "seconds = time.perf_counter() - start; cpu = time.process_time() - cpu\n"
CONTENDERS = {
    "xentropy evaluate": (
        "import time, app.cli\n" + _START +
        "rc = app.cli.main(['evaluate', '--no-progress', '--probabilities', {p!r}, '--labels', "
        "{y!r}, '--report', 'losses,calibration', '--n-bins', '15', '--output', {out!r}])\n"
        + _STOP + "assert rc == 0\n"
    ),
    "scikit-learn": _LOAD + (
        "import time\n"
        "from sklearn.calibration import calibration_curve\n"
        "from sklearn.metrics import log_loss\n" + _START +
        "loss = log_loss(y, p, labels=np.arange(p.shape[1]))\n"
        "conf = p.max(1); correct = (p.argmax(1) == y).astype(np.float64)\n"
        "acc_b, conf_b = calibration_curve(correct, conf, n_bins=15, strategy='uniform')\n"
        "# the hand ECE: bin weights as calibration_curve bins (right-closed, non-empty)\n"
        "edges = np.linspace(0.0, 1.0, 16)\n"
        "counts = np.bincount(np.searchsorted(edges[1:-1], conf), minlength=15)\n"
        "ece = float(np.sum(counts[counts > 0] / len(conf) * np.abs(acc_b - conf_b)))\n"
        + _STOP
    ),
    "torchmetrics": _LOAD + (
        "import time, torch\n"
        "torch.set_num_threads(1)\n"
        "from torchmetrics.classification import MulticlassCalibrationError\n"
        "tp, ty = torch.from_numpy(p), torch.from_numpy(y)\n" + _START +
        "loss = torch.nn.functional.nll_loss(torch.log(tp.double()), ty)\n"
        "ece = MulticlassCalibrationError(num_classes=p.shape[1], n_bins=15, norm='l1')(tp, ty)\n"
        + _STOP
    ),
    "interpreter (import only)": (
        "import numpy, orjson, xentropy, xentropy.cli.evaluate, app.cli\nseconds = cpu = 0.0\n"
    ),
}


def write_data(directory: str, n: int, chunk: int = 1_000_000) -> tuple[str, str]:
    """N×10 float32 probabilities and int64 labels, written a chunk at a time."""
    p_path, y_path = os.path.join(directory, "p.npy"), os.path.join(directory, "y.npy")
    probs = np.lib.format.open_memmap(p_path, "w+", np.float32, (n, CLASSES))
    labels = np.lib.format.open_memmap(y_path, "w+", np.int64, (n,))
    rng = np.random.default_rng(0)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        z = rng.normal(size=(stop - start, CLASSES)) * 2.0
        e = np.exp(z - z.max(1, keepdims=True))
        probs[start:stop] = e / e.sum(1, keepdims=True)
        # labels drawn from the predictions' own distribution (calibrated data)
        u = rng.random((stop - start, 1))
        labels[start:stop] = np.minimum((e.cumsum(1) / e.sum(1, keepdims=True) < u).sum(1),
                                        CLASSES - 1)
    probs.flush()
    labels.flush()
    return p_path, y_path


def _child(code: str) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    out = subprocess.run([*pin, sys.executable, "-c", code + _REPORT], capture_output=True,
                         text=True, cwd=ROOT, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run(quick: bool, rows: int | None = None) -> Iterator[str]:
    n = rows or (1_000_000 if quick else 10_000_000)
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        p, y = write_data(tmp, n)
        out = os.path.join(tmp, "r.json")
        for name, code in CONTENDERS.items():
            try:
                figures[name] = _child(code.format(p=p, y=y, out=out))
            except RuntimeError as error:  # e.g. torchmetrics not installed
                yield f"evaluate: {name} skipped: {str(error).strip().splitlines()[-1]}"
    yield (f"evaluate: {n}x{CLASSES} float32 .npy ({n * CLASSES * 4 / 2**20:.0f} MiB), losses "
           f"+ calibration ({BINS} bins), one core, the command's default chunks")
    base = figures.get("interpreter (import only)", {"peak_mib": 0.0})["peak_mib"]
    for name, f in figures.items():
        yield (f"evaluate: {name:<26} {f['seconds']:7.2f} s ({f['cpu']:6.2f} s CPU)  peak RSS "
               f"{f['peak_mib']:7.0f} MiB ({f['peak_mib'] - base:6.0f} above the interpreter)")
    mine = figures["xentropy evaluate"]
    for name in ("scikit-learn", "torchmetrics"):
        if name in figures:
            f = figures[name]
            yield (f"evaluate: xentropy / {name}: time {mine['seconds'] / f['seconds']:.2f}x "
                   f"(CPU {mine['cpu'] / f['cpu']:.2f}x), peak memory "
                   f"{mine['peak_mib'] / f['peak_mib']:.2f}x (targets: time <= 0.5x "
                   "scikit-learn's, memory <= 0.1x)")
