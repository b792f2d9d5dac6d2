"""The delivery ledger on Redis: one Lua script (subscriber.lua) per operation, on the
account's hash-tagged key, so it works unchanged on a Redis Cluster."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources

from redis.commands.core import AsyncScript

from relay.cursor import Cursor, to_cursor
from relay.store.connections import RedisClient
from relay.store.delivery_ledger import LedgerEntry
from relay.store.keys import subscriber_key
from relay.store.redis import UNAVAILABLE, _unavailable

SCRIPT = resources.files("relay.store").joinpath("lua", "subscriber.lua").read_text()
_CLOCK_KEYS = "relay:{*}:clock"


class RedisLedger:
    def __init__(self, connected_client: Callable[[], Awaitable[RedisClient]]) -> None:
        # The store's own client (the store opens and closes it), once its mode is known.
        self._connected_client = connected_client
        self._script: AsyncScript | None = None

    async def _call(self, subscriber: str, account: str, *args: str | int) -> LedgerEntry:
        try:
            if self._script is None:
                client = await self._connected_client()
                self._script = client.register_script(SCRIPT)
            reply = await self._script(keys=[subscriber_key(account, subscriber)], args=args)
        except UNAVAILABLE as error:
            raise _unavailable(error) from error
        granted, cursor, holder, left, attempts, last_error, next_attempt, fence = reply
        return LedgerEntry(
            granted=int(granted),
            cursor=to_cursor(cursor) if cursor else None,
            holder=holder.decode(),
            lease_left=int(left) / 1000,
            attempts=int(attempts),
            last_error=last_error.decode(),
            next_attempt=to_cursor(next_attempt) if next_attempt else None,
            fence=int(fence),
        )

    async def acquire(
        self, subscriber: str, account: str, holder: str, lease: float
    ) -> LedgerEntry:
        return await self._call(subscriber, account, "acquire", holder, _ms(lease), "")

    async def renew(
        self, subscriber: str, account: str, holder: str, token: int, lease: float
    ) -> LedgerEntry:
        return await self._call(subscriber, account, "renew", holder, _ms(lease), token)

    async def advance(
        self, subscriber: str, account: str, holder: str, token: int, cursor: Cursor
    ) -> LedgerEntry:
        return await self._call(subscriber, account, "advance", holder, 0, token, cursor)

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
        return await self._call(
            subscriber, account, "fail", holder, 0, token, attempts, error[:500], next_attempt
        )

    async def release(self, subscriber: str, account: str, holder: str, token: int) -> None:
        await self._call(subscriber, account, "release", holder, 0, token)

    async def rewind(self, subscriber: str, account: str, cursor: Cursor) -> LedgerEntry:
        return await self._call(subscriber, account, "rewind", "", 0, "", cursor)

    async def state(self, subscriber: str, account: str) -> LedgerEntry:
        return await self._call(subscriber, account, "state", "", 0, "")

    async def accounts(self) -> list[str]:
        """Every account with a clock, from a SCAN of every master (cluster or not)."""
        found = set()
        try:
            client = await self._connected_client()
            async for key in client.scan_iter(match=_CLOCK_KEYS, count=1000):
                found.add(key.decode()[len("relay:{") : -len("}:clock")])
        except UNAVAILABLE as error:
            raise _unavailable(error) from error
        return sorted(found)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
