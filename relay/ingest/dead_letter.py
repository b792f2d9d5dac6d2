"""What an authentic webhook that failed to normalize becomes (a DeadLetter with its
secrets redacted), and how one is replayed through the provider's current code.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit

from multidict import CIMultiDict, MultiDict

from relay.ingest.providers.common.base import Delivery, Provider, Unreadable
from relay.settings import Source
from relay.store.dead_letters import DeadLetter

REDACTED = "[redacted]"
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "cookie",
        "x-hub-signature",
        "x-hub-signature-256",
        "x-twilio-signature",
        "x-telegram-bot-api-secret-token",
        "x-relay-secret",
        "webhook-signature",
        "svix-signature",
    }
)
SECRET_QUERY = frozenset({"secret", "token", "hub.verify_token", "hub_verify_token"})
# Anything else named like a credential is redacted too: providers add headers unannounced.
_SECRET_NAME = re.compile(r"secret|signature|password|api[-_]?key|auth", re.IGNORECASE)


def _is_secret(name: str, listed: frozenset[str]) -> bool:
    return name.lower() in listed or bool(_SECRET_NAME.search(name))


def _text(value: str) -> str:
    # Header bytes that are not UTF-8 arrive as surrogates; JSON cannot hold those.
    return value.encode("utf-8", "replace").decode("utf-8")


def scrub(value: str, secrets: Sequence[str]) -> str:
    """`value` with every configured secret value cut out, wherever it sits: a proxy copies
    a `?secret=` URL into Referer, X-Original-Uri, X-Forwarded-Uri, X-Envoy-Original-Path,
    and headers relay has never heard of."""
    for secret in secrets:
        if secret in value:
            value = value.replace(secret, REDACTED)
    return value


def redact_headers(headers: Mapping[str, str], secrets: Sequence[str] = ()) -> dict[str, str]:
    return {
        _text(key): REDACTED if _is_secret(key, SECRET_HEADERS) else scrub(_text(value), secrets)
        for key, value in headers.items()
    }


def redact_query(query: Mapping[str, str], secrets: Sequence[str] = ()) -> dict[str, str]:
    return {
        _text(key): REDACTED if _is_secret(key, SECRET_QUERY) else scrub(_text(value), secrets)
        for key, value in query.items()
    }


def redact_url(url: str, secrets: Sequence[str] = ()) -> str:
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = urlencode([(k, REDACTED if _is_secret(k, SECRET_QUERY) else v) for k, v in pairs])
    return scrub(_text(parts._replace(query=query, fragment="").geturl()), secrets)


def secrets_to_scrub(values: Sequence[str]) -> list[str]:
    """Longest first, so a secret that contains another is cut out whole."""
    return sorted({value for value in values if value}, key=len, reverse=True)


def new_letter_id(received_at: float) -> str:
    """Time-ordered and unguessable: `<microseconds hex>-<random hex>`."""
    return f"{int(received_at * 1_000_000):014x}-{os.urandom(6).hex()}"


def letter_of(
    delivery: Delivery,
    source: Source,
    provider: Provider,
    unreadable: list[Unreadable],
    secrets: Sequence[str] = (),
) -> DeadLetter:
    """One letter per delivery, naming each unreadable item's place in the stored body.
    `secrets` are every configured secret value (Settings.secret_values), removed from every
    stored header, query value and the URL."""
    secrets = secrets_to_scrub([*secrets, *source.secrets.values()])
    items = [{"place": _text(u.place)[:500], "error": _text(u.error)[:500]} for u in unreadable]
    first = items[0]
    summary = first["error"] if not first["place"] else f"{first['place']}: {first['error']}"
    if len(items) > 1:
        summary = f"{len(items)} items unreadable; {summary}"
    return DeadLetter(
        id=new_letter_id(delivery.received_at),
        source=source.name,
        provider=provider.name,
        account=source.account,
        error=summary[:2000],
        # Past a thousand places the letter stands for the whole body (replay is idempotent).
        unreadable=items if len(items) <= 1000 else [{"place": "", "error": summary[:500]}],
        received_at=delivery.received_at,
        method=delivery.method,
        url=redact_url(delivery.url, secrets),
        headers=redact_headers(delivery.headers, secrets),
        query=redact_query(delivery.query, secrets),
        body=provider.redact_body(delivery.body) if provider.redact_body else delivery.body,
    )


def unreadable_of(letter: DeadLetter) -> list[Unreadable]:
    """The letter's unreadable items; the whole body for a letter that names none."""
    items = [
        Unreadable(str(i.get("place", "")), str(i.get("error", ""))) for i in letter.unreadable
    ]
    return items or [Unreadable("", letter.error)]


def delivery_of(letter: DeadLetter) -> Delivery:
    """The delivery again, as the provider's normalizer saw it (minus the secrets)."""
    return Delivery(
        method=letter.method,
        url=letter.url,
        headers=CIMultiDict(letter.headers),
        query=MultiDict(letter.query),
        body=letter.body,
        received_at=letter.received_at,
    )
