"""Dead letters: an authentic webhook the normalizer cannot handle is kept (secrets
redacted), acknowledged, listed, and replayed once the normalizer is fixed, exactly once."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import orjson
import pytest
import redis.asyncio

from relay.events import Event
from relay.ingest.providers import PROVIDERS
from relay.ingest.providers.common.base import Ack, Normalized, Provider, Unprocessable
from relay.ingest.providers.common.shared_secret import check_shared_secret
from relay.settings import Source
from relay.store.dead_letters import DeadLetter, MemoryDeadLetters, RedisDeadLetters
from tests.credentials import API, auth
from tests.provider_fixtures import ACCOUNT, EVOLUTION_SECRET, FIXTURES, SOURCES

SECRET = "flaky-shared-secret-0001"


def flaky_provider() -> tuple[Provider, SimpleNamespace]:
    """A provider the test registers, and its state: its normalizer fails until `fixed`
    is set."""
    state = SimpleNamespace(fixed=False, crash=False)

    def normalize(delivery, source):
        if state.crash:
            return {}["no such key"]  # an unexpected bug, not a deliberate Unprocessable
        if not state.fixed:
            raise Unprocessable("this normalizer does not know 'order' messages yet")
        payload = orjson.loads(delivery.body)
        return Normalized.whole(
            [
                Event(
                    id=f"flaky:{payload['id']}",
                    type="message.created",
                    account=source.account,
                    chat_id=payload["chat"],
                    body={
                        "source": source.name,
                        "provider": "flaky",
                        "message": {"id": payload["id"]},
                    },
                )
            ]
        )

    provider = Provider(
        name="flaky",
        required_secrets=("secret",),
        verify=check_shared_secret,
        normalize=normalize,
        ack=lambda delivery: Ack(status=202, body=b"", content_type="text/plain"),
    )
    return provider, state


@pytest.fixture
def flaky(monkeypatch):
    """The flaky provider's state (`fixed`, `crash`), once it is registered."""
    provider, state = flaky_provider()
    monkeypatch.setitem(PROVIDERS, "flaky", provider)
    return state


@pytest.fixture
async def client(make_settings, client_for, flaky):
    source = Source("acme-flaky", "flaky", ACCOUNT, {"secret": SECRET})
    return await client_for(make_settings(sources={**SOURCES, "acme-flaky": source}))


async def cursor(client) -> str:
    return (await (await client.get("/api/chats/check-updates/", headers=auth())).json())[
        "timestamp"
    ]


async def since(client, start: str) -> list[dict]:
    answer = await client.get(
        "/api/chats/check-updates/", params={"last_check": start}, headers=auth()
    )
    return (await answer.json())["updates"]


async def dead_letters(client, **params) -> list[dict]:
    response = await client.get("/api/admin/dead-letters", params=params, headers=API)
    assert response.status == 200
    return (await response.json())["dead_letters"]


BODY = b'{"id":"order-77","chat":"c-9","type":"order"}'


async def post_flaky(client, body: bytes = BODY):
    return await client.post(
        f"/webhooks/acme-flaky?secret={SECRET}&keep=yes",
        data=body,
        headers={"X-Relay-Secret": SECRET, "Authorization": "Bearer abc", "X-Trace": "t-1"},
    )


async def test_a_dead_letter_is_listed_then_replayed_once_after_the_fix(client, flaky):
    start = await cursor(client)
    response = await post_flaky(client)
    assert response.status == 202  # the provider's normal ack: the letter is stored
    assert await since(client, start) == []

    (letter,) = await dead_letters(client)
    assert letter["source"] == "acme-flaky" and letter["provider"] == "flaky"
    assert letter["account"] == ACCOUNT
    assert "order" in letter["error"]
    assert letter["body"] == BODY.decode()
    assert letter["headers"]["X-Relay-Secret"] == "[redacted]"
    assert letter["headers"]["Authorization"] == "[redacted]"
    assert letter["headers"]["X-Trace"] == "t-1"
    assert letter["query"] == {"secret": "[redacted]", "keep": "yes"}
    assert SECRET not in orjson.dumps(letter).decode()

    still_broken = await client.post(f"/api/admin/dead-letters/{letter['id']}/replay", headers=API)
    assert still_broken.status == 422
    assert set(await still_broken.json()) == {"error", "detail"}
    assert [item["id"] for item in await dead_letters(client)] == [letter["id"]]

    flaky.fixed = True
    replayed = await client.post(f"/api/admin/dead-letters/{letter['id']}/replay", headers=API)
    assert replayed.status == 200
    answer = await replayed.json()
    assert answer["outcome"] == "accepted"
    assert [e["id"] for e in answer["events"]] == ["flaky:order-77"]
    assert await dead_letters(client) == []

    again = await client.post(f"/api/admin/dead-letters/{letter['id']}/replay", headers=API)
    assert again.status == 404 and (await again.json())["error"] == "unknown_letter"
    retried = await post_flaky(client)  # the provider's own retry, after the fix
    assert retried.status == 202
    assert [u["id"] for u in await since(client, start)] == ["flaky:order-77"]

    metrics = await (await client.get("/metrics")).text()
    assert 'outcome="dead_lettered",provider="flaky",source="acme-flaky"} 1.0' in metrics
    assert 'outcome="duplicate",provider="flaky",source="acme-flaky"} 1.0' in metrics


