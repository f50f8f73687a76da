"""xentropy on Dask: states per partition, a tree reduction, one finalize.

``import xentropy`` never loads Dask; this module imports it inside its functions, on use
(``pip install xentropy[dask]``). It brings no scheduler of its own: the computations run
on whatever Dask scheduler is active (threads by default, a ``distributed.Client`` if one
is open, or the one :func:`scheduler` sets).

Each function here takes the arguments of the in-memory function of the same name, as
Dask collections chunked along the samples, with the same keyword options (passed
through unchanged), and returns the same result class: the result finalized from the
merged states of the partitions (:mod:`xentropy.states`), so without the per-sample
fields, with ``state`` set, and for a calibration report its ``ace`` (and with quantile
binning its bins) under ``approximate`` with a bound, as any result of a state.

* **Arrays** (``dask.array``): chunked along axis 0 (the samples) in any sizes. Every
  row-aligned argument is rechunked to the row chunks of the first data argument, and a
  class axis split into several chunks is rechunked into one (a row of C classes is the
  unit of every statistic; for C in the thousands that is still a small chunk of a row
  block). Empty chunks are skipped. Per-sample options (``sample_weights``, ``mask``)
  given as Dask arrays are chunked with the data; any other option (``class_weights``,
  ``n_bins``, ...) goes to every partition as it is.
* **DataFrames** (``dask.dataframe``): select the columns by name with ordinary
  indexing: ``df[["p0", "p1", "p2"]]`` is the (N, 3) probabilities (class k is the k-th
  column listed), ``df["label"]`` the labels, ``df["weight"]`` the sample weights; a
  Series is a 1-D argument. They become arrays (``to_dask_array`` with the partition
  lengths, computed in one pass shared by the columns of a frame).
* **Zero-weight partitions**: a calibration partition whose ``sample_weights`` are all
  zero is refused as in memory (its report has no mean), although the whole may not be.
* **Per-sample output** does not reduce: ``reduction="none"`` and
  ``return_gradient=True`` are refused (``InputError``); for per-sample losses map the
  in-memory function over the blocks (``dask.array.map_blocks``).
* **Errors** are the in-memory ones (:class:`xentropy.InputError`, pickled with their
  field, position and kind from worker processes), with the position counted from the
  first row of the whole array.
* **Temperature scaling** (:func:`fit_temperature`, ``calibration_report(...,
  fit_temperature=True)``): safeguarded Newton steps in log T, one map-reduce pass each
  (per partition the compensated sums of the NLL's first and second derivatives), the
  data never gathered; about eight passes (the first also evaluates the bracket's ends),
  so ``persist()`` the logits first on a cluster.

>>> import numpy as np, dask.array as da, xentropy, xentropy.dask
>>> rng = np.random.default_rng(0)
>>> p = rng.dirichlet(np.ones(3), size=1000)
>>> y = rng.integers(0, 3, size=1000)
>>> r = xentropy.dask.calibration_report(da.from_array(p, chunks=(300, 3)),
...                                      da.from_array(y, chunks=300), n_bins=10)
>>> whole = xentropy.calibration_report(p, y, n_bins=10)
>>> r.n_samples, abs(r.ece - whole.ece) < 1e-12, [a.statistic for a in r.approximate]
(1000, True, ['ace'])
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

import xentropy
from xentropy import _compensated
from xentropy._validation import InputError, as_float_array, check_labels, check_weights
from xentropy.calibration.metrics import _from_logits
from xentropy.calibration.report import (
    CALIBRATION_PARAMS,
    _temperature_result,
    calibration_state_of,
)
from xentropy.calibration.temperature import (
    CONSTANT_NOTE,
    TEMPERATURE_MAX,
    TEMPERATURE_MIN,
    _centred_logits,
    _newton,
    _per_sample_terms,
    _scale_exponent,
    _two_columns,
)
from xentropy.states import State

__all__ = [
    "binary_cross_entropy",
    "calibration_report",
    "categorical_cross_entropy",
    "categorical_cross_entropy_with_integer_labels",
    "divergences",
    "fit_temperature",
    "scheduler",
    "sigmoid_binary_cross_entropy",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
    "tree_merge",
]


def _merge(*states: State) -> State:
    return xentropy.merge(states)


def tree_merge(delayed_states: Sequence[Any], *, split_every: int = 8) -> Any:
    """A Dask ``Delayed`` whose result is the merge of ``delayed_states``.

    ``delayed_states``: a non-empty sequence of ``Delayed`` objects (or plain
    :class:`xentropy.State` values) of one kind and agreeing options. They are merged in
    groups of at most ``split_every`` (≥ 2), level after level, so that no task holds more
    than ``split_every`` states and the graph has depth ``ceil(log(n) / log(split_every))``;
    the merge is exact in any tree shape (compensated sums, exact counts), so the answer
    is the state of the concatenated batches.

    >>> import dask, xentropy, xentropy.dask
    >>> parts = [dask.delayed(xentropy.divergences)([[0.5, 0.5]], [[0.25, 0.75]],
    ...          return_state=True).state for _ in range(9)]
    >>> xentropy.dask.tree_merge(parts, split_every=2).compute(scheduler="sync").n_samples
    9
    """
    from dask import delayed

    if split_every < 2:
        raise ValueError(f"split_every must be at least 2, got {split_every}")
    level = list(delayed_states)
    if not level:
        raise ValueError("tree_merge() needs at least one state")
    merge = delayed(_merge, pure=True)
    if len(level) == 1:
        return merge(level[0])
    while len(level) > 1:
        level = [merge(*level[i:i + split_every]) for i in range(0, len(level), split_every)]
    return level[0]


@contextlib.contextmanager
def scheduler(spec: str | None = None) -> Iterator[Any]:
    """Run the Dask computations of the ``with`` block on the scheduler ``spec``.

    ``None`` or ``"threads"`` (the threaded scheduler), ``"processes"``, ``"synchronous"``
    (also ``"sync"``): set with ``dask.config.set(scheduler=...)``, yields ``None``.
    ``"tcp://HOST:PORT"`` (or ``"tls://..."``, ``"inproc://..."``): opens a
    ``distributed.Client`` to that scheduler for the block, yields it, and closes it on
    exit (the cluster itself stays up).

    >>> import dask, xentropy.dask
    >>> with xentropy.dask.scheduler("synchronous"):
    ...     dask.config.get("scheduler")
    'synchronous'
    """
    import dask

    if spec is None:
        spec = "threads"
    if "://" in spec:
        from distributed import Client

        with Client(spec) as client:
            yield client
        return
    local = {"threads": "threads", "processes": "processes", "synchronous": "synchronous",
             "sync": "synchronous", "single-threaded": "synchronous"}
    if spec not in local:
        raise ValueError(
            f"unknown scheduler {spec!r}: expected threads, processes, synchronous or an "
            "address such as tcp://HOST:8786"
        )
    with dask.config.set(scheduler=local[spec]):
        yield None


# --------------------------------------------------------------------------- partitions


def _as_array(value: Any, name: str, lengths: dict[int, tuple[int, ...]]) -> Any:
    """A Dask array from a Dask array, DataFrame (its columns, in order) or Series.

    ``lengths``: the partition lengths already computed, by number of partitions: the
    columns of one DataFrame (``df[cols]``, ``df["label"]``) share them, so they are
    computed once (a pass over the partitions). Lengths that do not fit a frame are
    caught by the partition's own shape checks.
    """
    import dask.array as da

    if isinstance(value, da.Array):
        array = value
    elif hasattr(value, "to_dask_array"):  # a Dask DataFrame or Series
        if value.npartitions not in lengths:
            lengths[value.npartitions] = tuple(value.map_partitions(len).compute())
        array = value.to_dask_array(lengths=lengths[value.npartitions])
    else:
        raise TypeError(
            f"{name}: expected a Dask array, DataFrame or Series, got {type(value).__name__} "
            "(in-memory data: call xentropy directly, or wrap it with dask.array.from_array)"
        )
    if any(math.isnan(c) for c in array.chunks[0]):
        raise ValueError(
            f"{name}: the chunk sizes of this Dask array are unknown; call "
            ".compute_chunk_sizes() on it (or pass the DataFrame itself)"
        )
    return array


def _partitions(data: dict[str, Any]) -> tuple[list[str], list[int], list[list[Any]]]:
    """Row-aligned arguments -> their names, each partition's first row and its blocks.

    ``data``: name -> Dask collection (the first one sets the row chunks). Returns the
    names, the offsets of the non-empty partitions (at least one partition), and per
    partition the list of its Delayed blocks, one per name.
    """
    lengths: dict[int, tuple[int, ...]] = {}
    arrays = {name: _as_array(value, name, lengths) for name, value in data.items()}
    first_name, first = next(iter(arrays.items()))
    if first.ndim == 0:
        raise InputError(first_name, "expected one row per sample, got a scalar",
                         kind="shape_error")
    rows = first.chunks[0]
    for name, array in arrays.items():
        if array.ndim == 0 or array.shape[0] != first.shape[0]:
            got = "a scalar" if array.ndim == 0 else f"{array.shape[0]} rows"
            raise InputError(
                name, f"expected {first.shape[0]} rows (one per row of {first_name}), got {got}",
                kind="shape_mismatch",
            )
        # One chunk across the classes: a row is the unit of every statistic.
        arrays[name] = array.rechunk({0: rows, **{axis: -1 for axis in range(1, array.ndim)}})
    blocks = [array.to_delayed().ravel() for array in arrays.values()]
    offsets = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(int).tolist()
    keep = [i for i, n in enumerate(rows) if n > 0] or [0]
    return (list(arrays), [offsets[i] for i in keep],
            [[column[i] for column in blocks] for i in keep])


def _block_state(function: Callable[..., Any], names: Sequence[str], offset: int,
                 options: dict[str, Any], *blocks: Any) -> State:
    """The state of ``function`` on one partition (its blocks, by name)."""
    arguments = dict(zip(names, blocks, strict=True))
    try:
        try:
            result = function(**arguments, **options, return_state=True)
            return result if isinstance(result, State) else result.state
        except InputError as error:
            reduction = options.get("reduction", "mean")
            if error.kind != "undefined_in_convention" or reduction == "sum":
                raise
        # A partition whose own mean is undefined under its convention (every PyTorch
        # label ignored) has the same sums with "sum"; the whole batch's mean decides.
        state = function(**arguments, **{**options, "reduction": "sum"},
                         return_state=True).state
        return dataclasses.replace(
            state, options=dataclasses.replace(state.options, reduction=reduction))
    except InputError as error:
        raise (error.moved(offset) if error.field in names else error) from None


def _states(function: Callable[..., Any], data: dict[str, Any], options: dict[str, Any]
            ) -> list[Any]:
    """One Delayed state per partition of the row-aligned arguments (``data`` and the
    options that are Dask collections)."""
    from dask import delayed, is_dask_collection

    options = dict(options)
    options.pop("return_state", None)  # always: the states are what merges
    for name in [n for n, v in options.items() if is_dask_collection(v)]:
        data[name] = options.pop(name)
    names, offsets, partitions = _partitions(data)
    task = delayed(_block_state, pure=True)
    return [task(function, names, offset, options, *blocks)
            for offset, blocks in zip(offsets, partitions, strict=True)]


def _reduced(function: Callable[..., Any], data: dict[str, Any], options: dict[str, Any]
             ) -> Any:
    """``function``'s result on the whole of ``data``: states per partition, a tree
    merge, finalize; computed on the active scheduler."""
    for name, per_sample in (("reduction", options.get("reduction") == "none"),
                             ("return_gradient", bool(options.get("return_gradient")))):
        if per_sample:
            raise InputError(
                name,
                "expected a reduced result: per-sample values ('none', gradients) do not "
                "merge across partitions; map the in-memory function over the blocks "
                "(dask.array.map_blocks) for them",
                kind="not_applicable",
            )
    from dask import delayed

    merged = tree_merge(_states(function, data, options))
    return delayed(xentropy.finalize, pure=True)(merged).compute()


# --------------------------------------------------------------------------- losses


def _loss(function: Callable[..., Any], first: str, second: str, example: str
          ) -> Callable[..., Any]:
    def reduced(x: Any, y: Any, **options: Any) -> Any:
        return _reduced(function, {first: x, second: y}, options)

    name = function.__name__
    reduced.__name__ = reduced.__qualname__ = name
    reduced.__doc__ = f"""``xentropy.{name}`` over Dask collections chunked along the samples.

    ``{first}`` and ``{second}``: as there (shape (N, ...)), as Dask arrays (or DataFrame
    columns); the same keyword options, the per-sample ones (``sample_weights``,
    ``mask``) as Dask arrays; ``reduction`` ``"mean"`` or ``"sum"``. Returns the
    ``LossResult`` finalized from the merged states of the partitions (the in-memory
    loss within 1e-12, no per-sample ``losses``).

    >>> import numpy as np, dask.array as da, xentropy, xentropy.dask
    >>> x, y = {example}
    >>> r = xentropy.dask.{name}(da.from_array(x, chunks=2), da.from_array(y, chunks=2))
    >>> abs(r.loss - xentropy.{name}(x, y).loss) < 1e-15
    True
    """
    return reduced


_PROBS = "np.array([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]])"
_LOGITS = "np.array([[2.0, 0.5], [-1.0, 1.0], [0.0, 3.0]])"
_ONE_HOT = "np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])"
_LABELS = "np.array([0, 1, 1])"
softmax_cross_entropy = _loss(
    xentropy.softmax_cross_entropy, "logits", "targets", f"{_LOGITS}, {_ONE_HOT}")
softmax_cross_entropy_with_integer_labels = _loss(
    xentropy.softmax_cross_entropy_with_integer_labels, "logits", "labels",
    f"{_LOGITS}, {_LABELS}")
categorical_cross_entropy = _loss(
    xentropy.categorical_cross_entropy, "probabilities", "targets", f"{_PROBS}, {_ONE_HOT}")
categorical_cross_entropy_with_integer_labels = _loss(
    xentropy.categorical_cross_entropy_with_integer_labels, "probabilities", "labels",
    f"{_PROBS}, {_LABELS}")
sigmoid_binary_cross_entropy = _loss(
    xentropy.sigmoid_binary_cross_entropy, "logits", "targets", f"{_LOGITS}, {_ONE_HOT}")
binary_cross_entropy = _loss(
    xentropy.binary_cross_entropy, "probabilities", "targets", f"{_PROBS}, {_ONE_HOT}")


def divergences(p: Any, q: Any = None, **options: Any) -> Any:
    """:func:`xentropy.divergences` over Dask collections chunked along the rows.

    ``p``: (N, C) probability rows; ``q`` or ``q_logits=``: (N, C); the same keyword
    options, ``reduction`` ``"mean"`` or ``"sum"``. Returns the ``DivergenceResult``
    finalized from the merged states of the partitions (no ``per_row``).

    >>> import numpy as np, dask.array as da, xentropy, xentropy.dask
    >>> p = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]])
    >>> q = np.array([[0.25, 0.75], [0.5, 0.5], [0.2, 0.8]])
    >>> r = xentropy.dask.divergences(da.from_array(p, chunks=2), da.from_array(q, chunks=2))
    >>> abs(r.kl_divergence - xentropy.divergences(p, q).kl_divergence) < 1e-15
    True
    """
    data = {"p": p}
    if q is not None:
        data["q"] = q
    return _reduced(xentropy.divergences, data, options)


# --------------------------------------------------------------------------- calibration


def calibration_report(probabilities: Any = None, labels: Any = None, *, logits: Any = None,
                       **options: Any) -> Any:
    """:func:`xentropy.calibration_report` over Dask collections chunked along the samples.

    ``probabilities`` (N,) or (N, C), or ``logits=``; ``labels`` (N,); the same keyword
    options (``sample_weights`` a Dask array or Series). Returns the
    ``CalibrationResult`` finalized from the merged states of the partitions: every
    count exact, every statistic within 1e-12 of the in-memory report, ``ace`` (and with
    ``binning="quantile"`` the bins and the errors) from the state's fine histogram,
    listed under ``approximate`` with a bound.

    With ``fit_temperature=True`` (logits only) the result's ``temperature`` is the
    in-memory one: T by :func:`fit_temperature` (map-reduce Newton steps), then one more
    pass for the NLL and ECE at T, each as the state of ``softmax(logits / T)`` gives it
    (with quantile binning, ``ece_before`` and ``ece_after`` are the approximate ECE of the
    states, within the bound listed for ``ece``).

    >>> import numpy as np, dask.array as da, xentropy, xentropy.dask
    >>> z = np.array([[3.0, 0, 0], [0, 3, 0], [0, 0, 3], [3, 0, 0]]); y = np.array([0, 1, 2, 1])
    >>> r = xentropy.dask.calibration_report(logits=da.from_array(z, chunks=2),
    ...     labels=da.from_array(y, chunks=2), n_bins=5, fit_temperature=True)
    >>> whole = xentropy.calibration_report(logits=z, labels=y, n_bins=5, fit_temperature=True)
    >>> abs(r.temperature.temperature - whole.temperature.temperature) < 1e-12
    True
    """
    fit = CALIBRATION_PARAMS["fit_temperature"].check(
        options.pop("fit_temperature", False), "fit_temperature")
    if fit and logits is None:
        raise InputError(
            "fit_temperature",
            "expected logits with fit_temperature, got probabilities: temperature scaling "
            "rescales logits, so it requires logits",
        )
    data = {"labels": labels}
    if probabilities is not None:
        data = {"probabilities": probabilities, **data}
    if logits is not None:
        data = {"logits": logits, **data}
    if labels is None:
        raise InputError("labels", "expected one label per sample, got none", kind="missing")
    result = _reduced(calibration_state_of, data, options)
    if not fit:
        return result
    weights = options.get("sample_weights")
    t, note = fit_temperature(logits, labels, sample_weights=weights)
    scaled = {"logits": logits, "labels": labels}
    if weights is not None:
        scaled["sample_weights"] = weights
    # Only the plain options: a Dask array in a task's arguments would be computed whole.
    binning: dict[str, Any] = {
        name: options[name] for name in ("n_bins", "binning", "units", "epsilon")
        if name in options
    }
    after = _reduced_scaled(scaled, t, binning)
    return dataclasses.replace(result, temperature=_temperature_result(
        t, note, result.nll, after.nll, result.ece, after.ece))


def _reduced_scaled(data: dict[str, Any], t: float, options: dict[str, Any]) -> Any:
    """The calibration result of softmax(logits / t) (top label: that of the logits as
    sent, as in memory) from the merged states of the partitions."""
    from dask import delayed

    names, _, partitions = _partitions(data)
    task = delayed(_scaled_state, pure=True)
    states = [task(t, names, options, *blocks) for blocks in partitions]
    return delayed(xentropy.finalize, pure=True)(tree_merge(states)).compute()


def _scaled_state(t: float, names: Sequence[str], options: dict[str, Any], *blocks: Any
                  ) -> State:
    from xentropy.states.calibration import calibration_state

    arguments = dict(zip(names, blocks, strict=True))
    z = np.ascontiguousarray(as_float_array(arguments["logits"], "logits", ndim=(1, 2)))
    y = check_labels(arguments["labels"], z.shape[0], 2 if z.ndim == 1 else z.shape[1])
    w = arguments.get("sample_weights")
    w = np.ones(z.shape[0]) if w is None else check_weights(
        w, "sample_weights", z.shape[0], "one weight per sample")
    scaled = _from_logits(_centred_logits(z) / t, y, predicted=_from_logits(z, y).predicted)
    params = CALIBRATION_PARAMS
    return calibration_state(
        scaled, y, w, from_logits=True,
        **{name: params[name].check(options.get(name, params[name].default), name)
           for name in ("n_bins", "binning", "units", "epsilon")},
    )


# --------------------------------------------------------------------------- temperature


def fit_temperature(logits: Any, labels: Any, *, sample_weights: Any = None
                    ) -> tuple[float, str | None]:
    """:func:`xentropy.calibration.fit_temperature` over Dask collections, without
    gathering them: the same safeguarded Newton iteration in log T, each of its
    evaluations one map-reduce pass (per partition the compensated sums of
    w·(E_p[z] − z_y) and w·Var_p[z], p = softmax(z / T), the NLL's derivatives w.r.t.
    1/T; merged on the client). Shapes: logits (N, C) or (N,), labels (N,),
    sample_weights (N,) or ``None``. Returns ``(temperature, note)`` as in memory, T equal
    to the in-memory fit's to its tolerance (about 1e-13 relative).

    >>> import numpy as np, dask.array as da, xentropy.dask
    >>> from xentropy.calibration import fit_temperature as in_memory
    >>> z = np.array([[3.0, 0, 0], [0, 3, 0], [0, 0, 3], [3, 0, 0]]); y = np.array([0, 1, 2, 1])
    >>> t, note = xentropy.dask.fit_temperature(da.from_array(z, chunks=3),
    ...                                         da.from_array(y, chunks=3))
    >>> abs(t - in_memory(z, y)[0]) < 1e-12, note
    (True, None)
    """
    import dask

    data = {"logits": logits, "labels": labels}
    if sample_weights is not None:
        data["sample_weights"] = sample_weights
    names, offsets, partitions = _partitions(data)
    summary = dask.delayed(_temperature_summary, pure=True)
    totals = dask.compute(*[summary(names, offset, *blocks)
                            for offset, blocks in zip(offsets, partitions, strict=True)])
    weight = float(_compensated.merge_pairs(np.array([s[0] for s in totals])).sum())
    if not weight > 0:
        raise InputError("sample_weights", "expected at least one positive weight, got all "
                         "zeros", kind="out_of_range")
    if not math.isfinite(weight):
        raise InputError("sample_weights", "expected weights with a finite sum, got a sum "
                         "that overflows float64", kind="overflow")
    if not any(s[1] for s in totals):
        return 1.0, CONSTANT_NOTE
    k = _scale_exponent(max(s[2] for s in totals))
    terms = dask.delayed(_temperature_terms, pure=True)
    # The Newton loop's first three evaluations (the two bounds, then T = 1) in one pass.
    known: dict[float, tuple[float, float]] = {}
    first = [math.exp(-math.log(TEMPERATURE_MAX)), math.exp(-math.log(TEMPERATURE_MIN)), 1.0]

    def evaluate(beta: float) -> tuple[float, float]:
        if beta not in known:
            betas = first if not known else [beta]
            pairs = dask.compute(*[terms(names, weight, k, betas, *blocks)
                                   for blocks in partitions])
            sums = _compensated.merge_pairs(np.array(pairs)).sum(axis=-1)  # (len(betas), 2)
            known.update({b: (float(g), float(c)) for b, (g, c) in zip(betas, sums, strict=True)})
        return known[beta]

    return _newton(evaluate, k)


def _temperature_block(names: Sequence[str], blocks: Sequence[Any]
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One partition's row-centred logits (binary as [0, z] rows), labels and weights,
    checked as in memory."""
    arguments = dict(zip(names, blocks, strict=True))
    z = as_float_array(arguments["logits"], "logits", ndim=(1, 2))
    y = check_labels(arguments["labels"], z.shape[0], 2 if z.ndim == 1 else z.shape[1])
    w = arguments.get("sample_weights")
    w = np.ones(z.shape[0]) if w is None else check_weights(
        w, "sample_weights", z.shape[0], "one weight per sample")
    zc = _centred_logits(z)
    return (_two_columns(zc) if zc.ndim == 1 else zc), y, w


