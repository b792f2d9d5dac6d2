"""Every Redis key relay uses, built in one place.

All keys of an account share the hash tag `{<account>}`: one Cluster slot, one script.
"""

from __future__ import annotations


def stream_key(account: str) -> str:
    return f"relay:{{{account}}}:updates"


def clock_key(account: str) -> str:
    return f"relay:{{{account}}}:clock"


def meta_key(account: str) -> str:
    """Hash with `origin` (first known by this store) and `trimmed` (highest trimmed ts)."""
    return f"relay:{{{account}}}:meta"


def ids_key(account: str) -> str:
    """Sorted set of event ids scored by their timestamp: the idempotency window."""
    return f"relay:{{{account}}}:ids"


def subscriber_key(account: str, subscriber: str) -> str:
    """Hash: a subscriber's delivery cursor for the account, its lease and fencing token,
    and the last attempt's outcome (see lease.lua)."""
    return f"relay:{{{account}}}:sub:{subscriber}"


def account_keys(account: str) -> list[str]:
    return [stream_key(account), clock_key(account), meta_key(account), ids_key(account)]


# Dead letters are not an account's: one hash tag of their own keeps them on one slot.
def dead_letters_index_key() -> str:
    """Sorted set of dead-letter ids scored by their receive time (microseconds)."""
    return "relay:{deadletters}:index"


def dead_letters_items_key() -> str:
    """Hash: dead-letter id -> its JSON record (without the body)."""
    return "relay:{deadletters}:items"


def dead_letters_bodies_key() -> str:
    """Hash: dead-letter id -> its body, the raw bytes, stored once."""
    return "relay:{deadletters}:bodies"


def dead_letters_bytes_key() -> str:
    """Integer: the bytes of every record and body held, for the byte bound."""
    return "relay:{deadletters}:bytes"
