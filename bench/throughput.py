"""The throughput rows: an empty poll, a poll of ten, a publish and a webhook, each beside
the bare aiohttp ceiling (and the naive check-updates) measured in the same pass."""

from __future__ import annotations

from bench import fixtures
from bench.load import Load, Result, write_variants
from bench.report import BEFORE, Row
from bench.servers import Proc, python_proc, relay_proc, running


class Throughput:
    """Scenarios empty, poll10, publish and webhook: a part of Bench (bench/harness.py)."""

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
