"""The processes a bench run owns: redis-server, relay, the ceiling and the naive server.

Each runs in its own process, on a free loopback port, optionally pinned to a set of CPUs
(`os.sched_setaffinity` in the child before exec); every one is stopped when the run ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.servers import free_port, redis_server_binary, wait_until

ROOT = Path(__file__).resolve().parent.parent
NO_UVLOOP = "import sys; sys.modules['uvloop'] = None; "


# Read at import, before the orchestrator pins itself to the generator's CPU.
ALL_CPUS = frozenset(os.sched_getaffinity(0))


def cpus() -> list[int]:
    return sorted(ALL_CPUS)


def pinned(cpu_set: set[int] | None):
    """The child's CPUs: `cpu_set`, or every CPU (children inherit the orchestrator's own
    pinning otherwise, which would put "unpinned" servers on the generator's core)."""
    chosen = set(cpu_set or ALL_CPUS)
    return lambda: os.sched_setaffinity(0, chosen)


class Proc:
    """One child process with its output in a log file; `stop()` is SIGTERM, then SIGKILL."""

    def __init__(
        self,
        name: str,
        args: list[str],
        env: dict[str, str] | None = None,
        cpu_set: set[int] | None = None,
        port: int | None = None,
        root: Path | None = None,
    ) -> None:
        self.name = name
        self.args = args
        # `root`: another checkout whose code this process runs (bench --baseline).
        self.root = root or ROOT
        self.env = {**os.environ, "PYTHONPATH": str(self.root), **(env or {})}
        self.cpu_set = cpu_set
        self.port = port or free_port()
        self.log_path = Path(tempfile.mkdtemp(prefix=f"bench-{name}-")) / "out.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, health: str | None = "/healthz", timeout: float = 30) -> Proc:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.args,
                env=self.env,
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=pinned(self.cpu_set),
            )
        if health is not None:
            wait_until(self._healthy(health), timeout=timeout, what=f"{self.name} on {self.port}")
        return self

    def _healthy(self, path: str):
        def check() -> bool:
            if self.process and self.process.poll() is not None:
                raise SystemExit(f"bench: {self.name} exited early:\n{self.log()[-2000:]}")
            with urllib.request.urlopen(self.url + path, timeout=1) as response:
                return response.status == 200

        return check

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


def redis_proc(cpu_set: set[int] | None) -> Proc:
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    args = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir]
    args += ["--save", "", "--appendonly", "no", "--maxclients", "10000"]
    proc = Proc("redis", args, cpu_set=cpu_set, port=port)
    proc.start(health=None)

    def ping() -> bool:
        import redis

        return bool(redis.Redis(port=port, socket_timeout=2).ping())

    wait_until(ping, what="redis-server")
    return proc


def relay_proc(
    name: str,
    env: dict[str, str],
    cpu_set: set[int] | None = None,
    workers: int = 1,
    uvloop: bool = True,
    root: Path | None = None,
) -> Proc:
    """`relay serve` exactly as an operator runs it (uvloop when importable); from the
    checkout at `root` when given."""
    prefix = "" if uvloop else NO_UVLOOP
    code = prefix + "from relay.cli import main; sys.exit(main())"
    args = [sys.executable, "-c", "import sys; " + code, "serve"]
    if workers != 1:
        args += ["--workers", str(workers)]
    port = free_port()
    full_env = {**env, "RELAY_HOST": "127.0.0.1", "RELAY_PORT": str(port)}
    full_env.setdefault("RELAY_LOG_FORMAT", "json")
    return Proc(name, args, env=full_env, cpu_set=cpu_set, port=port, root=root)


def python_proc(
    name: str, module: str, args: list[str], cpu_set: set[int] | None, uvloop: bool = True
) -> Proc:
    prefix = "" if uvloop else NO_UVLOOP
    code = f"import sys, runpy; {prefix}runpy.run_module({module!r}, run_name='__main__')"
    port = free_port()
    argv = [sys.executable, "-c", code, "--port", str(port), *args]
    return Proc(name, argv, cpu_set=cpu_set, port=port)


@contextlib.contextmanager
def running(*procs: Proc) -> Iterator[tuple[Proc, ...]]:
    started: list[Proc] = []
    try:
        for proc in procs:
            proc.start()
            started.append(proc)
        yield procs
    finally:
        for proc in reversed(started):
            proc.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its direct children (the workers of
    `relay serve --workers N`), from /proc: the cost per request is far less noisy than
    requests/s on a shared machine."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            pids += [int(c) for c in (task / "children").read_text().split()]
    for one in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{one}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def rss_kb(pid: int) -> int:
    """Resident set size of one process, from /proc (VmRSS, in KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")
