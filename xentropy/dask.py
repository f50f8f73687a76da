"""xentropy on Dask: states per partition, a tree reduction, one finalize.

``import xentropy`` never loads Dask; this module imports it inside its functions, on use
(``pip install xentropy[dask]``). It brings no scheduler of its own: the computations run
on whatever Dask scheduler is active (threads by default, a ``distributed.Client`` if one
is open, or the one :func:`scheduler` sets).

>>> import xentropy, xentropy.dask
>>> import dask
>>> s = [dask.delayed(xentropy.softmax_cross_entropy_with_integer_labels)(
...         [[2.0, 1.0, 0.1]], [k % 3], return_state=True).state for k in range(20)]
>>> with xentropy.dask.scheduler("threads"):
...     merged = xentropy.dask.tree_merge(s, split_every=4).compute()
>>> merged.n_samples
20
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import xentropy
from xentropy.states import State

__all__ = ["scheduler", "tree_merge"]


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
