"""Load generators: wrk when it is installed, else a built-in aiohttp client. Either runs
in its own process (pinned like the servers), so the generator never shares an event loop
or an interpreter with the server it measures.

A `Load` is what to send: a method, a URL, headers, and one body or a file of request
variants cycled through (one per line: `name:value\\x01name:value\\tbody`), used where each
request must differ (signed webhooks with their own ids).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.servers import ROOT, pinned

RESULT_PREFIX = "BENCH "


@dataclass
class Load:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    variants: str | None = None  # path of a variants file


@dataclass
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors and non-2xx answers
    cpu_us: float | None = None  # the server's CPU time per request, when measured

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def write_variants(rows: list[tuple[dict[str, str], bytes]]) -> str:
    path = Path(tempfile.mkdtemp(prefix="bench-variants-")) / "requests.txt"
    with path.open("wb") as out:
        for headers, body in rows:
            head = "\x01".join(f"{k}:{v}" for k, v in headers.items()).encode()
            out.write(head + b"\t" + body + b"\n")
    return str(path)


def read_variants(path: str) -> list[tuple[dict[str, str], bytes]]:
    rows = []
    for line in Path(path).read_bytes().splitlines():
        head, _, body = line.partition(b"\t")
        headers = dict(item.split(":", 1) for item in head.decode().split("\x01") if item)
        rows.append((headers, body))
    return rows


class Generator:
    name = ""

    def __init__(self, cpu_set: set[int] | None) -> None:
        self.cpu_set = cpu_set

    def run(self, load: Load, connections: int, seconds: float, threads: int = 1) -> Result:
        raise NotImplementedError


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


class Wrk(Generator):
    name = "wrk"

    def __init__(self, cpu_set: set[int] | None, binary: str) -> None:
        super().__init__(cpu_set)
        self.binary = binary

    def script(self, load: Load) -> str:
        headers = ", ".join(
            f"[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in load.headers.items()
        )
        lines = [
            f"wrk.method = {_lua_string(load.method)}",
            f"local base = {{{headers}}}",
            "for k, v in pairs(base) do wrk.headers[k] = v end",
        ]
        if load.body:
            lines.append(f"wrk.body = {_lua_string(load.body)}")
        if load.variants:
            lines += [
                "local reqs, i = {}, 0",
                "function init(args)",
                f"  for line in io.lines({_lua_string(load.variants)}) do",
                "    local head, body = line:match('^(.-)\\t(.*)$')",
                "    local h = {}",
                "    for k, v in pairs(base) do h[k] = v end",
                "    for k, v in head:gmatch('([^:\\1]+):([^\\1]*)') do h[k] = v end",
                "    reqs[#reqs + 1] = wrk.format(nil, nil, h, body)",
                "  end",
                "end",
                "function request()",
                "  i = i % #reqs + 1",
                "  return reqs[i]",
                "end",
            ]
        lines += [
            "function done(summary, latency, requests)",
            "  local e = summary.errors",
            "  io.write(string.format('" + RESULT_PREFIX + '{"requests":%d,"duration_us":%d,'
            '"p50_us":%d,"p99_us":%d,"errors":%d}\\n\', summary.requests, summary.duration,'
            " latency:percentile(50), latency:percentile(99),"
            " e.connect + e.read + e.write + e.timeout + e.status))",
            "end",
        ]
        return "\n".join(lines) + "\n"

    def run(self, load: Load, connections: int, seconds: float, threads: int = 1) -> Result:
        script = Path(tempfile.mkdtemp(prefix="bench-wrk-")) / "load.lua"
        script.write_text(self.script(load))
        args = [self.binary, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
        args += ["--timeout", "10s", "-s", str(script), load.url]
        out = subprocess.run(
            args, capture_output=True, text=True, preexec_fn=pinned(self.cpu_set), timeout=120
        )
        for line in out.stdout.splitlines():
            if line.startswith(RESULT_PREFIX):
                raw = json.loads(line.removeprefix(RESULT_PREFIX))
                return Result(
                    raw["requests"],
                    raw["duration_us"] / 1e6,
                    raw["p50_us"] / 1000,
                    raw["p99_us"] / 1000,
                    raw["errors"],
                )
        raise RuntimeError(f"wrk printed no result:\n{out.stdout}\n{out.stderr}")


class Builtin(Generator):
    """aiohttp's client in a child process: slower than wrk, so every rate it measures is
    capped lower and ratios are compressed toward 1; the table says which one ran."""

    name = "built-in (aiohttp client)"

    def run(self, load: Load, connections: int, seconds: float, threads: int = 1) -> Result:
        spec = Path(tempfile.mkdtemp(prefix="bench-load-")) / "load.json"
        spec.write_text(json.dumps(asdict(load)))
        args = [sys.executable, "-m", "bench.load", str(spec), str(connections), str(seconds)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        out = subprocess.run(
            args,
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            preexec_fn=pinned(self.cpu_set),
            timeout=seconds + 120,
        )
        for line in out.stdout.splitlines():
            if line.startswith(RESULT_PREFIX):
                return Result(**json.loads(line.removeprefix(RESULT_PREFIX)))
        raise RuntimeError(f"the built-in generator printed no result:\n{out.stderr}")


def pick(cpu_set: set[int] | None, force_builtin: bool = False) -> Generator:
    binary = None if force_builtin else shutil.which("wrk")
    return Wrk(cpu_set, binary) if binary else Builtin(cpu_set)


async def _drive(load: Load, connections: int, seconds: float) -> Result:
    import aiohttp

    variants = read_variants(load.variants) if load.variants else [({}, load.body.encode())]
    latencies: list[float] = []
    errors = 0
    counter = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors, counter
            while True:
                started = time.perf_counter()
                if started >= deadline:
                    return
                headers, body = variants[counter % len(variants)]
                counter += 1
                try:
                    async with session.request(
                        load.method,
                        load.url,
                        headers={**load.headers, **headers},
                        data=body or None,
                    ) as response:
                        await response.read()
                        if response.status >= 300:
                            errors += 1
                except (aiohttp.ClientError, OSError):
                    errors += 1
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    n = len(latencies)
    return Result(
        requests=n,
        seconds=elapsed,
        p50_ms=latencies[n // 2] * 1000 if n else 0.0,
        p99_ms=latencies[min(n - 1, int(n * 0.99))] * 1000 if n else 0.0,
        errors=errors,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("spec")
    parser.add_argument("connections", type=int)
    parser.add_argument("seconds", type=float)
    args = parser.parse_args()
    load = Load(**json.loads(Path(args.spec).read_text()))
    try:
        from uvloop import run
    except ImportError:
        run = asyncio.run
    result = run(_drive(load, args.connections, args.seconds))
    print(RESULT_PREFIX + json.dumps(asdict(result)), flush=True)


if __name__ == "__main__":
    main()