async def test_the_same_failure_dead_lettered_twice_replays_into_one_event(client, flaky):
    start = await cursor(client)
    assert (await post_flaky(client)).status == 202
    assert (await post_flaky(client)).status == 202
    letters = await dead_letters(client)
    assert len(letters) == 2
    flaky.fixed = True
    outcomes = []
    for letter in letters:
        response = await client.post(f"/api/admin/dead-letters/{letter['id']}/replay", headers=API)
        outcomes.append((await response.json())["outcome"])
    assert outcomes == ["accepted", "duplicate"]
    assert [u["id"] for u in await since(client, start)] == ["flaky:order-77"]


async def test_a_normalizer_that_crashes_dead_letters_instead_of_a_500(client, flaky):
    flaky.crash = True
    response = await post_flaky(client)
    assert response.status == 202
    (letter,) = await dead_letters(client)
    assert "KeyError" in letter["error"]


@pytest.mark.parametrize("why", ["no message id", "not JSON any more"])
async def test_an_evolution_dead_letter_never_keeps_the_apikey(client, why):
    payload = json.loads((FIXTURES / "evolution" / "messages_upsert_image.json").read_bytes())
    body = json.dumps(payload).encode()
    if why == "no message id":
        del payload["data"]["key"]["id"]  # authentic, but not a message relay can name
        body = json.dumps(payload).encode()
    else:
        body = body[:-1]  # truncated: the redaction cannot rely on parsing
    response = await client.post(
        "/webhooks/acme-evolution",
        data=body,
        headers={"X-Relay-Secret": EVOLUTION_SECRET},
    )
    assert response.status == 200
    (letter,) = await dead_letters(client)
    assert payload["apikey"] not in json.dumps(letter)
    assert '"apikey": "[redacted]"' in letter["body"]


async def test_the_admin_routes_need_an_api_key(client):
    assert (await client.get("/api/admin/dead-letters")).status == 401
    response = await client.post("/api/admin/dead-letters/x/replay")
    assert response.status == 401 and set(await response.json()) == {"error", "detail"}
    bad = await client.get("/api/admin/dead-letters", params={"limit": "0"}, headers=API)
    assert bad.status == 400


async def test_dead_letters_are_listed_newest_first_with_a_limit(client):
    for n in range(3):
        assert (await post_flaky(client, b'{"n":%d}' % n)).status == 202
    letters = await dead_letters(client, limit="2")
    assert [letter["body"] for letter in letters] == ['{"n":2}', '{"n":1}']


def _letter(n: int) -> DeadLetter:
    return DeadLetter(
        id=f"{n:04d}",
        source="s",
        provider="p",
        account=ACCOUNT,
        error="e",
        received_at=time.time() + n,
        method="POST",
        url="https://x/webhooks/s",
        body=b"\xff\x00 not utf-8 %d" % n,
    )


@pytest.fixture
async def bounded_store(engine, request):
    if engine == "memory":
        yield MemoryDeadLetters(max_letters=3)
        return
    client = redis.asyncio.Redis.from_url(request.getfixturevalue("redis_url"), protocol=2)

    async def connected():
        return client

    yield RedisDeadLetters(connected, max_letters=3)
    # One hash tag for all dead-letter keys: one Cluster slot, one MULTI.
    keys = await client.keys("*")
    assert keys and all(key.startswith(b"relay:{deadletters}:") for key in keys)
    await client.aclose()


async def test_the_store_keeps_the_newest_letters_only(bounded_store):
    for n in range(5):
        await bounded_store.add(_letter(n))
    kept = await bounded_store.list(10)
    assert [letter.id for letter in kept] == ["0004", "0003", "0002"]
    assert kept[0].body == b"\xff\x00 not utf-8 4"
    assert await bounded_store.get("0000") is None
    assert await bounded_store.remove("0003") is True
    assert await bounded_store.remove("0003") is False
    assert [letter.id for letter in await bounded_store.list(10)] == ["0004", "0002"]


