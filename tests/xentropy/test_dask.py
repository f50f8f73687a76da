"""xentropy.dask on a real distributed.LocalCluster (2 worker processes) and on threads.

The oracle is the in-memory library on the concatenated data (itself checked against
PyTorch, scikit-learn, ... in the other test modules), plus a SciPy log-softmax for the
loss: 10^6 rows in 17 uneven chunks give the same counts exactly and every statistic
within 1e-12 relative.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import dask
import dask.array as da
import dask.dataframe as dd
import distributed
import numpy as np
import pandas as pd
import pytest
import scipy.special

import xentropy
import xentropy.dask
from tests.xentropy.test_states import assert_same
from xentropy.calibration import fit_temperature

N_CLASSES = 10
#: 17 uneven chunks of 10^6 rows in all, one of a single row.
CHUNKS = (1, 3, 7, 33_333, 45_000, 50_000, 55_555, 64_000, 70_000, 80_000, 90_000, 96_000,
          99_999, 100_000, 123_456, 2, 92_644)
assert len(CHUNKS) == 17 and sum(CHUNKS) == 10**6
#: 10^5 rows in 4 uneven chunks, for the temperature fit's passes.
SMALL = (1, 20_000, 33_333, 46_666)


def _block(i: int, n: int, what: str, delay: float = 0.0) -> np.ndarray:
    """Chunk ``i`` (``n`` rows) of the test data, made where the task runs (no 80 MB graph)."""
    time.sleep(delay)  # makes tasks last long enough to kill a worker among them
    rng = np.random.default_rng([17, i, len(what)])
    if what == "labels":
        return rng.integers(0, N_CLASSES, size=n)
    if what == "sampled_labels":
        # Sampled from softmax(logits / 2.5) (Gumbel-max): a temperature near 2.5 to fit.
        z = _block(i, n, "logits")
        return (z + 2.5 * rng.gumbel(size=z.shape)).argmax(axis=1)
    if what == "weights":
        return rng.exponential(size=n)
    return rng.normal(size=(n, N_CLASSES)) * (2.5 if what == "logits" else 1.0)


def _frame(i: int, n: int) -> Any:
    """Chunk ``i`` as a pandas DataFrame: columns p0..p9, label, weight."""
    import pandas as pd

    frame = pd.DataFrame(softmax(_block(i, n, "logits")), columns=COLUMNS)
    frame["label"] = _block(i, n, "sampled_labels")
    frame["weight"] = _block(i, n, "weights")
    return frame


COLUMNS = [f"p{k}" for k in range(N_CLASSES)]


def dask_data(what: str, chunks: tuple[int, ...] = CHUNKS, delay: float = 0.0) -> Any:
    shape = (N_CLASSES,) if what in ("logits", "q_logits") else ()
    dtype = np.int64 if what.endswith("labels") else np.float64
    return da.concatenate([
        da.from_delayed(dask.delayed(_block, pure=True)(i, n, what, delay), shape=(n, *shape),
                        dtype=dtype)
        for i, n in enumerate(chunks)
    ])


def numpy_data(what: str, chunks: tuple[int, ...] = CHUNKS) -> np.ndarray:
    return np.concatenate([_block(i, n, what) for i, n in enumerate(chunks)])


def softmax(z: Any) -> Any:
    """Row softmax (NumPy: the workers need not import SciPy)."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", memory_limit=None) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def dask_client(cluster: Any) -> Iterator[Any]:
    with distributed.Client(cluster) as client:  # the default scheduler of this module
        yield client


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    out = {what: numpy_data(what) for what in ("logits", "labels", "weights", "q_logits")}
    out["probabilities"] = softmax(out["logits"])
    return out


@pytest.fixture(scope="module")
def whole(data: dict[str, np.ndarray]) -> dict[str, Any]:
    """The in-memory answers on the concatenated data."""
    p, y, w = data["probabilities"], data["labels"], data["weights"]
    return {
        "calibration": xentropy.calibration_report(p, y, sample_weights=w, n_bins=15),
        "loss": xentropy.softmax_cross_entropy_with_integer_labels(
            data["logits"], y, label_smoothing=0.1, units="bits"),
        "divergences": xentropy.divergences(p, q_logits=data["q_logits"]),
    }


def _dask_answers() -> dict[str, Any]:
    z = dask_data("logits")
    # Made once (on the active scheduler) for the three reductions.
    z, p, y, w, q = dask.persist(z, z.map_blocks(softmax), dask_data("labels"),
                                 dask_data("weights"), dask_data("q_logits"))
    return {
        "calibration": xentropy.dask.calibration_report(p, y, sample_weights=w, n_bins=15),
        "loss": xentropy.dask.softmax_cross_entropy_with_integer_labels(
            z, y, label_smoothing=0.1, units="bits"),
        "divergences": xentropy.dask.divergences(p, q_logits=q),
    }


