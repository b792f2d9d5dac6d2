"""RELAY_REDIS_CLUSTER: parsed and validated once; auto detection, explicit modes, and a
relay started before its Redis that becomes ready by itself once Redis is up."""

from __future__ import annotations

import signal
import time
import urllib.error
import urllib.request

import pytest

from relay.errors import StoreUnavailable
from relay.settings import ConfigError, Settings
from relay.store.redis import RedisStore
from tests.helpers import events
from tests.servers import RedisServer, RelayProcess, free_port, wait_until
from tests.test_exactly_once import relay_env


def test_cluster_mode_defaults_to_auto_and_rejects_anything_else():
    assert Settings.from_env({"RELAY_CONFIG": ""}).redis_cluster == "auto"
    assert Settings.from_env({"RELAY_REDIS_CLUSTER": "YES"}).redis_cluster == "yes"
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"RELAY_REDIS_CLUSTER": "sometimes"})
    assert caught.value.problems == [
        "RELAY_REDIS_CLUSTER: expected one of auto, yes, no, got 'sometimes'"
    ]
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(
            {"RELAY_REDIS_CLUSTER": "yes", "RELAY_REDIS_URL": "redis://redis-0:6379/3"}
        )
    assert caught.value.problems == ["RELAY_REDIS_URL: a Redis Cluster has only database 0, not 3"]


async def test_a_cluster_url_with_another_database_is_a_clear_503(redis_cluster, cluster_url):
    store = RedisStore.from_url(cluster_url.rsplit("/", 1)[0] + "/2")
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await store.read("acme", None, 10)
        assert "SELECT is not allowed in cluster mode" in caught.value.detail
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("target", "mode", "clustered"),
    [("redis_url", "auto", False), ("redis_url", "no", False), ("cluster_url", "yes", True)],
)
async def test_explicit_and_detected_modes_serve_the_contract(target, mode, clustered, request):
    store = RedisStore.from_url(request.getfixturevalue(target), cluster=mode)
    try:
        start = (await store.read("acme", None, 10)).cursor
        appended = await store.append("acme", events(2))
        page = await store.read("acme", start, 10)
        assert [e.timestamp for e in page.events] == [a.timestamp for a in appended]
        assert store.clustered is clustered
    finally:
        await store.close()


def _ready(url: str) -> int:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_relay_started_before_its_redis_becomes_ready_by_itself():
    server = RedisServer(port=free_port())
    relay = RelayProcess(relay_env(server.url, RELAY_REDIS_TIMEOUT="500ms")).start()
    try:
        assert _ready(relay.url) == 503  # auto mode could not even ask yet
        server.start()
        wait_until(lambda: _ready(relay.url) == 200, timeout=30, what="ready once Redis is up")
    finally:
        relay.stop()
        server.stop()


@pytest.mark.parametrize("target", ["standalone", "cluster"])
async def test_a_hung_redis_is_a_503_within_twice_the_timeout(target, redis_cluster, cluster_url):
    server = RedisServer().start() if target == "standalone" else None
    url = server.url if server else cluster_url
    store = RedisStore.from_url(url, timeout=0.5)
    try:
        await store.append("acme", events(1))
        if server:
            server.process.send_signal(signal.SIGSTOP)
        else:
            redis_cluster.pause()
        try:
            for call in (store.append("acme", events(1, prefix="x")), store.read("acme", 0, 10)):
                started = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    await call
                assert time.monotonic() - started < 2 * 0.5 + 0.3
        finally:
            if server:
                server.process.send_signal(signal.SIGCONT)
            else:
                redis_cluster.resume()
    finally:
        await store.close()
        if server:
            server.stop()
    if not server:
        redis_cluster.wait_ok(timeout=60)


def test_check_config_names_the_cluster_mode():
    from tests.test_cli import relay_cli

    env = {"RELAY_REDIS_URL": "redis://127.0.0.1:1/0", "RELAY_REDIS_CLUSTER": "yes"}
    result = relay_cli("check-config", env=env)
    assert result.returncode == 0, result.stderr
    assert "engine: redis" in result.stdout and "redis cluster: yes" in result.stdout