def _temperature_summary(names: Sequence[str], offset: int, *blocks: Any
                         ) -> tuple[np.ndarray, bool, float]:
    """Σw (a compensated pair), whether a row of positive weight is not constant, and the
    largest |centred logit| of one partition."""
    try:
        z, _, w = _temperature_block(names, blocks)
    except InputError as error:
        raise (error.moved(offset) if error.field in names else error) from None
    live = w > 0
    varies = bool((z[live].max(axis=1) > z[live].min(axis=1)).any()) if live.any() else False
    return _compensated.total(w), varies, float(np.abs(z).max()) if z.size else 0.0


def _temperature_terms(names: Sequence[str], weight: float, k: int, betas: Sequence[float],
                       *blocks: Any) -> np.ndarray:
    """Compensated Σ (w/W)·(E_p[zs] − zs_y) and Σ (w/W)·Var_p[zs] of one partition at each
    β of ``betas``, shape (len(betas), 2, 2) (see
    :func:`xentropy.calibration.temperature._nll_terms`)."""
    z, y, w = _temperature_block(names, blocks)
    wn, zs = w / weight, np.ldexp(z, k)
    out = []
    for beta in betas:  # at most three
        first, second = _per_sample_terms(z, zs, y, beta)
        out.append([_compensated.total(wn * first), _compensated.total(wn * second)])
    return np.array(out)
