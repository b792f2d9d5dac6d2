"""Fixtures for the browser tests: headless Chromium, and `relay serve` processes with the
demo on, on the redis engine (so that events outlive a killed relay process).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from tests.browser.chromium import INSTALL_HINT, chromium_paths, start_chromium
from tests.credentials import API_KEY, JWT_SECRET, token
from tests.servers import RedisServer, RelayProcess, in_ci


@pytest.fixture(scope="session")
def chromium_binaries() -> tuple[str, str]:
    paths = chromium_paths()
    if paths is None:
        message = f"the browser tests need chromium and chromedriver ({INSTALL_HINT})"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return paths


@pytest.fixture
def browser(chromium_binaries, request) -> Iterator:
    driver = start_chromium(*chromium_binaries)
    yield driver
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for entry in driver.get_log("browser"):
            print("console:", entry.get("level"), entry.get("message"))
    driver.quit()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.rep_call = report
    return report


def relay_env(redis: RedisServer, **extra: str) -> dict[str, str]:
    return {
        "RELAY_DEMO": "1",
        "RELAY_REDIS_URL": redis.url,
        "RELAY_JWT_SECRET": JWT_SECRET,
        "RELAY_API_KEYS": API_KEY,
        "RELAY_LOG_LEVEL": "warning",
        **extra,
    }


@pytest.fixture
def start_relay(redis_url, redis_server) -> Iterator[Callable[..., RelayProcess]]:
    """Start `relay serve` processes on the test's (flushed) Redis; stop them all at the end."""
    started: list[RelayProcess] = []

    def start(**env: str) -> RelayProcess:
        process = RelayProcess(relay_env(redis_server, **env)).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def demo_url(base: str, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"token": token(), **params}.items())
    return f"{base}/demo?{query}"


def publish(base: str, *ids: str, chat: str = "5511900000303") -> list[dict]:
    """POST /api/publish, server to server, as the main application does."""
    events = [
        {
            "account": "acme",
            "type": "message.created",
            "id": event_id,
            "chat_id": chat,
            "data": {"text": f"message {event_id}", "from": "Ana"},
        }
        for event_id in ids
    ]
    request = urllib.request.Request(
        f"{base}/api/publish",
        data=json.dumps(events).encode(),
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201
        return json.loads(response.read())["events"]
