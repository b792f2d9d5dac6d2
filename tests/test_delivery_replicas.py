"""Push delivery across `relay serve` processes on one Redis, to a real HTTP receiver:
a replica SIGKILLed mid-way under a flaky receiver, and a replica frozen past its lease."""

from __future__ import annotations

import asyncio
import random
import signal
import time

import aiohttp

from relay.cursor import format_cursor, parse_cursor
from tests.credentials import API, API_KEY, JWT_SECRET
from tests.helpers import publish_to_any
from tests.receiver import LATE, SECRET, Receiver
from tests.servers import RedisServer, RelayProcess

ACCOUNTS = [f"acct{i}" for i in range(5)]
PUBLISHERS, EVENTS = 8, 2000


def relay_env(redis_url: str, config, lease: str, **extra: str) -> dict[str, str]:
    return {
        "RELAY_REDIS_URL": redis_url,
        "RELAY_JWT_SECRET": JWT_SECRET,
        "RELAY_API_KEYS": API_KEY,
        "RELAY_CONFIG": str(config),
        "CRM_SECRET": SECRET,
        # Shorter than the production defaults (1 s to 10 min, 30 s), documented in
        # docs/operations.md, so that the test runs in seconds.
        "RELAY_DELIVERY_RETRY_MIN": "20ms",
        "RELAY_DELIVERY_RETRY_MAX": "200ms",
        "RELAY_DELIVERY_LEASE": lease,
        "RELAY_DELIVERY_SWEEP": "500ms",
        **extra,
    }


def write_config(tmp_path, url: str, accounts: list[str], timeout: str) -> object:
    config = tmp_path / "relay.toml"
    listed = ", ".join(f'"{a}"' for a in accounts)
    config.write_text(
        f'[subscribers.crm]\nurl = "{url}"\naccounts = [{listed}]\n'
        f'secret_env = "CRM_SECRET"\ntimeout = "{timeout}"\n'
    )
    return config


async def stored_ids(session, url: str, account: str) -> list[tuple[str, str]]:
    cursor, stored = "0", []
    while True:
        params = {"account": account, "last_check": cursor, "limit": "1000"}
        async with session.get(f"{url}/api/events", params=params, headers=API) as response:
            page = await response.json()
        stored += [(u["id"], u["timestamp"]) for u in page["updates"]]
        cursor = page["timestamp"]
        if not page["more"]:
            return stored


