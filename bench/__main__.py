"""`python -m bench`: relay side by side with a bare aiohttp ceiling and a naive
check-updates, on this machine, in one run; prints one table (and writes it with --output).

    python -m bench                  # the full run (under 5 minutes on 2 cores)
    python -m bench --quick          # a short run for development
    python -m bench --scenario empty,poll10
    python -m bench --baseline /tmp/relay-before   # also an older checkout, same run
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import deliveries, fixtures, live
from bench.load import Generator, Load, Result, pick, write_variants
from bench.servers import Proc, cpu_seconds, cpus, python_proc, redis_proc, relay_proc, running

BEFORE = "relay before (--baseline), redis engine"
LATENCY_TARGETS = {"sse": 5.0, "longpoll": 8.0}
SCENARIOS = (
    "empty",
    "poll10",
    "publish",
    "webhook",
    "sse",
    "longpoll",
    "fanout",
    "rss",
    "workers",
    "deliveries",
)


@dataclass(frozen=True)
class Size:
    seconds: float
    warmup: float
    connections: int
    live_connections: int
    live_accounts: int
    live_events: int
    idle_streams: int
    passes: int
    # fanout: SSE streams, accounts, events per second, seconds
    fanout: tuple[int, int, int, float] = (10_000, 1_000, 1_000, 5.0)


FULL = Size(6, 1, 64, 1000, 50, 200, 5000, 2)
QUICK = Size(2, 1, 64, 200, 10, 40, 1000, 1, (1_000, 100, 200, 3.0))


@dataclass
class Row:
    scenario: str
    server: str
    target: str = ""
    rps: float | None = None
    p50: float | None = None
    p99: float | None = None
    cpu_us: float | None = None
    ratio: float | None = None
    cpu_ratio: float | None = None
    verdict: str = ""
    note: str = ""

    def cells(self) -> list[str]:
        def num(value: float | None, fmt: str) -> str:
            return "" if value is None else format(value, fmt)

        return [
            self.scenario,
            self.server,
            self.target,
            num(self.rps, ",.0f"),
            num(self.p50, ".2f"),
            num(self.p99, ".2f"),
            num(self.cpu_us, ".0f"),
            num(self.ratio, ".2f") + ("×" if self.ratio is not None else ""),
            num(self.cpu_ratio, ".2f") + ("×" if self.cpu_ratio is not None else ""),
            self.verdict,
        ]


HEADER = [
    "scenario",
    "server",
    "target",
    "req/s",
    "p50 ms",
    "p99 ms",
    "CPU µs/req",
    "ratio",
    "CPU ratio",
    "result",
]


def table(rows: list[Row]) -> str:
    cells = [HEADER, *(row.cells() for row in rows)]
    lines = ["| " + " | ".join(line) + " |" for line in cells]
    lines.insert(1, "|" + "|".join(" --- " for _ in HEADER) + "|")
    return "\n".join(lines)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.size = QUICK if args.quick else FULL
        if args.seconds:
            self.size = Size(args.seconds, *list(vars(self.size).values())[1:])
        available = cpus()
        self.pinning = len(available) >= 2 and not args.no_pin
        self.server_cpu = {available[0]} if self.pinning else None
        self.load_cpu = {available[1]} if self.pinning else None
        self.generator: Generator = pick(self.load_cpu, args.builtin)
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.ceilings: dict[str, Result] = {}
        self._best: dict[tuple[str, str], tuple[Result, str | None, float]] = {}
        self.uvloop = not args.no_uvloop
        self.baseline: Path | None = Path(args.baseline).resolve() if args.baseline else None
        self.redis_url = ""

    # -- running loads ------------------------------------------------------------------

    def measure(
        self,
        load: Load,
        server: Proc | None = None,
        generator: Generator | None = None,
        threads: int = 1,
    ) -> Result:
        generator = generator or self.generator
        conns = self.size.connections
        if self.size.warmup:
            generator.run(load, conns, self.size.warmup, threads)
        cpu_before = cpu_seconds(server.pid) if server else 0.0
        result = generator.run(load, conns, self.size.seconds, threads)
        if server and result.requests:
            result.cpu_us = (cpu_seconds(server.pid) - cpu_before) / result.requests * 1e6
        return result

    def add(
        self, scenario: str, server: str, result: Result, ceiling: str | None, target: float = 0
    ) -> None:
        """Keep the better of the passes for this row (noise on a shared machine only ever
        slows a run down); rows are rendered once every pass is done."""
        key = (scenario, server)
        best = self._best.get(key)
        if best is None or result.rps > best[0].rps:
            self._best[key] = (result, ceiling, target)
        print(f"  pass: {scenario} | {server} | {result.rps:,.0f} req/s", flush=True)

    def throughput_rows(self) -> None:
        for (scenario, server), (result, ceiling, target) in self._best.items():
            row = Row(
                scenario,
                server,
                rps=result.rps,
                p50=result.p50_ms,
                p99=result.p99_ms,
                cpu_us=result.cpu_us,
            )
            base = self.ceilings.get(ceiling) if ceiling else None
            if base is not None and base.rps:
                row.ratio = result.rps / base.rps
                if base.cpu_us and result.cpu_us:
                    row.cpu_ratio = base.cpu_us / result.cpu_us
            if target:
                row.target = f"≥ {target}×"
                row.verdict = "pass" if row.ratio is not None and row.ratio >= target else "miss"
            if result.errors:
                row.verdict = (row.verdict + f" ({result.errors} errors)").strip()
            self.rows.append(row)

    # -- scenarios ----------------------------------------------------------------------

    def run(self) -> None:
        chosen = set(self.args.scenario or SCENARIOS)
        redis = redis_proc(self.load_cpu)
        try:
            redis_url = self.redis_url = f"redis://127.0.0.1:{redis.port}/0"
            if chosen & {"empty", "poll10", "publish", "webhook"}:
                self.throughput(chosen, redis_url)
            if "sse" in chosen:
                self.latency("sse", redis_url)
            if "longpoll" in chosen:
                self.latency("longpoll", redis_url)
            if "fanout" in chosen:
                self.fanout(redis_url)
            if "rss" in chosen:
                self.rss(redis_url)
            if "workers" in chosen:
                self.workers(redis_url)
            if "deliveries" in chosen:
                deliveries.run(self, redis_url)
        finally:
            redis.stop()

    def throughput(self, chosen: set[str], redis_url: str) -> None:
        cpu, uv = self.server_cpu, self.uvloop
        ceiling = python_proc("ceiling", "bench.ceiling", [], cpu, uv)
        naive = python_proc(
            "naive",
            "bench.naive",
            ["--redis-url", redis_url, "--jwt-secret", fixtures.JWT_SECRET],
            cpu,
            uv,
        )
        memory = relay_proc("relay-memory", fixtures.relay_env(None), cpu, uvloop=uv)
        on_redis = relay_proc("relay-redis", fixtures.relay_env(redis_url), cpu, uvloop=uv)
        procs = [ceiling, naive, memory, on_redis]
        before = None
        if self.baseline:
            before = relay_proc(
                "relay-before", fixtures.relay_env(redis_url), cpu, uvloop=uv, root=self.baseline
            )
            procs.append(before)
        with running(*procs):
            for _ in range(self.size.passes):
                self.throughput_pass(chosen, ceiling, naive, memory, on_redis, before)
        self.throughput_rows()
        self.notes.append(
            f"throughput rows: the better of {self.size.passes} passes over all of them "
            "(each pass measures the ceilings first), as other work on a shared machine "
            "comes and goes in bursts"
        )

    def throughput_pass(
        self,
        chosen: set[str],
        ceiling: Proc,
        naive: Proc,
        memory: Proc,
        on_redis: Proc,
        before: Proc | None = None,
    ) -> None:
        self._ceiling("GET", Load("GET", ceiling.url + "/ceiling"), ceiling)
        self.add("bare GET, constant JSON", "aiohttp (ceiling)", self.ceilings["GET"], "GET")
        if "empty" in chosen:
            self.empty_polls(memory, on_redis, naive, before)
        if "poll10" in chosen:
            self.poll_of_ten(on_redis, naive, before)
        if chosen & {"publish", "webhook"}:
            post = Load("POST", ceiling.url + "/ceiling", self._json, self._publish_body())
            self._ceiling("POST", post, ceiling)
            self.add("bare POST, parse JSON", "aiohttp (ceiling)", self.ceilings["POST"], "POST")
        if "publish" in chosen:
            self.publishes(on_redis, before)
        if "webhook" in chosen:
            self.webhooks(on_redis)

    def _ceiling(self, name: str, load: Load, ceiling: Proc) -> None:
        result = self.measure(load, ceiling)
        best = self.ceilings.get(name)
        if best is None or result.rps > best.rps:
            self.ceilings[name] = result

    _json = {"Content-Type": "application/json"}

    @staticmethod
    def _publish_body() -> str:
        import json

        return json.dumps(fixtures.message("bench-pub", 0), ensure_ascii=False)

    def _poll(self, proc: Proc, account: str, cursor: str) -> Load:
        auth = {"Authorization": f"Bearer {fixtures.token(account)}"}
        return Load("GET", fixtures.poll_url(proc.url, cursor), auth)

    def empty_polls(
        self, memory: Proc, on_redis: Proc, naive: Proc, before: Proc | None = None
    ) -> None:
        procs = [(memory, "relay, memory engine"), (on_redis, "relay, redis engine")]
        if before is not None:
            procs.append((before, BEFORE))
        for proc, label in procs:
            cursor = fixtures.current_cursor(proc.url, "bench-empty")
            calls = self._redis_calls()
            result = self.measure(self._poll(proc, "bench-empty", cursor), proc)
            if proc is not memory and result.requests:
                per_poll = (self._redis_calls() - calls) / result.requests
                note = (
                    f"empty poll at the cursor, {label}: {per_poll:.4f} Redis script calls "
                    f"per poll (EVALSHA calls over the polls of the run)"
                )
                if note not in self.notes:
                    self.notes.append(note)
            self.add("empty poll at the cursor", label, result, "GET", 0.8)
        cursor = fixtures.current_cursor(on_redis.url, "bench-empty")
        result = self.measure(self._poll(naive, "bench-empty", cursor), naive)
        self.add("empty poll at the cursor", "naive (ZRANGEBYSCORE)", result, "GET")

    def _redis_calls(self) -> int:
        import redis

        client = redis.Redis.from_url(self.redis_url)
        try:
            stats = client.info("commandstats")
        finally:
            client.close()
        return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval"))

    def poll_of_ten(self, on_redis: Proc, naive: Proc, before: Proc | None = None) -> None:
        cursor = fixtures.current_cursor(on_redis.url, "bench-ten")
        fixtures.publish(on_redis.url, [fixtures.message("bench-ten", n) for n in range(10)])
        for proc, label in ((on_redis, "relay, redis engine"), (before, BEFORE)):
            if proc is not None:
                result = self.measure(self._poll(proc, "bench-ten", cursor), proc)
                self.add("poll returning 10 updates", label, result, "GET", 0.5)
        result = self.measure(self._poll(naive, "bench-ten", cursor), naive)
        self.add("poll returning 10 updates", "naive (ZRANGEBYSCORE)", result, "GET")

    def publishes(self, on_redis: Proc, before: Proc | None = None) -> None:
        auth = {**self._json, "Authorization": f"Bearer {fixtures.API_KEY}"}
        for proc, label in ((on_redis, "relay, redis engine"), (before, BEFORE)):
            if proc is not None:
                load = Load("POST", proc.url + "/api/publish", auth, self._publish_body())
                result = self.measure(load, proc)
                self.add("publish one event", label, result, "POST", 0.45)

    def webhooks(self, on_redis: Proc) -> None:
        # One distinct, signed delivery per request (a repeated id would be a duplicate).
        count = int((self.size.seconds + self.size.warmup + 2) * 8000)
        variants = write_variants(fixtures.signed_webhooks(count))
        url = f"{on_redis.url}/webhooks/{fixtures.WEBHOOK_SOURCE}"
        result = self.measure(Load("POST", url, self._json, variants=variants), on_redis)
        self.add("webhook ingest (Standard Webhooks)", "relay, redis engine", result, "POST")
        if result.requests > count:
            self.notes.append("webhook ingest: more requests than distinct deliveries")

    def latency(self, mode: str, redis_url: str) -> None:
        size = self.size
        target = LATENCY_TARGETS[mode]
        for root, label in ((None, "relay, redis engine"), (self.baseline, BEFORE)):
            if label == BEFORE and root is None:
                continue
            relay = relay_proc(
                f"relay-{mode}",
                fixtures.relay_env(redis_url),
                self.server_cpu,
                uvloop=self.uvloop,
                root=root,
            )
            with running(relay):
                result = run_loop(
                    live.latency(
                        mode,
                        relay.url,
                        relay.port,
                        size.live_connections,
                        size.live_accounts,
                        size.live_events,
                    )
                )
            what = "SSE streams" if mode == "sse" else "long-polls"
            row = Row(
                f"publish → client, {size.live_connections} {what}",
                label,
                f"p99 ≤ {target:g} ms",
                p50=result.p50_ms,
                p99=result.p99_ms,
            )
            row.verdict = "pass" if result.p99_ms <= target else "miss"
            if result.deliveries != result.expected:
                row.verdict += f" ({result.expected - result.deliveries} not delivered)"
            self.rows.append(row)
            self.notes.append(
                f"{row.scenario}, {label}: {size.live_connections} connections over "
                f"{size.live_accounts} accounts, {size.live_events} events (one every 50 ms, "
                f"round-robin over the accounts), {result.deliveries} deliveries, "
                f"max {result.max_ms:.1f} ms"
            )
            print("  " + " | ".join(row.cells()), flush=True)

    def fanout(self, redis_url: str) -> None:
        streams, accounts, rate, seconds = self.size.fanout
        relay = relay_proc(
            "relay-fanout",
            {**fixtures.relay_env(redis_url), "RELAY_MAX_SSE_STREAMS": str(streams)},
            self.server_cpu,
            uvloop=self.uvloop,
        )
        with running(relay):
            result = run_loop(
                live.fanout(relay.url, relay.port, relay.pid, streams, accounts, rate, seconds)
            )
        lat = result.latency
        row = Row(
            f"fan-out: {streams:,} SSE streams, {accounts:,} accounts, {rate:,} events/s",
            "relay, redis engine",
            "once each, p99 ≤ 50 ms",
            p50=lat.p50_ms,
            p99=lat.p99_ms,
            cpu_us=result.cpu_us_per_delivery,
        )
        complete = lat.deliveries >= lat.expected and result.duplicates == 0
        row.verdict = "pass" if complete and lat.p99_ms <= 50 and not result.refused else "miss"
        if not complete:
            row.verdict += f" ({lat.deliveries} of {lat.expected}, {result.duplicates} twice)"
        if result.refused:
            row.verdict += f" ({result.refused} events refused: 503)"
        self.rows.append(row)
        self.notes.append(
            f"{row.scenario}: {result.published:,} events published over {seconds:g} s "
            f"(10 per request), {result.refused:,} of them not acknowledged, "
            f"{lat.deliveries:,} deliveries of the {lat.expected:,} acknowledged ones, "
            f"{result.duplicates} duplicates, max {lat.max_ms:.1f} ms; CPU µs/req here is "
            "relay's CPU per delivered event"
        )
        print("  " + " | ".join(row.cells()), flush=True)

    def rss(self, redis_url: str) -> None:
        count = self.size.idle_streams
        relay = relay_proc(
            "relay-rss", fixtures.relay_env(redis_url), self.server_cpu, uvloop=self.uvloop
        )
        with running(relay):
            before, after = run_loop(live.idle_stream_rss(relay.url, relay.port, relay.pid, count))
        each = (after - before) / count
        row = Row(f"idle SSE stream, {count} open", "relay, redis engine", "≤ 30 KB each")
        row.verdict = ("pass" if each <= 30 else "miss") + f": {each:.1f} KB each"
        self.rows.append(row)
        self.notes.append(
            f"idle SSE: relay RSS {before / 1024:.1f} MiB before, {after / 1024:.1f} MiB with "
            f"{count} streams open ({each:.1f} KiB each)"
        )
        print("  " + " | ".join(row.cells()), flush=True)

    def workers(self, redis_url: str) -> None:
        # Unpinned: the workers may use every core, and so may the generator (two threads
        # for both sides) and redis-server. Order 1, 2, 1, 2 and the better of the two runs
        # of each, because other work on a shared machine comes and goes in bursts.
        generator = pick(None, self.args.builtin)
        results: dict[int, Result] = {}
        for n in (1, 2, 1, 2):
            relay = relay_proc(
                f"relay-workers-{n}", fixtures.relay_env(redis_url), None, n, uvloop=self.uvloop
            )
            with running(relay):
                cursor = fixtures.current_cursor(relay.url, "bench-scale")
                load = self._poll(relay, "bench-scale", cursor)
                result = self.measure(load, relay, generator, threads=2)
            if n not in results or result.rps > results[n].rps:
                results[n] = result
        for n, result in sorted(results.items()):
            row = Row(
                f"scale-out: empty poll, --workers {n}",
                "relay, redis engine",
                rps=result.rps,
                p50=result.p50_ms,
                p99=result.p99_ms,
                cpu_us=result.cpu_us,
                ratio=result.rps / results[1].rps,
            )
            if n == 2:
                row.target = "≥ 1.6× workers 1"
                row.verdict = "pass" if row.ratio >= 1.6 else "miss"
            self.rows.append(row)
            print("  " + " | ".join(row.cells()), flush=True)
        self.notes.append(
            "scale-out: servers, wrk (2 threads) and redis-server unpinned on all CPUs; "
            "runs in the order 1, 2, 1, 2 workers, the better run of each shown"
        )


def run_loop(coroutine):
    """The live clients run on uvloop when importable, like the servers they measure."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run for development")
    parser.add_argument(
        "--scenario",
        type=lambda text: [s.strip() for s in text.split(",") if s.strip()],
        help=f"comma-separated subset of: {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--seconds", type=float, help="duration of each throughput run")
    parser.add_argument("--builtin", action="store_true", help="use the built-in generator")
    parser.add_argument("--no-uvloop", action="store_true", help="every server on asyncio's loop")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--output", help="also write the report (markdown) to this file")
    parser.add_argument(
        "--baseline",
        help="another relay checkout (e.g. `git archive` of an older commit) to run beside "
        "this one, same run: its rows are labelled 'relay before'",
    )
    args = parser.parse_args(argv)
    unknown = set(args.scenario or ()) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; choose from {', '.join(SCENARIOS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    machine_cpus = len(cpus())
    bench = Bench(args)
    if bench.load_cpu:
        # The orchestrator and the live-delivery clients run beside the generator.
        os.sched_setaffinity(0, bench.load_cpu)
    started = time.monotonic()
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    header = [
        f"command: {command.strip()}",
        f"machine: {platform.machine()}, {machine_cpus} CPUs, Python {platform.python_version()}",
        f"load generator: {bench.generator.name}, {bench.size.connections} connections, "
        f"{bench.size.seconds:g} s per run after {bench.size.warmup:g} s warm-up",
        "pinning: "
        + (
            f"each server on CPU {sorted(bench.server_cpu)}, the generator, redis-server "
            f"and the live clients on CPU {sorted(bench.load_cpu)} (scale-out: unpinned)"
            if bench.pinning
            else "none"
        ),
        f"event loop: {'uvloop where importable' if bench.uvloop else 'asyncio (--no-uvloop)'}",
    ]
    print("\n".join(header), flush=True)
    bench.run()
    elapsed = time.monotonic() - started
    report = "\n".join(
        [
            *header,
            "",
            table(bench.rows),
            "",
            *(f"- {note}" for note in bench.notes),
            "- ratio: requests/s over the ceiling measured in this run (GET rows over the bare "
            "GET, POST rows over the bare POST; scale-out over --workers 1)",
            "- CPU µs/req: the server process's user+system CPU time (from /proc, workers "
            "included) over the requests it answered; steadier than req/s on a shared machine",
            "- CPU ratio: the ceiling's CPU µs/req over this row's (what the ratio would be "
            "if both were CPU-bound on an otherwise idle core); result is judged on ratio",
            f"- run took {elapsed:.0f} s",
        ]
    )
    print("\n" + report)
    if args.output:
        with open(args.output, "w") as out:
            out.write(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
