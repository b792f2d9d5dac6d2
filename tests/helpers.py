"""What tests do to a relay and then wait for: settings, events, publishing, and waits that
end on a condition (never on a fixed sleep) and say why they failed."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable

import aiohttp

from relay.events import Event
from relay.settings import Settings
from relay.store.base import Retention
from relay.store.memory import MemoryStore
from tests.credentials import API, API_KEY, JWT_SECRET


def settings_for(engine: str, redis_url: str | None = None, **overrides) -> Settings:
    base = {
        "jwt_secret": JWT_SECRET,
        "api_keys": (API_KEY,),
        "redis_url": redis_url if engine == "redis" else None,
        "log_format": "json",
        "retention": Retention(),
        # Echoing test clients poll in tight loops; the limits have their own tests.
        "poll_rate": 0.0,
        "webhook_rate": 0.0,
    }
    base.update(overrides)
    return Settings(**base)


def events(n: int, prefix: str = "e", account: str = "acme", chat_id: str = "c1") -> list[Event]:
    return [
        Event(id=f"{prefix}{i}", type="message.created", account=account, chat_id=chat_id)
        for i in range(n)
    ]


class GatedStore(MemoryStore):
    """A store read that takes its snapshot at once and answers when the gate opens: a slow
    round trip, whose snapshot and answer the test can tell apart."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.snapshots = 0
        self.answered = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def read(self, account, since, limit):
        self.reads += 1
        page = await super().read(account, since, limit)
        self.snapshots += 1
        await self.gate.wait()
        self.answered += 1
        return page

    def settled(self) -> bool:
        return self.answered == self.reads


# -- publishing -----------------------------------------------------------------------------


async def publish(client, *events: dict) -> list[dict]:
    """Through an in-process test client: the stored events."""
    response = await client.post("/api/publish", json=list(events), headers=API)
    assert response.status == 201, await response.text()
    return (await response.json())["events"]


async def publish_ids(client, account: str, ids, type_: str = "message.created") -> list[str]:
    """One event per id in chat c1, through an in-process test client: their timestamps."""
    stored = await publish(
        client, *({"account": account, "type": type_, "id": i, "chat_id": "c1"} for i in ids)
    )
    return [e["timestamp"] for e in stored]


async def publish_to(session: aiohttp.ClientSession, url: str, *ids, account="acme", **fields):
    """One message.created per id to the relay at `url`: the stored events."""
    events = [{"account": account, "type": "message.created", "id": i, **fields} for i in ids]
    async with session.post(f"{url}/api/publish", json=events, headers=API) as response:
        assert response.status == 201
        return (await response.json())["events"]


async def publish_to_any(session: aiohttp.ClientSession, urls: list[str], event: dict) -> str:
    """Publish through one relay, or the other while it is down (same id: stored once)."""
    for attempt in range(200):
        url = urls[attempt % len(urls)]
        try:
            async with session.post(f"{url}/api/publish", json=event, headers=API) as response:
                if response.status == 201:
                    return (await response.json())["events"][0]["timestamp"]
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)  # a relay restarting: back off, then try the next one
    raise AssertionError(f"could not publish {event['id']}")


# -- waiting --------------------------------------------------------------------------------


async def until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    """Until `predicate()` holds, on the running loop; an AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"condition not reached in time {what}".strip()
        await asyncio.sleep(0.01)


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "condition",
    process: subprocess.Popen | None = None,
    log: Callable[[], str] | None = None,
) -> None:
    """Until `predicate()` is truthy. An exception from it means "not yet" (a port not open
    yet), but the last one is kept: it is the cause of the TimeoutError. With `process`, its
    exit ends the wait at once. Either failure carries `log()`, the process's own output,
    which is usually the one line that explains it."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as error:
            last = error
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"{what}: the process exited with status {process.returncode} "
                f"before the wait was over{_log_text(log)}"
            ) from last
        time.sleep(interval)
    detail = f"; last error: {last!r}" if last is not None else ""
    raise TimeoutError(
        f"timed out after {timeout}s waiting for {what}{detail}{_log_text(log)}"
    ) from last


def _log_text(log: Callable[[], str] | None) -> str:
    text = log() if log is not None else ""
    return f"\n--- its log ---\n{text.rstrip()}\n--- end of log ---" if text.strip() else ""
