"""Push delivery in one process, on both engines, to a real HTTP receiver: order, retries,
isolation of a failing account or subscriber, `relay.reset` after a trim, the admin routes."""

from __future__ import annotations

import asyncio
import time

import pytest

from relay.cursor import parse_cursor
from relay.delivery.config import DeliverySettings, Subscriber
from relay.store.base import Retention
from tests.credentials import API
from tests.helpers import publish_ids, settings_for
from tests.receiver import SECRET, Receiver


def subscriber(name: str, url: str, accounts=("acme",), **options) -> Subscriber:
    import base64

    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    return Subscriber(name=name, url=url, accounts=tuple(accounts), keys=(key,), **options)


FAST = DeliverySettings(retry_min=0.02, retry_max=0.2, lease=2.0, sweep=0.5, idle_release=2.0)


@pytest.fixture
async def receiver():
    receiver = await Receiver().start()
    yield receiver
    await receiver.stop()


async def test_every_event_arrives_signed_in_order_and_is_counted(
    make_settings, client_for, receiver
):
    subs = {"crm": subscriber("crm", receiver.url("crm"), types=("message.*",))}
    client = await client_for(make_settings(subscribers=subs, delivery=FAST))
    stamps = await publish_ids(client, "acme", [f"e{i}" for i in range(30)])
    await publish_ids(client, "acme", ["skipped"], type_="chat.updated")
    stamps += await publish_ids(client, "acme", ["last"])
    await receiver.wait_for(lambda: len(receiver.delivered()) >= 31)
    got = receiver.delivered()
    assert [r.msg_id for r in got] == [f"e{i}" for i in range(30)] + ["last"]
    assert [r.timestamp for r in got] == stamps
    assert all(r.verified for r in got)
    metrics = await (await client.get("/metrics")).text()
    assert 'relay_subscriber_deliveries_total{outcome="delivered",subscriber="crm"} 31.0' in metrics
    admin = await (await client.get("/api/admin/subscribers", headers=API)).json()
    (crm,) = admin["subscribers"]
    (acme,) = crm["accounts"]
    assert acme["cursor"] == stamps[-1] and acme["pending"] is False and acme["lag_seconds"] == 0


async def test_failures_are_retried_until_a_2xx_in_order(make_settings, client_for, receiver):
    receiver.behaviour = lambda path, event, n: 500 if n % 3 != 2 else 200
    subs = {"crm": subscriber("crm", receiver.url("crm"))}
    client = await client_for(make_settings(subscribers=subs, delivery=FAST))
    await publish_ids(client, "acme", ["a", "b", "c"])
    await receiver.wait_for(lambda: len(receiver.delivered()) == 3)
    assert [r.msg_id for r in receiver.requests] == ["a", "a", "a", "b", "b", "b", "c", "c", "c"]
    metrics = await (await client.get("/metrics")).text()
    assert 'relay_subscriber_deliveries_total{outcome="rejected",subscriber="crm"} 6.0' in metrics


