"""The chaos run at CI size: Redis SIGKILLed twice, one relay SIGTERMed, Redis paused past
the store timeout, while 16 senders retry and 20 clients echo; nothing acked is lost or
duplicated, and every client sees it all in store order. Longer runs: bench/chaos.py."""

from __future__ import annotations

import pytest

from tests.chaos.scenario import Plan, Rig, check, figures, figures_line, run

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
