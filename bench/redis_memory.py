"""Measure Redis memory per stored event and per account, through relay's own append script.

Starts a fresh redis-server on a free port (or uses --redis-server BINARY), appends
realistic events (a WhatsApp text message as relay stores it, about 430 bytes) in several
shapes, and reads `INFO memory` and `MEMORY USAGE` after each. Usage:

    python bench/redis_memory.py [--redis-server /usr/bin/redis-server]

The figures go into docs/operations.md ("Redis sizing").
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import tempfile
import time

import redis

from relay.events import Event
from relay.store.base import Retention
from relay.store.keys import account_keys
from relay.store.redis import RedisStore

BATCH = 100


def realistic_event(account: str, n: int) -> Event:
    """A normalized inbound WhatsApp text: provider ids and names at their real lengths."""
    chat = f"55119{n % 997:08d}"
    return Event(
        id=f"wamid.HBgNNTUxMTk{n:012d}FQIAEhggQTZFMkI4RjQ1MDdCRkE5QUY2RjE5RjlCNzM0OEE3MTgA",
        type="message.created",
        account=account,
        chat_id=chat,
        body={
            "source": f"{account}-whatsapp",
            "provider": "whatsapp_cloud",
            "message": {
                "id": f"wamid.HBgNNTUxMTk{n:012d}FQIAEhggQTZFMkI4RjQ1MDdCRkE5QUY2RjE5RjlC",
                "direction": "in",
                "from": {"id": chat, "name": "Maria Aparecida Souza"},
                "kind": "text",
                "text": "Bom dia! Gostaria de saber se o pedido 48213 já foi enviado, obrigada.",
                "sent_at": "2026-11-27T16:36:54+00:00",
            },
        },
    )


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


async def fill(url: str, accounts: int, per_account: int) -> None:
    # Retention off for the measurement (max_events=0: no trimming), dedupe window large.
    store = RedisStore.from_url(url, Retention(max_events=0, max_age_us=0), cluster="no")
    try:

        async def one(a: int) -> None:
            account = f"acct-{a:05d}"
            for start in range(0, per_account, BATCH):
                batch = [
                    realistic_event(account, a * per_account + n)
                    for n in range(start, min(start + BATCH, per_account))
                ]
                await store.append(account, batch)

        for first in range(0, accounts, 200):
            await asyncio.gather(*(one(a) for a in range(first, min(first + 200, accounts))))
    finally:
        await store.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(binary: str, accounts: int, per_account: int) -> dict:
    port = free_port()
    folder = tempfile.mkdtemp(prefix="relay-bench-")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", folder],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, protocol=2)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        version = client.info("server")["redis_version"]
        before = used_memory(client)
        asyncio.run(fill(f"redis://127.0.0.1:{port}/0", accounts, per_account))
        after = used_memory(client)
        keys = {
            key.rsplit(":", 1)[1]: client.memory_usage(key, samples=0)
            for key in account_keys("acct-00000")
        }
        member = client.zrange(account_keys("acct-00000")[0], 0, 0)[0]
        return {
            "version": version,
            "accounts": accounts,
            "per_account": per_account,
            "delta": after - before,
            "keys": keys,
            "member_bytes": len(member),
        }
    finally:
        client.close()
        process.kill()
        process.wait()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    args = parser.parse_args()
    shapes = [(10_000, 1), (1_000, 10), (100, 100), (10, 1_000), (10, 10_000)]
    print(f"redis-server: {args.redis_server}")
    print(
        "| accounts | events/account | events | used_memory delta | bytes/event "
        "| MEMORY USAGE of one account: updates / ids / clock / meta |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | --- |")
    version = member = None
    for accounts, per_account in shapes:
        r = measure(args.redis_server, accounts, per_account)
        version, member = r["version"], r["member_bytes"]
        events = accounts * per_account
        k = r["keys"]
        print(
            f"| {accounts:,} | {per_account:,} | {events:,} | {r['delta'] / 2**20:.1f} MiB "
            f"| {r['delta'] / events:,.0f} "
            f"| {k['updates']:,} / {k['ids']:,} / {k['clock']:,} / {k['meta']:,} |"
        )
    print(f"Redis {version}; one stored member: {member} bytes (header line + event JSON)")


if __name__ == "__main__":
    main()
