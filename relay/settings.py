"""Settings: parsed once from the environment and the sources file, validated at start,
immutable afterwards. Every error names the variable or the source and key at fault.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from relay.delivery.config import (
    SUBSCRIBER_KEYS,
    DeliverySettings,
    Subscriber,
    load_subscribers,
)
from relay.events import ACCOUNT_PATTERN
from relay.rotated_keys import COMMA, split_keys
from relay.store.base import Retention
from relay.store.connections import parse_sentinel_url

DEFAULT_CONFIG = Path("config/relay.toml")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

# The config file's whole vocabulary, in one place: a table or key not listed here is a
# typo and stops relay with a "did you mean". A new provider, option or table goes here.
CONFIG_TABLES = ("sources", "subscribers")
SOURCE_KEYS = ("provider", "account")  # every source has these, plus its provider's keys
PROVIDER_KEYS: dict[str, tuple[str, ...]] = {
    "standard_webhooks": ("secret_env",),
    "whatsapp_cloud": ("secret_env", "verify_token_env"),
    "telegram": ("secret_env",),
    "twilio": ("secret_env", "public_url", "shared_key_env"),
    "evolution": ("secret_env", "jwt_key_env"),
    "zapi": ("secret_env",),
}
# Secrets that someone may be tempted to write inline: the error says to use `<key>_env`.
_INLINE_SECRETS = ("secret", "verify_token", "token", "api_key", "jwt_key", "shared_key")
# RFC 7518 section 3.2: an HS256 key must be at least as long as the hash output.
HS256_MIN_BYTES = 32


class ConfigError(Exception):
    """Carries one line per problem; `relay` prints them and exits 1."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Source:
    """One webhook endpoint, `POST /webhooks/{name}`. Secrets are resolved from the
    environment (`secret_env = "VAR"` becomes `secrets["secret"]`), never read inline."""

    name: str
    provider: str
    account: str
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)


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
            values += source.secrets.values()
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
        reader = _Reader(env, problems)

        log_format = reader.choice(
            "RELAY_LOG_FORMAT", ("json", "console"), "console" if sys.stderr.isatty() else "json"
        )
        retention = Retention(
            max_events=reader.integer("RELAY_MAX_EVENTS", 10_000, minimum=0),
            max_age_us=reader.duration_us("RELAY_MAX_AGE", "24h"),
            dedupe_window_us=reader.duration_us("RELAY_DEDUPE_WINDOW", "7d"),
            dedupe_max=reader.integer("RELAY_DEDUPE_MAX", 100_000, minimum=1),
        )
        seconds = reader.seconds
        live = LiveSettings(
            max_wait=seconds("RELAY_LONGPOLL_MAX_WAIT", "30s"),
            heartbeat=seconds("RELAY_SSE_HEARTBEAT", "15s"),
            retry_ms=reader.integer("RELAY_SSE_RETRY_MS", 2000, minimum=0),
            shutdown_timeout=seconds("RELAY_SHUTDOWN_TIMEOUT", "20s"),
            max_streams=reader.integer("RELAY_MAX_SSE_STREAMS", 10_000, minimum=1),
            max_streams_per_user=reader.integer("RELAY_MAX_SSE_STREAMS_PER_USER", 8, minimum=1),
            max_waiters=reader.integer("RELAY_MAX_WAITERS", 10_000, minimum=1),
            max_waiters_per_user=reader.integer("RELAY_MAX_WAITERS_PER_USER", 8, minimum=1),
            watermark_ttl=seconds("RELAY_FASTPATH_TTL", "10s"),
            safety_reread=seconds("RELAY_SAFETY_REREAD", "2s"),
            tail_max_bytes=reader.integer("RELAY_TAIL_MAX_BYTES", 64 * 1024 * 1024, minimum=0),
            tail_max_events=reader.integer("RELAY_TAIL_MAX_EVENTS", 1000, minimum=1),
        )
        config_path = _config_path(env, problems)
        jwt_public_key = env.get("RELAY_JWT_PUBLIC_KEY") or None
        if jwt_public_key and not jwt_public_key.lstrip().startswith("-----BEGIN"):
            # Accept a path too: PEM in an environment variable is awkward in some shells.
            try:
                jwt_public_key = Path(jwt_public_key).read_text()
            except OSError:
                problems.append("RELAY_JWT_PUBLIC_KEY: neither a PEM key nor a readable file")
        settings = cls(
            host=env.get("RELAY_HOST") or "0.0.0.0",
            port=reader.integer("RELAY_PORT", 8080, minimum=0, maximum=65535),
            metrics_port=reader.integer("RELAY_METRICS_PORT", 0, minimum=0, maximum=65535) or None,
            redis_url=reader.redis_url(),
            redis_timeout=reader.duration_us("RELAY_REDIS_TIMEOUT", "2s") / 1e6,
            redis_max_connections=reader.integer("RELAY_REDIS_MAX_CONNECTIONS", 64, minimum=1),
            redis_min_replicas=reader.integer("RELAY_REDIS_MIN_REPLICAS", 0, minimum=0),
            redis_cluster=reader.choice("RELAY_REDIS_CLUSTER", ("auto", "yes", "no"), "auto"),
            hint_max_bytes=reader.integer("RELAY_HINT_MAX_BYTES", 64 * 1024, minimum=0),
            jwt_secret=env.get("RELAY_JWT_SECRET") or None,
            jwt_public_key=jwt_public_key,
            jwt_audience=env.get("RELAY_JWT_AUDIENCE") or None,
            jwt_issuer=env.get("RELAY_JWT_ISSUER") or None,
            jwt_leeway=reader.duration_us("RELAY_JWT_LEEWAY", "10s") / 1e6,
            api_keys=api_keys_from(env),
            log_level=reader.choice(
                "RELAY_LOG_LEVEL", ("debug", "info", "warning", "error"), "info"
            ),
            log_format=log_format,
            max_body_bytes=reader.integer("RELAY_MAX_BODY_BYTES", 4 * 1024 * 1024, minimum=1024),
            max_publish_bytes=reader.integer("RELAY_MAX_PUBLISH_BYTES", 1024 * 1024, minimum=1024),
            body_timeout=seconds("RELAY_BODY_TIMEOUT", "10s"),
            max_body_bytes_in_flight=reader.integer(
                "RELAY_MAX_BODY_BYTES_IN_FLIGHT", 32 * 1024 * 1024, minimum=1024
            ),
            max_body_bytes_in_flight_per_address=reader.integer(
                "RELAY_MAX_BODY_BYTES_IN_FLIGHT_PER_ADDRESS", 8 * 1024 * 1024, minimum=1024
            ),
            keepalive_timeout=seconds("RELAY_KEEPALIVE_TIMEOUT", "30s"),
            poll_rate=reader.number("RELAY_POLL_RATE", 20.0),
            poll_burst=reader.number("RELAY_POLL_BURST", 60.0),
            webhook_rate=reader.number("RELAY_WEBHOOK_RATE", 500.0),
            webhook_burst=reader.number("RELAY_WEBHOOK_BURST", 1000.0),
            webhook_reject_rate=reader.number("RELAY_WEBHOOK_REJECT_RATE", 5.0),
            webhook_reject_burst=reader.number("RELAY_WEBHOOK_REJECT_BURST", 50.0),
            trusted_proxy_hops=reader.integer("RELAY_TRUSTED_PROXY_HOPS", 0, minimum=0, maximum=16),
            poll_limit_default=reader.integer("RELAY_POLL_LIMIT_DEFAULT", 100, minimum=1),
            dead_letters_max=reader.integer("RELAY_DEAD_LETTERS_MAX", 10_000, minimum=1),
            dead_letters_max_bytes=reader.integer("RELAY_DEAD_LETTERS_MAX_BYTES", 0, minimum=0)
            or None,
            poll_limit_max=reader.integer("RELAY_POLL_LIMIT_MAX", 1000, minimum=1),
            retention=retention,
            live=live,
            config_path=config_path,
            sources=_load_sources(config_path, env, problems) if config_path else {},
            subscribers=load_subscribers(config_path, env, problems),
            delivery=DeliverySettings(
                retry_min=seconds("RELAY_DELIVERY_RETRY_MIN", "1s"),
                retry_max=seconds("RELAY_DELIVERY_RETRY_MAX", "10m"),
                lease=seconds("RELAY_DELIVERY_LEASE", "30s"),
                sweep=seconds("RELAY_DELIVERY_SWEEP", "30s"),
            ),
            demo=reader.flag("RELAY_DEMO"),
            cors_origins=reader.origins("RELAY_CORS_ORIGINS"),
        )
        if (
            settings.redis_cluster == "yes"
            and settings.redis_url
            and settings.redis_url.startswith("redis+sentinel://")
        ):
            problems.append("RELAY_REDIS_CLUSTER=yes: Sentinel watches a master, not a cluster")
        elif settings.redis_cluster == "yes" and settings.redis_url:
            database = urlsplit(settings.redis_url).path.strip("/")
            if database not in ("", "0"):
                problems.append(
                    f"RELAY_REDIS_URL: a Redis Cluster has only database 0, not {database}"
                )
        if settings.metrics_port is not None and settings.metrics_port == settings.port:
            problems.append("RELAY_METRICS_PORT: must differ from RELAY_PORT")
        largest = max(settings.max_body_bytes, settings.max_publish_bytes)
        if settings.max_body_bytes_in_flight_per_address < settings.max_body_bytes:
            problems.append(
                "RELAY_MAX_BODY_BYTES_IN_FLIGHT_PER_ADDRESS is below RELAY_MAX_BODY_BYTES: "
                "a body of the largest size allowed could never be read"
            )
        if settings.max_body_bytes_in_flight * 3 // 4 < largest:
            problems.append(
                "RELAY_MAX_BODY_BYTES_IN_FLIGHT: three quarters of it (what unauthenticated "
                "bodies may fill) must hold the largest body allowed"
            )
        if settings.redis_min_replicas and settings.redis_cluster == "yes":
            problems.append("RELAY_REDIS_MIN_REPLICAS is not supported with a Redis Cluster")
        problems += jwt_secret_problems(settings.jwt_secret)
        if settings.jwt_secret and settings.jwt_public_key:
            problems.append(
                "RELAY_JWT_SECRET and RELAY_JWT_PUBLIC_KEY are both set: choose HS256 or RS256"
            )
        if problems:
            raise ConfigError(problems)
        return settings


