"""Redis with an ACL user and over TLS (`rediss://`), against real servers: the least
privileges relay needs (the ACL line docs/operations.md recommends), standalone and on the
cluster, and a TLS server verified against its CA."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from relay.errors import StoreUnavailable
from relay.store.redis import RedisStore
from relay.wakeups.redis_broker import RedisBroker
from tests.cluster import CLUSTER_ARGS, LocalCluster
from tests.helpers import events
from tests.servers import (
    RedisServer,
    RelayProcess,
    in_ci,
    redis_server_binary,
    redis_server_candidates,
)
from tests.test_cluster_hints import Hints
from tests.test_exactly_once import relay_env

PASSWORD = "relay-test-password-0123456789"
# The ACL rules docs/operations.md recommends for relay's user, verbatim.
RELAY_ACL = (
    "~relay:* resetchannels &relay:* -@all +@read +@write +@scripting +@connection "
    "+ping +info +time +cluster|slots +cluster|shards +cluster|info +cluster|myid "
    "+publish +subscribe +unsubscribe +spublish +ssubscribe +sunsubscribe"
)

# The same without INFO and CLUSTER INFO: relay cannot tell whether it is a cluster.
BLIND_ACL = RELAY_ACL.replace(" +info", "").replace(" +cluster|info", "")


class AclRedis(RedisServer):
    """The default user is off: only `relay` with its password gets in."""

    def __init__(self) -> None:
        super().__init__(
            *("--user", "default", "off"),
            *("--user", "admin", "on", f">{PASSWORD}", "~*", "&*", "+@all"),
            *("--user", "relay", "on", f">{PASSWORD}", *RELAY_ACL.split()),
            *("--user", "blind", "on", f">{PASSWORD}", *BLIND_ACL.split()),
            binary=redis_server_binary((7, 0)),  # +spublish and +ssubscribe are 7.0's
        )

    def client(self) -> redis.Redis:
        return redis.Redis(
            port=self.port, username="admin", password=PASSWORD, socket_timeout=5, protocol=2
        )

    def url_for(self, user: str, password: str) -> str:
        return f"redis://{user}:{password}@127.0.0.1:{self.port}/0"


@pytest.fixture
def acl_redis():
    server = AclRedis().start()
    yield server
    server.stop()


async def exercise(store: RedisStore, account: str = "acme") -> None:
    await store.ping()
    start = (await store.read(account, None, 10)).cursor
    appended = await store.append(account, events(3, account=account))
    again = await store.append(account, events(3, account=account))
    assert all(a.duplicate for a in again)
    page = await store.read(account, start, 10)
    assert [e.timestamp for e in page.events] == [a.timestamp for a in appended]


async def test_an_acl_user_with_the_documented_rules_runs_relay(acl_redis):
    store = RedisStore.from_url(acl_redis.url_for("relay", PASSWORD))
    try:
        await exercise(store)
        assert not store.clustered
    finally:
        await store.close()


async def test_a_wrong_password_is_a_503_not_a_crash(acl_redis):
    store = RedisStore.from_url(acl_redis.url_for("relay", "wrong-password"), cluster="no")
    try:
        with pytest.raises(StoreUnavailable):
            await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.read("acme", None, 10)
    finally:
        await store.close()


async def test_a_user_that_may_not_ask_is_told_to_set_the_cluster_mode(acl_redis):
    url = acl_redis.url_for("blind", PASSWORD)
    store = RedisStore.from_url(url)
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await store.ping()
        assert "RELAY_REDIS_CLUSTER" in caught.value.detail
    finally:
        await store.close()
    explicit = RedisStore.from_url(url, cluster="no")
    try:
        await exercise(explicit)
    finally:
        await explicit.close()


async def test_the_documented_acl_is_enough_on_the_cluster(redis_cluster, cluster_url):
    for node in redis_cluster.nodes:
        node.client().execute_command(
            "ACL", "SETUSER", "relay", "on", f">{PASSWORD}", *RELAY_ACL.split()
        )
    seed = redis_cluster.nodes[1]
    store = RedisStore.from_url(f"redis://relay:{PASSWORD}@127.0.0.1:{seed.port}/0")
    try:
        for accounts in redis_cluster.accounts_on_each_master(per_node=1).values():
            await exercise(store, accounts[0])
        assert store.clustered
        await exercise_hints(store, redis_cluster.accounts_on_each_master(per_node=1))
    finally:
        await store.close()
        for node in redis_cluster.nodes:
            node.client().execute_command("ACL", "DELUSER", "relay")


async def exercise_hints(store: RedisStore, accounts: dict[int, list[str]]) -> None:
    """The sharded wake-ups work with the same URL: one subscription per master comes up
    and each master's appends are heard."""
    assert store.sharded_hints
    hints = Hints()
    watching = asyncio.create_task(RedisBroker(store).run(hints))
    try:
        await hints.wait_up()
        for owned in accounts.values():
            appended = await store.append(owned[0], events(1, prefix="hint-", account=owned[0]))
            await hints.wait_for(owned[0], appended[0].timestamp)
    finally:
        watching.cancel()
        await asyncio.wait({watching}, timeout=5)


