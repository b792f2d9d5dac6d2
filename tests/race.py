"""The exactly-once scenario: concurrent publishers and echoing pollers over real HTTP."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp

from tests.credentials import API, auth

PUBLISHERS, PER_PUBLISHER, POLLERS = 16, 200, 10


@dataclass
class Poller:
    url: str
    cursor: str = ""
    seen: list[tuple[str, str]] = field(default_factory=list)  # (timestamp, id)
    polls: int = 0
    resets: int = 0


async def _poll(
    session: aiohttp.ClientSession, poller: Poller, headers, pull_account: str | None = None
) -> list[dict]:
    """check-updates with a browser token, or (pull_account) the pull API with an API key."""
    path, params = "/api/chats/check-updates/", {"last_check": poller.cursor, "limit": "1000"}
    if pull_account is not None:
        path, params = "/api/events", {**params, "account": pull_account}
    deadline = time.monotonic() + 30
    while True:
        async with session.get(f"{poller.url}{path}", params=params, headers=headers) as r:
            # 503: the store did not answer in time (a slot mid-migration on a loaded
            # machine); a browser polls again, and so does this one.
            if r.status == 503 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                continue
            assert r.status == 200, await r.text()
            answer = await r.json()
            break
    poller.polls += 1
    poller.resets += answer["reset"]
    poller.cursor = answer["timestamp"]  # always echo the server's cursor, never a clock
    poller.seen += [(u["timestamp"], u["id"]) for u in answer["updates"]]
    return answer["updates"]


async def run_race(
    publish_urls: list[str], poll_urls: list[str], account: str = "race", pull: bool = False
) -> dict:
    """`pull`: the pollers are the main application on `GET /api/events`, not browsers."""
    total = PUBLISHERS * PER_PUBLISHER
    headers = API if pull else auth(account)
    pull_account = account if pull else None
    pollers = [Poller(poll_urls[i % len(poll_urls)]) for i in range(POLLERS)]
    acked: dict[str, str] = {}
    done_publishing = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        for poller in pollers:  # every poller starts "from now", before any publish
            await _poll(session, poller, headers, pull_account)

        async def publisher(w: int) -> None:
            url = f"{publish_urls[w % len(publish_urls)]}/api/publish"
            for i in range(PER_PUBLISHER):
                event = {
                    "account": account,
                    "type": "message.created",
                    "id": f"p{w}-{i}",
                    "chat_id": f"c{w}",
                    "data": {"n": i},
                }
                deadline = time.monotonic() + 30
                while True:
                    async with session.post(url, json=event, headers=API) as response:
                        # 503 means "not stored, or not known to be": a sender retries the
                        # same id, which lands once (a duplicate answer if it had landed).
                        if response.status == 503 and time.monotonic() < deadline:
                            await asyncio.sleep(0.05)
                            continue
                        assert response.status == 201, await response.text()
                        (stored,) = (await response.json())["events"]
                        acked[stored["id"]] = stored["timestamp"]
                        break

        async def poll_until_complete(poller: Poller) -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                updates = await _poll(session, poller, headers, pull_account)
                if done_publishing.is_set() and len(poller.seen) >= total:
                    break
                if not updates:
                    await asyncio.sleep(0.002)
            await _poll(session, poller, headers, pull_account)  # one more: nothing may come twice

        started = time.monotonic()
        polling = [asyncio.create_task(poll_until_complete(p)) for p in pollers]
        await asyncio.gather(*(publisher(w) for w in range(PUBLISHERS)))
        done_publishing.set()
        await asyncio.gather(*polling)
        elapsed = time.monotonic() - started

    assert len(acked) == total
    expected = sorted((ts, event_id) for event_id, ts in acked.items())
    for poller in pollers:
        assert poller.resets == 0
        assert poller.seen == expected, "every poller sees every event exactly once, in order"
    return {"events": total, "seconds": elapsed, "polls": sum(p.polls for p in pollers)}
