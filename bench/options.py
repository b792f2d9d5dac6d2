"""`python -m bench`'s command line: the scenarios it knows, the sizes of a full and a
--quick run, and its flags."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

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


def parse_args(argv: list[str] | None, description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=description)
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
