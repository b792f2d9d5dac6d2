"""The Store protocol and its engines: `memory` (embedded default) and `redis`."""

from relay.store.base import Page, Retention, Store

__all__ = ["Page", "Retention", "Store"]