def _assert_whole(answers: dict[str, Any], whole: dict[str, Any]) -> None:
    for name, exact in whole.items():
        got = answers[name]
        assert type(got) is type(exact)
        assert got.state is not None  # a finalized result, with the state it comes from
        bounds = {a.statistic: a.error_bound for a in getattr(got, "approximate", None) or ()}
        assert set(bounds) == ({"ace"} if name == "calibration" else set())
        assert_same(exact, got, approximate=bounds, abs_tol=1e-13)
    calibration = answers["calibration"]
    assert calibration.n_samples == 10**6
    assert [b.count for b in calibration.bins] == [b.count for b in whole["calibration"].bins]


def test_the_cluster_gives_the_in_memory_answer(cluster: Any, dask_client: Any,
                                                whole: dict[str, Any],
                                                data: dict[str, np.ndarray]) -> None:
    # Through scheduler("tcp://..."), the way `--scheduler tcp://HOST:PORT` connects.
    with xentropy.dask.scheduler(cluster.scheduler_address) as client:
        assert isinstance(client, distributed.Client)
        answers = _dask_answers()
    _assert_whole(answers, whole)
    # An oracle that is not the library: SciPy's log-softmax (label smoothing 0.1, bits).
    log_p = scipy.special.log_softmax(data["logits"], axis=1)
    rows = np.arange(10**6)
    per_sample = -(0.9 * log_p[rows, data["labels"]] + 0.1 * log_p.mean(axis=1)) / math.log(2)
    assert answers["loss"].loss == pytest.approx(per_sample.mean(), rel=1e-12)


def test_threads_give_the_in_memory_answer(dask_client: Any, whole: dict[str, Any]) -> None:
    with xentropy.dask.scheduler("threads"):
        assert dask.base.get_scheduler() is dask.threaded.get  # not the cluster
        _assert_whole(_dask_answers(), whole)


def test_a_dask_dataframe_gives_the_in_memory_answer(dask_client: Any) -> None:
    parts = (5, 0, 1, 20_000, 7_777, 12_345)  # an empty partition, a partition of one row
    frame = pd.concat([_frame(i, n) for i, n in enumerate(parts)], ignore_index=True)
    exact = xentropy.calibration_report(frame[COLUMNS].to_numpy(), frame["label"].to_numpy(),
                                        sample_weights=frame["weight"].to_numpy())
    df = dd.from_delayed([dask.delayed(_frame)(i, n) for i, n in enumerate(parts)],
                         meta=_frame(0, 0))
    got = xentropy.dask.calibration_report(df[COLUMNS], df["label"], sample_weights=df["weight"])
    bounds = {a.statistic: a.error_bound for a in got.approximate}
    assert_same(exact, got, approximate=bounds, abs_tol=1e-13)
    assert got.n_samples == sum(parts)


def test_temperature_scaling_by_map_reduce_equals_the_in_memory_fit(dask_client: Any) -> None:
    z, y = numpy_data("logits", SMALL), numpy_data("sampled_labels", SMALL)
    exact = xentropy.calibration_report(logits=z, labels=y, fit_temperature=True)
    # One pass per Newton step over the blocks: persist once, as on a real cluster.
    logits, labels = dask_client.persist([dask_data("logits", SMALL),
                                          dask_data("sampled_labels", SMALL)])
    got = xentropy.dask.calibration_report(logits=logits, labels=labels, fit_temperature=True)
    fit, expected = got.temperature, exact.temperature
    assert fit is not None and expected is not None and fit.note is None
    assert 2 < fit.temperature < 3  # the labels were sampled at T = 2.5: a real fit
    assert abs(fit.temperature - expected.temperature) <= 1e-9 * expected.temperature
    for name in ("nll_before", "nll_after", "ece_before", "ece_after"):
        assert getattr(fit, name) == pytest.approx(getattr(expected, name), rel=1e-12), name
    assert fit.nll_after < fit.nll_before
    bounds = {a.statistic: a.error_bound for a in got.approximate}
    assert_same(exact, got, approximate=bounds, abs_tol=1e-13)


