"""A small EventSource for the tests: parses frames, remembers the last id, and reconnects
with Last-Event-ID (to the next URL in its list) the way a browser does."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field

import aiohttp


@dataclass
class Frame:
    event: str = "message"
    data: str = ""
    id: str | None = None


@dataclass
class EventSource:
    urls: list[str]
    token: str
    last_event_id: str | None = None
    last_check: str | None = None
    updates: list[dict] = field(default_factory=list)
    resets: int = 0
    connects: int = 0
    statuses: list[int] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task | None = None

    def start(self, session: aiohttp.ClientSession) -> EventSource:
        self._task = asyncio.create_task(self._run(session))
        return self

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, session: aiohttp.ClientSession) -> None:
        attempt = 0
        while True:
            url = self.urls[attempt % len(self.urls)]
            attempt += 1
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, ConnectionError):
                await self._connect(session, url)
            await asyncio.sleep(0.05)  # EventSource's retry delay, shortened for tests

    async def _connect(self, session: aiohttp.ClientSession, url: str) -> None:
        headers = {}
        params = {"token": self.token}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        elif self.last_check:
            params["last_check"] = self.last_check
        async with session.get(
            f"{url}/api/chats/realtime-updates/",
            params=params,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=60),
        ) as response:
            self.statuses.append(response.status)
            if response.status != 200:
                return
            self.connects += 1
            self.connected.set()
            frame = Frame()
            async for raw in response.content:
                line = raw.decode().rstrip("\r\n")
                if not line:
                    self._dispatch(frame)
                    frame = Frame()
                elif line.startswith(":"):
                    continue
                else:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "id":
                        frame.id = value
                        self.last_event_id = value or None
                    elif name == "data":
                        frame.data = f"{frame.data}\n{value}" if frame.data else value
                    elif name == "event":
                        frame.event = value

    def _dispatch(self, frame: Frame) -> None:
        if not frame.data:
            return
        if frame.event == "reset":
            self.resets += 1
        elif frame.event == "message":
            self.updates.append(json.loads(frame.data))
