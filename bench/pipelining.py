"""Store-call CPU: redis-py one call at a time, redis-py pipelined (relay's store), and
valkey-glide (a Rust core multiplexing one connection), 64 callers at once.

`python -m bench.pipelining [--calls 20000]` starts its own redis-server. valkey-glide is
not a dependency: `pip install valkey-glide` first to include it.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import redis.asyncio as redis

from relay.store.keys import clock_key, meta_key, stream_key
from relay.store.pipeline import Pipeliner
from relay.store.redis import READ_LUA
from tests.servers import RedisServer

CONCURRENCY = 64


async def drive(call, calls: int) -> tuple[float, float, float]:
    """(calls per second, process CPU µs per call, event-loop thread CPU µs per call) with
    CONCURRENCY callers. The process figure includes a client's own threads (glide's Rust
    core); the loop thread's is what one relay worker can spend."""
    each = calls // CONCURRENCY

    async def caller(n: int) -> None:
        for i in range(each):
            await call(f"bench-{(n * each + i) % 1000}")

    wall, cpu, loop = time.perf_counter(), time.process_time(), time.thread_time()
    await asyncio.gather(*(caller(n) for n in range(CONCURRENCY)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    loop = time.thread_time() - loop
    done = each * CONCURRENCY
    return done / wall, cpu / done * 1e6, loop / done * 1e6


def keys(account: str) -> list[str]:
    return [stream_key(account), clock_key(account), meta_key(account)]


async def redis_py(url: str, calls: int, pipelined: bool) -> tuple[float, float, float]:
    client = redis.Redis.from_url(url, max_connections=CONCURRENCY + 16)
    script = client.register_script(READ_LUA)
    pipeliner = Pipeliner(client, CONCURRENCY)
    await script(keys=keys("warm"), args=["", 10])

    async def alone(account: str):
        return await script(keys=keys(account), args=["", 10])

    async def joined(account: str):
        return await pipeliner.call(script, keys(account), ["", 10])

    try:
        await drive(joined if pipelined else alone, 2000)  # warm-up
        return await drive(joined if pipelined else alone, calls)
    finally:
        await client.aclose()


async def glide(port: int, calls: int) -> tuple[float, float, float] | None:
    try:
        from glide import GlideClient, GlideClientConfiguration, NodeAddress, Script
    except ImportError:
        return None
    client = await GlideClient.create(
        GlideClientConfiguration([NodeAddress("127.0.0.1", port)], request_timeout=4000)
    )
    script = Script(READ_LUA)

    async def call(account: str):
        return await client.invoke_script(script, keys=keys(account), args=["", "10"])

    try:
        await drive(call, 2000)
        return await drive(call, calls)
    finally:
        await client.close()


async def main(calls: int) -> None:
    server = RedisServer().start()
    try:
        rows = [
            ("redis-py, one call at a time", await redis_py(server.url, calls, False)),
            ("redis-py, pipelined (relay)", await redis_py(server.url, calls, True)),
            ("valkey-glide", await glide(server.port, calls)),
        ]
    finally:
        server.stop()
    print(f"read.lua EVALSHA, {CONCURRENCY} callers, {calls} calls (one core, shared machine)")
    print("| client | calls/s | process CPU µs/call | loop-thread CPU µs/call |")
    print("| --- | ---: | ---: | ---: |")
    for name, figures in rows:
        if figures is None:
            print(f"| {name} | not installed | |")
        else:
            print(f"| {name} | {figures[0]:,.0f} | {figures[1]:.1f} | {figures[2]:.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    asyncio.run(main(parser.parse_args().calls))
