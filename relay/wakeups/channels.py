"""One wake-up channel per Redis Cluster slot, for sharded pub/sub.

A script may only publish on a shard channel of its own slot, so each account's hint goes
to the channel of the account's slot. One channel per slot (not per account) lets every
relay process subscribe to a fixed set, the slots of each master, and hear every account
without knowing which accounts exist.
"""

from __future__ import annotations

from binascii import crc_hqx
from functools import cache

from redis.crc import key_slot

from relay.store.keys import stream_key

SLOTS = 16384
# Standalone Redis, and clusters without sharded pub/sub: one channel for every account.
WAKE_CHANNEL = "relay:wake"


@cache
def _tags() -> tuple[str, ...]:
    # The first hex number landing in each slot (~315 000 CRCs, ~0.1 s, once per process).
    tags: list[str | None] = [None] * SLOTS
    missing, n = SLOTS, 0
    while missing:
        tag = b"%x" % n
        slot = crc_hqx(tag, 0) % SLOTS
        if tags[slot] is None:
            tags[slot] = tag.decode()
            missing -= 1
        n += 1
    return tuple(tag for tag in tags if tag is not None)


def slot_channel(slot: int) -> str:
    """The wake-up channel that hashes to `slot`."""
    return f"relay:{{{_tags()[slot]}}}:wake"


def channel_slot(channel: bytes | str) -> int:
    return key_slot(channel if isinstance(channel, bytes) else channel.encode())


def account_slot(account: str) -> int:
    return key_slot(stream_key(account).encode())


def account_channel(account: str) -> str:
    """The wake-up channel in the slot of the account's keys."""
    return slot_channel(account_slot(account))
