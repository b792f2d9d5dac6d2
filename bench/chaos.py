"""The chaos run at a size of your choosing: the scenario of tests/chaos (Redis with AOF,
two relays, signing senders that retry, echoing long-poll and SSE clients, faults injected
by progress), repeated for several rounds of faults. Usage, from the repository root:

    python -m bench.chaos [--senders 16 --webhooks-per-sender 500 --clients 20 --rounds 3]

Prints the figures as one JSON line, then the verdict; exits 1 if any promise was broken.
The figures go into docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from tests.chaos.scenario import Plan, check, figures, run_with_rig


def parse(argv: list[str]) -> Plan:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--senders", type=int, default=16)
    parser.add_argument("--webhooks-per-sender", type=int, default=500)
    parser.add_argument("--clients", type=int, default=20, help="half long-poll, half SSE")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the 4 faults")
    parser.add_argument("--redis-timeout", type=float, default=0.5, help="seconds")
    parser.add_argument("--pause", type=float, default=3.0, help="SIGSTOP seconds")
    parser.add_argument("--down", type=float, default=1.0, help="seconds Redis stays dead")
    parser.add_argument("--deadline", type=float, default=1800.0, help="seconds, whole run")
    parser.add_argument(
        "--appendfsync",
        choices=("always", "everysec", "off"),
        default="always",
        help="Redis AOF fsync policy; off: no AOF (the verdict must then report losses)",
    )
    args = parser.parse_args(argv)
    return Plan(
        senders=args.senders,
        webhooks_per_sender=args.webhooks_per_sender,
        clients=args.clients,
        rounds=args.rounds,
        redis_timeout=args.redis_timeout,
        pause=args.pause,
        down=args.down,
        deadline=args.deadline,
        appendfsync=args.appendfsync,
    )


def main(argv: list[str] | None = None) -> int:
    plan = parse(sys.argv[1:] if argv is None else argv)
    outcome = asyncio.run(run_with_rig(plan))
    print(json.dumps(figures(outcome)))
    problems = check(outcome)
    for problem in problems:
        print(f"BROKEN: {problem}")
    if not problems:
        print(
            f"ok: {len(outcome.stored)} acked webhooks, each seen exactly once and in store "
            f"order by all {len(outcome.pollers) + len(outcome.streams)} clients, through "
            f"{len(outcome.tally.faults)} faults"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