async def test_a_failing_account_delays_no_other_account_nor_subscriber(
    make_settings, client_for, receiver
):
    # Real backoff (1 s doubling): the failing account is in backoff the whole test.
    # crm's endpoint for "broken" always fails; audit gets the same account's events fine.
    receiver.behaviour = lambda path, event, n: (
        500 if (path, event["account"]) == ("crm", "broken") else 204
    )
    subs = {
        "crm": subscriber("crm", receiver.url("crm"), accounts=("broken", "healthy")),
        "audit": subscriber("audit", receiver.url("audit"), accounts=("broken",)),
    }
    delivery = DeliverySettings(lease=5.0, sweep=1.0)
    client = await client_for(make_settings(subscribers=subs, delivery=delivery))
    for i in range(20):
        await publish_ids(client, "broken", [f"b{i}"])
        await publish_ids(client, "healthy", [f"h{i}"])
    await receiver.wait_for(
        lambda: len(receiver.delivered("crm")) == 20 and len(receiver.delivered("audit")) == 20
    )
    lags = []
    for r in receiver.delivered():
        stamp = parse_cursor(r.timestamp)
        lags.append(r.at - stamp / 1e6)
    worst = max(lags)
    print(f"healthy deliveries: 40, worst lag {worst * 1000:.0f} ms")
    assert {r.account for r in receiver.delivered("crm")} == {"healthy"}
    assert {r.account for r in receiver.delivered("audit")} == {"broken"}
    assert worst < 1.0, "the healthy ones never waited on the failing account's backoff"
    broken = [r for r in receiver.requests if r.path == "crm" and r.account == "broken"]
    assert {r.msg_id for r in broken} == {"b0"}, "the failing account stays on its first event"
    admin = await (await client.get("/api/admin/subscribers", headers=API)).json()
    crm = next(s for s in admin["subscribers"] if s["name"] == "crm")
    state = {a["account"]: a for a in crm["accounts"]}
    assert state["broken"]["pending"] and state["broken"]["attempts"] >= 1
    assert state["broken"]["last_error"] == "HTTP 500" and state["broken"]["next_attempt"]
    assert not state["healthy"]["pending"]
    deadline = time.monotonic() + 5
    while True:  # the gauges are refreshed every second
        metrics = await (await client.get("/metrics")).text()
        if 'relay_subscriber_failing{subscriber="crm"} 1.0' in metrics:
            break
        assert time.monotonic() < deadline, "crm should be reported failing"
        await asyncio.sleep(0.1)
    assert 'relay_subscriber_failing{subscriber="audit"} 0.0' in metrics


async def test_trimmed_before_delivery_sends_one_reset_then_the_rest_once(
    make_settings, client_for, receiver
):
    healthy = {"on": True}
    refused: list[dict] = []

    def behaviour(path: str, event: dict, n: int) -> int:
        if healthy["on"]:
            return 204
        refused.append(event)
        return 500

    receiver.behaviour = behaviour
    subs = {"crm": subscriber("crm", receiver.url("crm"))}
    settings = make_settings(subscribers=subs, delivery=FAST, retention=Retention(max_events=5))
    client = await client_for(settings)
    await publish_ids(client, "acme", ["first"])
    await receiver.wait_for(lambda: len(receiver.delivered()) == 1)
    healthy["on"] = False
    stamps = []
    for i in range(20):
        stamps += await publish_ids(client, "acme", [f"e{i}"])
    # Healthy again only once the final reset has been tried: a reset read before the last
    # trim and answered after the switch would be delivered (rightly) as a reset of its own.
    final = parse_cursor(stamps[14])

    def final_reset_tried() -> bool:
        resets = [e for e in refused if e.get("type") == "relay.reset"]
        return any(parse_cursor(e["timestamp"]) == final for e in resets)

    await receiver.wait_for(final_reset_tried)
    healthy["on"] = True
    await receiver.wait_for(lambda: len(receiver.delivered()) >= 7)
    await asyncio.sleep(0.5)  # time for a duplicate to show up, if there were one
    got = receiver.delivered()
    assert [r.type for r in got] == ["message.created", "relay.reset"] + ["message.created"] * 5
    assert [r.msg_id for r in got[2:]] == [f"e{i}" for i in range(15, 20)]
    reset = got[1]
    assert parse_cursor(reset.timestamp) == parse_cursor(stamps[14])  # the highest trimmed
    assert all(r.verified for r in got)