def jwt_secret_problems(value: str | None) -> list[str]:
    """RELAY_JWT_SECRET's secrets (several while rotating) are each at least 32 bytes."""
    secrets = (value or "").split()
    problems = []
    for place, secret in enumerate(secrets, 1):
        size = len(secret.encode())
        if size < HS256_MIN_BYTES:
            which = f"secret {place} of {len(secrets)}" if len(secrets) > 1 else "the secret"
            problems.append(
                f"RELAY_JWT_SECRET: {which} is {size} bytes; HS256 needs at least "
                f"{HS256_MIN_BYTES} (RFC 7518 3.2): make one with `openssl rand -hex 32`"
            )
    return problems


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """` (did you mean X?)` when a known word is close, else ``."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def api_keys_from(env: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(split_keys(env.get("RELAY_API_KEYS", ""), COMMA))


class _Reader:
    def __init__(self, env: Mapping[str, str], problems: list[str]) -> None:
        self.env = env
        self.problems = problems

    def integer(self, name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name}: expected an integer, got {raw!r}")
            return default
        if value < minimum or (maximum is not None and value > maximum):
            self.problems.append(f"{name}: {value} is out of range")
            return default
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        raw = self.env.get(name, "").strip().lower()
        if not raw:
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        self.problems.append(f"{name}: expected 1 or 0 (true/false, yes/no, on/off), got {raw!r}")
        return default

    def duration_us(self, name: str, default: str) -> int:
        raw = self.env.get(name, "").strip() or default
        match = _DURATION.fullmatch(raw)
        if not match:
            self.problems.append(
                f"{name}: expected a duration like 90s, 15m, 24h or 7d, got {raw!r}"
            )
            match = _DURATION.fullmatch(default)
            assert match
        return int(float(match[1]) * _UNITS[match[2]] * 1_000_000)

    def number(self, name: str, default: float) -> float:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not value >= 0:
            self.problems.append(f"{name}: expected a number >= 0, got {raw!r}")
            return default
        return value

    def seconds(self, name: str, default: str) -> float:
        return self.duration_us(name, default) / 1e6

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        raw = self.env.get(name, "").strip().lower()
        if not raw:
            return default
        if raw not in allowed:
            self.problems.append(f"{name}: expected one of {', '.join(allowed)}, got {raw!r}")
            return default
        return raw

    def origins(self, name: str) -> tuple[str, ...]:
        """Comma-separated web origins as browsers send them (`https://inbox.example.com`,
        a port where it is not the default), or `*`. A path or a trailing slash never
        matches a browser's Origin header, so it is refused rather than silently useless."""
        origins = []
        for raw in self.env.get(name, "").split(","):
            origin = raw.strip()
            if not origin:
                continue
            if origin == "*":
                origins.append(origin)
                continue
            parts = urlsplit(origin)
            try:
                parts.port  # noqa: B018 - raises on a port that is not a number
            except ValueError:
                parts = urlsplit("")
            if (
                parts.scheme not in ("http", "https")
                or not parts.hostname
                or origin != f"{parts.scheme}://{parts.netloc}"
                or "@" in parts.netloc
            ):
                self.problems.append(
                    f"{name}: {origin!r} is not an origin (scheme://host[:port], no path), or *"
                )
                continue
            origins.append(origin.lower())
        return tuple(dict.fromkeys(origins))

    def redis_url(self) -> str | None:
        raw = self.env.get("RELAY_REDIS_URL", "").strip()
        sentinels = self.env.get("RELAY_REDIS_SENTINELS", "").strip()
        if sentinels:
            # RELAY_REDIS_SENTINELS=host:26379,host:26379 is the sentinel URL spelled out;
            # a password for the master comes from RELAY_REDIS_PASSWORD.
            if raw:
                self.problems.append("RELAY_REDIS_URL and RELAY_REDIS_SENTINELS: set one")
                return None
            service = self.env.get("RELAY_REDIS_SENTINEL_SERVICE", "").strip() or "mymaster"
            password = self.env.get("RELAY_REDIS_PASSWORD", "")
            auth = f":{quote(password, safe='')}@" if password else ""
            raw = f"redis+sentinel://{auth}{sentinels}/{quote(service, safe='')}/0"
        if raw.startswith("redis+sentinel://"):
            try:
                parse_sentinel_url(raw)
            except ValueError as error:
                self.problems.append(f"RELAY_REDIS_URL: {error}")
                return None
            return raw
        if raw and not raw.startswith(("redis://", "rediss://", "unix://")):
            self.problems.append(
                "RELAY_REDIS_URL: expected a redis://, rediss://, unix:// or redis+sentinel:// URL"
            )
            return None
        return raw or None


