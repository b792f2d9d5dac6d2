"""The dead-letter store: authentic webhooks that could not be normalized, kept (newest
N) with their raw body so a fixed normalizer can replay them. Memory and Redis engines.
"""

from __future__ import annotations

import base64
import binascii
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import orjson
from redis.asyncio.cluster import RedisCluster

from relay.errors import StoreUnavailable
from relay.store.keys import dead_letters_index_key, dead_letters_items_key
from relay.store.redis import UNAVAILABLE

DEFAULT_MAX_LETTERS = 10_000
# The embedded engine lives in the process's memory: bound the bodies it holds, too.
DEFAULT_MAX_MEMORY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A delivery as received (secrets already redacted) and why it was not normalized."""

    id: str
    source: str
    provider: str
    account: str
    error: str
    received_at: float  # Unix seconds
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # The items of the body that were unreadable, each `{"place", "error"}` (place: where
    # in the body, "" for all of it); the body's other items were stored. A letter without
    # any (written before items were told apart) stands for the whole body.
    unreadable: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["body_base64"] = base64.b64encode(self.body).decode()
        try:  # readable when it is text; the base64 copy is the byte-exact one
            document["body"] = self.body.decode("utf-8")
        except UnicodeDecodeError:
            document["body"] = None
        return document

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> DeadLetter:
        fields = {
            key: document[key]
            for key in cls.__dataclass_fields__
            if key not in ("body", "unreadable")
        }
        fields["unreadable"] = document.get("unreadable") or []
        try:
            body = base64.b64decode(document.get("body_base64") or "", validate=True)
        except (binascii.Error, ValueError):
            body = b""
        return cls(**fields, body=body)


class DeadLetters(Protocol):
    engine: str

    async def add(self, letter: DeadLetter) -> None:
        """Keep a letter; beyond the bound, the oldest letters are dropped."""
        ...

    async def list(self, limit: int) -> list[DeadLetter]:
        """The newest letters first."""
        ...

    async def get(self, letter_id: str) -> DeadLetter | None: ...

    async def remove(self, letter_id: str) -> bool:
        """Forget a letter (it was replayed); False when it was already gone."""
        ...


class MemoryDeadLetters:
    engine = "memory"

    def __init__(
        self, max_letters: int = DEFAULT_MAX_LETTERS, max_bytes: int = DEFAULT_MAX_MEMORY_BYTES
    ) -> None:
        self.max_letters = max_letters
        self.max_bytes = max_bytes
        self._letters: OrderedDict[str, DeadLetter] = OrderedDict()
        self._bytes = 0

    async def add(self, letter: DeadLetter) -> None:
        if letter.id in self._letters:
            self._bytes -= len(self._letters.pop(letter.id).body)
        self._letters[letter.id] = letter
        self._bytes += len(letter.body)
        # The newest letter always stays, even alone over the budget.
        while len(self._letters) > 1 and (
            len(self._letters) > self.max_letters or self._bytes > self.max_bytes
        ):
            _, oldest = self._letters.popitem(last=False)
            self._bytes -= len(oldest.body)

    async def list(self, limit: int) -> list[DeadLetter]:
        return list(reversed(self._letters.values()))[:limit]

    async def get(self, letter_id: str) -> DeadLetter | None:
        return self._letters.get(letter_id)

    async def remove(self, letter_id: str) -> bool:
        letter = self._letters.pop(letter_id, None)
        if letter is None:
            return False
        self._bytes -= len(letter.body)
        return True


class RedisDeadLetters:
    """Uses the Redis store's client (the store owns and closes it). The client is asked
    for on each call: in `auto` cluster mode the store only creates it on first use."""

    engine = "redis"

    def __init__(
        self, connected: Callable[[], Awaitable[Any]], max_letters: int = DEFAULT_MAX_LETTERS
    ) -> None:
        self.connected = connected
        self.max_letters = max_letters
        self.index, self.items = dead_letters_index_key(), dead_letters_items_key()

    async def add(self, letter: DeadLetter) -> None:
        record = orjson.dumps(letter.to_json())
        score = int(letter.received_at * 1_000_000)
        async with _available():
            client = await self.connected()
            async with _pipeline(client) as pipe:
                pipe.hset(self.items, letter.id, record)
                pipe.zadd(self.index, {letter.id: score})
                pipe.zrange(self.index, 0, -self.max_letters - 1)
                *_, excess = await pipe.execute()
            if excess:
                async with _pipeline(client) as pipe:
                    pipe.zrem(self.index, *excess)
                    pipe.hdel(self.items, *excess)
                    await pipe.execute()

    async def list(self, limit: int) -> list[DeadLetter]:
        async with _available():
            client = await self.connected()
            ids = await client.zrevrange(self.index, 0, limit - 1)
            records = await client.hmget(self.items, ids) if ids else []
        return [DeadLetter.from_json(orjson.loads(r)) for r in records if r is not None]

    async def get(self, letter_id: str) -> DeadLetter | None:
        async with _available():
            record = await (await self.connected()).hget(self.items, letter_id)
        return None if record is None else DeadLetter.from_json(orjson.loads(record))

    async def remove(self, letter_id: str) -> bool:
        async with _available(), _pipeline(await self.connected()) as pipe:
            pipe.zrem(self.index, letter_id)
            pipe.hdel(self.items, letter_id)
            removed, _ = await pipe.execute()
        return bool(removed)


def _pipeline(client: Any) -> Any:
    # Every key shares the {deadletters} tag, but a cluster pipeline cannot be MULTI/EXEC.
    return client.pipeline(transaction=not isinstance(client, RedisCluster))


@asynccontextmanager
async def _available() -> AsyncIterator[None]:
    """Redis not answering is a 503 (the provider retries), never a 500."""
    try:
        yield
    except UNAVAILABLE as error:
        raise StoreUnavailable(f"redis did not answer: {type(error).__name__}") from error
