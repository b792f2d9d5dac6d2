"""Stopping tasks that run redis-py pub/sub reads.

A cancellation can be swallowed inside redis-py's pub/sub read (seen under the chaos test
on Python 3.11: the task stays `cancelling` and the loop reads on). Two pieces make every
stop prompt anyway: loops call `raise_if_cancelled()` on each turn, and whoever stops them
uses `cancel_and_wait`, which cancels again until the task has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterable
from typing import Any

from redis.exceptions import RedisError


def raise_if_cancelled() -> None:
    """Inside a loop: end it if a cancellation was requested and swallowed below."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], timeout: float = 5.0) -> None:
    """Cancel `tasks` until they have ended (re-cancelling every 0.1 s, at most `timeout`),
    and retrieve their exceptions so asyncio does not log them at exit."""
    tasks = list(tasks)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        pending = [task for task in tasks if not task.done()]
        if not pending or loop.time() >= deadline:
            break
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.1)
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()


async def quietly(awaitable: Awaitable[object]) -> None:
    """Close something being thrown away. Bounded: a close that races a cancelled connect
    can wait on a lock nobody releases, and shutdown must not hang on it."""
    with contextlib.suppress(RedisError, OSError, TimeoutError, RuntimeError):
        async with asyncio.timeout(1.0):
            await awaitable
