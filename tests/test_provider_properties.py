"""Authentic deliveries with arbitrary content (any JSON, provider-shaped JSON with
arbitrary values, form fields, raw bytes) never give a 5xx: they are stored, ignored or
dead-lettered, and acknowledged. Against `relay serve` processes on both engines."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from relay.ingest.providers import standard_webhooks
from tests.conftest import API_KEY, JWT_SECRET, auth
from tests.provider_fixtures import (
    EVOLUTION_SECRET,
    FIXTURES,
    STANDARD_SECRET,
    TELEGRAM_SECRET,
    TWILIO_PUBLIC_URL,
    TWILIO_TOKEN,
    WHATSAPP_SECRET,
    ZAPI_SECRET,
)
from tests.servers import RelayProcess

APIKEY_IN_BODIES = "EVOLUTION-INSTANCE-APIKEY-0001"
CONFIG = f"""
[sources.wa]
provider = "whatsapp_cloud"
account = "props"
secret_env = "P_WA"

[sources.tg]
provider = "telegram"
account = "props"
secret_env = "P_TG"

[sources.sms]
provider = "twilio"
account = "props"
secret_env = "P_TW"
public_url = "{TWILIO_PUBLIC_URL}"

[sources.evo]
provider = "evolution"
account = "props"
secret_env = "P_EVO"

[sources.z]
provider = "zapi"
account = "props"
secret_env = "P_Z"

[sources.sw]
provider = "standard_webhooks"
account = "props"
secret_env = "P_SW"
"""
SECRETS = {
    "P_WA": WHATSAPP_SECRET,
    "P_TG": TELEGRAM_SECRET,
    "P_TW": TWILIO_TOKEN,
    "P_EVO": EVOLUTION_SECRET,
    "P_Z": ZAPI_SECRET,
    "P_SW": STANDARD_SECRET,
}
EXAMPLES = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module", params=["memory", "redis"])
def relay(request):
    config = Path(tempfile.mkdtemp(prefix="relay-props-")) / "relay.toml"
    config.write_text(CONFIG)
    env = {
        "RELAY_JWT_SECRET": JWT_SECRET,
        "RELAY_API_KEYS": API_KEY,
        "RELAY_CONFIG": str(config),
        **SECRETS,
    }
    if request.param == "redis":
        env["RELAY_REDIS_URL"] = request.getfixturevalue("redis_server").url
    process = RelayProcess(env).start()
    start = _get(process, "/api/chats/check-updates/")["timestamp"]
    yield process
    # Whatever the properties stored is a valid update event.
    schema = Draft202012Validator(_get(process, "/schemas/update-event.json"))
    stored = 0
    while True:
        page = _get(process, f"/api/chats/check-updates/?limit=1000&last_check={quote(start)}")
        for update in page["updates"]:
            schema.validate(update)
        stored += len(page["updates"])
        start = page["timestamp"]
        if not page["more"]:
            break
    process.stop()
    assert stored > 0
    log = process.log()
    assert "request.failed" not in log, "an unexpected exception reached the edge"
    assert APIKEY_IN_BODIES not in log, "Evolution's apikey must never be logged"


def _get(relay: RelayProcess, path: str) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=10)
    connection.request("GET", path, headers=auth("props"))
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    assert response.status == 200, body
    return body


def post(relay: RelayProcess, path: str, body: bytes, headers: dict[str, str]) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=10)
    connection.request("POST", path, body=body, headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status


# --- content -------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: beyond 64 bits too, which orjson refuses
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
anything = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)
ids = st.text(min_size=1, max_size=12) | st.integers(-(10**12), 10**12)
WHATSAPP_TYPES = [
    "text",
    "image",
    "audio",
    "video",
    "document",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "button",
    "reaction",
    "edit",
    "revoke",
    "order",
    "system",
    "unsupported",
]
TWILIO_FIELDS = [
    "MessageSid",
    "SmsSid",
    "From",
    "To",
    "Body",
    "NumMedia",
    "MediaUrl0",
    "MediaContentType0",
    "MessageStatus",
    "SmsStatus",
    "ErrorCode",
    "ProfileName",
    "ButtonText",
    "ButtonPayload",
    "Latitude",
    "Longitude",
]
DELETE = object()


def _paths(value, prefix=()) -> list[tuple]:
    """Every place in a JSON document: each key of each object, each item of each list."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _mutate(document, path: tuple, new):
    if not path:
        return document
    head, rest = path[0], path[1:]
    copy = dict(document) if isinstance(document, dict) else list(document)
    if rest:
        copy[head] = _mutate(copy[head], rest, new)
    elif new is DELETE:
        del copy[head]
    else:
        copy[head] = new
    return copy


