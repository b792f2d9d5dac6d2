"""SSE frames written a batch at a time.

aiohttp-sse's `send()` formats one event through StringIO and regular expressions and
writes it under its own timer; a stream woken by a hint writes every event of its batch,
and a thousand streams of one account do it a thousand times per event. Events are JSON
spliced from stored bytes (no raw line breaks), so their frames are built as bytes and a
batch leaves in one write, under the same stalled-client rule as `send()`.
"""

from __future__ import annotations

import asyncio

from aiohttp_sse import EventSourceResponse


class BatchedEventSource(EventSourceResponse):
    async def send_frames(self, frames: list[bytes]) -> None:
        """Write ready-made frames at once; a client that stalls past the send timeout is
        aborted, as `send()` does."""
        try:
            async with asyncio.timeout(self._send_timeout):
                await self.write(b"".join(frames))
        except ConnectionResetError:
            self.stop_streaming()
            raise
        except TimeoutError:
            self.stop_streaming()
            self._abort_transport()
            raise


def event_frame(wire: bytes, event_id: bytes) -> bytes:
    return b"id: %s\r\ndata: %s\r\n\r\n" % (event_id, wire)
