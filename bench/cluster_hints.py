"""What a wake-up hint costs a Redis Cluster: classic PUBLISH (broadcast over the cluster
bus to every node) against sharded SPUBLISH (the account's shard only).

Starts a local cluster of N masters (tests/cluster.py, redis-server >= 7), one relay store
and its hint subscription(s), appends single events to 100 accounts with 16 concurrent
writers in each mode (twice each, interleaved), and reads every node's `CLUSTER INFO`
before and after. Usage:

    python -m bench.cluster_hints [--masters 3 6] [--events 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from relay.store.redis import RedisStore
from relay.wakeups.pubsub import PubSubBroker
from relay.wakeups.sharded import ShardedBroker
from tests.cluster import LocalCluster
from tests.helpers import events

ACCOUNTS = [f"bench-{n}" for n in range(100)]
WRITERS = 16


def node_counters(cluster: LocalCluster) -> dict[str, int]:
    totals = {"bus_publish": 0, "bus_all": 0}
    for node in cluster.nodes:
        client = node.client()
        info = dict(
            line.split(":", 1)
            for line in client.execute_command("CLUSTER", "INFO").decode().split()
            if ":" in line
        )
        totals["bus_publish"] += int(info.get("cluster_stats_messages_publish_sent", 0))
        totals["bus_all"] += int(info["cluster_stats_messages_sent"])
    return totals


async def run_mode(cluster: LocalCluster, sharded: bool, count: int) -> dict[str, float]:
    store = RedisStore.from_url(cluster.url)
    await store.connected_client()
    store.sharded_hints = sharded
    up = asyncio.Event()

    class Counter:
        heard = 0

        def on_hint(self, _hint) -> None:
            self.heard += 1

        def on_state(self, is_up: bool, _reason: str) -> None:
            if is_up:
                up.set()

        def on_gap(self, _is_affected) -> None:
            pass

    counter = Counter()
    broker = ShardedBroker(cluster.url) if sharded else PubSubBroker(cluster.url)
    watching = asyncio.create_task(broker.run(counter))
    await asyncio.wait_for(up.wait(), 30)
    before = node_counters(cluster)
    started = time.perf_counter()
    run = uuid.uuid4().hex[:8]  # fresh event ids: a repeated id is a no-op, not an append

    async def writer(w: int) -> None:
        for i in range(w, count, WRITERS):
            account = ACCOUNTS[i % len(ACCOUNTS)]
            batch = events(1, prefix=f"{run}-{i}-", account=account)
            await store.append(account, batch)

    await asyncio.gather(*(writer(w) for w in range(WRITERS)))
    elapsed = time.perf_counter() - started
    await asyncio.sleep(0.5)  # the last hints
    after = node_counters(cluster)
    watching.cancel()
    await asyncio.wait({watching}, timeout=5)
    await store.close()
    return {
        "appends_per_s": count / elapsed,
        "hints_heard": counter.heard,
        "bus_publish_msgs": after["bus_publish"] - before["bus_publish"],
        "bus_msgs_per_append": (after["bus_all"] - before["bus_all"]) / count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--masters", type=int, nargs="+", default=[3, 6])
    parser.add_argument("--events", type=int, default=5000)
    args = parser.parse_args()
    print(
        "| masters | hints | appends/s | hints heard | cluster-bus PUBLISH messages | "
        "cluster-bus messages per append (all kinds) |"
    )
    print("|---|---|---|---|---|---|")
    for masters in args.masters:
        cluster = LocalCluster(masters=masters, min_version=(7, 0)).start()
        try:
            for sharded in (False, True, False, True):  # twice each, interleaved
                row = asyncio.run(run_mode(cluster, sharded, args.events))
                mode = "SPUBLISH (sharded)" if sharded else "PUBLISH (classic)"
                print(
                    f"| {masters} | {mode} | {row['appends_per_s']:,.0f} | "
                    f"{row['hints_heard']:,} | {row['bus_publish_msgs']:,} | "
                    f"{row['bus_msgs_per_append']:.2f} |"
                )
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