def _config_path(env: Mapping[str, str], problems: list[str]) -> Path | None:
    raw = env.get("RELAY_CONFIG", "").strip()
    if not raw:
        return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None
    path = Path(raw)
    if not path.is_file():
        problems.append(f"RELAY_CONFIG: {raw} is not a readable file")
        return None
    return path


def _load_sources(path: Path, env: Mapping[str, str], problems: list[str]) -> dict[str, Source]:
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        problems.append(f"{path}: {error}")
        return {}
    for name, value in document.items():
        if name not in CONFIG_TABLES:
            kind = "table" if isinstance(value, dict) else "key"
            shown = f"[{name}]" if kind == "table" else name
            hint = did_you_mean(name, CONFIG_TABLES)
            problems.append(
                f"{path}: unknown {kind} {shown}{hint}; relay reads "
                + ", ".join(f"[{t}.NAME]" for t in CONFIG_TABLES)
            )
    _check_subscriber_keys(path, document.get("subscribers", {}), problems)
    tables = document.get("sources", {})
    if not isinstance(tables, dict):
        problems.append(f"{path}: [sources] must be a table of tables")
        return {}
    sources = {}
    for name, table in tables.items():
        where = f"{path}: [sources.{name}]"
        if not isinstance(table, dict):
            problems.append(f"{where} must be a table")
            continue
        if not _SOURCE_NAME.fullmatch(name):
            problems.append(f"{where}: the name must be letters, digits, . _ - (max 64)")
        provider, account = table.get("provider"), table.get("account")
        if not isinstance(provider, str) or not provider:
            problems.append(f"{where}: provider is missing")
        if not isinstance(account, str) or not ACCOUNT_PATTERN.fullmatch(account):
            problems.append(f"{where}: account is missing or not letters, digits, . _ : @ -")
        secrets, options = {}, {}
        for key, value in table.items():
            if key in SOURCE_KEYS:
                continue
            problem = _source_key_problem(key, provider)
            if problem:
                problems.append(f"{where}: {problem}")
            elif key.endswith("_env"):
                if not isinstance(value, str) or not env.get(value):
                    problems.append(f"{where}: {key} names {value!r}, which is not set")
                else:
                    secrets[key.removesuffix("_env")] = env[value]
            else:
                options[key] = value
        sources[name] = Source(name, str(provider), str(account), secrets, options)
    return sources


