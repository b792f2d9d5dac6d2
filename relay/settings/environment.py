"""The RELAY_* environment: which variable sets which settings field, how its text is read,
and the checks between variables. A field's default is its dataclass default, written once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import MISSING, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote, urlsplit

from relay.durations import parse_microseconds
from relay.rotated_keys import COMMA, split_keys
from relay.store.connections import parse_sentinel_url

if TYPE_CHECKING:
    from relay.settings.model import Settings

DEFAULT_CONFIG = Path("config/relay.toml")
# RFC 7518 section 3.2: an HS256 key must be at least as long as the hash output.
HS256_MIN_BYTES = 32


class Reader:
    """Reads variables into values, one problem line per bad variable (and its default in
    place of the bad value, so that the checks between variables still run)."""

    def __init__(self, env: Mapping[str, str], problems: list[str]) -> None:
        self.env = env
        self.problems = problems

    def fields_of(self, settings_class: type, variables: tuple[Variable, ...]) -> dict[str, Any]:
        """The `settings_class` fields that `variables` set, as keyword arguments."""
        defaults = {f.name: f.default for f in fields(settings_class)}
        values = {}
        for variable in variables:
            default = defaults[variable.field]
            assert default is not MISSING, f"{variable.field} needs a plain default"
            values[variable.field] = variable.read(self, variable.name, default, **variable.options)
        return values

    def text(self, name: str, default: str | None) -> str | None:
        return self.env.get(name) or default

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

    def optional_integer(
        self, name: str, default: None, minimum: int = 0, maximum: int | None = None
    ) -> int | None:
        """An integer where 0 (or nothing) means None: the field's "not set"."""
        return self.integer(name, 0, minimum, maximum) or None

    def flag(self, name: str, default: bool) -> bool:
        raw = self.env.get(name, "").strip().lower()
        if not raw:
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        self.problems.append(f"{name}: expected 1 or 0 (true/false, yes/no, on/off), got {raw!r}")
        return default

    def microseconds(self, name: str, default: int) -> int:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            return parse_microseconds(raw)
        except ValueError:
            self.problems.append(
                f"{name}: expected a duration like 90s, 15m, 24h or 7d, got {raw!r}"
            )
            return default

    def seconds(self, name: str, default: float) -> float:
        # Through whole microseconds, as the store's durations: 1.0000004s is 1.0 s.
        return self.microseconds(name, int(default * 1_000_000)) / 1e6

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

    def choice(self, name: str, default: str, allowed: tuple[str, ...] = ()) -> str:
        raw = self.env.get(name, "").strip().lower()
        if not raw:
            return default
        if raw not in allowed:
            self.problems.append(f"{name}: expected one of {', '.join(allowed)}, got {raw!r}")
            return default
        return raw

    def log_format(self, name: str, default: str) -> str:
        # Someone watching a terminal reads the console format; a collector parses JSON.
        return self.choice(
            name, "console" if sys.stderr.isatty() else default, allowed=("json", "console")
        )

    def api_keys(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        return api_keys_from(self.env) or default

    def public_key(self, name: str, default: str | None) -> str | None:
        key = self.env.get(name) or default
        if key and not key.lstrip().startswith("-----BEGIN"):
            # Accept a path too: PEM in an environment variable is awkward in some shells.
            try:
                key = Path(key).read_text()
            except OSError:
                self.problems.append(f"{name}: neither a PEM key nor a readable file")
        return key

    def origins(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
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
        return tuple(dict.fromkeys(origins)) or default

    def redis_url(self, name: str, default: str | None) -> str | None:
        raw = self.env.get(name, "").strip()
        sentinels = self.env.get("RELAY_REDIS_SENTINELS", "").strip()
        if sentinels:
            # RELAY_REDIS_SENTINELS=host:26379,host:26379 is the sentinel URL spelled out;
            # a password for the master comes from RELAY_REDIS_PASSWORD.
            if raw:
                self.problems.append(f"{name} and RELAY_REDIS_SENTINELS: set one")
                return default
            service = self.env.get("RELAY_REDIS_SENTINEL_SERVICE", "").strip() or "mymaster"
            password = self.env.get("RELAY_REDIS_PASSWORD", "")
            auth = f":{quote(password, safe='')}@" if password else ""
            raw = f"redis+sentinel://{auth}{sentinels}/{quote(service, safe='')}/0"
        if raw.startswith("redis+sentinel://"):
            try:
                parse_sentinel_url(raw)
            except ValueError as error:
                self.problems.append(f"{name}: {error}")
                return default
            return raw
        if raw and not raw.startswith(("redis://", "rediss://", "unix://")):
            self.problems.append(
                f"{name}: expected a redis://, rediss://, unix:// or redis+sentinel:// URL"
            )
            return default
        return raw or default

    def config_path(self, name: str = "RELAY_CONFIG") -> Path | None:
        raw = self.env.get(name, "").strip()
        if not raw:
            return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None
        path = Path(raw)
        if not path.is_file():
            self.problems.append(f"{name}: {raw} is not a readable file")
            return None
        return path


class Variable(NamedTuple):
    """One environment variable, the field it sets and the Reader method that reads it
    (with `options`: bounds, allowed words)."""

    name: str
    field: str
    read: Callable[..., Any]
    options: Mapping[str, Any]


def _var(name: str, settings_field: str, read: Callable[..., Any], **options: Any) -> Variable:
    return Variable(name, settings_field, read, options)


R = Reader
# In the order of the fields, which is the order problems are reported in.
SETTINGS_VARIABLES = (
    _var("RELAY_HOST", "host", R.text),
    _var("RELAY_PORT", "port", R.integer, maximum=65535),
    _var("RELAY_METRICS_PORT", "metrics_port", R.optional_integer, maximum=65535),
    _var("RELAY_REDIS_URL", "redis_url", R.redis_url),
    _var("RELAY_REDIS_TIMEOUT", "redis_timeout", R.seconds),
    _var("RELAY_REDIS_MAX_CONNECTIONS", "redis_max_connections", R.integer, minimum=1),
    _var("RELAY_REDIS_MIN_REPLICAS", "redis_min_replicas", R.integer),
    _var("RELAY_REDIS_CLUSTER", "redis_cluster", R.choice, allowed=("auto", "yes", "no")),
    _var("RELAY_HINT_MAX_BYTES", "hint_max_bytes", R.integer),
    _var("RELAY_JWT_SECRET", "jwt_secret", R.text),
    _var("RELAY_JWT_PUBLIC_KEY", "jwt_public_key", R.public_key),
    _var("RELAY_JWT_AUDIENCE", "jwt_audience", R.text),
    _var("RELAY_JWT_ISSUER", "jwt_issuer", R.text),
    _var("RELAY_JWT_LEEWAY", "jwt_leeway", R.seconds),
    _var("RELAY_API_KEYS", "api_keys", R.api_keys),
    _var("RELAY_LOG_LEVEL", "log_level", R.choice, allowed=("debug", "info", "warning", "error")),
    _var("RELAY_LOG_FORMAT", "log_format", R.log_format),
    _var("RELAY_MAX_BODY_BYTES", "max_body_bytes", R.integer, minimum=1024),
    _var("RELAY_MAX_PUBLISH_BYTES", "max_publish_bytes", R.integer, minimum=1024),
    _var("RELAY_BODY_TIMEOUT", "body_timeout", R.seconds),
    _var("RELAY_MAX_BODY_BYTES_IN_FLIGHT", "max_body_bytes_in_flight", R.integer, minimum=1024),
    _var(
        "RELAY_MAX_BODY_BYTES_IN_FLIGHT_PER_ADDRESS",
        "max_body_bytes_in_flight_per_address",
        R.integer,
        minimum=1024,
    ),
    _var("RELAY_KEEPALIVE_TIMEOUT", "keepalive_timeout", R.seconds),
    _var("RELAY_POLL_RATE", "poll_rate", R.number),
    _var("RELAY_POLL_BURST", "poll_burst", R.number),
    _var("RELAY_WEBHOOK_RATE", "webhook_rate", R.number),
    _var("RELAY_WEBHOOK_BURST", "webhook_burst", R.number),
    _var("RELAY_WEBHOOK_REJECT_RATE", "webhook_reject_rate", R.number),
    _var("RELAY_WEBHOOK_REJECT_BURST", "webhook_reject_burst", R.number),
    _var("RELAY_TRUSTED_PROXY_HOPS", "trusted_proxy_hops", R.integer, maximum=16),
    _var("RELAY_POLL_LIMIT_DEFAULT", "poll_limit_default", R.integer, minimum=1),
    _var("RELAY_DEAD_LETTERS_MAX", "dead_letters_max", R.integer, minimum=1),
    _var("RELAY_DEAD_LETTERS_MAX_BYTES", "dead_letters_max_bytes", R.optional_integer),
    _var("RELAY_POLL_LIMIT_MAX", "poll_limit_max", R.integer, minimum=1),
    _var("RELAY_DEMO", "demo", R.flag),
    _var("RELAY_CORS_ORIGINS", "cors_origins", R.origins),
)
RETENTION_VARIABLES = (  # relay.store.base.Retention
    _var("RELAY_MAX_EVENTS", "max_events", R.integer),
    _var("RELAY_MAX_AGE", "max_age_us", R.microseconds),
    _var("RELAY_DEDUPE_WINDOW", "dedupe_window_us", R.microseconds),
    _var("RELAY_DEDUPE_MAX", "dedupe_max", R.integer, minimum=1),
)
LIVE_VARIABLES = (  # relay.settings.LiveSettings
    _var("RELAY_LONGPOLL_MAX_WAIT", "max_wait", R.seconds),
    _var("RELAY_SSE_HEARTBEAT", "heartbeat", R.seconds),
    _var("RELAY_SSE_RETRY_MS", "retry_ms", R.integer),
    _var("RELAY_SHUTDOWN_TIMEOUT", "shutdown_timeout", R.seconds),
    _var("RELAY_MAX_SSE_STREAMS", "max_streams", R.integer, minimum=1),
    _var("RELAY_MAX_SSE_STREAMS_PER_USER", "max_streams_per_user", R.integer, minimum=1),
    _var("RELAY_MAX_WAITERS", "max_waiters", R.integer, minimum=1),
    _var("RELAY_MAX_WAITERS_PER_USER", "max_waiters_per_user", R.integer, minimum=1),
    _var("RELAY_FASTPATH_TTL", "watermark_ttl", R.seconds),
    _var("RELAY_SAFETY_REREAD", "safety_reread", R.seconds),
    _var("RELAY_TAIL_MAX_BYTES", "tail_max_bytes", R.integer),
    _var("RELAY_TAIL_MAX_EVENTS", "tail_max_events", R.integer, minimum=1),
)
DELIVERY_VARIABLES = (  # relay.delivery.config.DeliverySettings
    _var("RELAY_DELIVERY_RETRY_MIN", "retry_min", R.seconds),
    _var("RELAY_DELIVERY_RETRY_MAX", "retry_max", R.seconds),
    _var("RELAY_DELIVERY_LEASE", "lease", R.seconds),
    _var("RELAY_DELIVERY_SWEEP", "sweep", R.seconds),
)
del R


def api_keys_from(env: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(split_keys(env.get("RELAY_API_KEYS", ""), COMMA))


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


def problems_between(settings: Settings) -> list[str]:
    """Variables that are each fine but do not go together."""
    problems = []
    if (
        settings.redis_cluster == "yes"
        and settings.redis_url
        and settings.redis_url.startswith("redis+sentinel://")
    ):
        problems.append("RELAY_REDIS_CLUSTER=yes: Sentinel watches a master, not a cluster")
    elif settings.redis_cluster == "yes" and settings.redis_url:
        database = urlsplit(settings.redis_url).path.strip("/")
        if database not in ("", "0"):
            problems.append(f"RELAY_REDIS_URL: a Redis Cluster has only database 0, not {database}")
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
    return problems
