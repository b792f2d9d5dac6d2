"""The chaos run at CI size: Redis SIGKILLed twice, one relay SIGTERMed, Redis paused past
the store timeout, while 16 senders retry and 20 clients echo; nothing acked is lost or
duplicated, and every client sees it all in store order. Longer runs: bench/chaos.py."""

from __future__ import annotations

import pytest

from tests.chaos.scenario import (
    Ack,
    Outcome,
    Plan,
    Poller,
    Rig,
    Tally,
    check,
    event_id,
    figures,
    figures_line,
    run,
    webhook_id,
)

PLAN = Plan(senders=16, webhooks_per_sender=50, clients=20, rounds=1)


@pytest.fixture
def rig():
    started = Rig(PLAN).start()
    yield started
    started.close()


async def test_every_acked_webhook_reaches_every_client_once_in_order_through_faults(rig):
    outcome = await run(PLAN, rig)
    print(figures_line(outcome))
    assert check(outcome) == []
    numbers = figures(outcome)
    assert numbers["faults_injected"] == 4
    assert numbers["acks_2xx"] == numbers["stored"] == PLAN.webhooks
    assert numbers["responses_503"] > 0  # the faults did reach the senders


def _outcome(seen: list[tuple[str, int]], stored=None, acked=None) -> Outcome:
    """A finished run of 3 webhooks with one client that saw `seen` (id, timestamp)."""
    plan = Plan(senders=1, webhooks_per_sender=3, clients=1, rounds=0)
    ids = [webhook_id(0, n) for n in range(3)]
    tally = Tally(acks=[Ack(w, 0, 0.0, 0.0) for w in (ids if acked is None else acked)])
    stored = [(event_id(w), ts) for ts, w in enumerate(ids, 1)] if stored is None else stored
    poller = Poller([], "token", "cursor")
    poller.updates = [{"id": event_id(w), "timestamp": f"t{ts:03d}"} for w, ts in seen]
    return Outcome(plan, tally, stored, [poller], [], "", 0.0, 0.0)


def test_the_verdict_catches_loss_duplicates_disorder_and_unacked_events():
    ids = [webhook_id(0, n) for n in range(3)]
    everything = [(w, ts) for ts, w in enumerate(ids, 1)]
    assert check(_outcome(everything)) == []
    broken = {
        "lost": _outcome(everything[:2]),
        "duplicated": _outcome([*everything, everything[2]]),
        "reordered": _outcome([everything[1], everything[0], everything[2]]),
        "stored, never acked": _outcome(everything, acked=ids[:2]),
        "acked, never stored": _outcome(
            everything, stored=[(event_id(w), ts) for w, ts in everything[:2]]
        ),
    }
    for case, outcome in broken.items():
        assert check(outcome) != [], case