def test_weighted_binary_temperature_with_a_class_axis_in_chunks(dask_client: Any) -> None:
    rng = np.random.default_rng(5)
    z = rng.normal(size=(5000, 4)) * 4
    y = (rng.random(5000) < 0.3).astype(int)
    w = rng.exponential(size=5000)
    z1 = z[:, 0] + y  # binary logits
    chunks = (1000, 0, 2500, 1500)  # an empty chunk is skipped
    t, _ = xentropy.dask.fit_temperature(da.from_array(z1, chunks=(chunks,)),
                                         da.from_array(y, chunks=(chunks,)),
                                         sample_weights=da.from_array(w, chunks=(chunks,)))
    assert abs(t - fit_temperature(z1, y, sample_weights=w)[0]) <= 1e-9 * t
    # The class axis split in two chunks is rechunked into one.
    got = xentropy.dask.calibration_report(logits=da.from_array(z, chunks=(chunks, 2)),
                                           labels=da.from_array(y, chunks=(chunks,)),
                                           binning="quantile", n_bins=10)
    exact = xentropy.calibration_report(logits=z, labels=y, binning="quantile", n_bins=10)
    bounds = {a.statistic: a.error_bound for a in got.approximate}
    assert set(bounds) == {"ace", "ece", "mce", "rmsce", "bins", "per_class.ece"}
    assert_same(exact, got, approximate=bounds, abs_tol=1e-13)


def test_errors_name_the_row_of_the_whole_array(dask_client: Any) -> None:
    y = np.zeros(1000, dtype=int)
    y[737] = 12
    z = np.zeros((1000, 3))
    # Raised in a worker process, pickled back with its field and position.
    with pytest.raises(xentropy.InputError) as error:
        xentropy.dask.softmax_cross_entropy_with_integer_labels(
            da.from_array(z, chunks=300), da.from_array(y, chunks=300))
    assert (error.value.field, error.value.position) == ("labels", (737,))
    with pytest.raises(xentropy.InputError) as error:
        xentropy.dask.softmax_cross_entropy_with_integer_labels(
            da.from_array(z, chunks=300), da.from_array(y[:999], chunks=300))
    assert error.value.field == "labels" and error.value.kind == "shape_mismatch"
    for option in ({"reduction": "none"}, {"return_gradient": True}):
        with pytest.raises(xentropy.InputError) as error:
            xentropy.dask.divergences(da.from_array(z + 1 / 3, chunks=300),
                                      q_logits=da.from_array(z, chunks=300), **option)
        assert error.value.field == next(iter(option))


def test_a_partition_with_every_label_ignored_under_pytorch(dask_client: Any) -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(size=(900, 5))
    y = rng.integers(0, 5, size=900)
    y[:300] = -100  # the whole first chunk: its own mean is undefined in PyTorch
    got = xentropy.dask.softmax_cross_entropy_with_integer_labels(
        da.from_array(z, chunks=300), da.from_array(y, chunks=300), convention="pytorch")
    exact = xentropy.softmax_cross_entropy_with_integer_labels(z, y, convention="pytorch")
    assert got.loss == pytest.approx(exact.loss, rel=1e-12)


def test_tree_merge_shapes() -> None:
    parts = [xentropy.divergences([[0.5, 0.5]] * (i + 1), [[0.1, 0.9]] * (i + 1),
                                  return_state=True).state for i in range(30)]
    for split_every in (2, 3, 8, 64):
        merged = xentropy.dask.tree_merge([dask.delayed(s) for s in parts],
                                          split_every=split_every).compute(scheduler="sync")
        assert merged.n_samples == sum(range(1, 31))
    with pytest.raises(ValueError, match="split_every"):
        xentropy.dask.tree_merge(parts, split_every=1)


def test_a_worker_killed_mid_computation(cluster: Any, dask_client: Any,
                                         data: dict[str, np.ndarray],
                                         whole: dict[str, Any]) -> None:
    """Last in the module: it closes one of the two workers (then starts another)."""
    chunks = (12_500,) * 6
    z, y = numpy_data("logits", chunks), numpy_data("labels", chunks)
    exact = xentropy.softmax_cross_entropy_with_integer_labels(z, y, label_smoothing=0.1)
    answer: dict[str, Any] = {}

    def run() -> None:
        with xentropy.dask.scheduler(cluster.scheduler_address):
            answer["loss"] = xentropy.dask.softmax_cross_entropy_with_integer_labels(
                dask_data("logits", chunks, delay=0.25), dask_data("labels", chunks),
                label_smoothing=0.1)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    busy: list[str] = []
    while not busy and time.monotonic() < deadline:
        busy = [address for address, keys in dask_client.processing().items() if keys]
        time.sleep(0.02)
    assert busy, "no task started"
    name = next(n for n, w in cluster.workers.items() if w.worker_address == busy[0])
    cluster.sync(cluster.workers[name].close)
    assert len(dask_client.scheduler_info()["workers"]) == 1
    thread.join(60)
    assert not thread.is_alive()
    assert_same(exact, answer["loss"], abs_tol=1e-13)
    cluster.scale(2)
