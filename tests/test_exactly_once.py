"""The core guarantee: an echoing client sees every event exactly once, in order, however
many writers race, however many relay processes serve it, whatever their clocks say."""

from __future__ import annotations

import asyncio

import pytest

from relay import clock
from relay.app import create_app
from tests.credentials import API_KEY, JWT_SECRET
from tests.helpers import settings_for
from tests.race import run_race
from tests.servers import RelayProcess


async def test_echoing_pollers_see_every_event_once_under_16_writers(
    engine, redis_url, aiohttp_server
):
    server = await aiohttp_server(create_app(settings_for(engine, redis_url)))
    url = str(server.make_url("")).rstrip("/")
    figures = await run_race([url], [url])
    assert figures["events"] == 3200


async def test_memory_engine_with_a_clock_jumping_both_ways(aiohttp_server):
    server = await aiohttp_server(create_app(settings_for("memory")))
    url = str(server.make_url("")).rstrip("/")

    async def jump_clock() -> None:
        for skew in [300, -300, 0, -600, 600] * 4:
            clock.set_skew(skew)
            await asyncio.sleep(0.05)

    jumper = asyncio.create_task(jump_clock())
    try:
        await run_race([url], [url])
    finally:
        jumper.cancel()
        clock.set_skew(0)


def relay_env(redis_url: str, **extra: str) -> dict[str, str]:
    return {
        "RELAY_REDIS_URL": redis_url,
        "RELAY_JWT_SECRET": JWT_SECRET,
        "RELAY_API_KEYS": API_KEY,
        "RELAY_CONFIG": "",
        **extra,
    }


@pytest.fixture
def two_relays(redis_url, request):
    skews = getattr(request, "param", ("0", "0"))
    relays = [RelayProcess(relay_env(redis_url, RELAY_CLOCK_SKEW_SECONDS=s)).start() for s in skews]
    yield relays
    for relay in relays:
        relay.stop()


async def test_two_relay_processes_sharing_one_redis(two_relays):
    urls = [relay.url for relay in two_relays]
    await run_race(urls, urls)


@pytest.mark.parametrize("two_relays", [("300", "-300")], indirect=True)
async def test_relay_clocks_skewed_by_minutes_both_ways_change_nothing(two_relays):
    urls = [relay.url for relay in two_relays]
    # Publish on the fast clock, poll on the slow one, and the other way round.
    await run_race(urls, list(reversed(urls)))
