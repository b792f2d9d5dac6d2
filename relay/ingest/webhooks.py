"""`POST /webhooks/{source}`: verify with the provider's own scheme, normalize, append,
and acknowledge only after the events (or the dead letter) are stored, so a provider
retries what was not.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from relay.errors import NotFound
from relay.events import Appended, Event
from relay.ingest.dead_letter import delivery_of, letter_of
from relay.ingest.providers import PROVIDERS
from relay.ingest.providers.base import Ack, Delivery, Provider, Unprocessable
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
    check = getattr(provider, "verify_head", None)
    return bool(check(head, source)) if check is not None else False


def normalize_events(provider: Provider, delivery: Delivery, source: Source) -> list[Event]:
    """The provider's events, or Unprocessable: whatever a normalizer does with a body it
    did not expect (a KeyError, an int too large for JSON), it never becomes a 500."""
    try:
        events = provider.normalize(delivery, source)
        for event in events:
            if not isinstance(event, Event):
                raise TypeError(f"normalize returned {type(event).__name__}, not an Event")
            event.encode()  # what the store will do: fail here, not after the ack
    except Unprocessable:
        raise
    except Exception as error:
        log.warning(
            "webhook.normalize_failed",
            source=source.name,
            provider=provider.name,
            error=type(error).__name__,
        )
        raise Unprocessable(f"the normalizer failed: {type(error).__name__}: {error}") from error
    return events


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
    try:
        events = normalize_events(provider, delivery, source)
    except Unprocessable as error:
        letter = letter_of(delivery, source, provider, error.detail, secrets)
        await dead_letters.add(letter)
        log.warning("webhook.dead_lettered", source=source.name, dead_letter=letter.id)
        # Stored, so acknowledged: a retry would fail the same way until the code is fixed.
        return Ingested(provider.ack(delivery), [], [], dead_letter=letter.id)
    appended = await store.append(source.account, events) if events else []
    return Ingested(provider.ack(delivery), events, appended)


async def replay(
    store: Store, dead_letters: DeadLetters, settings: Settings, letter_id: str
) -> Ingested:
    """Normalize a dead letter with today's code and append its events; the letter goes
    once they are stored. Event ids are stable, so a replay never stores anything twice."""
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
    events = normalize_events(provider, delivery, source)
    appended = await store.append(source.account, events) if events else []
    await dead_letters.remove(letter.id)
    return Ingested(provider.ack(delivery), events, appended)


def now() -> float:
    return time.time()