def tls_binary() -> str | None:
    """A redis-server built with TLS (Debian's is; the bundled 6.2 is not)."""
    for binary in redis_server_candidates():
        with tempfile.TemporaryDirectory() as folder:
            probe = subprocess.run(
                [binary, "--port", "0", "--tls-port", "1", "--dir", folder],
                capture_output=True,
                text=True,
                timeout=10,
            )
        # A TLS build stops at the missing key file; a plain build at the unknown directive.
        if "Failed to configure TLS" in probe.stdout + probe.stderr:
            return binary
    return None


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 / localhost, signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "redis.pem", folder / "redis.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class TlsRedis(RedisServer):
    """TLS only (`--port 0`), clients verified by nobody, the server by its CA."""

    def __init__(
        self, binary: str, *extra: str, port: int | None = None, certs: tuple | None = None
    ) -> None:
        self.certs = certs or make_certificates(Path(tempfile.mkdtemp(prefix="relay-tls-")))
        ca, cert, key = (str(p) for p in self.certs)
        super().__init__(binary=binary, port=port)
        self.extra = (
            *extra,
            "--port", "0", "--tls-port", str(self.port), "--tls-cert-file", cert,
            "--tls-key-file", key, "--tls-ca-cert-file", ca, "--tls-auth-clients", "no",
        )  # fmt: skip

    def client(self) -> redis.Redis:
        return redis.Redis(
            port=self.port, ssl=True, ssl_ca_certs=str(self.certs[0]), socket_timeout=5
        )

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.certs[0]}"


@pytest.fixture(scope="module")
def tls_redis():
    binary = tls_binary()
    if binary is None:
        if in_ci():
            raise RuntimeError(
                "CI needs a redis-server built with TLS (apt-get install redis-server)"
            )
        pytest.skip("no redis-server built with TLS on this machine")
    server = TlsRedis(binary).start()
    yield server
    server.stop()


async def test_rediss_url_with_the_servers_ca_works(tls_redis):
    store = RedisStore.from_url(tls_redis.url)
    try:
        await exercise(store)
    finally:
        await store.close()


async def test_rediss_refuses_a_server_it_cannot_verify(tls_redis):
    # The system CAs do not know the test CA: the connection must fail, not fall back.
    store = RedisStore.from_url(f"rediss://127.0.0.1:{tls_redis.port}/0", cluster="no")
    try:
        with pytest.raises(StoreUnavailable):
            await store.ping()
    finally:
        await store.close()


def test_relay_serve_is_ready_over_tls(tls_redis):
    relay = RelayProcess(relay_env(tls_redis.url)).start()
    try:
        with urllib.request.urlopen(f"{relay.url}/readyz", timeout=10) as response:
            assert response.status == 200
    finally:
        relay.stop()


class TlsCluster(LocalCluster):
    """The 3-master cluster with TLS everywhere: clients and the cluster bus."""

    def __init__(self, binary: str) -> None:
        super().__init__(binary=binary)
        self.certs = make_certificates(Path(tempfile.mkdtemp(prefix="relay-tls-")))

    def make_node(self, port: int) -> RedisServer:
        return TlsRedis(
            self.binary, *CLUSTER_ARGS, "--tls-cluster", "yes", port=port, certs=self.certs
        )


async def test_rediss_url_of_a_tls_cluster_node_works(tls_redis):
    cluster = TlsCluster(tls_redis.binary).start()
    try:
        store = RedisStore.from_url(cluster.nodes[2].url)
        try:
            for accounts in cluster.accounts_on_each_master(per_node=1).values():
                await exercise(store, accounts[0])
            assert store.clustered
            await exercise_hints(store, cluster.accounts_on_each_master(per_node=1))
        finally:
            await store.close()
    finally:
        cluster.stop()
