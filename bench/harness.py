"""Bench: one run's machine layout (which CPU serves, which loads), its measurements, and
the scenarios it was asked for, in order. The scenarios themselves are in
bench/throughput.py, bench/live_rows.py, bench/scale_out.py and bench/deliveries.py."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench import deliveries, fixtures
from bench.live_rows import LiveRows
from bench.load import Generator, Load, Result, pick
from bench.options import FULL, QUICK, SCENARIOS, Size
from bench.report import Row
from bench.scale_out import ScaleOut
from bench.servers import Proc, cpu_seconds, cpus, redis_proc
from bench.throughput import Throughput


class Bench(Throughput, LiveRows, ScaleOut):
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

    def _poll(self, proc: Proc, account: str, cursor: str) -> Load:
        auth = {"Authorization": f"Bearer {fixtures.token(account)}"}
        return Load("GET", fixtures.poll_url(proc.url, cursor), auth)

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