async def test_every_event_reaches_a_flaky_receiver_across_a_sigkill(redis_url, tmp_path):
    rng = random.Random(13)
    stalls = 0

    def flaky(path: str, event: dict, n: int) -> float:
        nonlocal stalls
        roll = rng.random()
        if roll < 0.05:
            stalls += 1
            return -1.0  # stall past the relay's 500 ms timeout (which hangs up on it)
        return 500 if roll < 0.35 else 204

    receiver = await Receiver(behaviour=flaky).start()
    config = write_config(tmp_path, receiver.url("crm"), ACCOUNTS, "500ms")
    env = relay_env(redis_url, config, lease="3s")
    a = RelayProcess(env).start()
    b: RelayProcess | None = None
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession() as session:
            # A first delivers one event per account, so it holds every lease when killed.
            for account in ACCOUNTS:
                await publish_to_any(
                    session, [a.url], {"account": account, "type": "t", "id": "hello"}
                )
            await receiver.wait_for(lambda: len({r.account for r in receiver.delivered()}) == 5)
            b = RelayProcess(env).start()
            urls = [a.url, b.url]
            per_publisher = EVENTS // PUBLISHERS

            async def publisher(w: int) -> None:
                for i in range(per_publisher):
                    account = ACCOUNTS[(w + i) % len(ACCOUNTS)]
                    event = {"account": account, "type": "message.created", "id": f"p{w}-{i}"}
                    await publish_to_any(session, urls[w % 2 :] + urls[: w % 2], event)

            held_by_a = 0

            async def kill_midway() -> float:
                nonlocal held_by_a
                await receiver.wait_for(lambda: len(receiver.delivered()) >= EVENTS // 3, 120)
                async with session.get(f"{b.url}/api/admin/subscribers", headers=API) as r:
                    (crm,) = (await r.json())["subscribers"]
                pid = f":{a.process.pid}:"
                held_by_a = sum(pid in (acc["holder"] or "") for acc in crm["accounts"])
                a.process.send_signal(signal.SIGKILL)
                a.process.wait(10)
                killed_at = time.time()
                a.process = None
                a.start()  # the same port: a restarted pod
                return killed_at

            killing = asyncio.create_task(kill_midway())
            await asyncio.gather(*(publisher(w) for w in range(PUBLISHERS)))
            killed_at = await killing
            stored = {account: await stored_ids(session, b.url, account) for account in ACCOUNTS}
            total = sum(len(ids) for ids in stored.values())
            assert total == EVENTS + len(ACCOUNTS)

            def all_delivered() -> bool:
                got = {(r.account, r.msg_id) for r in receiver.delivered()}
                return all((acc, i) in got for acc in ACCOUNTS for i, _ in stored[acc])

            await receiver.wait_for(all_delivered, timeout=120)
            await asyncio.sleep(1.0)  # anything more that would come, comes now
    finally:
        for relay in (a, b):
            if relay is not None:
                relay.stop()
        await receiver.stop()
    elapsed = time.monotonic() - started

    assert held_by_a >= 1, "the killed replica was delivering when it died"
    assert all(r.verified for r in receiver.requests), "every signature verifies"
    redeliveries = 0
    after_2xx = 0  # receipts of events already delivered (the redelivered ones' retries too)
    worst_lag = 0.0
    for account in ACCOUNTS:
        order = [event_id for event_id, _ in stored[account]]
        mine = [r for r in receiver.requests if r.account == account]
        first_seen = list(dict.fromkeys(r.msg_id for r in mine))
        assert first_seen == order, f"{account}: first receipts are in store order"
        first_ok = list(dict.fromkeys(r.msg_id for r in mine if 200 <= r.status < 300))
        assert first_ok == order, f"{account}: first 2xx receipts are in store order"
        delivered_at: dict[str, float] = {}
        again = []  # receipts of an event after its first 2xx (its retries included)
        for r in mine:
            if r.msg_id in delivered_at:
                again.append(r)
            elif 200 <= r.status < 300:
                delivered_at[r.msg_id] = r.at
        redelivered = {r.msg_id for r in again}
        assert len(redelivered) <= 1, (
            f"{account}: at most one event redelivered for the one kill (at {killed_at:.3f}): "
            + "; ".join(f"{r.msg_id} {r.status} at {r.at:.3f}" for r in again)
        )
        assert sum(200 <= r.status < 300 for r in again) <= 1
        assert all(r.at >= killed_at - 0.5 for r in again), "redeliveries only around the kill"
        redeliveries += len(redelivered)
        after_2xx += len(again)
        stamps = dict(stored[account])
        for event_id, at in delivered_at.items():
            worst_lag = max(worst_lag, at - parse_cursor(stamps[event_id]) / 1e6)
    # Stalled requests are not in receiver.requests: the relay hung up on them.
    requests = len(receiver.requests) + stalls
    ok = len(receiver.delivered())
    print(
        f"\nchaos: events={total} requests={requests} 2xx={ok} "
        f"retries={requests - total - after_2xx} redeliveries={redeliveries} "
        f"stalls={stalls} late={sum(r.status == LATE for r in receiver.requests)} "
        f"worst_lag={worst_lag:.2f}s elapsed={elapsed:.1f}s leases_held_by_the_killed={held_by_a}"
    )


async def test_a_replica_frozen_past_its_lease_cannot_move_the_cursor(redis_url, tmp_path):
    receiver = await Receiver().start()
    config = write_config(tmp_path, receiver.url("crm"), ["fenced"], "30s")
    env = relay_env(redis_url, config, lease="1500ms")
    redis = RedisServer.__new__(RedisServer)
    redis.port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    key = "relay:{fenced}:sub:crm"

    def ledger() -> dict[str, str]:
        raw = redis.client().hgetall(key)
        return {k.decode(): v.decode() for k, v in raw.items()}

    a = RelayProcess(env).start()
    b: RelayProcess | None = None
    try:
        async with aiohttp.ClientSession() as session:

            async def send(url: str, event_id: str) -> int:
                event = {"account": "fenced", "type": "message.created", "id": event_id}
                return parse_cursor(await publish_to_any(session, [url], event))

            await send(a.url, "e0")
            await receiver.wait_for(lambda: len(receiver.delivered()) == 1)
            token_a = int(ledger()["fence"])
            # A's request for e1 is held by the receiver; A freezes with it in flight.
            release = receiver.hold_next = asyncio.Event()
            await send(a.url, "e1")
            await receiver.wait_for(lambda: receiver.holding == ["e1"])
            a.process.send_signal(signal.SIGSTOP)
            release.set()  # answered 204, but A is frozen and does not read it
            b = RelayProcess(env).start()
            # B takes over once A's lease lapses: it delivers e1 again, then e2 and e3.
            await send(b.url, "e2")
            e3 = await send(b.url, "e3")
            await receiver.wait_for(lambda: [r.msg_id for r in receiver.delivered()][-1:] == ["e3"])
            state = ledger()
            token_b = int(state["fence"])
            assert token_b > token_a and int(state["cursor"]) == e3
            assert state["holder"] != "" and state["holder"].split(":")[1] == str(b.process.pid)

            a.process.send_signal(signal.SIGCONT)
            # A reads its 204 for e1 (or times out) and tries to move the cursor under its
            # old token: back to e1. Watch the cursor while it tries.
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                state = ledger()
                assert int(state["cursor"]) == e3, "the stale replica moved the cursor"
                assert int(state["fence"]) == token_b
                await asyncio.sleep(0.02)
            # The new holder's progress stands and goes on.
            e4 = await send(a.url, "e4")
            await receiver.wait_for(lambda: [r.msg_id for r in receiver.delivered()][-1:] == ["e4"])
            await asyncio.sleep(0.5)
            assert int(ledger()["cursor"]) == e4
            assert int(ledger()["fence"]) == token_b
    finally:
        for relay in (a, b):
            if relay is not None:
                if relay.process is not None:
                    relay.process.send_signal(signal.SIGCONT)
                relay.stop()
        await receiver.stop()
    ids = [r.msg_id for r in receiver.delivered()]
    assert ids == ["e0", "e1", "e1", "e2", "e3", "e4"], ids
    print(f"\nfencing: deliveries {ids}, cursor {format_cursor(e4)} under token {token_b}")
    print("A's log:", [line for line in a.log().splitlines() if "delivery." in line][-3:])


async def test_a_replica_stopped_with_sigterm_hands_its_accounts_over_at_once(redis_url, tmp_path):
    receiver = await Receiver().start()
    config = write_config(tmp_path, receiver.url("crm"), ["handover"], "10s")
    env = relay_env(redis_url, config, lease="60s")  # far longer than the test waits
    a = RelayProcess(env).start()
    b = RelayProcess(env).start()
    try:
        async with aiohttp.ClientSession() as session:
            event = {"account": "handover", "type": "message.created", "id": "e0"}
            await publish_to_any(session, [a.url], event)
            await receiver.wait_for(lambda: len(receiver.delivered()) == 1)
            a.stop()  # SIGTERM: its leases are released, not left to lapse
            stopped = time.monotonic()
            await publish_to_any(session, [b.url], {**event, "id": "e1"})
            await receiver.wait_for(lambda: len(receiver.delivered()) == 2, timeout=20)
            assert time.monotonic() - stopped < 20 < 60
    finally:
        a.stop()
        b.stop()
        await receiver.stop()
    assert [r.msg_id for r in receiver.delivered()] == ["e0", "e1"]
