"""The shared-secret check of providers that sign nothing (Evolution API, Z-API):
the secret travels in the `X-Relay-Secret` header or the `secret` query parameter.
"""

from __future__ import annotations

import hmac

from relay.ingest.providers.base import Delivery, Rejected
from relay.settings import Source

HEADER = "X-Relay-Secret"
QUERY = "secret"


def secrets_of(source: Source, key: str = "secret") -> list[bytes]:
    """Several secrets (space or comma separated) let an operator rotate without downtime."""
    raw = source.secrets.get(key, "")
    return [item.encode() for item in raw.replace(",", " ").split()]


def matches(given: str, candidates: list[bytes]) -> bool:
    presented = given.encode("utf-8", "surrogateescape")
    matched = False
    for candidate in candidates:
        # Every candidate is compared, in constant time, so timing says nothing.
        matched |= hmac.compare_digest(presented, candidate)
    return matched


def check_shared_secret(delivery: Delivery, source: Source) -> None:
    given = delivery.headers.get(HEADER) or delivery.query.get(QUERY)
    if not given:
        raise Rejected(
            f"the shared secret is required in the {HEADER} header or the ?{QUERY}= parameter",
            code="missing_secret",
        )
    if not matches(given, secrets_of(source)):
        raise Rejected("the shared secret does not match", code="bad_secret")
