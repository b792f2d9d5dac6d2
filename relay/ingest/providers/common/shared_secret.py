"""The shared-secret check of providers that sign nothing (Evolution API, Z-API):
the secret travels in the `X-Relay-Secret` header or the `secret` query parameter.
"""

from __future__ import annotations

from relay.ingest.providers.common.base import Delivery, Rejected
from relay.rotated_keys import matches_any, split_keys
from relay.settings import Source

HEADER = "X-Relay-Secret"
QUERY = "secret"


def secret_matches(given: str, source: Source) -> bool:
    """Whether `given` is one of the source's secrets (several, space or comma separated,
    let an operator rotate without downtime)."""
    candidates = [item.encode() for item in split_keys(source.secrets.get("secret", ""))]
    return matches_any([given.encode("utf-8", "surrogateescape")], candidates)


def check_shared_secret(delivery: Delivery, source: Source) -> None:
    given = delivery.headers.get(HEADER) or delivery.query.get(QUERY)
    if not given:
        raise Rejected(
            f"the shared secret is required in the {HEADER} header or the ?{QUERY}= parameter",
            code="missing_secret",
        )
    if not secret_matches(given, source):
        raise Rejected("the shared secret does not match", code="bad_secret")
