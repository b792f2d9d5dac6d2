"""The live rows: publish-to-client latency over SSE and long-poll, the fan-out to many
streams, and the memory of an idle SSE stream (the clients are in bench/live.py)."""

from __future__ import annotations

from pathlib import Path

from bench import fixtures, live
from bench.report import BEFORE, Row
from bench.runtime import run_loop
from bench.servers import relay_proc, running

LATENCY_TARGETS = {"sse": 5.0, "longpoll": 8.0}


class LiveRows:
    """Scenarios sse, longpoll, fanout and rss: a part of Bench (bench/harness.py)."""

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
        for root, label in ((None, "relay, redis engine"), (self.baseline, BEFORE)):
            if label == BEFORE and root is None:
                continue
            self._fanout(redis_url, root, label)

    def _fanout(self, redis_url: str, root: Path | None, label: str) -> None:
        streams, accounts, rate, seconds = self.size.fanout
        relay = relay_proc(
            "relay-fanout",
            {**fixtures.relay_env(redis_url), "RELAY_MAX_SSE_STREAMS": str(streams)},
            self.server_cpu,
            uvloop=self.uvloop,
            root=root,
        )
        with running(relay):
            result = run_loop(
                live.fanout(relay.url, relay.port, relay.pid, streams, accounts, rate, seconds)
            )
        lat = result.latency
        row = Row(
            f"fan-out: {streams:,} SSE streams, {accounts:,} accounts, {rate:,} events/s",
            label,
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
            f"{row.scenario}, {label}: {result.published:,} events published over {seconds:g} s "
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
