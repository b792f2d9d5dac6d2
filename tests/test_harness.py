"""The harness explains its failures: a relay that exits at start fails the wait at once,
with its own error line, and a wait that times out names the error it last saw."""

from __future__ import annotations

import time

import pytest

from tests.credentials import API_KEY, JWT_SECRET
from tests.helpers import wait_until
from tests.servers import RelayProcess

# The wait for a relay's /healthz gives up after 20 s; a relay that exited is known at once.
FAST = 5.0


@pytest.mark.parametrize(
    ("setting", "value", "error"),
    [
        (
            "RELAY_REDIS_URL",
            "http://not-redis:6379",
            "relay: config error: RELAY_REDIS_URL: expected a redis://",
        ),
        ("RELAY_POLL_RATE", "lots", "relay: config error: RELAY_POLL_RATE: expected a number"),
    ],
)
def test_a_relay_that_exits_at_start_fails_at_once_with_its_own_error(setting, value, error):
    env = {"RELAY_JWT_SECRET": JWT_SECRET, "RELAY_API_KEYS": API_KEY, setting: value}
    relay = RelayProcess(env)
    started = time.monotonic()
    with pytest.raises(RuntimeError) as failure:
        relay.start()
    elapsed = time.monotonic() - started
    assert elapsed < FAST, f"took {elapsed:.1f} s"
    assert "exited with status 1" in str(failure.value)
    assert error in str(failure.value)


def test_a_wait_that_times_out_carries_the_last_error():
    def refused() -> bool:
        raise ConnectionRefusedError("nobody listens on 1")

    with pytest.raises(TimeoutError) as failure:
        wait_until(refused, timeout=0.1, what="a listener", log=lambda: "the log line\n")
    assert isinstance(failure.value.__cause__, ConnectionRefusedError)
    text = str(failure.value)
    assert "waiting for a listener" in text
    assert "nobody listens on 1" in text and "the log line" in text
