"""In-process wake-ups for the memory engine: its appends publish straight to the handler."""

from __future__ import annotations

import asyncio

from relay.wakeups.base import Hint, WakeupHandler


class LocalBroker:
    """One process sees every append, so hints always flow; `publish` is called by the
    memory engine after each commit, in commit order."""

    def __init__(self) -> None:
        self._handler: WakeupHandler | None = None

    def attach(self, handler: WakeupHandler | None) -> None:
        """Report to `handler` without running (for code that drives the loop itself)."""
        self._handler = handler
        if handler is not None:
            handler.on_state(True, "in-process")

    def publish(self, hint: Hint) -> None:
        if self._handler is not None:
            self._handler.on_hint(hint)

    async def run(self, handler: WakeupHandler) -> None:
        self.attach(handler)
        try:
            await asyncio.Event().wait()
        finally:
            self._handler = None
