"""Acknowledged means replicated, when asked (RELAY_REDIS_MIN_REPLICAS): a master and a
replica, the replica frozen (SIGSTOP) while publishers run, then the master SIGKILLed and
the replica promoted. Every acknowledged event must be on the new master, and relay must
carry on without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import tempfile
import time

import aiohttp
import orjson
import pytest
import redis

from relay.store.keys import stream_key
from tests.credentials import API, API_KEY, JWT_SECRET
from tests.helpers import until
from tests.servers import RedisServer, RelayProcess, free_port, redis_cluster_binary, wait_until


class MovableProxy:
    """A TCP forwarder whose target can be moved: the stable address (a VIP, a DNS name)
    that an operator re-points at the replica promoted by hand."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> MovableProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def move(self, target_port: int) -> None:
        self.target_port = target_port
        for writer in list(self._writers):  # connections to the old master end now
            writer.transport.abort()

    async def close(self) -> None:
        self.move(self.target_port)
        if self._server:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.target_port), 2
            )
        except (OSError, TimeoutError):
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()

        tasks = [
            asyncio.ensure_future(pump(reader, up_writer)),
            asyncio.ensure_future(pump(up_reader, writer)),
        ]
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for stream in (writer, up_writer):
            self._writers.discard(stream)
            stream.transport.abort()


def replica_of(master: RedisServer) -> RedisServer:
    replica = RedisServer("--replicaof", "127.0.0.1", str(master.port), binary=master.binary)
    replica.start()
    wait_until(
        lambda: replica.client().info("replication")["master_link_status"] == "up",
        what="the replica's link to its master",
    )
    return replica


def stored_ids(server: RedisServer) -> set[str]:
    members = server.client().zrange(stream_key("acme"), 0, -1)
    return {orjson.loads(member.split(b"\n", 1)[1])["id"] for member in members}


async def publish_until(url: str, stop: asyncio.Event, worker: int, acked: list[str]) -> int:
    """A provider: each event is sent until it is acknowledged (a 503 is retried with the
    same id), then the next. Returns how many answers were 503."""
    refused = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        n = 0
        while not stop.is_set():
            event = {"account": "acme", "type": "t", "id": f"w{worker}-{n}"}
            while True:
                try:
                    async with session.post(f"{url}/api/publish", json=event, headers=API) as r:
                        status = r.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                if status == 201:
                    acked.append(event["id"])
                    break
                refused += 1
                if stop.is_set():
                    break
                await asyncio.sleep(0.05)
            n += 1
    return refused


@pytest.mark.parametrize("min_replicas", [1, 0], ids=["min-replicas-1", "unprotected"])
async def test_a_frozen_replica_then_a_promotion_by_hand_loses_no_acknowledged_event(
    min_replicas,
):
    master = RedisServer().start()
    replica = replica_of(master)
    proxy = await MovableProxy(master.port).start()
    relay = RelayProcess(
        {
            "RELAY_REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0",
            "RELAY_REDIS_MIN_REPLICAS": str(min_replicas),
            "RELAY_REDIS_TIMEOUT": "1s",
            "RELAY_JWT_SECRET": JWT_SECRET,
            "RELAY_API_KEYS": API_KEY,
            "RELAY_CONFIG": "",
        }
    )
    await asyncio.to_thread(relay.start)
    stop, acked = asyncio.Event(), []
    spare: RedisServer | None = None
    publishers = [
        asyncio.ensure_future(publish_until(relay.url, stop, worker, acked)) for worker in range(4)
    ]
    try:
        await until(lambda: len(acked) >= 20, timeout=15, what="appends before the freeze")
        before_freeze = len(acked)
        os.kill(replica.process.pid, signal.SIGSTOP)
        # Answers already on their way when the replica stopped may still arrive: WAIT had
        # returned. Anything acknowledged later than that would be a broken promise.
        await asyncio.sleep(0.5)
        settled = len(acked)
        if min_replicas:
            await asyncio.sleep(2.0)  # nothing may be acknowledged: only time can show it
        else:  # the unprotected master acknowledges what the frozen replica lacks
            # Enough that the replication stream outgrows what the kernel buffers for the
            # stopped replica (which it would still read after SIGCONT): ~300 KB.
            await until(lambda: len(acked) - settled >= 1000, timeout=40, what="unprotected acks")
        during_freeze = len(acked) - settled
        master.stop()  # SIGKILL, with the replica still frozen
        os.kill(replica.process.pid, signal.SIGCONT)
        replica.client().execute_command("REPLICAOF", "NO", "ONE")  # promoted by hand
        proxy.move(replica.port)
        # With min_replicas 1 the promoted master must get a replica of its own before
        # anything is acknowledged again (until then: 503, and the providers retry).
        spare = await asyncio.to_thread(replica_of, replica)
        await until(
            lambda: len(acked) - settled - during_freeze >= 20, timeout=20, what="after promotion"
        )
        stop.set()
        refused = sum(await asyncio.gather(*publishers))
        after_promotion = len(acked) - settled - during_freeze
        lost = sorted(set(acked) - stored_ids(replica))
        print(
            f"min_replicas={min_replicas}: {len(acked)} acknowledged ({during_freeze} while "
            f"the replica was frozen, {after_promotion} after the promotion), {refused} "
            f"answers 503; acknowledged but lost in the failover: {len(lost)}"
        )
        assert before_freeze > 0 and after_promotion > 0  # relay carried on, no restart
        if min_replicas:
            assert lost == []
            assert during_freeze == 0  # nothing acknowledged that the replica lacked
        else:
            assert lost  # why the setting exists: the master's word was not enough
    finally:
        stop.set()
        for task in publishers:
            task.cancel()
        with contextlib.suppress(ProcessLookupError, TypeError, AttributeError):
            os.kill(replica.process.pid, signal.SIGCONT)
        relay.stop()
        await proxy.close()
        for server in (replica, master, spare):
            if server is not None:
                server.stop()


