"""`POST /webhooks/{source}`: verify with the provider's own scheme, normalize item by item,
append what is readable, dead-letter what is not (naming each item's place in the body), and
acknowledge only after both are stored, so a provider retries what was not.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from relay.errors import NotFound
from relay.events import Appended, Event
from relay.ingest.dead_letter import delivery_of, letter_of, unreadable_of
from relay.ingest.providers import PROVIDERS
from relay.ingest.providers.common.base import (
    Ack,
    Delivery,
    Normalized,
    Provider,
    Unprocessable,
    Unreadable,
)
from relay.logs import get_logger
from relay.settings import Settings, Source
from relay.store.base import Store
from relay.store.dead_letters import DeadLetters

log = get_logger("relay.ingest")


@dataclass(frozen=True, slots=True)
class Ingested:
    ack: Ack
    events: list[Event]
    appended: list[Appended]
    dead_letter: str | None = None

    @property
    def outcome(self) -> str:
        if self.dead_letter is not None:
            return "dead_lettered"
        if not self.appended:
            return "ignored"
        return "duplicate" if all(a.duplicate for a in self.appended) else "accepted"


def source_of(settings: Settings, name: str) -> tuple[Source, Provider]:
    source = settings.sources.get(name)
    if source is None:
        raise NotFound(f"no webhook source named {name!r} is configured", code="unknown_source")
    return source, PROVIDERS[source.provider]


def verify_head(provider: Provider, head: Delivery, source: Source) -> bool:
    """Raise Rejected if the headers and query alone show the delivery is not authentic;
    True if they alone prove it is. Providers without a head check read the body first."""
    if provider.verify_head is None:
        return False
    return bool(provider.verify_head(head, source))


def normalize_delivery(provider: Provider, delivery: Delivery, source: Source) -> Normalized:
    """The provider's events item by item; a body that cannot be read at all is one
    unreadable item at "" (whatever the normalizer raised: it never becomes a 500)."""
    try:
        normalized = provider.normalize(delivery, source)
        if not isinstance(normalized, Normalized):
            raise TypeError(f"normalize returned {type(normalized).__name__}, not Normalized")
    except Unprocessable as error:
        return Normalized(unreadable=[Unreadable("", error.detail)])
    except Exception as error:
        detail = f"the normalizer failed: {type(error).__name__}: {error}"
        return Normalized(unreadable=[Unreadable("", detail)])
    for item in normalized.unreadable:
        log.warning(
            "webhook.item_unreadable",
            source=source.name,
            provider=provider.name,
            place=item.place,
            error=item.error[:200],
        )
    return normalized


async def ingest(
    store: Store,
    dead_letters: DeadLetters,
    source: Source,
    provider: Provider,
    delivery: Delivery,
    secrets: Sequence[str] = (),
) -> Ingested:
    provider.verify(delivery, source)
    return await ingest_verified(store, dead_letters, source, provider, delivery, secrets)


async def ingest_verified(
    store: Store,
    dead_letters: DeadLetters,
    source: Source,
    provider: Provider,
    delivery: Delivery,
    secrets: Sequence[str] = (),
) -> Ingested:
    """Normalize and store a delivery `provider.verify` has accepted. `secrets` (every
    configured secret value) are cut out of a dead letter's headers, query and URL."""
    normalized = normalize_delivery(provider, delivery, source)
    events = normalized.events
    appended = await store.append(source.account, events) if events else []
    if not normalized.unreadable:
        return Ingested(provider.ack(delivery), events, appended)
    letter = letter_of(delivery, source, provider, normalized.unreadable, secrets)
    await dead_letters.add(letter)
    log.warning(
        "webhook.dead_lettered",
        source=source.name,
        dead_letter=letter.id,
        items=len(normalized.unreadable),
        stored=len(events),
    )
    # Both stored, so acknowledged: a retry would fail the same way until the code is fixed.
    return Ingested(provider.ack(delivery), events, appended, dead_letter=letter.id)


def covers(places: list[str], place: str) -> bool:
    """Whether an item at `place` is one of `places` or inside one ("" is the whole body)."""
    return any(not p or place == p or place.startswith(p + "/") for p in places)


async def replay(
    store: Store, dead_letters: DeadLetters, settings: Settings, letter_id: str
) -> Ingested:
    """Normalize a dead letter with today's code and append the events of its unreadable
    items only (the rest of its body was stored when it arrived); the letter goes once they
    are stored. Event ids are stable, so a replay never stores anything twice either way."""
    letter = await dead_letters.get(letter_id)
    if letter is None:
        raise NotFound(f"no dead letter {letter_id!r} (replayed already?)", code="unknown_letter")
    provider = PROVIDERS.get(letter.provider)
    if provider is None:
        raise NotFound(
            f"provider {letter.provider!r} is not known any more", code="unknown_provider"
        )
    configured = settings.sources.get(letter.source)
    source = configured or Source(letter.source, letter.provider, letter.account)
    delivery = delivery_of(letter)
    places = [item.place for item in unreadable_of(letter)]
    normalized = normalize_delivery(provider, delivery, source)
    still = [item for item in normalized.unreadable if covers(places, item.place)]
    if still:
        where = ", ".join(item.place or "(the body)" for item in still[:5])
        raise Unprocessable(f"still unreadable at {where}: {still[0].error}")
    events = [event for place, event in normalized.placed if covers(places, place)]
    appended = await store.append(source.account, events) if events else []
    await dead_letters.remove(letter.id)
    return Ingested(provider.ack(delivery), events, appended)


def now() -> float:
    return time.time()
