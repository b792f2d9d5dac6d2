"""The hub's partial gap: only the accounts whose hints may have been missed lose their
tail and re-read; the others keep answering from theirs."""

from __future__ import annotations

from relay.fanout.hub import Hub
from relay.store.base import Page


async def test_forget_wakes_and_distrusts_only_the_affected_accounts():
    hub = Hub(watermark_ttl=60)
    hub.hints_up = True
    for account in ("moved-1", "moved-2", "stays"):
        hub.tails.seed(account, 50, Page([], 100, False, False), hub.tails.ticket())
    signals = {account: hub.arm(account) for account in ("moved-1", "moved-2", "stays")}
    hub.forget(lambda account: account.startswith("moved"))
    assert signals["moved-1"].done() and signals["moved-2"].done()
    assert not signals["stays"].done()
    vouches_for = hub.tails.vouches_for
    assert not vouches_for("moved-1", 100) and not vouches_for("moved-2", 100)
    assert vouches_for("stays", 100)
