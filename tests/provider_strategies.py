"""Hypothesis strategies for webhook bodies: real fixtures with a few places changed,
provider-shaped JSON whose values may be anything, arbitrary JSON, and Twilio forms."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from hypothesis import strategies as st

from tests.provider_fixtures import FIXTURES

APIKEY_IN_BODIES = "EVOLUTION-INSTANCE-APIKEY-0001"

scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: orjson reads >64-bit ints as floats
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
