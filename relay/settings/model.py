"""The settings dataclasses: every field's default is written here, once; from_env reads
the environment and the config file into them, once, at start, and checks them whole.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from relay.delivery.config import DeliverySettings, Subscriber
from relay.rotated_keys import split_keys
from relay.settings.config_file import Source, read_config_file
from relay.settings.environment import (
    DELIVERY_VARIABLES,
    LIVE_VARIABLES,
    RETENTION_VARIABLES,
    SETTINGS_VARIABLES,
    Reader,
    problems_between,
)
from relay.store.base import Retention


class ConfigError(Exception):
    """Carries one line per problem; `relay` prints them and exits 1."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class LiveSettings:
    """Long-poll, SSE and wake-up knobs (seconds unless named otherwise)."""

    max_wait: float = 30.0
    heartbeat: float = 15.0
    retry_ms: int = 2000
    shutdown_timeout: float = 20.0
    max_streams: int = 10_000
    max_streams_per_user: int = 8
    max_waiters: int = 10_000
    max_waiters_per_user: int = 8
    watermark_ttl: float = 10.0
    safety_reread: float = 2.0
    # The in-process tail (see DESIGN.md "Wake-ups and the tail"); 0 bytes turns it off.
    tail_max_bytes: int = 64 * 1024 * 1024
    tail_max_events: int = 1000


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 8080
    # /metrics on a port of its own (None: on the service port, as before)
    metrics_port: int | None = None
    redis_url: str | None = None
    redis_timeout: float = 2.0
    redis_max_connections: int = 64
    # Replicas that must have an append before it is acknowledged (WAIT); 0: the master's word
    redis_min_replicas: int = 0
    redis_cluster: str = "auto"  # auto: ask the server (INFO cluster) on first use
    hint_max_bytes: int = 64 * 1024
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_public_key: str | None = field(default=None, repr=False)
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway: float = 10.0
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    log_level: str = "info"
    log_format: str = "json"
    max_body_bytes: int = 4 * 1024 * 1024
    max_publish_bytes: int = 1024 * 1024
    body_timeout: float = 10.0
    # Request bodies held while they are read (see relay.body_budget).
    max_body_bytes_in_flight: int = 32 * 1024 * 1024
    max_body_bytes_in_flight_per_address: int = 8 * 1024 * 1024
    keepalive_timeout: float = 30.0
    poll_rate: float = 20.0
    poll_burst: float = 60.0
    webhook_rate: float = 500.0
    webhook_burst: float = 1000.0
    # Failed webhook verifications, per client address: forgeries get their own budget
    # and never spend a source's.
    webhook_reject_rate: float = 5.0
    webhook_reject_burst: float = 50.0
    trusted_proxy_hops: int = 0  # X-Forwarded-For entries to believe (0: the peer only)
    poll_limit_default: int = 100
    dead_letters_max: int = 10_000
    dead_letters_max_bytes: int | None = None  # None: 256 MiB on Redis, 64 MiB in memory
    poll_limit_max: int = 1000
    retention: Retention = field(default_factory=Retention)
    live: LiveSettings = field(default_factory=LiveSettings)
    config_path: Path | None = None
    sources: Mapping[str, Source] = field(default_factory=dict)
    subscribers: Mapping[str, Subscriber] = field(default_factory=dict)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    demo: bool = False  # RELAY_DEMO=1 serves the demo inbox at /demo
    # RELAY_CORS_ORIGINS: pages of these origins (or "*": any) may call the browser routes.
    cors_origins: tuple[str, ...] = ()

    @property
    def engine(self) -> str:
        return "redis" if self.redis_url else "memory"

    def secret_values(self) -> list[str]:
        """Every secret this process knows, so the log redactor can scrub them."""
        values = [*(self.jwt_secret or "").split(), *self.api_keys]
        for source in self.sources.values():
            for secret in source.secrets.values():
                # While a secret rotates the setting holds both keys; a log line or a
                # dead letter may hold either one alone.
                values += [secret, *split_keys(secret)]
        for subscriber in self.subscribers.values():
            values += subscriber.secret_values
        values.append(os.environ.get("RELAY_REDIS_SENTINEL_PASSWORD", ""))
        if self.redis_url and "@" in self.redis_url:
            password = self.redis_url.split("@", 1)[0].rsplit(":", 1)[-1]
            values += [password, unquote(password)]
        return [value for value in values if value and len(value) >= 4]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        problems: list[str] = []
        reader = Reader(env, problems)
        retention = Retention(**reader.fields_of(Retention, RETENTION_VARIABLES))
        live = LiveSettings(**reader.fields_of(LiveSettings, LIVE_VARIABLES))
        config_path = reader.config_path()
        values = reader.fields_of(cls, SETTINGS_VARIABLES)
        sources, subscribers = read_config_file(config_path, env, problems)
        settings = cls(
            **values,
            retention=retention,
            live=live,
            config_path=config_path,
            sources=sources,
            subscribers=subscribers,
            delivery=DeliverySettings(**reader.fields_of(DeliverySettings, DELIVERY_VARIABLES)),
        )
        problems += problems_between(settings)
        if problems:
            raise ConfigError(problems)
        return settings