@st.composite
def mutated_fixture(draw, provider: str):
    """A real fixture of the provider with a few places changed or removed."""
    files = sorted((FIXTURES / provider).glob("*.json"))
    documents = [
        json.loads(f.read_text())
        for f in files
        if f.name != "signatures.json" and not f.name.endswith(".golden.json")
    ]
    document = draw(st.sampled_from(documents))
    for _ in range(draw(st.integers(0, 3))):
        paths = _paths(document)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        document = _mutate(document, path, draw(anything | st.just(DELETE)))
    return document


def shaped(**fields) -> st.SearchStrategy:
    """An object with some of these keys, each either its plausible value or anything."""
    return st.fixed_dictionaries({}, optional={k: v | anything for k, v in fields.items()})


def listed(strategy) -> st.SearchStrategy:
    return st.lists(strategy, max_size=3)


wa_message = shaped(
    id=ids,
    timestamp=ids,
    type=st.sampled_from(WHATSAPP_TYPES),
    text=shaped(body=st.text()),
    image=shaped(id=ids, mime_type=st.text(), caption=st.text()),
    reaction=shaped(message_id=ids, emoji=st.text(max_size=2)),
    edit=shaped(original_message_id=ids, message=shaped(type=st.just("text"))),
    revoke=shaped(original_message_id=ids),
    interactive=shaped(type=st.sampled_from(["button_reply", "list_reply", "nfm_reply"])),
    context=shaped(id=ids, forwarded=st.booleans()),
    errors=listed(shaped(code=st.integers(), title=st.text())),
    **{"from": ids},
)
wa_status = shaped(
    id=ids,
    status=st.sampled_from(["sent", "delivered", "read", "failed", "deleted", "x"]),
    timestamp=ids,
    recipient_id=ids,
    errors=listed(
        shaped(code=st.integers(), title=st.text(), error_data=shaped(details=st.text()))
    ),
)
whatsapp = shaped(
    object=st.just("whatsapp_business_account"),
    entry=listed(
        shaped(
            changes=listed(
                shaped(
                    field=st.sampled_from(["messages", "smb_message_echoes", "other"]),
                    value=shaped(
                        contacts=listed(shaped(wa_id=ids, profile=shaped(name=st.text()))),
                        messages=listed(wa_message),
                        message_echoes=listed(wa_message),
                        statuses=listed(wa_status),
                        errors=listed(shaped(code=st.integers())),
                        metadata=shaped(phone_number_id=ids),
                    ),
                )
            )
        )
    ),
)
tg_message = shaped(
    message_id=ids,
    chat=shaped(id=ids, type=st.sampled_from(["private", "group", "channel"])),
    date=ids,
    text=st.text(),
    caption=st.text(),
    photo=listed(shaped(file_id=ids)),
    sticker=shaped(file_id=ids, emoji=st.text()),
    location=shaped(latitude=st.floats(), longitude=st.floats()),
    contact=shaped(phone_number=st.text()),
    reply_to_message=shaped(message_id=ids),
    sender_chat=shaped(id=ids, title=st.text()),
    **{"from": shaped(id=ids, first_name=st.text())},
)
telegram = shaped(
    update_id=st.integers(),
    message=tg_message,
    edited_message=tg_message,
    channel_post=tg_message,
    callback_query=shaped(id=ids, data=st.text(), message=tg_message),
    message_reaction=shaped(
        chat=shaped(id=ids), message_id=ids, new_reaction=listed(shaped(emoji=st.text()))
    ),
    my_chat_member=shaped(chat=shaped(id=ids), new_chat_member=shaped(status=st.text())),
)
baileys_key = shaped(
    id=ids,
    remoteJid=st.sampled_from(["1@s.whatsapp.net", "2@lid", "3@g.us"]) | st.text(),
    fromMe=st.booleans(),
    participant=st.text(),
    remoteJidAlt=st.text(),
)
evolution = shaped(
    event=st.sampled_from(
        [
            "messages.upsert",
            "MESSAGES_UPSERT",
            "send.message",
            "messages.update",
            "messages.delete",
            "connection.update",
            "qrcode.updated",
        ]
    ),
    instance=st.text(),
    apikey=st.just(APIKEY_IN_BODIES),
    date_time=st.text(),
    data=shaped(
        key=baileys_key,
        message=shaped(
            conversation=st.text(),
            extendedTextMessage=shaped(text=st.text()),
            imageMessage=shaped(mimetype=st.text(), caption=st.text()),
            reactionMessage=shaped(text=st.text(), key=baileys_key),
            protocolMessage=shaped(type=st.sampled_from([0, 14, "REVOKE", 5]), key=baileys_key),
            ephemeralMessage=shaped(message=shaped(conversation=st.text())),
        ),
        messageTimestamp=ids,
        keyId=ids,
        id=ids,
        status=st.sampled_from(["SERVER_ACK", "DELIVERY_ACK", "READ", "DELETED", 3]),
        state=st.text(),
        remoteJid=st.text(),
    )
    | listed(shaped(keyId=ids, status=st.text())),
)
zapi = shaped(
    type=st.sampled_from(
        [
            "ReceivedCallback",
            "MessageStatusCallback",
            "DeliveryCallback",
            "DisconnectedCallback",
            "ConnectedCallback",
            "PresenceChatCallback",
        ]
    ),
    instanceId=ids,
    messageId=ids,
    phone=ids,
    fromMe=st.booleans(),
    isGroup=st.booleans(),
    isEdit=st.booleans(),
    momment=ids,
    status=st.sampled_from(["SENT", "RECEIVED", "READ", "PLAYED", "READ_BY_ME"]),
    ids=listed(ids),
    text=shaped(message=st.text()),
    image=shaped(imageUrl=st.text(), caption=st.text()),
    reaction=shaped(value=st.text(), referencedMessage=shaped(messageId=ids)),
)
standard = shaped(type=st.text(max_size=70), data=shaped(chat_id=ids, message=anything))


