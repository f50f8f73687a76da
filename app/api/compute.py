"""Where a request's work runs: inline on the event loop when it is provably tiny, else
in the thread pool.

A small batch (256×10) costs about 0.4 ms to parse and compute, less than the thread-pool
hop and the GIL hand-offs around it (measured: about 1.2–1.5× the requests/s at 256×10,
`bench/README.md`). Larger bodies go to the thread pool, so the event loop, which also
answers /healthz and every other connection, never blocks for much more than that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from app.api.codec import count_byte

T = TypeVar("T")

#: Bodies with at most this many commas (an array of N numbers has N - 1) are computed
#: inline: about 3 000 numbers, a few tenths of a millisecond of parsing and NumPy.
INLINE_MAX_COMMAS = 3_000
#: ... and at most this many bytes: larger ones go to the thread pool without their commas
#: being counted on the event loop (a 20 MB body took 11 ms to count, /healthz waiting).
INLINE_MAX_BYTES = 64 * 1024


async def run_sized(body: bytes | bytearray, work: Callable[[], T]) -> T:
    """``work()`` inline for a small body, in the thread pool otherwise."""
    if len(body) <= INLINE_MAX_BYTES and count_byte(body, b",") <= INLINE_MAX_COMMAS:
        return work()
    return await run_in_threadpool(work)
