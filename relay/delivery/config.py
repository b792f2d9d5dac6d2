"""`[subscribers.NAME]` in relay.toml, and the delivery knobs from the environment.

Every key a subscriber table may hold is listed in SUBSCRIBER_KEYS; anything else is an
error with a "did you mean".
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from relay.durations import parse_seconds
from relay.events import ACCOUNT_PATTERN
from relay.toml_tables import did_you_mean, named_tables

SUBSCRIBER_KEYS = ("url", "accounts", "secret_env", "types", "timeout", "max_in_flight")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TYPE_PATTERN = re.compile(r"^[A-Za-z0-9._*?-]{1,64}$")


@dataclass(frozen=True)
class Subscriber:
    """One application that receives every event of its accounts, in order, signed.

    `keys` are the decoded `whsec_` secrets, the first the current one: while a key
    rotates every request carries one signature per key (Standard Webhooks)."""

    name: str
    url: str
    accounts: tuple[str, ...]  # ("*",) means every account the store knows
    keys: tuple[bytes, ...] = field(repr=False)
    secret_values: tuple[str, ...] = field(repr=False, default=())
    types: tuple[str, ...] = ()  # fnmatch patterns; empty means every type
    timeout: float = 10.0
    max_in_flight: int = 16

    @property
    def every_account(self) -> bool:
        return self.accounts == ("*",)

    def wants(self, event_type: str) -> bool:
        return not self.types or any(fnmatch.fnmatchcase(event_type, p) for p in self.types)

    def covers(self, account: str) -> bool:
        return self.every_account or account in self.accounts


# A key left out of a subscriber's table takes the field's default: written once, above
# (a dataclass keeps a field's plain default as the class attribute).
_DEFAULT_TIMEOUT = Subscriber.timeout
_DEFAULT_MAX_IN_FLIGHT = Subscriber.max_in_flight


@dataclass(frozen=True)
class DeliverySettings:
    """How hard and how often delivery tries (seconds). Tests shorten them; the defaults
    are the contract: retries from 1 s doubling to 10 min, a 30 s lease."""

    retry_min: float = 1.0
    retry_max: float = 600.0
    lease: float = 30.0
    sweep: float = 30.0
    idle_release: float = 60.0
    page: int = 100

    def retry_delay(self, attempt: int) -> float:
        """1 s doubling to 10 min (RELAY_DELIVERY_RETRY_MIN/MAX), with jitter: a receiver
        that comes back is not hit by every account at the same instant."""
        delay = min(self.retry_max, self.retry_min * 2 ** min(attempt - 1, 40))
        return random.uniform(delay / 2, delay)


def load_subscribers(
    path: Path, document: Mapping[str, Any], env: Mapping[str, str], problems: list[str]
) -> dict[str, Subscriber]:
    """The `[subscribers.*]` tables of the parsed config file, one problem line per
    mistake: every unknown key first, then the values."""
    tables = list(named_tables(path, document, "subscribers", problems))
    for _, table, where in tables:
        for key in table:
            if key not in SUBSCRIBER_KEYS:
                problems.append(f"{where}: unknown key {key}{did_you_mean(key, SUBSCRIBER_KEYS)}")
    subscribers = {}
    for name, table, where in tables:
        before = len(problems)
        subscriber = _subscriber(name, table, env, where, problems)
        if len(problems) == before:
            subscribers[name] = subscriber
    return subscribers


def _subscriber(
    name: str, table: dict[str, Any], env: Mapping[str, str], where: str, problems: list[str]
) -> Subscriber:
    if not _NAME.match(name):
        problems.append(f"{where}: the name must be letters, digits, . _ - (max 64)")
    url = table.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(f"{where}: url must be an http:// or https:// URL, got {url!r}")
    accounts = table.get("accounts")
    if not isinstance(accounts, list) or not accounts:
        problems.append(f'{where}: accounts must be a list of account names, or ["*"]')
        accounts = []
    elif accounts != ["*"]:
        for account in accounts:
            if not isinstance(account, str) or not ACCOUNT_PATTERN.match(account):
                problems.append(f'{where}: {account!r} is not an account name (or use "*")')
    types = table.get("types", [])
    if not isinstance(types, list) or not all(
        isinstance(t, str) and _TYPE_PATTERN.match(t) for t in types
    ):
        problems.append(f'{where}: types must be a list of type patterns like "message.*"')
        types = []
    keys, values = _keys(table.get("secret_env"), env, where, problems)
    return Subscriber(
        name=name,
        url=url if isinstance(url, str) else "",
        accounts=tuple(str(a) for a in accounts),
        keys=keys,
        secret_values=values,
        types=tuple(types),
        timeout=_timeout(table.get("timeout", _DEFAULT_TIMEOUT), where, problems),
        max_in_flight=_max_in_flight(
            table.get("max_in_flight", _DEFAULT_MAX_IN_FLIGHT), where, problems
        ),
    )


def _keys(
    variable: object, env: Mapping[str, str], where: str, problems: list[str]
) -> tuple[tuple[bytes, ...], tuple[str, ...]]:
    """`secret_env` names a variable holding one or more whitespace-separated `whsec_`
    keys: the current one first, the others still signed with while receivers rotate."""
    if not isinstance(variable, str) or not variable:
        problems.append(f'{where}: secret_env is missing (secret_env = "VARIABLE")')
        return (), ()
    values = tuple(env.get(variable, "").split())
    if not values:
        problems.append(f"{where}: secret_env names {variable!r}, which is not set")
        return (), ()
    keys = []
    for value in values:
        try:
            if not value.startswith("whsec_"):
                raise ValueError
            keys.append(base64.b64decode(value.removeprefix("whsec_"), validate=True))
        except (ValueError, binascii.Error):
            problems.append(f"{where}: {variable} must hold whsec_<base64> keys")
            return (), ()
    return tuple(keys), values


def _timeout(raw: object, where: str, problems: list[str]) -> float:
    if isinstance(raw, int | float) and not isinstance(raw, bool) and raw > 0:
        return float(raw)
    try:
        seconds = parse_seconds(raw) if isinstance(raw, str) else 0.0
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        problems.append(f"{where}: timeout must be a duration like 10s or 500ms, got {raw!r}")
        return _DEFAULT_TIMEOUT
    return seconds


def _max_in_flight(raw: object, where: str, problems: list[str]) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or not 1 <= raw <= 1000:
        problems.append(f"{where}: max_in_flight must be an integer from 1 to 1000")
        return _DEFAULT_MAX_IN_FLIGHT
    return raw
