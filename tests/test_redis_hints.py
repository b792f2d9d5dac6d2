"""The wake-up subscription loop ends when cancelled, even if the client library swallows
the cancellation (as redis-py's pub/sub read was seen to do in the chaos run, which left
`relay serve` hanging after SIGTERM)."""

from __future__ import annotations

import asyncio
import contextlib

from relay.wakeups import pubsub as redis_hints
from tests.helpers import until


class SwallowingPubSub:
    """Answers pings, and swallows a cancellation that lands in its read."""

    def __init__(self) -> None:
        self.pong = False
        self.pings = 0

    async def get_message(self, timeout: float):
        if self.pong:
            self.pong = False
            return {"type": "pong", "data": b""}
        with contextlib.suppress(asyncio.CancelledError):  # the read "timed out"
            await asyncio.sleep(timeout)
        return None

    async def ping(self) -> None:
        self.pings += 1
        self.pong = True


async def ignore(_message: dict) -> None:
    return None


async def test_the_listen_loop_ends_when_cancelled_even_if_the_read_swallows_it():
    pubsub = SwallowingPubSub()
    listening = asyncio.create_task(
        redis_hints.listen(pubsub, ignore, timeout=5.0, ping_every=0.02)
    )
    await until(lambda: pubsub.pings >= 2)  # the loop is running: pinging, then reading
    listening.cancel()
    done, _ = await asyncio.wait({listening}, timeout=2)
    assert done, "the subscription loop ignored its cancellation"
    assert listening.cancelled()
