"""Live delivery figures: publish→client latency with many open SSE streams or long-polls,
and the RSS each idle SSE stream costs the relay process.

The clients are raw asyncio protocols (no HTTP client library), so that receiving one
frame on a thousand sockets costs the measuring side microseconds, not the milliseconds an
aiohttp client spends per response; what is measured is relay, not the client.
Latency is from the moment the publisher stamps an event (`sent_ns`, just before its
POST /api/publish goes out) to the moment a client's socket delivers the frame holding it.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.parse
from dataclasses import dataclass

import aiohttp

from bench import fixtures

SENT = re.compile(rb'"sent_ns":(\d+)[,}]')
TIMESTAMP = re.compile(rb'^\{"timestamp":"([^"]+)"')


@dataclass
class Latency:
    deliveries: int
    expected: int
    p50_ms: float
    p99_ms: float
    max_ms: float


class _Client(asyncio.Protocol):
    def __init__(self, host: str, latencies: list[float]) -> None:
        self.host = host
        self.latencies = latencies
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.ready = asyncio.get_running_loop().create_future()
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before ready"))

    def record(self, chunk: bytes, arrived: int) -> None:
        for match in SENT.finditer(chunk):
            self.latencies.append((arrived - int(match[1])) / 1e6)


class SSEClient(_Client):
    """One EventSource: headers, then frames; records every `sent_ns` it sees."""

    def start(self, path: str) -> None:
        assert self.transport is not None
        head = f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nAccept: text/event-stream\r\n\r\n"
        self.transport.write(head.encode())

    def data_received(self, data: bytes) -> None:
        arrived = time.perf_counter_ns()
        if not self.ready.done():
            self.buffer += data
            if b"retry:" not in self.buffer:
                return
            if not self.buffer.startswith(b"HTTP/1.1 200"):
                self.ready.set_exception(RuntimeError(self.buffer[:200].decode(errors="replace")))
                return
            self.ready.set_result(None)
            data, self.buffer = self.buffer, b""
        self.record(data, arrived)


class LongPollClient(_Client):
    """One long-poller on a keep-alive connection: poll with wait, record, poll again with
    the timestamp it was given (exactly what the frontend does)."""

    def __init__(self, host: str, latencies: list[float], token: str, wait: int) -> None:
        super().__init__(host, latencies)
        self.token = token
        self.wait = wait
        self.body_length: int | None = None
        self.polls = 0

    def poll(self, cursor: str) -> None:
        assert self.transport is not None
        query = urllib.parse.urlencode({"last_check": cursor, "wait": self.wait})
        self.transport.write(
            (
                f"GET /api/chats/check-updates/?{query} HTTP/1.1\r\nHost: {self.host}\r\n"
                f"Authorization: Bearer {self.token}\r\n\r\n"
            ).encode()
        )
        self.polls += 1
        if self.polls == 2 and not self.ready.done():
            # The second request is the one that waits: it is armed.
            self.ready.set_result(None)

    def data_received(self, data: bytes) -> None:
        arrived = time.perf_counter_ns()
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            if self.body_length is None:
                head = self.buffer[:head_end].lower()
                length = re.search(rb"content-length:\s*(\d+)", head)
                if not head.startswith(b"http/1.1 200") or length is None:
                    if not self.ready.done():
                        self.ready.set_exception(RuntimeError(head[:200].decode()))
                    return
                self.body_length = int(length[1])
            end = head_end + 4 + self.body_length
            if len(self.buffer) < end:
                return
            body = self.buffer[head_end + 4 : end]
            self.buffer = self.buffer[end:]
            self.body_length = None
            self.record(body, arrived)
            cursor = TIMESTAMP.match(body)
            assert cursor is not None, body[:200]
            self.poll(cursor[1].decode())


async def _connect(factory, port: int, limit: asyncio.Semaphore):
    async with limit:
        loop = asyncio.get_running_loop()
        for attempt in range(5):
            try:
                _, client = await loop.create_connection(factory, "127.0.0.1", port)
                return client
            except OSError:
                await asyncio.sleep(0.2 * (attempt + 1))
        raise ConnectionError(f"cannot connect to 127.0.0.1:{port}")


async def open_streams(
    base_url: str, port: int, accounts: list[str], count: int, latencies: list[float]
) -> list[SSEClient]:
    """`count` SSE streams, spread round-robin over `accounts`, one user each."""
    cursors = {account: fixtures.current_cursor(base_url, account) for account in accounts}
    limit = asyncio.Semaphore(64)

    async def one(n: int) -> SSEClient:
        account = accounts[n % len(accounts)]
        client = await _connect(lambda: SSEClient("127.0.0.1", latencies), port, limit)
        query = urllib.parse.urlencode(
            {"token": fixtures.token(account, f"user-{n}"), "last_check": cursors[account]}
        )
        client.start(f"/api/chats/realtime-updates/?{query}")
        await asyncio.wait_for(client.ready, 30)
        return client

    return list(await asyncio.gather(*(one(n) for n in range(count))))


async def open_longpolls(
    base_url: str, port: int, accounts: list[str], count: int, latencies: list[float]
) -> list[LongPollClient]:
    cursors = {account: fixtures.current_cursor(base_url, account) for account in accounts}
    limit = asyncio.Semaphore(64)

    async def one(n: int) -> LongPollClient:
        account = accounts[n % len(accounts)]
        token = fixtures.token(account, f"user-{n}")
        client = await _connect(
            lambda: LongPollClient("127.0.0.1", latencies, token, 25), port, limit
        )
        client.poll(cursors[account])
        return client

    clients = list(await asyncio.gather(*(one(n) for n in range(count))))
    await asyncio.wait_for(asyncio.gather(*(c.ready for c in clients)), 60)
    return clients


async def publish_and_measure(
    base_url: str,
    accounts: list[str],
    per_account: int,
    events: int,
    interval: float,
    latencies: list[float],
) -> Latency:
    """Publish `events` events round-robin over `accounts`, one every `interval` seconds."""
    await asyncio.sleep(0.5)  # let every waiter settle into its wait
    latencies.clear()
    headers = {"Authorization": f"Bearer {fixtures.API_KEY}"}
    async with aiohttp.ClientSession() as session:
        for n in range(events):
            account = accounts[n % len(accounts)]
            body = fixtures.message(account, n, sent_ns=time.perf_counter_ns())
            async with session.post(f"{base_url}/api/publish", json=body, headers=headers) as r:
                assert r.status == 201, await r.text()
            await asyncio.sleep(interval)
        expected = events * per_account
        deadline = time.monotonic() + 10
        while len(latencies) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    return summarize(latencies, expected)


def summarize(latencies: list[float], expected: int) -> Latency:
    ordered = sorted(latencies)
    n = len(ordered)
    if not n:
        return Latency(0, expected, 0.0, 0.0, 0.0)
    return Latency(n, expected, ordered[n // 2], ordered[min(n - 1, int(n * 0.99))], ordered[-1])


async def latency(
    mode: str, base_url: str, port: int, connections: int, accounts: int, events: int
) -> Latency:
    names = [f"live-{mode}-{a}" for a in range(accounts)]
    latencies: list[float] = []
    opener = open_streams if mode == "sse" else open_longpolls
    clients = await opener(base_url, port, names, connections, latencies)
    try:
        return await publish_and_measure(
            base_url, names, connections // accounts, events, 0.05, latencies
        )
    finally:
        for client in clients:
            if client.transport is not None:
                client.transport.close()


async def idle_stream_rss(base_url: str, port: int, pid: int, count: int) -> tuple[int, int]:
    """(RSS before, RSS after) of the relay process, in KiB, around `count` idle streams."""
    from bench.servers import rss_kb

    accounts = [f"idle-{a}" for a in range(50)]
    # Warm: one stream per account opened and closed, so lazily built state is not counted.
    warm = await open_streams(base_url, port, accounts, len(accounts), [])
    for client in warm:
        client.transport.close()
    await asyncio.sleep(1.0)
    before = rss_kb(pid)
    clients = await open_streams(base_url, port, accounts, count, [])
    await asyncio.sleep(1.0)
    after = rss_kb(pid)
    alive = sum(1 for c in clients if not c.closed)
    for client in clients:
        client.transport.close()
    if alive != count:
        raise RuntimeError(f"only {alive} of {count} streams stayed open")
    return before, after


@dataclass
class Fanout:
    latency: Latency
    published: int
    cpu_us_per_delivery: float
    duplicates: int
    refused: int  # events whose publish was not answered 201 (relay overloaded)


async def fanout(
    base_url: str,
    port: int,
    pid: int,
    streams: int,
    accounts: int,
    rate: int,
    seconds: float,
) -> Fanout:
    """`streams` SSE streams over `accounts` accounts; `rate` events a second for `seconds`,
    round-robin over the accounts, 10 per publish request. Every stream must get each of
    its account's events once; relay's CPU is reported per delivered event."""
    from bench.servers import cpu_seconds

    names = [f"fanout-{a}" for a in range(accounts)]
    latencies: list[float] = []
    clients = await open_streams(base_url, port, names, streams, latencies)
    seen = [0] * len(clients)
    for n, client in enumerate(clients):  # count frames per client, to catch duplicates

        def record(chunk: bytes, arrived: int, n: int = n, client=client) -> None:
            hits = SENT.findall(chunk)
            seen[n] += len(hits)
            for sent in hits:
                latencies.append((arrived - int(sent)) / 1e6)

        client.record = record  # type: ignore[method-assign]
    try:
        await asyncio.sleep(1.0)
        latencies.clear()
        headers = {"Authorization": f"Bearer {fixtures.API_KEY}"}
        batch, interval = 10, 10 / rate
        total = int(rate * seconds) // batch * batch
        cpu_before = cpu_seconds(pid)
        started = time.perf_counter()
        stored = [0] * accounts  # events per account that relay acknowledged
        refused = 0
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def publish(first: int) -> None:
                nonlocal refused
                now = time.perf_counter_ns()
                body = [
                    fixtures.message(names[n % accounts], n, sent_ns=now)
                    for n in range(first, first + batch)
                ]
                url = f"{base_url}/api/publish"
                try:
                    async with session.post(url, json=body, headers=headers) as r:
                        ok = r.status == 201
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                if not ok:  # unacknowledged: it may or may not be stored; not counted
                    refused += batch
                    return
                for n in range(first, first + batch):
                    stored[n % accounts] += 1

            pending = []
            for first in range(0, total, batch):
                pending.append(asyncio.create_task(publish(first)))
                delay = started + (first // batch + 1) * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            await asyncio.gather(*pending)
        expected = sum(stored) * (streams // accounts)
        deadline = time.monotonic() + 20
        while len(latencies) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # a duplicate would arrive now
        cpu = cpu_seconds(pid) - cpu_before
        duplicates = 0
        if not refused:  # a refused publish may still have been stored and delivered
            duplicates = sum(max(0, count - stored[n % accounts]) for n, count in enumerate(seen))
        result = summarize(latencies, expected)
        per_delivery = cpu / max(1, result.deliveries) * 1e6
        return Fanout(result, total, per_delivery, duplicates, refused)
    finally:
        for client in clients:
            if client.transport is not None:
                client.transport.close()
