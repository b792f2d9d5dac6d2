"""The wake-up subscription loop ends when cancelled, even if the client library swallows
the cancellation (as redis-py's pub/sub read was seen to do in the chaos run, which left
`relay serve` hanging after SIGTERM)."""

from __future__ import annotations

import asyncio
import contextlib

from relay.wakeups import pubsub as redis_hints


class SwallowingPubSub:
    """Answers pings, and swallows a cancellation that lands in its read."""

    def __init__(self) -> None:
        self.pong = False

    async def get_message(self, timeout: float):
        if self.pong:
            self.pong = False
            return {"type": "pong", "data": b""}
        with contextlib.suppress(asyncio.CancelledError):  # the read "timed out"
            await asyncio.sleep(timeout)
        return None

    async def ping(self) -> None:
        self.pong = True


async def ignore(_message: dict) -> None:
    return None


async def test_the_listen_loop_ends_when_cancelled_even_if_the_read_swallows_it():
    listening = asyncio.create_task(
        redis_hints.listen(SwallowingPubSub(), ignore, timeout=5.0, ping_every=0.02)
    )
    await asyncio.sleep(0.1)
    listening.cancel()
    done, _ = await asyncio.wait({listening}, timeout=2)
    assert done, "the subscription loop ignored its cancellation"
    assert listening.cancelled()