def _source_key_problem(key: str, provider: object) -> str | None:
    """Why `key` has no place in a source of `provider`, or None when it has."""
    everything = {k for keys in PROVIDER_KEYS.values() for k in keys}
    mine = PROVIDER_KEYS.get(provider) if isinstance(provider, str) else None
    if mine is None:
        # An unknown provider is reported on its own; check against every provider's keys.
        mine = tuple(everything)
    if key in mine:
        return None
    if key in _INLINE_SECRETS:
        return f'{key} must not be inline; use {key}_env = "VARIABLE"'
    if key in everything:
        return f"{key} is not a {provider} setting (it takes {', '.join(mine)})"
    return f"unknown key {key}{did_you_mean(key, [*SOURCE_KEYS, *mine])}"


def _check_subscriber_keys(path: Path, tables: object, problems: list[str]) -> None:
    """Only the keys: what the values mean is the subscribers' own business."""
    if not isinstance(tables, dict):
        problems.append(f"{path}: [subscribers] must be a table of tables")
        return
    for name, table in tables.items():
        where = f"{path}: [subscribers.{name}]"
        if not isinstance(table, dict):
            problems.append(f"{where} must be a table")
            continue
        for key in table:
            if key not in SUBSCRIBER_KEYS:
                problems.append(f"{where}: unknown key {key}{did_you_mean(key, SUBSCRIBER_KEYS)}")
