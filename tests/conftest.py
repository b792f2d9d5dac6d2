"""Shared fixtures: a real Redis per session, settings, apps over real sockets; and the
session's checks (no secret in any relay's log, nothing skipped in CI). Tests import what
they share from tests/helpers.py, tests/credentials.py and tests/servers.py, never from here."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from aiohttp.test_utils import TestClient

from relay.app import create_app
from relay.settings import Settings
from tests.cluster import LocalCluster
from tests.helpers import settings_for
from tests.servers import RedisServer, RelayProcess, in_ci, redis_cluster_binary

ENGINES = ["memory", "redis"]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.client().flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """A real 3-master Redis Cluster, started once per session (see tests/cluster.py)."""
    cluster = LocalCluster(binary=redis_cluster_binary()).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_url(redis_cluster: LocalCluster) -> str:
    redis_cluster.flushall()
    return redis_cluster.url


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    return request.param


@pytest.fixture
def make_settings(engine: str, request) -> Callable[..., Settings]:
    def make(**overrides) -> Settings:
        url = request.getfixturevalue("redis_url") if engine == "redis" else None
        return settings_for(engine, url, **overrides)

    return make


@pytest.fixture
def client_for(aiohttp_client) -> Callable:
    async def make(settings: Settings) -> TestClient:
        return await aiohttp_client(create_app(settings))

    return make


@pytest.fixture
async def client(make_settings, client_for) -> TestClient:
    return await client_for(make_settings())


_skipped: list[str] = []


def pytest_runtest_logreport(report) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


_SECRET_NAME = re.compile(r"SECRET|TOKEN|KEY|PASSWORD", re.IGNORECASE)


def secrets_given_to_relays() -> set[str]:
    secrets: set[str] = set()
    for relay in RelayProcess.started:
        for name, value in relay.given_env.items():
            if _SECRET_NAME.search(name) and "PUBLIC" not in name:
                secrets.update(part for part in re.split(r"[\s,]+", value) if len(part) >= 8)
    return secrets


def leaked_secrets() -> list[str]:
    """Every secret any relay of this session was given, searched in every relay's log."""
    secrets = secrets_given_to_relays()
    leaks = []
    for relay in RelayProcess.started:
        log = relay.log()
        leaks += [f"{relay.log_path}: {s[:4]}..." for s in secrets if s in log]
    return leaks


def pytest_sessionfinish(session, exitstatus) -> None:
    leaks = leaked_secrets()
    if leaks:
        print(f"\nsecrets found in relay logs: {leaks[:10]}")
        session.exitstatus = 1
    # A skipped test proves nothing: in CI every test must run.
    if in_ci() and _skipped:
        print(f"\nCI=true but {len(_skipped)} test(s) skipped: {_skipped[:5]}")
        session.exitstatus = 1
