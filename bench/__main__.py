"""`python -m bench`: relay side by side with a bare aiohttp ceiling and a naive
check-updates, on this machine, in one run; prints one table (and writes it with --output).

    python -m bench                  # the full run (under 5 minutes on 2 cores)
    python -m bench --quick          # a short run for development
    python -m bench --scenario empty,poll10
    python -m bench --baseline /tmp/relay-before   # also an older checkout, same run
"""

from __future__ import annotations

import os
import platform
import sys
import time

from bench.harness import Bench
from bench.options import parse_args
from bench.report import Row, render
from bench.runtime import raise_fd_limit, run_loop
from bench.servers import cpus

# bench/deliveries.py takes Bench, Row and run_loop from here.
__all__ = ["Bench", "Row", "main", "run_loop"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, __doc__.splitlines()[0])
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
    report = render(header, bench.rows, bench.notes, elapsed)
    print("\n" + report)
    if args.output:
        with open(args.output, "w") as out:
            out.write(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
