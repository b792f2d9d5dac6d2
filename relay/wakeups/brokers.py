"""The broker for a store's engine."""

from __future__ import annotations

from relay.store.base import Store
from relay.wakeups.base import Broker


def broker_for(store: Store) -> Broker:
    from relay.store.memory import MemoryStore

    inner = getattr(store, "inner", store)  # an ObservedStore wraps the engine
    if isinstance(inner, MemoryStore):
        return inner.hints
    from relay.store.redis import RedisStore
    from relay.wakeups.redis_broker import RedisBroker

    if isinstance(inner, RedisStore):
        return RedisBroker(inner)
    raise TypeError(f"no wake-ups for a {type(inner).__name__}")
