"""A TCP proxy for fault tests: forwards bytes both ways and, when told, drops the
connection right after a request went through but before its reply comes back."""

from __future__ import annotations

import asyncio
import contextlib


class DroppingProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.drop_next_script_reply = False
        self._dropping = False
        self.dropped = 0
        self.port = 0
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> DroppingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )

        async def client_to_redis() -> None:
            while data := await reader.read(65536):
                if self.drop_next_script_reply and b"EVALSHA" in data.upper():
                    self.drop_next_script_reply = False
                    self._dropping = True
                upstream_writer.write(data)
                await upstream_writer.drain()

        async def redis_to_client() -> None:
            while data := await upstream_reader.read(65536):
                if self._dropping:
                    # The script ran on Redis; its reply never reaches the client.
                    self._dropping = False
                    self.dropped += 1
                    writer.transport.abort()
                    return
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.create_task(client_to_redis()), asyncio.create_task(redis_to_client())]
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for stream in (writer, upstream_writer):
            stream.close()