async def test_the_memory_engine_also_bounds_the_bytes_it_holds():
    letters = MemoryDeadLetters(max_letters=100, max_bytes=40)
    for n in range(5):
        await letters.add(_letter(n))  # 14 bytes of body each: two fit in 40
    assert [letter.id for letter in await letters.list(10)] == ["0004", "0003"]
    assert await letters.remove("0004") is True
    await letters.add(_letter(9))
    assert [letter.id for letter in await letters.list(10)] == ["0009", "0003"]


async def test_a_large_dead_letter_is_stored_once_and_redis_is_bounded_by_bytes(redis_url):
    client = redis.asyncio.Redis.from_url(redis_url, protocol=2)

    async def connected():
        return client

    store = RedisDeadLetters(connected, max_letters=100, max_bytes=10 * 1024 * 1024)
    body = b"x" * (4 * 1024 * 1024)
    base = _letter(0)
    fields = {name: getattr(base, name) for name in DeadLetter.__dataclass_fields__}
    await store.add(DeadLetter(**{**fields, "body": body}))
    used = 0
    for key in await client.keys("relay:{deadletters}:*"):
        used += await client.memory_usage(key) or 0
    print(f"one 4 MiB dead letter uses {used / 2**20:.1f} MiB in Redis")
    assert used < 1.2 * len(body)
    for n in range(1, 6):
        await store.add(
            DeadLetter(
                **{**fields, "id": f"{n:04d}", "received_at": base.received_at + n, "body": body}
            )
        )
    kept = [letter.id for letter in await store.list(10)]
    used = 0
    for key in await client.keys("relay:{deadletters}:*"):
        used += await client.memory_usage(key) or 0
    print(f"six of them, 10 MiB allowed: {kept} kept, {used / 2**20:.1f} MiB in Redis")
    assert kept == ["0005", "0004"]
    assert used < 10 * 1024 * 1024 * 1.2
    (newest,) = [letter for letter in await store.list(1)]
    assert newest.body == body
    await client.aclose()


async def test_the_admin_list_pages_with_next(client):
    for n in range(5):
        assert (await post_flaky(client, b'{"n":%d}' % n)).status == 202
    seen, before = [], None
    for _ in range(5):
        params = {"limit": "2", **({"before": before} if before else {})}
        response = await client.get("/api/admin/dead-letters", params=params, headers=API)
        page = await response.json()
        seen.append([letter["body"] for letter in page["dead_letters"]])
        before = page["next"]
        if before is None:
            break
    assert seen == [['{"n":4}', '{"n":3}'], ['{"n":2}', '{"n":1}'], ['{"n":0}']]


async def test_a_page_is_cut_by_the_bytes_it_holds(bounded_store, monkeypatch):
    from relay.store import dead_letters as module

    monkeypatch.setattr(module, "PAGE_BYTES", 30)  # two 14-byte bodies fit, not three
    for n in range(3):
        await bounded_store.add(_letter(n))
    first = await bounded_store.list(10)
    assert [letter.id for letter in first] == ["0002", "0001"]
    assert [letter.id for letter in await bounded_store.list(10, first[-1].id)] == ["0000"]


async def test_no_configured_secret_survives_in_any_stored_header_or_query(client):
    from tests.credentials import API_KEY, JWT_SECRET

    copied = {
        "Referer": f"https://proxy.example/webhooks/acme-flaky?secret={SECRET}",
        "X-Original-Uri": f"/webhooks/acme-flaky?secret={SECRET}&keep=yes",
        "X-Forwarded-Uri": f"/webhooks/acme-flaky?secret={SECRET}",
        "X-Envoy-Original-Path": f"/webhooks/acme-flaky?secret={SECRET}",
        "X-Debug": f"key={API_KEY} jwt={JWT_SECRET} evo={EVOLUTION_SECRET}",
    }
    response = await client.post(
        f"/webhooks/acme-flaky?secret={SECRET}&note={EVOLUTION_SECRET}",
        data=BODY,
        headers={"X-Relay-Secret": SECRET, **copied},
    )
    assert response.status == 202
    (letter,) = await dead_letters(client)
    stored = json.dumps({k: letter[k] for k in ("headers", "query", "url")})
    leaked = [s for s in (SECRET, API_KEY, JWT_SECRET, EVOLUTION_SECRET) if s in stored]
    print(f"secrets left in the stored letter: {len(leaked)}")
    assert leaked == []
    assert letter["headers"]["X-Original-Uri"] == "/webhooks/acme-flaky?secret=[redacted]&keep=yes"
