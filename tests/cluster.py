"""A real 3-master Redis Cluster for the tests: redis-server processes with
`cluster-enabled yes` on free ports, slots assigned, and slot migration on demand.

Used as a session fixture (`redis_cluster` in conftest), on Redis >= 7 where one is
installed (sharded pub/sub needs it; CI installs one); `LocalCluster(min_version=(7, 0))`
insists on it.
"""

from __future__ import annotations

import random
import signal
import socket
from collections.abc import Callable

from relay.store.keys import stream_key
from tests.servers import RedisServer, redis_server_binary, wait_until

SLOTS = 16384
CLUSTER_ARGS = (
    *("--cluster-enabled", "yes"),
    *("--cluster-config-file", "nodes.conf"),
    *("--cluster-node-timeout", "3000"),
    # A replica's first sync starts at once (the default waits 5 s for more replicas).
    *("--repl-diskless-sync-delay", "0"),
)


def free_cluster_port() -> int:
    """A port whose cluster bus port (port + 10000) is free too: Redis 6.2 has no
    `cluster-port`, so the bus always sits 10000 above."""
    for _ in range(200):
        port = random.randint(20000, 50000)
        if _bindable(port) and _bindable(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def key_slot(key: str) -> int:
    """CRC16 slot of a key, hash tag included (what CLUSTER KEYSLOT answers)."""
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    crc = 0
    for byte in key.encode():
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc % SLOTS


class LocalCluster:
    """Three masters, no replicas; slots split evenly. Everything on 127.0.0.1."""

    def __init__(
        self,
        masters: int = 3,
        min_version: tuple[int, int] | None = None,
        binary: str | None = None,
    ) -> None:
        self.binary = binary or redis_server_binary(min_version)
        self.nodes: list[RedisServer] = []
        self.ids: list[str] = []
        self.masters = masters

    def make_node(self, port: int) -> RedisServer:
        """One master; a subclass may return a differently configured server (TLS...)."""
        return RedisServer(*CLUSTER_ARGS, port=port, binary=self.binary)

    @property
    def url(self) -> str:
        """A seed URL: any node will do, the client learns the rest."""
        return self.nodes[0].url

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self) -> LocalCluster:
        for _ in range(self.masters):
            self.nodes.append(self.make_node(free_cluster_port()).start())
        clients = [node.client() for node in self.nodes]
        self.ids = [c.execute_command("CLUSTER", "MYID").decode() for c in clients]
        per_node = SLOTS // self.masters
        for i, client in enumerate(clients):
            # A distinct epoch each, so no epoch collision has to be resolved at start.
            client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
            last = SLOTS if i == self.masters - 1 else (i + 1) * per_node
            client.execute_command("CLUSTER", "ADDSLOTS", *range(i * per_node, last))
        for node in self.nodes[1:]:
            clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
        self.wait_ok()
        return self

    def wait_ok(self, timeout: float = 30.0) -> None:
        def every_node_agrees() -> bool:
            for node in self.nodes:
                info = node.client().execute_command("CLUSTER", "INFO").decode()
                if "cluster_state:ok" not in info or f"known_nodes:{len(self.nodes)}" not in info:
                    return False
                covered = sum(end - start + 1 for start, end, *_ in self.slot_map(node))
                if covered != SLOTS:
                    return False
            return True

        wait_until(every_node_agrees, timeout=timeout, interval=0.05, what="cluster_state:ok")

    def slot_map(self, node: RedisServer) -> list:
        return node.client().execute_command("CLUSTER", "SLOTS")

    def owner(self, slot: int) -> int:
        """Index of the master that owns `slot`, as node 0 sees it."""
        for start, end, master, *_ in self.slot_map(self.nodes[0]):
            if start <= slot <= end:
                return [n.port for n in self.nodes].index(int(master[1]))
        raise LookupError(slot)

    def accounts_on_each_master(self, per_node: int = 2) -> dict[int, list[str]]:
        """Account names whose slot each master owns, so a test can touch every master."""
        found: dict[int, list[str]] = {i: [] for i in range(len(self.nodes))}
        n = 0
        while any(len(names) < per_node for names in found.values()):
            account = f"acct-{n}"
            owner = self.owner(key_slot(stream_key(account)))
            if len(found[owner]) < per_node:
                found[owner].append(account)
            n += 1
        return found

    def flushall(self) -> None:
        for node in self.nodes:
            node.client().flushall()

    def migrate_slot(
        self, slot: int, target: int, while_migrating: Callable[[str], None] | None = None
    ) -> None:
        """Move `slot` to master `target` the way redis-cli --cluster reshard does:
        IMPORTING on the target, MIGRATING on the source, MIGRATE the keys, then
        SETSLOT NODE on every master. `while_migrating("migrating")` runs while the slot
        is open and nothing has moved (clients get the source, or ASK for new keys), and
        `while_migrating("moved")` after the keys moved and before ownership changes
        (clients get ASK to the target)."""
        source = self.owner(slot)
        if source == target:
            return
        src, dst = self.nodes[source].client(), self.nodes[target].client()
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", self.ids[source])
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", self.ids[target])
        if while_migrating:
            while_migrating("migrating")
        while True:
            keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
            if not keys:
                break
            # All of an account's keys in one MIGRATE: atomic, so a script never sees
            # half an account on each side for longer than this call (TRYAGAIN).
            src.execute_command(
                "MIGRATE", "127.0.0.1", self.nodes[target].port, "", 0, 5000, "KEYS", *keys
            )
        if while_migrating:
            while_migrating("moved")
        # The target first, so the slot's new owner knows it before anyone is sent there.
        order = [target, source] + [i for i in range(len(self.nodes)) if i not in (source, target)]
        for i in order:
            self.nodes[i].client().execute_command(
                "CLUSTER", "SETSLOT", slot, "NODE", self.ids[target]
            )
        wait_until(
            lambda: all(self._owner_seen_by(n, slot) == target for n in range(len(self.nodes))),
            timeout=10,
            what=f"slot {slot} owned by node {target} everywhere",
        )

    def _owner_seen_by(self, index: int, slot: int) -> int:
        for start, end, master, *_ in self.slot_map(self.nodes[index]):
            if start <= slot <= end:
                return [n.port for n in self.nodes].index(int(master[1]))
        return -1

    def add_replica(self, master: int) -> int:
        """Start one more node as a replica of master `master`; its index in `nodes`."""
        node = self.make_node(free_cluster_port()).start()
        self.nodes.append(node)
        client = node.client()
        self.ids.append(client.execute_command("CLUSTER", "MYID").decode())
        for other in self.nodes[:-1]:  # meet everyone at once rather than wait for gossip
            client.execute_command("CLUSTER", "MEET", "127.0.0.1", other.port)

        def knows_everyone() -> bool:
            table = client.execute_command("CLUSTER", "NODES").decode()
            return "handshake" not in table and all(i in table for i in self.ids)

        wait_until(knows_everyone, timeout=30, what="the replica to join")
        client.execute_command("CLUSTER", "REPLICATE", self.ids[master])
        wait_until(
            lambda: client.info("replication").get("master_link_status") == "up",
            timeout=30,
            what="the replica to sync",
        )
        replica_id, master_id = self.ids[-1], self.ids[master]

        def everyone_knows_the_replica() -> bool:
            for other in self.nodes:
                for line in (
                    other.client().execute_command("CLUSTER", "NODES").decode().splitlines()
                ):
                    fields = line.split()
                    if fields[0] == replica_id and (
                        "slave" not in fields[2] or fields[3] != master_id
                    ):
                        return False
            return True

        # A manual failover needs the master to know its replica: wait for the gossip.
        wait_until(everyone_knows_the_replica, timeout=30, what="the replica to be known")
        self.wait_ok()
        return len(self.nodes) - 1

    def failover(self, replica: int) -> None:
        """A manual failover (`CLUSTER FAILOVER` on the replica): it waits until it has
        every write of its master, then takes the master's slots; nothing is lost. Redis
        gives a manual failover 5 s and then drops it (seen when the master missed the
        request on a fresh bus link): ask again, up to five times."""
        client = self.nodes[replica].client()
        for attempt in range(5):
            client.execute_command("CLUSTER", "FAILOVER")
            try:
                wait_until(
                    lambda: client.info("replication")["role"] == "master",
                    timeout=7,
                    what="the replica to become master",
                )
                break
            except TimeoutError:
                if attempt == 4:
                    raise
        self.wait_ok()

    def pause(self) -> None:
        """SIGSTOP every master: connections hang as on a network partition."""
        for node in self.nodes:
            node.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        for node in self.nodes:
            node.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        for node in self.nodes:
            if node.process and node.process.poll() is None:
                node.process.send_signal(signal.SIGCONT)
            node.stop()
