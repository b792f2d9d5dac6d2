"""The chaos scenario, shared by tests/chaos/test_chaos.py (CI size) and bench/chaos.py
(longer): real Redis with AOF (`appendfsync always`), two `relay serve` processes, senders
that sign Standard Webhooks and retry like providers, echoing long-poll and SSE clients, and
faults injected by progress. `run(plan)` returns the outcome; `check(outcome)` lists every
broken promise; `figures(outcome)` is the JSON line both print.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import shutil
import signal
import socket
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

from relay.auth import mint_token
from relay.ingest.providers.standard_webhooks import secret_keys, sign
from relay.store.keys import stream_key
from tests.servers import RedisServer, RelayProcess, free_port
from tests.sse_client import EventSource

ACCOUNT = "acme"
SOURCE = "acme-chaos"
SECRET = "whsec_Y2hhb3MtdGVzdC1zZWNyZXQtbm90LWZvci1wcm9kISE="
SECRET_ENV = "ACME_CHAOS_SECRET"
JWT_SECRET = "chaos-jwt-secret-0123456789abcdef0123456789"
POLL = "/api/chats/check-updates/"
ROUND = ("redis_kill", "relay_term", "redis_kill", "redis_pause")


@dataclass(frozen=True)
class Plan:
    senders: int = 16
    webhooks_per_sender: int = 30
    clients: int = 20  # half long-pollers, half SSE clients
    rounds: int = 1  # how many times ROUND's faults are injected
    redis_timeout: float = 0.5  # RELAY_REDIS_TIMEOUT: a store call gives up after 2x this
    pause: float = 2.0  # SIGSTOP length, well past a store call's budget
    down: float = 0.5  # how long a SIGKILLed Redis stays dead before it is restarted
    give_up_after: float = 60.0  # a sender's budget per webhook, as a provider's retry window
    backoff_base: float = 0.05
    backoff_cap: float = 2.0
    deadline: float = 180.0  # the whole run, so that a hang fails instead of blocking CI
    # Redis persistence: "always" (the zero-loss setting), "everysec", or "off" (no AOF,
    # to see the verdict catch a Redis that comes back empty).
    appendfsync: str = "always"

    @property
    def webhooks(self) -> int:
        return self.senders * self.webhooks_per_sender

    @property
    def faults(self) -> list[str]:
        return list(ROUND) * self.rounds

    def segment(self, n: int) -> int:
        """Each sender's webhooks come in len(faults) + 1 segments: segment k + 1 starts
        once fault k is over, so that every fault meets traffic and is followed by some."""
        return n * (len(self.faults) + 1) // self.webhooks_per_sender

    def threshold(self, k: int) -> int:
        """Acks before fault k: every earlier segment and half of segment k."""
        sizes = Counter(self.segment(n) for n in range(self.webhooks_per_sender))
        return self.senders * (sum(sizes[s] for s in range(k)) + sizes[k] // 2)


# -- the processes ------------------------------------------------------------------------


def restartable_port() -> int:
    """A free port below the kernel's ephemeral range. While Redis or a relay is down for a
    restart its port is free, and one in the ephemeral range can meanwhile become the local
    port of any outgoing connection on the machine (or another test's free_port()), so that
    the restart cannot bind it. Outside that range, only an explicit bind can take it."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return free_port()
    pick = random.SystemRandom()
    for _ in range(200):
        port = pick.randrange(max(1024, low - 10_000), low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


class Rig:
    """Redis (AOF, fsync always) and two relays on it; every process stopped on close."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        persistence = ["--appendonly", "yes", "--appendfsync", plan.appendfsync]
        if plan.appendfsync == "off":
            persistence = ["--appendonly", "no"]
        self.redis = RedisServer(*persistence, port=restartable_port())
        self.config = Path(tempfile.mkdtemp(prefix="relay-chaos-")) / "relay.toml"
        self.config.write_text(
            f'[sources.{SOURCE}]\nprovider = "standard_webhooks"\naccount = "{ACCOUNT}"\n'
            f'secret_env = "{SECRET_ENV}"\n'
        )
        env = {
            "RELAY_REDIS_URL": self.redis.url,
            "RELAY_REDIS_TIMEOUT": f"{int(plan.redis_timeout * 1000)}ms",
            "RELAY_JWT_SECRET": JWT_SECRET,
            "RELAY_CONFIG": str(self.config),
            "RELAY_SHUTDOWN_TIMEOUT": "5s",
            "RELAY_MAX_EVENTS": "0",  # keep every event: the verdict compares all of them
            SECRET_ENV: SECRET,
        }
        self.relays = [RelayProcess(env, port=restartable_port()) for _ in range(2)]
        self.paused = False

    @property
    def urls(self) -> list[str]:
        return [relay.url for relay in self.relays]

    def start(self) -> Rig:
        try:
            self.redis.start()
            for relay in self.relays:
                relay.start()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self.paused and self.redis.process:
            self.redis.process.send_signal(signal.SIGCONT)
        for relay in self.relays:
            relay.stop()
        self.redis.stop()
        # The AOF of a long run is tens of megabytes; Redis's and the relays' logs stay for
        # a post-mortem.
        for aof in Path(self.redis.dir).glob("appendonly*"):
            shutil.rmtree(aof, ignore_errors=True) if aof.is_dir() else aof.unlink()
        shutil.rmtree(self.config.parent, ignore_errors=True)

    def __enter__(self) -> Rig:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def logs(self) -> str:
        return "\n".join(relay.log() for relay in self.relays)

    def stored(self) -> list[tuple[str, int]]:
        """(event id, timestamp) of every stored event, in store order, from Redis itself."""
        rows = self.redis.client().zrange(stream_key(ACCOUNT), 0, -1, withscores=True)
        return [
            (orjson.loads(member.split(b"\n", 1)[1])["id"], int(score)) for member, score in rows
        ]

    async def inject(self, kind: str) -> Fault:
        """Send the fault's signal from the event loop (so that its moment is exact), then
        wait for the process in a thread and undo the fault."""
        redis, relay = self.redis.process, self.relays[1].process
        assert redis and relay
        if kind == "redis_kill":
            redis.kill()
            fault = Fault(kind, time.monotonic())
            await asyncio.to_thread(self.redis.stop)
            await asyncio.sleep(self.plan.down)  # as a supervisor's restart delay would
            await asyncio.to_thread(self.redis.start)  # the same port and dir: its AOF
        elif kind == "relay_term":
            relay.send_signal(signal.SIGTERM)
            fault = Fault(kind, time.monotonic(), relay=1)
            await asyncio.to_thread(relay.wait, 15)  # it drains what it holds, then exits
            self.relays[1].stop()
            await asyncio.to_thread(self.relays[1].start)  # the same port: clients come back
        elif kind == "redis_pause":
            redis.send_signal(signal.SIGSTOP)
            fault = Fault(kind, time.monotonic())
            self.paused = True
            try:
                await asyncio.sleep(self.plan.pause)  # the fault *is* a length of time
            finally:
                redis.send_signal(signal.SIGCONT)
                self.paused = False
        else:
            raise ValueError(f"unknown fault {kind!r}")
        fault.restored = time.monotonic()
        return fault


# -- what happened --------------------------------------------------------------------------


@dataclass
class Fault:
    kind: str
    injected: float
    restored: float = 0.0
    relay: int | None = None  # the relay that was stopped, for relay faults


@dataclass
class Ack:
    webhook: str
    relay: int
    started: float
    ended: float


@dataclass
class Tally:
    acks: list[Ack] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)  # non-2xx answers
    errors: Counter[str] = field(default_factory=Counter)  # no answer: exception names
    retries: int = 0
    gave_up: list[str] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)


@dataclass
class Outcome:
    plan: Plan
    tally: Tally
    stored: list[tuple[str, int]]
    pollers: list[Poller]
    streams: list[EventSource]
    logs: str
    seconds: float
    delivered_in: float  # from the last ack to the moment every client had everything


# -- senders --------------------------------------------------------------------------------


def webhook_id(sender: int, n: int) -> str:
    return f"msg_{sender:02d}_{n:06d}"


def event_id(msg_id: str) -> str:
    return f"{SOURCE}:{msg_id}"


def signed(msg_id: str, body: bytes) -> dict[str, str]:
    """Headers of one delivery attempt: the same id, a fresh timestamp, a new signature."""
    stamp = str(int(time.time()))
    signature = sign(secret_keys(SECRET)[0], msg_id, stamp, body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": f"v1,{signature}",
        "Content-Type": "application/json",
    }


async def send(
    session: aiohttp.ClientSession,
    urls: list[str],
    plan: Plan,
    sender: int,
    tally: Tally,
    over: list[asyncio.Event],
) -> None:
    """One provider: its webhooks in order, each retried until a 2xx or its budget is spent,
    with exponential backoff and jitter, alternating between the two relays."""
    jitter = random.Random(sender)
    for n in range(plan.webhooks_per_sender):
        segment = plan.segment(n)
        if segment:
            await over[segment - 1].wait()
        msg_id = webhook_id(sender, n)
        body = orjson.dumps(
            {
                "type": "message.created",
                "data": {
                    "chat_id": f"chat_{sender:02d}",
                    "message": {"id": msg_id, "kind": "text", "text": f"message {n}"},
                },
            }
        )
        give_up = time.monotonic() + plan.give_up_after
        attempt = 0
        while True:
            relay = (sender + n + attempt) % len(urls)
            started = time.monotonic()
            try:
                async with session.post(
                    f"{urls[relay]}/webhooks/{SOURCE}",
                    data=body,
                    headers=signed(msg_id, body),
                    timeout=aiohttp.ClientTimeout(total=5),
                ) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError, ConnectionError) as error:
                status = 0
                tally.errors[type(error).__name__] += 1
            if 200 <= status < 300:
                tally.acks.append(Ack(msg_id, relay, started, time.monotonic()))
                break
            if status:
                tally.statuses[status] += 1
            if time.monotonic() >= give_up:
                tally.gave_up.append(msg_id)
                break
            attempt += 1
            tally.retries += 1
            delay = min(plan.backoff_cap, plan.backoff_base * 2 ** (attempt - 1))
            await asyncio.sleep(delay / 2 + jitter.uniform(0, delay / 2))


async def inject_faults(rig: Rig, plan: Plan, tally: Tally, over: list[asyncio.Event]) -> None:
    """Fault k once half of segment k is acked (its other half meets the fault); when it is
    over, the senders move on to segment k + 1."""
    try:
        for k, kind in enumerate(plan.faults):
            while len(tally.acks) < plan.threshold(k):
                await asyncio.sleep(0.01)
            tally.faults.append(await rig.inject(kind))
            over[k].set()
    finally:
        for event in over:  # on an error, let the senders finish rather than hang
            event.set()


# -- echoing clients ------------------------------------------------------------------------


@dataclass
class Poller:
    """A browser long-polling with `wait`, echoing `timestamp` back as `last_check`; on a
    failure it tries the other relay, as a load balancer would send it there."""

    urls: list[str]
    token: str
    cursor: str
    updates: list[dict] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    resets: int = 0

    async def run(self, session: aiohttp.ClientSession) -> None:
        turn = 0
        headers = {"Authorization": f"Bearer {self.token}"}
        while True:
            params = {"last_check": self.cursor, "wait": "5", "limit": "1000"}
            try:
                async with session.get(
                    f"{self.urls[turn % len(self.urls)]}{POLL}",
                    params=params,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=15),
                ) as response:
                    answer = await response.json() if response.status == 200 else None
                    if answer is None:
                        self.statuses[response.status] += 1
            except (aiohttp.ClientError, TimeoutError, ConnectionError):
                answer = None
                self.errors += 1
            if answer is None:
                turn += 1
                await asyncio.sleep(0.05)
                continue
            self.resets += bool(answer["reset"])
            self.cursor = answer["timestamp"]
            self.updates += answer["updates"]


async def start_cursor(session: aiohttp.ClientSession, url: str) -> str:
    """The account's cursor before any webhook: where every client starts."""
    headers = {"Authorization": f"Bearer {mint_token(JWT_SECRET, ACCOUNT, 'chaos-start')}"}
    async with session.get(f"{url}{POLL}", headers=headers) as response:
        assert response.status == 200, await response.text()
        return (await response.json())["timestamp"]


# -- the run --------------------------------------------------------------------------------


async def run(plan: Plan, rig: Rig) -> Outcome:
    started = time.monotonic()
    urls = rig.urls
    tally = Tally()
    over = [asyncio.Event() for _ in plan.faults]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        cursor = await start_cursor(session, urls[0])
        pollers = [
            Poller(
                urls[i % 2 :] + urls[: i % 2], mint_token(JWT_SECRET, ACCOUNT, f"poll-{i}"), cursor
            )
            for i in range(plan.clients // 2)
        ]
        streams = [
            EventSource(
                urls[i % 2 :] + urls[: i % 2],
                mint_token(JWT_SECRET, ACCOUNT, f"sse-{i}"),
                last_check=cursor,
            )
            for i in range(plan.clients - len(pollers))
        ]
        clients = [asyncio.create_task(p.run(session)) for p in pollers]
        for stream in streams:
            stream.start(session)
        try:
            async with asyncio.timeout(plan.deadline):
                await asyncio.gather(*(s.connected.wait() for s in streams))
                await asyncio.gather(
                    inject_faults(rig, plan, tally, over),
                    *(send(session, urls, plan, s, tally, over) for s in range(plan.senders)),
                )
                acked = time.monotonic()
                everyone = [*pollers, *streams]
                # Bounded: a client that lost an event never gets there, and check() says so.
                while any(len(c.updates) < len(tally.acks) for c in everyone):
                    if time.monotonic() - acked > 30:
                        break
                    await asyncio.sleep(0.02)
                delivered_in = time.monotonic() - acked
                await asyncio.sleep(0.5)  # a duplicate arriving late would show here
        finally:
            for task in clients:
                task.cancel()
            await asyncio.gather(*clients, return_exceptions=True)
            for stream in streams:
                await stream.stop()
    return Outcome(
        plan,
        tally,
        rig.stored(),
        pollers,
        streams,
        rig.logs(),
        time.monotonic() - started,
        delivered_in,
    )


# -- the verdict and the figures ------------------------------------------------------------


def check(outcome: Outcome) -> list[str]:
    """Every broken promise, as a sentence; an empty list means the run kept them all."""
    plan, tally = outcome.plan, outcome.tally
    problems: list[str] = []
    acked = {event_id(ack.webhook) for ack in tally.acks}
    if len(tally.acks) != plan.webhooks or tally.gave_up:
        problems.append(
            f"{len(tally.acks)} of {plan.webhooks} webhooks acked; gave up on {tally.gave_up}"
        )
    if len(tally.faults) != len(plan.faults):
        problems.append(f"{len(tally.faults)} of {len(plan.faults)} faults injected")
    stored_ids = [event for event, _ in outcome.stored]
    stamps = [stamp for _, stamp in outcome.stored]
    if len(set(stored_ids)) != len(stored_ids):
        problems.append("an event is stored twice")
    if any(b <= a for a, b in itertools.pairwise(stamps)):
        problems.append("stored timestamps are not strictly increasing")
    if set(stored_ids) != acked:
        problems.append(
            f"stored != acked: {len(acked - set(stored_ids))} acked but not stored "
            f"(lost), {len(set(stored_ids) - acked)} stored but never acked"
        )
    clients = [("poll", i, c) for i, c in enumerate(outcome.pollers)]
    clients += [("sse", i, c) for i, c in enumerate(outcome.streams)]
    for kind, i, client in clients:
        seen = [update["id"] for update in client.updates]
        if seen != stored_ids:
            counts = Counter(seen)
            problems.append(
                f"{kind} client {i}: saw {len(seen)} events, {len(set(seen))} distinct, "
                f"{sum(1 for c in counts.values() if c > 1)} duplicated, "
                f"{len(acked - set(seen))} acked ones never seen, "
                f"{len(set(seen) - set(stored_ids))} not in the store"
            )
        times = [update["timestamp"] for update in client.updates]
        if times != sorted(set(times)):
            problems.append(f"{kind} client {i}: timestamps not strictly increasing")
        if client.resets:
            problems.append(f"{kind} client {i}: told to reset {client.resets} times")
    server_errors = {s: n for s, n in tally.statuses.items() if s >= 500 and s != 503}
    for _, _, client in clients:
        statuses = client.statuses if isinstance(client, Poller) else Counter(client.statuses)
        server_errors.update({s: n for s, n in statuses.items() if s >= 500 and s != 503})
    if server_errors:
        problems.append(f"server errors other than 503: {server_errors}")
    if "Traceback" in outcome.logs:
        problems.append("a traceback in a relay's log")
    return problems


def figures(outcome: Outcome) -> dict:
    tally = outcome.tally
    faults = []
    for fault in tally.faults:
        after = [ack.ended for ack in tally.acks if ack.started >= fault.injected]
        entry = {
            "fault": fault.kind,
            "restored_after_s": round(fault.restored - fault.injected, 3),
            "recovery_s": round(min(after) - fault.injected, 3) if after else None,
            # relay's own share: from the fault undone (Redis answering, the relay listening)
            # to the first ack; 0 when an ack came while the restart was being confirmed.
            "after_restore_s": round(max(0.0, min(after) - fault.restored), 3) if after else None,
        }
        if fault.relay is not None:
            # Until it exits, a SIGTERMed relay still finishes the requests it has: count
            # from its restart on.
            back = [
                ack.ended
                for ack in tally.acks
                if ack.relay == fault.relay and ack.started >= fault.restored
            ]
            entry["stopped_relay_acks_again_s"] = (
                round(min(back) - fault.injected, 3) if back else None
            )
        faults.append(entry)
    recoveries = [f["recovery_s"] for f in faults if f["recovery_s"] is not None]
    worst: dict[str, float] = {}
    for f in faults:
        if f["recovery_s"] is not None:
            worst[f["fault"]] = max(worst.get(f["fault"], 0.0), f["recovery_s"])
    return {
        "faults_injected": len(tally.faults),
        "webhooks": outcome.plan.webhooks,
        "acks_2xx": len(tally.acks),
        "responses_503": tally.statuses.get(503, 0),
        "other_statuses": {str(s): n for s, n in sorted(tally.statuses.items()) if s != 503},
        "connection_errors": dict(tally.errors),
        "retries": tally.retries,
        "stored": len(outcome.stored),
        "clients": len(outcome.pollers) + len(outcome.streams),
        "sse_reconnects": sum(max(0, s.connects - 1) for s in outcome.streams),
        "poll_failures": sum(p.errors + sum(p.statuses.values()) for p in outcome.pollers),
        "max_recovery_s": max(recoveries) if recoveries else None,
        "max_recovery_s_by_fault": worst,
        "max_after_restore_s": max((f["after_restore_s"] or 0.0) for f in faults)
        if faults
        else None,
        "recovery": faults,
        "all_delivered_after_last_ack_s": round(outcome.delivered_in, 3),
        "total_s": round(outcome.seconds, 3),
    }


def figures_line(outcome: Outcome) -> str:
    return "chaos figures: " + json.dumps(figures(outcome))


async def run_with_rig(plan: Plan) -> Outcome:
    rig = await asyncio.to_thread(Rig(plan).start)
    try:
        return await run(plan, rig)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(rig.close)