class SentinelServer:
    """One `redis-server --sentinel` watching `master` as "mymaster", quorum 1, declaring
    it down after 1 s."""

    def __init__(self, master: RedisServer) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="relay-sentinel-")
        self.conf = os.path.join(self.dir, "sentinel.conf")
        with open(self.conf, "w") as conf:
            conf.write(
                f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
                f"logfile {os.path.join(self.dir, 'sentinel.log')}\n"
                f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
                "sentinel down-after-milliseconds mymaster 1000\n"
                "sentinel failover-timeout mymaster 5000\n"
            )
        self.binary = master.binary
        self.process: subprocess.Popen | None = None

    def start(self) -> SentinelServer:
        self.process = subprocess.Popen(
            [self.binary, self.conf, "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: self.client().ping(), what=f"sentinel on port {self.port}")
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, protocol=2, decode_responses=True)

    def master_port(self) -> int:
        return int(
            self.client().execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")[1]
        )

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


async def test_sentinel_promotes_the_replica_and_relay_follows_losing_no_acknowledged_event():
    binary = redis_cluster_binary()  # Redis >= 7 where there is one (always in CI)
    master = RedisServer(binary=binary).start()
    replica = replica_of(master)
    sentinel = SentinelServer(master).start()
    wait_until(
        lambda: len(sentinel.client().execute_command("SENTINEL", "REPLICAS", "mymaster")) == 1,
        what="the sentinel to see the replica",
    )
    relay = RelayProcess(
        {
            "RELAY_REDIS_URL": f"redis+sentinel://127.0.0.1:{sentinel.port}/mymaster/0",
            "RELAY_REDIS_MIN_REPLICAS": "1",
            "RELAY_REDIS_TIMEOUT": "1s",
            "RELAY_JWT_SECRET": JWT_SECRET,
            "RELAY_API_KEYS": API_KEY,
            "RELAY_CONFIG": "",
        }
    )
    await asyncio.to_thread(relay.start)
    stop, acked = asyncio.Event(), []
    spare: RedisServer | None = None
    publishers = [
        asyncio.ensure_future(publish_until(relay.url, stop, worker, acked)) for worker in range(4)
    ]
    try:
        await until(lambda: len(acked) >= 20, timeout=15, what="appends before the freeze")
        before_freeze = len(acked)
        os.kill(replica.process.pid, signal.SIGSTOP)
        # Answers already on their way when the replica stopped may still arrive: WAIT had
        # returned. Anything acknowledged later than that would be a broken promise.
        await asyncio.sleep(0.5)
        settled = len(acked)
        await asyncio.sleep(2.0)  # nothing may be acknowledged: only time can show it
        during_freeze = len(acked) - settled
        master.stop()  # SIGKILL, with the replica still frozen
        os.kill(replica.process.pid, signal.SIGCONT)
        started = time.monotonic()
        await asyncio.to_thread(
            wait_until,
            lambda: sentinel.master_port() == replica.port,
            30,
            0.1,
            "the sentinel to promote the replica",
        )
        promoted_after = time.monotonic() - started
        spare = await asyncio.to_thread(replica_of, replica)
        await until(
            lambda: len(acked) - settled - during_freeze >= 20, timeout=20, what="after promotion"
        )
        stop.set()
        refused = sum(await asyncio.gather(*publishers))
        after_promotion = len(acked) - settled - during_freeze
        lost = sorted(set(acked) - stored_ids(replica))
        print(
            f"sentinel: promoted {promoted_after:.1f}s after the kill; {len(acked)} "
            f"acknowledged ({during_freeze} while the replica was frozen, {after_promotion} "
            f"after the promotion), {refused} answers 503; lost: {len(lost)}"
        )
        assert before_freeze > 0 and after_promotion > 0  # relay followed, no restart
        assert during_freeze == 0 and lost == []
    finally:
        stop.set()
        for task in publishers:
            task.cancel()
        with contextlib.suppress(ProcessLookupError, TypeError, AttributeError):
            os.kill(replica.process.pid, signal.SIGCONT)
        relay.stop()
        sentinel.stop()
        for server in (replica, master, spare):
            if server is not None:
                server.stop()


def test_sentinel_urls_and_settings():
    from relay.settings import ConfigError, Settings
    from relay.store.connections import parse_sentinel_url

    target = parse_sentinel_url("redis+sentinel://:p%40ss@10.0.0.1:26379,10.0.0.2/relay/2")
    assert target.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26379))
    assert (target.service, target.db, target.password) == ("relay", 2, "p@ss")
    spelled_out = Settings.from_env(
        {"RELAY_CONFIG": "", "RELAY_REDIS_SENTINELS": "s1:26379,s2:26379"}
    )
    assert spelled_out.redis_url == "redis+sentinel://s1:26379,s2:26379/mymaster/0"
    for env in (
        {"RELAY_REDIS_URL": "redis+sentinel://s1:26379"},  # no service name
        {"RELAY_REDIS_URL": "redis+sentinel://s1:x/mymaster"},
        {"RELAY_REDIS_URL": "redis://r:6379/0", "RELAY_REDIS_SENTINELS": "s1:26379"},
        {
            "RELAY_REDIS_URL": "redis://r:6379/0",
            "RELAY_REDIS_MIN_REPLICAS": "1",
            "RELAY_REDIS_CLUSTER": "yes",
        },
    ):
        with pytest.raises(ConfigError):
            Settings.from_env({"RELAY_CONFIG": "", **env})