def bodies(shape, provider: str) -> st.SearchStrategy[bytes]:
    as_json = (mutated_fixture(provider) | shape | anything).map(
        lambda value: json.dumps(value).encode()
    )
    return as_json | st.binary(max_size=200)


# --- one property per provider --------------------------------------------------------


@EXAMPLES
@given(body=bodies(whatsapp, "whatsapp_cloud"))
def test_whatsapp_cloud_never_5xx(relay, body):
    signature = "sha256=" + hmac.new(WHATSAPP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert post(relay, "/webhooks/wa", body, {"X-Hub-Signature-256": signature}) == 200


@EXAMPLES
@given(body=bodies(telegram, "telegram"))
def test_telegram_never_5xx(relay, body):
    headers = {"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
    assert post(relay, "/webhooks/tg", body, headers) == 200


form_keys = st.sampled_from(TWILIO_FIELDS)


@st.composite
def twilio_fixture_params(draw):
    """A real Twilio form with a few values changed and fields dropped or added."""
    bodies = [f.read_text() for f in sorted((FIXTURES / "twilio").glob("*.txt"))]
    params = parse_qsl(draw(st.sampled_from(bodies)), keep_blank_values=True)
    for _ in range(draw(st.integers(0, 3))):
        index = draw(st.integers(0, len(params)))
        value = draw(st.text(max_size=20))
        if index == len(params):
            params.append((draw(form_keys), value))
        elif draw(st.booleans()):
            params[index] = (params[index][0], value)
        else:
            del params[index]
    return params


@EXAMPLES
@given(
    params=twilio_fixture_params()
    | st.lists(st.tuples(form_keys | st.text(min_size=1, max_size=8), st.text(max_size=20))),
    status_path=st.booleans(),
)
def test_twilio_never_5xx(relay, params, status_path):
    path = "/webhooks/sms/status" if status_path else "/webhooks/sms"
    url = TWILIO_PUBLIC_URL + ("/status" if status_path else "")
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, MultiDict(params))
    headers = {
        "X-Twilio-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }
    assert post(relay, path, urlencode(params).encode(), headers) == 200


@EXAMPLES
@given(body=bodies(evolution, "evolution"))
def test_evolution_never_5xx(relay, body):
    assert post(relay, "/webhooks/evo", body, {"X-Relay-Secret": EVOLUTION_SECRET}) == 200


@EXAMPLES
@given(body=bodies(zapi, "zapi"))
def test_zapi_never_5xx(relay, body):
    assert post(relay, f"/webhooks/z?secret={ZAPI_SECRET}", body, {}) == 200


@EXAMPLES
@given(
    body=bodies(standard, "standard_webhooks"),
    msg_id=st.from_regex(r"[A-Za-z0-9_.-]{1,24}", fullmatch=True),
)
def test_standard_webhooks_never_5xx(relay, body, msg_id):
    timestamp = str(int(time.time()))
    key = standard_webhooks.secret_keys(STANDARD_SECRET)[0]
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + standard_webhooks.sign(key, msg_id, timestamp, body),
    }
    assert post(relay, "/webhooks/sw", body, headers) == 200
