"""The dead-letter store: authentic webhooks that could not be normalized, kept (the
newest, within a count and a byte bound) with their raw body so a fixed normalizer can
replay them. Memory and Redis engines.

On Redis the body is stored once, as raw bytes, apart from its JSON record: a 4 MiB body
used to take 9-13 MiB (its text in the record, and base64 for byte-exactness). The byte
bound counts records and bodies; it and the count are enforced in one script per add.
"""

from __future__ import annotations

import base64
import binascii
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any, Protocol, cast

import orjson
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.commands.core import AsyncScript

from relay.errors import BadRequest, StoreUnavailable
from relay.store.connections import RedisClient
from relay.store.keys import (
    dead_letters_bodies_key,
    dead_letters_bytes_key,
    dead_letters_index_key,
    dead_letters_items_key,
)
from relay.store.redis import UNAVAILABLE

DEFAULT_MAX_LETTERS = 10_000
DEFAULT_MAX_REDIS_BYTES = 256 * 1024 * 1024
# The embedded engine lives in the process's memory: a smaller default.
DEFAULT_MAX_MEMORY_BYTES = 64 * 1024 * 1024
# A page of the admin list holds at most this much body (and at least one letter): the
# letters are read into relay's memory to answer.
PAGE_BYTES = 8 * 1024 * 1024
ADD_LUA = resources.files("relay.store").joinpath("lua", "dead_letter_add.lua").read_text()
REMOVE_LUA = resources.files("relay.store").joinpath("lua", "dead_letter_remove.lua").read_text()


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

    def record(self) -> bytes:
        """The stored record: everything but the body, which is stored apart, raw."""
        document = asdict(self)
        del document["body"]
        return orjson.dumps(document)

    @classmethod
    def from_record(cls, record: bytes, body: bytes | None) -> DeadLetter:
        document = orjson.loads(record)
        if body is None:  # a record written before bodies were stored apart
            return cls.from_json(document)
        fields = {
            key: document[key]
            for key in cls.__dataclass_fields__
            if key not in ("body", "unreadable")
        }
        fields["unreadable"] = document.get("unreadable") or []
        return cls(**fields, body=body)

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

    async def list(self, limit: int, before: str | None = None) -> list[DeadLetter]:
        """The newest letters first, older than the letter `before` names (a page's last
        id) if given; at most `limit` of them and about PAGE_BYTES of bodies."""
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

    async def list(self, limit: int, before: str | None = None) -> list[DeadLetter]:
        newest_first = reversed(self._letters.values())
        if before is not None:
            known = self._letters.get(before)
            bound = _order(known) if known is not None else _key(before)
            newest_first = (letter for letter in newest_first if _order(letter) < bound)
        older = iter(newest_first)
        return _page([letter for _, letter in zip(range(limit), older, strict=False)])

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
        self,
        connected: Callable[[], Awaitable[RedisClient]],
        max_letters: int = DEFAULT_MAX_LETTERS,
        max_bytes: int = DEFAULT_MAX_REDIS_BYTES,
    ) -> None:
        self.connected = connected
        self.max_letters = max_letters
        self.max_bytes = max_bytes
        self.keys = [
            dead_letters_index_key(),
            dead_letters_items_key(),
            dead_letters_bodies_key(),
            dead_letters_bytes_key(),
        ]
        self.index, self.items, self.bodies, _ = self.keys
        self._scripts: tuple[RedisClient, AsyncScript, AsyncScript] | None = None

    async def _client_and_scripts(self) -> tuple[RedisClient, AsyncScript, AsyncScript]:
        client = await self.connected()
        if self._scripts is None or self._scripts[0] is not client:
            self._scripts = (
                client,
                client.register_script(ADD_LUA),
                client.register_script(REMOVE_LUA),
            )
        return self._scripts

    async def add(self, letter: DeadLetter) -> None:
        score = int(letter.received_at * 1_000_000)
        args = (letter.id, score, letter.record(), letter.body, self.max_letters, self.max_bytes)
        async with _available():
            _, add, _ = await self._client_and_scripts()
            await add(keys=self.keys, args=args)

    async def list(self, limit: int, before: str | None = None) -> list[DeadLetter]:
        # The casts: relay's clients answer bytes (decode_responses=False), which redis-py's
        # reply types, written for either setting, cannot know.
        async with _available():
            client = await self.connected()
            ids: list[bytes]
            if before is None:
                ids = cast("list[bytes]", await client.zrevrange(self.index, 0, limit - 1))
            else:
                # Letters of the same microsecond are ordered by id, as the index orders them.
                score = await client.zscore(self.index, before)
                if score is None:  # replayed since: its id still says when it came
                    score = _score_of(before)
                found = cast(
                    "list[tuple[bytes, float]]",
                    await client.zrevrangebyscore(
                        self.index, score, "-inf", start=0, num=limit + 64, withscores=True
                    ),
                )
                ids = [member for member, at in found if at < score or member.decode() < before][
                    :limit
                ]
            if not ids:
                return []
            async with _pipeline(client) as pipe:
                for letter_id in ids:
                    pipe.hstrlen(self.bodies, letter_id)
                sizes = await pipe.execute()
            ids = ids[: _fitting(sizes)]
            records = cast("list[bytes | None]", await client.hmget(self.items, ids))
            bodies = cast("list[bytes | None]", await client.hmget(self.bodies, ids))
        return [
            DeadLetter.from_record(record, body)
            for record, body in zip(records, bodies, strict=True)
            if record is not None
        ]

    async def get(self, letter_id: str) -> DeadLetter | None:
        async with _available():
            client = await self.connected()
            record = cast("bytes | None", await client.hget(self.items, letter_id))
            body = (
                cast("bytes | None", await client.hget(self.bodies, letter_id))
                if record is not None
                else None
            )
        return None if record is None else DeadLetter.from_record(record, body)

    async def remove(self, letter_id: str) -> bool:
        async with _available():
            _, _, remove = await self._client_and_scripts()
            removed = await remove(keys=self.keys, args=[letter_id])
        return bool(removed)


def _score_of(letter_id: str) -> int:
    """A letter id starts with its receive time in hex microseconds (see new_letter_id)."""
    try:
        return int(letter_id.split("-", 1)[0], 16)
    except ValueError:
        raise BadRequest("before must be a dead-letter id", code="bad_before") from None


def _key(letter_id: str) -> tuple[int, str]:
    return (_score_of(letter_id), letter_id)


def _order(letter: DeadLetter) -> tuple[int, str]:
    return (int(letter.received_at * 1_000_000), letter.id)


def _fitting(sizes: list[int]) -> int:
    """How many of the bodies, in order, fit in a page (always at least one)."""
    total = 0
    for count, size in enumerate(sizes):
        total += size
        if total > PAGE_BYTES and count > 0:
            return count
    return len(sizes)


def _page(letters: list[DeadLetter]) -> list[DeadLetter]:
    return letters[: _fitting([len(letter.body) for letter in letters])]


def _pipeline(client: RedisClient) -> Pipeline | ClusterPipeline:
    # Every key shares the {deadletters} tag, but a cluster pipeline cannot be MULTI/EXEC.
    return client.pipeline(transaction=not isinstance(client, RedisCluster))


@asynccontextmanager
async def _available() -> AsyncIterator[None]:
    """Redis not answering is a 503 (the provider retries), never a 500."""
    try:
        yield
    except UNAVAILABLE as error:
        raise StoreUnavailable(f"redis did not answer: {type(error).__name__}") from error
