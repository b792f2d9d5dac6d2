"""Where delivery keeps its durable cursors and fenced leases, per (subscriber, account):
the protocol, and the memory engine's implementation (one process, not durable).

A cursor moves only under the current fencing token; every new lease and every rewind
makes a new token, so a replica that lost its lease (it died, stalled, was partitioned)
cannot move the cursor when it comes back. The Redis engine is in redis_ledger.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from relay.cursor import Cursor


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One (subscriber, account) as the ledger holds it, after an operation.

    `granted` is the token the operation was done under, 0 when it was refused (a lease
    held elsewhere, or a stale token); `cursor` is None before the first delivery."""

    granted: int
    cursor: Cursor | None
    holder: str
    lease_left: float  # seconds until the holder's lease lapses (0: nobody holds it)
    attempts: int
    last_error: str
    next_attempt: Cursor | None  # microseconds since the epoch
    fence: int

    @property
    def refused(self) -> bool:
        return self.granted == 0


class DeliveryLedger(Protocol):
    async def acquire(
        self, subscriber: str, account: str, holder: str, lease: float
    ) -> LedgerEntry:
        """A new lease and token, unless another holder's lease is still running (a holder
        that asks again, after a store error say, gets a new token: its old one is stale)."""
        ...

    async def renew(
        self, subscriber: str, account: str, holder: str, token: int, lease: float
    ) -> LedgerEntry: ...

    async def advance(
        self, subscriber: str, account: str, holder: str, token: int, cursor: Cursor
    ) -> LedgerEntry:
        """Move the cursor after a 2xx: refused under a stale token."""
        ...

    async def fail(
        self,
        subscriber: str,
        account: str,
        holder: str,
        token: int,
        attempts: int,
        error: str,
        next_attempt: Cursor,
    ) -> LedgerEntry: ...

    async def release(self, subscriber: str, account: str, holder: str, token: int) -> None: ...

    async def rewind(self, subscriber: str, account: str, cursor: Cursor) -> LedgerEntry:
        """Redeliver after `cursor`: a new token, so the holder re-reads from it."""
        ...

    async def state(self, subscriber: str, account: str) -> LedgerEntry: ...

    async def accounts(self) -> list[str]:
        """Every account the store knows (for subscribers of `accounts = ["*"]`)."""
        ...


@dataclass(slots=True)
class _Row:
    cursor: Cursor | None = None
    fence: int = 0
    holder: str = ""
    expires: float = 0.0  # monotonic seconds
    attempts: int = 0
    error: str = ""
    next: Cursor | None = None


class MemoryLedger:
    """The same rules as subscriber.lua, in one process."""

    def __init__(self, accounts: Callable[[], list[str]]) -> None:
        self._rows: dict[tuple[str, str], _Row] = {}
        self._accounts = accounts

    def _entry(self, row: _Row, granted: int) -> LedgerEntry:
        left = max(0.0, row.expires - time.monotonic()) if row.holder else 0.0
        return LedgerEntry(
            granted, row.cursor, row.holder, left, row.attempts, row.error, row.next, row.fence
        )

    def _row(self, subscriber: str, account: str) -> _Row:
        return self._rows.setdefault((subscriber, account), _Row())

    @staticmethod
    def _current(row: _Row, holder: str, token: int) -> bool:
        return bool(row.holder) and row.holder == holder and row.fence == token

    async def acquire(
        self, subscriber: str, account: str, holder: str, lease: float
    ) -> LedgerEntry:
        row = self._row(subscriber, account)
        now = time.monotonic()
        if row.holder and row.expires > now and row.holder != holder:
            return self._entry(row, 0)
        row.fence += 1
        row.holder, row.expires = holder, now + lease
        return self._entry(row, row.fence)

    async def renew(
        self, subscriber: str, account: str, holder: str, token: int, lease: float
    ) -> LedgerEntry:
        row = self._row(subscriber, account)
        if not self._current(row, holder, token):
            return self._entry(row, 0)
        row.expires = time.monotonic() + lease
        return self._entry(row, token)

    async def advance(
        self, subscriber: str, account: str, holder: str, token: int, cursor: Cursor
    ) -> LedgerEntry:
        row = self._row(subscriber, account)
        if not self._current(row, holder, token):
            return self._entry(row, 0)
        row.cursor, row.attempts, row.error, row.next = cursor, 0, "", None
        return self._entry(row, token)

    async def fail(
        self,
        subscriber: str,
        account: str,
        holder: str,
        token: int,
        attempts: int,
        error: str,
        next_attempt: Cursor,
    ) -> LedgerEntry:
        row = self._row(subscriber, account)
        if not self._current(row, holder, token):
            return self._entry(row, 0)
        row.attempts, row.error, row.next = attempts, error, next_attempt
        return self._entry(row, token)

    async def release(self, subscriber: str, account: str, holder: str, token: int) -> None:
        row = self._row(subscriber, account)
        if self._current(row, holder, token):
            row.holder, row.expires = "", 0.0

    async def rewind(self, subscriber: str, account: str, cursor: Cursor) -> LedgerEntry:
        row = self._row(subscriber, account)
        row.fence += 1
        row.cursor, row.holder, row.expires = cursor, "", 0.0
        row.attempts, row.error, row.next = 0, "", None
        return self._entry(row, row.fence)

    async def state(self, subscriber: str, account: str) -> LedgerEntry:
        return self._entry(self._rows.get((subscriber, account)) or _Row(), 0)

    async def accounts(self) -> list[str]:
        return self._accounts()
