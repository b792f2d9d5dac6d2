"""The push-delivery scenario: deliveries/s to a subscriber that always answers 204 at
once, next to publish/s on the same relay, Redis and CPU.

Phase 1 publishes the events (one per request, 16 at a time, as webhooks arrive) to a
relay without subscribers: publish/s. Phase 2 starts a relay with a subscriber of every
account; a new subscriber's cursor starts at the stream's low watermark, so it drains the
whole backlog as fast as it can: deliveries/s, from its start to the last 204.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from bench import fixtures
from bench.servers import cpu_seconds, python_proc, relay_proc, running

if TYPE_CHECKING:
    from bench.__main__ import Bench

SECRET_ENV = "BENCH_SUBSCRIBER_SECRET"


def run(bench: Bench, redis_url: str) -> None:
    from bench.__main__ import Row, run_loop

    total = 2000 if bench.args.quick else 6000
    for accounts in (20, 1):
        per_account = total // accounts
        names = [f"bench-push-{accounts}-{n}" for n in range(accounts)]
        sink = python_proc("sink", "bench.sink", [], bench.load_cpu, bench.uvloop)
        env = fixtures.relay_env(redis_url)
        publisher = relay_proc("relay-publish", env, bench.server_cpu, uvloop=bench.uvloop)
        with running(sink, publisher):
            cpu = cpu_seconds(publisher.pid)
            publish_rate = run_loop(_publish(publisher.url, names, per_account))
            publish_cpu = (cpu_seconds(publisher.pid) - cpu) / total * 1e6
            delivering = relay_proc(
                "relay-deliver",
                _subscriber_env(env, f"{sink.url}/hook", names),
                bench.server_cpu,
                uvloop=bench.uvloop,
            )
            publisher.stop()
            with running(delivering):
                cpu = cpu_seconds(delivering.pid)
                delivery_rate, seconds = run_loop(_drain(sink.url, total))
                delivery_cpu = (cpu_seconds(delivering.pid) - cpu) / total * 1e6
        label = f"{accounts} account{'s' if accounts > 1 else ''}, {total} events"
        for scenario, rate, cpu_us in (
            (f"publish one event, 16 at a time ({label})", publish_rate, publish_cpu),
            (f"push delivery to a 204 receiver ({label})", delivery_rate, delivery_cpu),
        ):
            row = Row(scenario, "relay, redis engine", rps=rate, cpu_us=cpu_us)
            bench.rows.append(row)
            print("  " + " | ".join(row.cells()), flush=True)
        bench.notes.append(
            f"push delivery, {label}: {delivery_rate:,.0f} deliveries/s ({seconds:.1f} s to "
            f"drain), publish {publish_rate:,.0f} events/s; deliveries/publish = "
            f"{delivery_rate / publish_rate:.2f}; relay CPU {delivery_cpu:.0f} µs per delivery, "
            f"{publish_cpu:.0f} µs per publish (req/s column = events/s; the publishing "
            "client is Python aiohttp on the generator's CPU)"
        )


def _subscriber_env(env: dict[str, str], url: str, accounts: list[str]) -> dict[str, str]:
    config = Path(tempfile.mkdtemp(prefix="bench-push-")) / "relay.toml"
    listed = ", ".join(f'"{a}"' for a in accounts)
    config.write_text(
        f'[subscribers.bench]\nurl = "{url}"\naccounts = [{listed}]\n'
        f'secret_env = "{SECRET_ENV}"\ntimeout = "10s"\n'
    )
    key = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    return {**env, "RELAY_CONFIG": str(config), SECRET_ENV: key}


async def _publish(url: str, accounts: list[str], per_account: int) -> float:
    headers = {"Authorization": f"Bearer {fixtures.API_KEY}"}
    queue = [(account, n) for n in range(per_account) for account in accounts]

    async def worker(session: aiohttp.ClientSession) -> None:
        while queue:
            account, n = queue.pop()
            event = fixtures.message(account, n)
            async with session.post(f"{url}/api/publish", json=event, headers=headers) as r:
                assert r.status == 201, await r.text()

    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(16)))
    return len(accounts) * per_account / (time.perf_counter() - started)


async def _drain(sink_url: str, total: int) -> tuple[float, float]:
    """Deliveries/s from the first 204 to the last (relay's start-up is not counted)."""
    first: tuple[float, int] | None = None
    deadline = time.perf_counter() + 600
    async with aiohttp.ClientSession() as session:
        while time.perf_counter() < deadline:
            async with session.get(f"{sink_url}/count") as response:
                count = int(await response.text())
            now = time.perf_counter()
            if first is None and count > 0:
                first = (now, count)
            if first is not None and count >= total:
                seconds = now - first[0]
                return (total - first[1]) / seconds, seconds
            await asyncio.sleep(0.01)
    raise SystemExit(f"bench: push delivery did not finish {total} events in 600 s")
