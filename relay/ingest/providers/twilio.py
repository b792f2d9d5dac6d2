"""Twilio Messaging (SMS and WhatsApp): `X-Twilio-Signature` over the public URL plus
the sorted form parameters (or `bodySHA256` for JSON); inbound messages and status
callbacks. Twilio does not retry a 4xx/5xx, so relay answers empty TwiML at once.

Ids: `twilio:<MessageSid>` for a message, `twilio:<MessageSid>:status:<status>` for a status.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from urllib.parse import SplitResult, parse_qs, parse_qsl, urlsplit

from relay.events import Event
from relay.ingest.providers.common import normal
from relay.ingest.providers.common.base import (
    Ack,
    Delivery,
    Normalized,
    Provider,
    Rejected,
    Unprocessable,
)
from relay.rotated_keys import matches_any, split_keys
from relay.settings import Source

name = "twilio"
SIGNATURE_HEADER = "X-Twilio-Signature"
SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
# Twilio's MessageStatus values, as relay's status vocabulary.
STATUSES = {
    "accepted": "queued",
    "scheduled": "queued",
    "queued": "queued",
    "sending": "queued",
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "undelivered": "failed",
    "failed": "failed",
    "canceled": "failed",
}
INBOUND = ("received", "receiving")


def signature(key: str, url: str, params: Sequence[tuple[str, str]], algorithm: str) -> str:
    """base64 HMAC of the URL followed by name+value for each parameter, sorted by name
    and, within a repeated name, by value (as twilio-python's RequestValidator)."""
    digest = hashlib.sha256 if algorithm == "HMAC_SHA256" else hashlib.sha1
    values: dict[str, set[str]] = {}
    for key_, value in params:
        values.setdefault(key_, set()).add(value)
    message = url + "".join(k + v for k in sorted(values) for v in sorted(values[k]))
    mac = hmac.new(key.encode(), message.encode("utf-8", "surrogatepass"), digest)
    return base64.b64encode(mac.digest()).decode()


def url_variants(url: str) -> list[str]:
    """The URL as received, with the default port, and without any port: Twilio's own
    validators accept all three because Twilio's signing has not been consistent."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    default = 443 if parts.scheme == "https" else 80
    variants = [url]
    for netloc in (f"{prefix}{host}", f"{prefix}{host}:{parts.port or default}"):
        variant = SplitResult(parts.scheme, netloc, parts.path, parts.query, "").geturl()
        if variant not in variants:
            variants.append(variant)
    return variants


def form_params(body: bytes) -> list[tuple[str, str]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected("the form body is not UTF-8", code="bad_signature") from None
    return parse_qsl(text, keep_blank_values=True)


def algorithm_of(delivery: Delivery) -> str:
    for part in delivery.headers.get(SETTINGS_HEADER, "").split(","):
        key, _, value = part.partition("=")
        if key.strip() == "algorithm" and value.strip():
            return value.strip().upper()
    return "HMAC_SHA1"


def verify_head(delivery: Delivery, source: Source) -> bool:
    """The signature must be there, by a configured key, before the body is read; it
    covers the body's parameters (or its hash), so it is checked once the body is there."""
    _signature_and_key(delivery, source)
    return False


def _signature_and_key(delivery: Delivery, source: Source) -> tuple[str, str, str]:
    given = delivery.headers.get(SIGNATURE_HEADER)
    if not given:
        raise Rejected(f"{SIGNATURE_HEADER} is required", code="missing_signature")
    algorithm = algorithm_of(delivery)
    # SharedKey signing (HMAC_SHA256) uses the shared key's secret, not the Auth Token.
    key_name = "shared_key" if algorithm == "HMAC_SHA256" else "secret"
    if algorithm not in ("HMAC_SHA1", "HMAC_SHA256") or key_name not in source.secrets:
        raise Rejected(f"signature algorithm {algorithm} is not configured", code="bad_signature")
    return given, algorithm, key_name


def verify(delivery: Delivery, source: Source) -> None:
    given, algorithm, key_name = _signature_and_key(delivery, source)
    body_hash = parse_qs(urlsplit(delivery.url).query).get("bodySHA256")
    if body_hash:
        # JSON bodies: the body is bound by its hash in the URL; the URL alone is signed.
        actual = hashlib.sha256(delivery.body).hexdigest().encode()
        if not hmac.compare_digest(actual, body_hash[0].lower().encode()):
            raise Rejected("bodySHA256 does not match the body", code="bad_signature")
        params: list[tuple[str, str]] = []
    else:
        params = form_params(delivery.body)
    presented = given.strip().encode("utf-8", "surrogateescape")
    expected = (
        signature(key, url, params, algorithm).encode()
        for key in split_keys(source.secrets[key_name])
        for url in url_variants(delivery.url)
    )
    if not matches_any([presented], expected):
        raise Rejected(f"{SIGNATURE_HEADER} does not match", code="bad_signature")


def ack(delivery: Delivery) -> Ack:
    # Empty TwiML: no auto-reply to an inbound message; harmless for status callbacks.
    return Ack(status=200, body=EMPTY_TWIML, content_type="text/xml")


def _address(value: str | None) -> str | None:
    """`whatsapp:+5511...` and `+5511...` are the same person: the chat id is the number."""
    return value.split(":", 1)[1] if value and ":" in value else value


def normalize(delivery: Delivery, source: Source) -> Normalized:
    # One update per body: the body is the delivery's one item.
    return Normalized.whole(_events(delivery, source))


def _events(delivery: Delivery, source: Source) -> list[Event]:
    if "bodySHA256" in parse_qs(urlsplit(delivery.url).query):
        return []  # JSON webhooks are for other Twilio products, not Messaging
    params: dict[str, str] = {}
    for key, value in form_params(delivery.body):
        params.setdefault(key, value)
    sid = params.get("MessageSid") or params.get("SmsMessageSid") or params.get("SmsSid")
    if not sid:
        return []  # not a Messaging webhook (a Voice call, say): nothing to show
    status = (params.get("MessageStatus") or params.get("SmsStatus") or "").lower()
    if status in INBOUND or not status:
        # An inbound message always carries Body and NumMedia; a bare "received" status
        # callback about one does not, and has nothing to show.
        has_content = "Body" in params or "NumMedia" in params
        return [_inbound(params, sid, source)] if has_content else []
    normalized = STATUSES.get(status)
    if normalized is None:
        return []  # e.g. a status about an inbound message ("received"): nothing new
    code = params.get("ErrorCode")
    error = {"code": code, "title": params.get("ErrorMessage")} if code else None
    return [
        normal.status_event(
            source,
            name,
            f"{name}:{sid}:status:{normalized}",
            _address(params.get("To")),
            sid,
            normalized,
            provider_status=status,
            error=error,
        )
    ]


def _inbound(params: dict[str, str], sid: str, source: Source) -> Event:
    sender = _address(params.get("From"))
    if not sender:
        raise Unprocessable("an inbound Twilio message has no From")
    try:
        count = min(int(params.get("NumMedia") or 0), 10)
    except ValueError:
        count = 0
    attachments = [
        {"url": params[f"MediaUrl{i}"], "mime_type": params.get(f"MediaContentType{i}")}
        for i in range(count)
        if params.get(f"MediaUrl{i}")
    ]
    body = params.get("Body") or None
    kind = "text"
    if attachments:
        kind = normal.kind_of_mime(attachments[0]["mime_type"])
    interactive = None
    if params.get("ButtonPayload") or params.get("ButtonText"):
        kind, body = "interactive", params.get("ButtonText") or body
        interactive = normal.compact(
            {"type": "button", "id": params.get("ButtonPayload"), "title": params.get("ButtonText")}
        )
    location = None
    if params.get("Latitude") and params.get("Longitude"):
        kind = "location"
        location = normal.compact(
            {
                "latitude": params["Latitude"],
                "longitude": params["Longitude"],
                "name": params.get("Label"),
                "address": params.get("Address"),
            }
        )
    message = {
        "id": sid,
        "direction": "in",
        "from": normal.person(sender, params.get("ProfileName")),
        "kind": kind if body or attachments or interactive or location else "unknown",
        "text": body,
        "media": normal.compact(attachments[0]) if attachments else None,
        "attachments": [normal.compact(a) for a in attachments] if len(attachments) > 1 else None,
        "interactive": interactive,
        "location": location,
        "reply_to": params.get("OriginalRepliedMessageSid"),
        "channel": "whatsapp" if (params.get("From") or "").startswith("whatsapp:") else "sms",
    }
    return normal.message_event(source, name, f"{name}:{sid}", "message.created", sender, message)


def check_source(source: Source) -> list[str]:
    url = source.options.get("public_url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        return ["public_url is required: Twilio signs the URL it requested, as the public sees it"]
    try:
        _ = urlsplit(url).port  # raises ValueError for a port like ":abc"
    except ValueError:
        return [f"public_url {url!r} has an invalid port"]
    return []


PROVIDER = Provider(
    name=name,
    required_secrets=("secret",),
    verify=verify,
    normalize=normalize,
    ack=ack,
    verify_head=verify_head,
    check_source=check_source,
)