async def test_rewind_redelivers_from_the_cursor(make_settings, client_for, receiver):
    subs = {"crm": subscriber("crm", receiver.url("crm"))}
    client = await client_for(make_settings(subscribers=subs, delivery=FAST))
    stamps = await publish_ids(client, "acme", ["a", "b", "c"])
    await receiver.wait_for(lambda: len(receiver.delivered()) == 3)
    response = await client.post(
        "/api/admin/subscribers/crm/accounts/acme/rewind",
        params={"last_check": stamps[0]},
        headers=API,
    )
    assert response.status == 200, await response.text()
    assert (await response.json())["cursor"] == stamps[0]
    await receiver.wait_for(lambda: len(receiver.delivered()) == 5)
    assert [r.msg_id for r in receiver.delivered()] == ["a", "b", "c", "b", "c"]
    for path, status in [
        ("/api/admin/subscribers/nope/accounts/acme/rewind", 404),
        ("/api/admin/subscribers/crm/accounts/globex/rewind", 404),
        ("/api/admin/subscribers/crm/accounts/acme/rewind?last_check=yesterday", 400),
        ("/api/admin/subscribers/crm/accounts/acme/rewind", 400),
    ]:
        response = await client.post(path, headers=API)
        assert response.status == status, (path, await response.text())
        assert "error" in await response.json()
    assert (await client.get("/api/admin/subscribers")).status == 401


async def test_an_idle_worker_gives_its_lease_up_and_the_next_append_starts_one(
    make_settings, client_for, receiver
):
    subs = {"crm": subscriber("crm", receiver.url("crm"))}
    idle = DeliverySettings(retry_min=0.02, retry_max=0.2, lease=2.0, sweep=30, idle_release=0.5)
    client = await client_for(make_settings(subscribers=subs, delivery=idle))

    async def holder() -> str | None:
        admin = await (await client.get("/api/admin/subscribers", headers=API)).json()
        return admin["subscribers"][0]["accounts"][0]["holder"]

    await publish_ids(client, "acme", ["a"])
    await receiver.wait_for(lambda: len(receiver.delivered()) == 1)
    assert await holder() is not None
    deadline = time.monotonic() + 10
    while await holder() is not None:  # waiters' periodic re-reads do not count as activity
        assert time.monotonic() < deadline, "the idle worker should release its lease"
        await asyncio.sleep(0.1)
    await publish_ids(client, "acme", ["b"])
    await receiver.wait_for(lambda: len(receiver.delivered()) == 2)
    assert [r.msg_id for r in receiver.delivered()] == ["a", "b"]


async def test_a_subscriber_of_every_account_gets_each_accounts_events(
    make_settings, client_for, receiver
):
    subs = {"audit": subscriber("audit", receiver.url("audit"), accounts=("*",))}
    client = await client_for(make_settings(subscribers=subs, delivery=FAST))
    for account in ("acme", "globex", "initech"):
        await publish_ids(client, account, [f"{account}-1", f"{account}-2"])
    await receiver.wait_for(lambda: len(receiver.delivered()) == 6)
    by_account: dict[str, list[str]] = {}
    for r in receiver.delivered():
        by_account.setdefault(r.account, []).append(r.msg_id)
    assert by_account == {a: [f"{a}-1", f"{a}-2"] for a in ("acme", "globex", "initech")}
    admin = await (await client.get("/api/admin/subscribers", headers=API)).json()
    listed = {a["account"] for a in admin["subscribers"][0]["accounts"]}
    assert listed == {"acme", "globex", "initech"}


async def test_after_a_restart_the_sweep_finds_undelivered_events(redis_url, client_for, receiver):
    # Events stored while no relay delivered them (none was configured to, here): a new
    # relay's first sweep finds them, for listed accounts and for "*".
    quiet = await client_for(settings_for("redis", redis_url))
    await publish_ids(quiet, "acme", ["a", "b"])
    await publish_ids(quiet, "globex", ["g"])
    subs = {
        "crm": subscriber("crm", receiver.url("crm"), accounts=("acme",)),
        "audit": subscriber("audit", receiver.url("audit"), accounts=("*",)),
    }
    await client_for(settings_for("redis", redis_url, subscribers=subs, delivery=FAST))
    await receiver.wait_for(lambda: len(receiver.delivered()) == 5)
    assert [r.msg_id for r in receiver.delivered("crm")] == ["a", "b"]
    assert sorted(r.msg_id for r in receiver.delivered("audit")) == ["a", "b", "g"]


def test_retries_back_off_from_1_s_doubling_to_10_min_with_jitter():
    schedule = DeliverySettings()
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (10, 512), (11, 600), (50, 600)]:
        delays = [schedule.retry_delay(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100, "jittered"
