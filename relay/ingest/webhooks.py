"""`POST /webhooks/{source}`: verify with the provider's own scheme, normalize, append,
and acknowledge only after the events are stored, so a provider retries what was not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from relay.errors import NotFound
from relay.events import Appended, Event
from relay.ingest.providers import PROVIDERS
from relay.ingest.providers.base import Ack, Delivery, Provider
from relay.settings import Settings, Source
from relay.store.base import Store


@dataclass(frozen=True, slots=True)
class Ingested:
    ack: Ack
    events: list[Event]
    appended: list[Appended]

    @property
    def outcome(self) -> str:
        if not self.appended:
            return "ignored"
        return "duplicate" if all(a.duplicate for a in self.appended) else "accepted"


def source_of(settings: Settings, name: str) -> tuple[Source, Provider]:
    source = settings.sources.get(name)
    if source is None:
        raise NotFound(f"no webhook source named {name!r} is configured", code="unknown_source")
    return source, PROVIDERS[source.provider]


async def ingest(store: Store, source: Source, provider: Provider, delivery: Delivery) -> Ingested:
    provider.verify(delivery, source)
    events = provider.normalize(delivery, source)
    appended = await store.append(source.account, events) if events else []
    return Ingested(provider.ack(delivery), events, appended)


def now() -> float:
    return time.time()
