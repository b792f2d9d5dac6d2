"""A test hook: hints dropped, duplicated, delayed or reordered before the handler sees
them, to prove that the tail notices every such gap (`RELAY_TEST_HINT_DISORDER`).

`RELAY_TEST_HINT_DISORDER="drop=0.05,duplicate=0.05,delay=0.05,reorder=0.05,seed=7"`: each
hint is dropped, duplicated, delayed by up to 20 ms, or held back until the next hint, with
those probabilities. Unset (always, outside tests), hints go straight to the handler.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Mapping

from relay.wakeups.base import Hint, IsAffected, WakeupHandler

ENV = "RELAY_TEST_HINT_DISORDER"


class Disorder:
    def __init__(self, handler: WakeupHandler, odds: Mapping[str, float]) -> None:
        self.handler = handler
        self.odds = dict(odds)
        self.random = random.Random(self.odds.pop("seed", None))
        self.held: Hint | None = None

    def on_hint(self, hint: Hint) -> None:
        roll, odds = self.random.random(), self.odds
        edge = 0.0
        for what in ("drop", "duplicate", "delay", "reorder"):
            edge += odds.get(what, 0.0)
            if roll < edge:
                break
        else:
            what = "pass"
        held, self.held = self.held, None
        if what == "drop":
            pass
        elif what == "duplicate":
            self.handler.on_hint(hint)
            self.handler.on_hint(hint)
        elif what == "delay":
            delay = self.random.uniform(0, 0.02)
            asyncio.get_running_loop().call_later(delay, self.handler.on_hint, hint)
        elif what == "reorder":
            self.held = hint
        else:
            self.handler.on_hint(hint)
        if held is not None:
            self.handler.on_hint(held)

    def on_state(self, up: bool, reason: str) -> None:
        self.held = None
        self.handler.on_state(up, reason)

    def on_gap(self, is_affected: IsAffected) -> None:
        self.handler.on_gap(is_affected)


def with_disorder(
    handler: WakeupHandler, environ: Mapping[str, str] | None = None
) -> WakeupHandler:
    """`handler`, behind a Disorder when the test hook's variable is set."""
    spec = (os.environ if environ is None else environ).get(ENV, "")
    if not spec:
        return handler
    odds: dict[str, float] = {}
    for part in spec.split(","):
        name, _, value = part.partition("=")
        odds[name.strip()] = float(value)
    return Disorder(handler, odds)
