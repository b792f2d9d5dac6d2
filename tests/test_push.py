"""Events pushed to parked SSE streams from their hints (relay/fanout/push.py): only an
event that follows a stream's cursor is written; everything else wakes the stream to read,
so a slow client, a gap or an expired token cannot make it skip or repeat an event."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import time

import aiohttp
import pytest

from relay.app import create_app
from relay.appkeys import LIVE
from relay.auth import Viewer
from relay.cursor import format_cursor
from relay.events import Event
from relay.fanout.push import Parked, push
from relay.metrics import Metrics
from relay.wakeups.base import Hint
from tests.credentials import API, API_KEY, JWT_SECRET, auth, token
from tests.helpers import settings_for, until
from tests.servers import RelayProcess
from tests.sse_client import EventSource

SSE = "/api/chats/realtime-updates/"
POLL = "/api/chats/check-updates/"


class Socket:
    """A PushTarget that records what it was given, or refuses (a client not keeping up)."""

    def __init__(self, keeps_up: bool = True) -> None:
        self.keeps_up = keeps_up
        self.written: list[bytes] = []

    def push(self, data: bytes) -> bool:
        if self.keeps_up:
            self.written.append(data)
        return self.keeps_up


def hint(prev: int, timestamp: int, *, chat: str | None = None, body: bool = True) -> Hint:
    member = Event(f"m{timestamp}", "message.created", "acme", chat_id=chat).encode()
    return Hint("acme", prev, timestamp, 0, member if body else None)


async def parked_at(cursor: int, target: Socket, viewer: Viewer | None = None) -> Parked:
    metrics = Metrics()
    lag = metrics.child(metrics.delivery_lag, "sse")
    pushed = metrics.child(metrics.sse_pushed_events)
    return Parked(viewer or Viewer("agent-1", "acme"), cursor, target, lag, pushed)


async def test_an_event_that_follows_the_cursor_is_written_and_moves_it():
    stream = await parked_at(100, target := Socket())
    streams = {stream: None}
    push(hint(100, 105), streams)
    push(hint(105, 107), streams)
    assert stream.cursor == 107 and not stream.woken.done()
    assert [frame.split(b"\r\n")[0] for frame in target.written] == [
        b"id: " + format_cursor(105).encode(),
        b"id: " + format_cursor(107).encode(),
    ]
    assert b'"id":"m105"' in target.written[0]


@pytest.mark.parametrize(
    ("late", "why"),
    [
        (hint(103, 105), "its prev is not the cursor: something in between may be unknown"),
        (hint(100, 105, body=False), "it carries no body"),
    ],
)
async def test_a_hint_that_does_not_chain_wakes_the_stream_instead(late, why):
    stream = await parked_at(100, target := Socket())
    streams = {stream: None}
    push(late, streams)
    assert stream.woken.done(), why
    assert stream.cursor == 100 and not target.written and stream not in streams


async def test_a_duplicate_or_late_hint_changes_nothing():
    stream = await parked_at(100, target := Socket())
    streams = {stream: None}
    push(hint(90, 100), streams)
    push(hint(80, 90), streams)
    assert not stream.woken.done() and stream.cursor == 100 and not target.written


async def test_a_client_not_keeping_up_or_an_expired_token_is_woken_not_written():
    slow = await parked_at(100, Socket(keeps_up=False))
    expired = await parked_at(100, Socket(), Viewer("agent-1", "acme", expires_at=time.time() - 1))
    streams = {slow: None, expired: None}
    push(hint(100, 105), streams)
    assert slow.woken.done() and expired.woken.done() and not streams
    assert slow.cursor == expired.cursor == 100
    assert not expired.target.written


async def test_an_event_the_viewer_may_not_see_moves_only_its_last_event_id():
    narrow = await parked_at(100, Socket(), Viewer("agent-1", "acme", chats=frozenset({"c1"})))
    push(hint(100, 105, chat="c2"), {narrow: None})
    assert narrow.target.written == [b"id: %s\r\n\r\n" % format_cursor(105).encode()]
    assert narrow.cursor == 105
    assert narrow.viewer.expires_at == math.inf


async def publish(session, url: str, ids: list[str], text: str = "") -> None:
    message = {"direction": "in", "kind": "text", "text": text}
    events = [
        {"account": "acme", "type": "message.created", "data": {"message": {"id": i, **message}}}
        for i in ids
    ]
    async with session.post(f"{url}/api/publish", json=events, headers=API) as response:
        assert response.status == 201, await response.text()


@pytest.fixture
async def relay_url(engine, request, aiohttp_server):
    url = request.getfixturevalue("redis_url") if engine == "redis" else None
    app = create_app(settings_for(engine, url))
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/"), app


async def test_a_stream_that_stops_reading_gets_every_event_once_when_it_resumes(relay_url):
    """The pushes stop when its socket backs up; its task then writes what it reads,
    under the send timeout; nothing is lost or written twice across the switch."""
    url, app = relay_url
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock, limit=2**24)
    writer.write(f"GET {SSE}?token={token()} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await reader.readuntil(b"retry:")
    # The server side's send buffer small too, so that what the client does not read backs
    # up in relay's transport rather than in the kernel's (which may grow to megabytes).
    hub = app[LIVE].hub
    await until(lambda: "acme" in hub._parked, what="the stream parks")
    (parked,) = hub._parked["acme"]
    server_socket = parked.target._push_transport.get_extra_info("socket")
    server_socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    ids = [f"m{n}" for n in range(400)]
    async with aiohttp.ClientSession() as session:
        for first in range(0, len(ids), 30):  # ~6.4 MB while the client reads nothing
            await publish(session, url, ids[first : first + 30], text="x" * 16000)
        await asyncio.sleep(0.3)
        received: list[str] = []
        buffer = b""
        deadline = time.monotonic() + 30
        while len(received) < len(ids):
            assert time.monotonic() < deadline, f"{len(received)} of {len(ids)} arrived"
            buffer += await asyncio.wait_for(reader.read(2**20), 10)
            received = [
                json.loads(line[6:])["data"]["message"]["id"]
                for line in buffer.split(b"\r\n")[:-1]  # the last one may be partial
                if line.startswith(b"data: ")
            ]
    writer.close()
    assert received == ids
    pushed = app[LIVE].metrics.child(app[LIVE].metrics.sse_pushed_events).total
    woken = app[LIVE].metrics.child(app[LIVE].metrics.wakeups, "sse").total
    assert pushed > 0 and woken > 0, (pushed, woken)


async def test_a_processs_own_append_reaches_its_clients_even_if_its_hint_never_comes():
    """While hints flow, a local append leaves waking to its hint (which carries the event);
    if that hint is lost without the subscription dropping, HINT_GRACE still wakes them,
    long before the periodic re-read (RELAY_FASTPATH_TTL, 60 s here)."""
    relay = RelayProcess(
        {
            "RELAY_JWT_SECRET": JWT_SECRET,
            "RELAY_API_KEYS": API_KEY,
            "RELAY_CONFIG": "",
            "RELAY_FASTPATH_TTL": "60s",
            "RELAY_TEST_HINT_DISORDER": "drop=1",
        }
    ).start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{relay.url}{POLL}", headers=auth()) as response:
                cursor = (await response.json())["timestamp"]
            source = EventSource([relay.url], token(), last_check=cursor).start(session)
            await asyncio.wait_for(source.connected.wait(), 5)
            waiting = asyncio.ensure_future(
                session.get(
                    f"{relay.url}{POLL}",
                    params={"last_check": cursor, "wait": "30"},
                    headers=auth(),
                )
            )
            await asyncio.sleep(0.3)  # the long-poll is waiting (nothing can answer it yet)
            started = time.monotonic()
            await publish(session, relay.url, ["own-1"])
            answer = await (await waiting).json()
            await until(lambda: bool(source.updates), 10, "(the stream never got it)")
            elapsed = time.monotonic() - started
            await source.stop()
    finally:
        relay.stop()
    assert [u["data"]["message"]["id"] for u in answer["updates"]] == ["own-1"]
    assert [u["data"]["message"]["id"] for u in source.updates] == ["own-1"]
    assert elapsed < 5, elapsed
