"""The scale-out rows: an empty poll against `relay serve --workers 1` and `--workers 2`."""

from __future__ import annotations

from bench import fixtures
from bench.load import Result, pick
from bench.report import Row
from bench.servers import relay_proc, running


class ScaleOut:
    """Scenario workers: a part of Bench (bench/harness.py)."""

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
