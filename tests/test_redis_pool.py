"""More concurrent requests than Redis connections: they wait their turn, none fails."""

from __future__ import annotations

import asyncio

import pytest

from relay.store.redis import MAX_IN_FLIGHT, POOL_HEADROOM, RedisStore
from tests.helpers import events

POOL_SIZE = MAX_IN_FLIGHT + POOL_HEADROOM


@pytest.mark.parametrize("target", ["redis_url", "cluster_url"])
async def test_a_burst_beyond_the_pool_size_waits_instead_of_failing(target, request):
    store = RedisStore.from_url(request.getfixturevalue(target))
    try:
        start = (await store.read("acme", None, 10)).cursor
        burst = 5 * POOL_SIZE
        appended = await asyncio.gather(
            *(store.append("acme", events(1, prefix=f"b{i}-")) for i in range(burst))
        )
        page = await store.read("acme", start, 1000)
        assert len(page.events) == burst == len({a[0].timestamp for a in appended})
    finally:
        await store.close()
