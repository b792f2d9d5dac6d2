"""`relay serve --workers N`: processes sharing one port, only with a shared engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

from tests.credentials import API_KEY, JWT_SECRET
from tests.servers import RelayProcess, wait_until


def test_workers_are_refused_with_the_memory_engine_in_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "relay.cli", "serve", "--workers", "2"],
        env={**os.environ, "RELAY_CONFIG": "", "RELAY_REDIS_URL": ""},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--workers" in lines[0] and "RELAY_REDIS_URL" in lines[0]
    assert "Traceback" not in result.stderr


def _pid_behind(url: str) -> int:
    # A new connection each time: SO_REUSEPORT spreads connections, not requests.
    request = urllib.request.Request(f"{url}/healthz", headers={"Connection": "close"})
    with urllib.request.urlopen(request, timeout=2) as response:
        return json.loads(response.read())["pid"]


def test_two_workers_both_answer_on_one_port_and_stop_on_sigterm(redis_url):
    env = {
        "RELAY_REDIS_URL": redis_url,
        "RELAY_JWT_SECRET": JWT_SECRET,
        "RELAY_API_KEYS": API_KEY,
        "RELAY_CONFIG": "",
    }
    relay = RelayProcess(env, args=("--workers", "2")).start()
    try:
        seen: set[int] = set()
        wait_until(
            lambda: seen.add(_pid_behind(relay.url)) or len(seen) == 2,
            timeout=20,
            interval=0.01,
            what="both workers answering",
        )
        assert relay.process is not None and relay.process.pid not in seen
        supervisor = relay.process
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(30) == 0
        for pid in seen:
            wait_until(lambda pid=pid: not _alive(pid), timeout=10, what=f"worker {pid} gone")
    finally:
        relay.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
