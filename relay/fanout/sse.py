"""SSE frames written a batch at a time.

aiohttp-sse's `send()` formats one event through StringIO and regular expressions and
writes it under its own timer; a stream woken by a hint writes every event of its batch,
and a thousand streams of one account do it a thousand times per event. Events are JSON
spliced from stored bytes (no raw line breaks), so their frames are built as bytes and a
batch leaves in one write, under the same stalled-client rule as `send()`.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp_sse import EventSourceResponse

# Above this much unsent data a client is not keeping up: its task writes under the
# send timeout instead (which aborts a client that stalls), nothing is pushed to it.
PUSH_BUFFER_MAX = 64 * 1024


class BatchedEventSource(EventSourceResponse):
    _push_transport: asyncio.Transport | None = None
    _push_chunked = False

    def start_pushing(self, request: web.BaseRequest) -> None:
        """Once the headers have left (aiohttp holds them back until the first write),
        hints may write to the socket directly."""
        self._push_transport = request.transport
        self._push_chunked = self.headers.get("Transfer-Encoding") == "chunked"

    def push(self, data: bytes) -> bool:
        """Write `data` now, from a hint's callback, if the client keeps up: straight to
        the socket, framed as aiohttp frames the body. False, writing nothing, otherwise."""
        transport = self._push_transport
        if (
            transport is None
            or transport.is_closing()
            or transport.get_write_buffer_size() > PUSH_BUFFER_MAX
        ):
            return False
        transport.write(b"%x\r\n%b\r\n" % (len(data), data) if self._push_chunked else data)
        return True

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
