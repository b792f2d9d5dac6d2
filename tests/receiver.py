"""A real HTTP receiver for delivery tests: an aiohttp server on a free port that records
every request, answers as the test's `behaviour` says, and verifies every signature with
the `standardwebhooks` package (the algorithm receivers use)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from aiohttp import web
from standardwebhooks.webhooks import Webhook

LATE = 599  # an answer nobody was waiting for any more
SECRET = "whsec_" + base64.b64encode(b"receiver-test-key-0123456789abcd").decode()


@dataclass
class Received:
    path: str
    msg_id: str
    account: str
    type: str
    timestamp: str
    status: int
    at: float  # time.time() when the request arrived
    verified: bool


@dataclass
class Receiver:
    # (path, event document, request number for this path) -> status, or a negative
    # number of seconds to stall before answering 503 (past the relay's timeout).
    behaviour: Callable[[str, dict, int], float] = lambda path, event, n: 204
    secret: str = SECRET
    requests: list[Received] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    port: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    # When set, the next request waits for this event before it is answered (and the
    # request's id is put in `holding` meanwhile): a response held mid-flight.
    hold_next: asyncio.Event | None = None
    holding: list[str] = field(default_factory=list)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    def url(self, path: str = "hook") -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        webhook = Webhook(self.secret)
        try:
            webhook.verify(body, dict(request.headers))
            verified = True
        except Exception:
            verified = False
        event = orjson.loads(body)
        path = request.match_info["path"]
        n = sum(1 for r in self.requests if r.path == path)
        answer = self.behaviour(path, event, n)
        gate, self.hold_next = self.hold_next, None
        if gate is not None:
            self.holding.append(request.headers.get("webhook-id", ""))
            await gate.wait()
        status = int(answer) if answer >= 0 else 503
        if answer < 0:
            await asyncio.sleep(-answer)
        if request.transport is None or request.transport.is_closing():
            # The relay gave up (its timeout passed while this loop was busy): it never
            # sees this answer, so it is no 2xx. Recorded apart, so tests can count them.
            status = LATE
        self.requests.append(
            Received(
                path,
                request.headers.get("webhook-id", ""),
                event.get("account", ""),
                event.get("type", ""),
                event.get("timestamp", ""),
                status,
                time.time(),
                verified,
            )
        )
        self.arrived.set()
        return web.Response(status=status)

    def delivered(self, path: str | None = None) -> list[Received]:
        return [r for r in self.requests if 200 <= r.status < 300 and path in (None, r.path)]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"receiver: condition not met in {timeout}s")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), 0.2)
