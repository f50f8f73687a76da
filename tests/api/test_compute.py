"""Small requests are computed on the event loop, larger ones in the thread pool."""

from __future__ import annotations

import asyncio
import threading

from app.api.compute import INLINE_MAX_BYTES, INLINE_MAX_COMMAS, run_sized


def _where(body: bytes) -> int:
    async def main() -> tuple[int, int]:
        return threading.get_ident(), await run_sized(body, threading.get_ident)

    loop_thread, work_thread = asyncio.run(main())
    return int(loop_thread == work_thread)


def test_a_small_body_is_computed_inline_and_a_large_one_in_the_thread_pool():
    assert _where(b"[" + b"1," * INLINE_MAX_COMMAS + b"]") == 1
    assert _where(b"[" + b"1," * (INLINE_MAX_COMMAS + 1) + b"]") == 0


def test_a_long_body_with_few_commas_goes_to_the_thread_pool_uncounted():
    few = b"[" + b"1," * 10 + b"1]"
    assert _where(few + b" " * (INLINE_MAX_BYTES - len(few))) == 1
    assert _where(few + b" " * (INLINE_MAX_BYTES - len(few) + 1)) == 0


def test_an_error_of_inline_work_reaches_the_caller():
    async def main() -> None:
        await run_sized(b"{}", lambda: 1 / 0)

    try:
        asyncio.run(main())
    except ZeroDivisionError:
        return
    raise AssertionError("the error was swallowed")
