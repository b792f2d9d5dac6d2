"""Pipelined script calls: every call made in one event-loop turn leaves in one write.

redis-py spends far more CPU per command sent alone (a connection checked out, a write, a
read, all per call) than per command of a pipeline. Concurrent store calls are frequent
(a webhook burst, a poll storm after a deploy), so each call is queued, and at the end of
the loop turn the queue is sent as one pipeline without a transaction (on a cluster,
redis-py's cluster pipeline splits it per node). Every call keeps its own reply or error
(`raise_on_error=False`), and its caller its own time budget: a caller that gives up
leaves the others' calls untouched.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from relay.store.connections import RedisClient

# One pipeline at most this long; a larger queue leaves in several.
MAX_BATCH = 256


@dataclass(slots=True)
class _Call:
    script: AsyncScript  # its sha, and its source for NOSCRIPT
    keys: list[str]
    args: list[Any]
    reply: asyncio.Future[Any]


class Pipeliner:
    def __init__(self, client: RedisClient, max_pipelines: int) -> None:
        self.client = client
        # Pipelines in flight at once, each on its own connection from the pool.
        self._slots = asyncio.Semaphore(max_pipelines)
        self._queue: list[_Call] = []
        self._sending: set[asyncio.Task[None]] = set()
        self.pipelines = 0  # sent so far (a figure for tests and benchmarks)

    def call(self, script: AsyncScript, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        """The script's reply (or error), once the pipeline it joins has been answered."""
        loop = asyncio.get_running_loop()
        call = _Call(script, keys, args, loop.create_future())
        if not self._queue:
            loop.call_soon(self._flush)
        self._queue.append(call)
        return call.reply

    def _flush(self) -> None:
        queue, self._queue = self._queue, []
        for start in range(0, len(queue), MAX_BATCH):
            batch = [c for c in queue[start : start + MAX_BATCH] if not c.reply.done()]
            if batch:
                task = asyncio.create_task(self._send(batch))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Call]) -> None:
        try:
            async with self._slots:
                replies = await self._pipeline(batch)
                missing = [c for c, r in zip(batch, replies, strict=True) if _noscript(r)]
                if missing:
                    # The server lost its script cache (a restart, SCRIPT FLUSH, a new
                    # node): load each script once, and send those calls again.
                    for script in {id(c.script): c.script for c in missing}.values():
                        await self.client.script_load(script.script)
                    again = iter(await self._pipeline(missing))
                    replies = [next(again) if _noscript(r) else r for r in replies]
        except BaseException as error:  # the connection failed: every call fails alike
            for call in batch:
                if not call.reply.done():
                    call.reply.set_exception(_copy(error))
            if isinstance(error, asyncio.CancelledError):
                raise
            return
        for call, reply in zip(batch, replies, strict=True):
            if call.reply.done():
                continue  # its caller gave up
            if isinstance(reply, Exception):
                call.reply.set_exception(reply)
            else:
                call.reply.set_result(reply)

    async def _pipeline(self, batch: list[_Call]) -> list[Any]:
        self.pipelines += 1
        pipe = self.client.pipeline(transaction=False)
        for call in batch:
            # execute_command: the cluster pipeline blocks its `evalsha` method by name,
            # not the command, which it routes by the keys like any other.
            pipe.execute_command("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)
        return await pipe.execute(raise_on_error=False)


def _noscript(reply: Any) -> bool:
    return isinstance(reply, NoScriptError)


def _copy(error: BaseException) -> BaseException:
    """One exception object per caller: raising the same object from many tasks chains
    their tracebacks into one another."""
    if isinstance(error, asyncio.CancelledError):
        return ConnectionError("the pipeline was cancelled")
    try:
        copy = type(error)(*error.args)
    except Exception:
        return error
    copy.__cause__ = error
    return copy
