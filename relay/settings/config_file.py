"""The config file (relay.toml): its tables and the keys of a source, the `[sources.NAME]`
tables, and a "did you mean" for every table or key it does not know.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relay.delivery.config import Subscriber, load_subscribers
from relay.events import ACCOUNT_PATTERN
from relay.toml_tables import did_you_mean, named_tables, read_toml

_SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

# The config file's whole vocabulary, in one place: a table or key not listed here is a
# typo and stops relay with a "did you mean". A new provider, option or table goes here;
# a subscriber's keys are SUBSCRIBER_KEYS in relay.delivery.config.
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


@dataclass(frozen=True)
class Source:
    """One webhook endpoint, `POST /webhooks/{name}`. Secrets are resolved from the
    environment (`secret_env = "VAR"` becomes `secrets["secret"]`), never read inline."""

    name: str
    provider: str
    account: str
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)


def read_config_file(
    path: Path | None, env: Mapping[str, str], problems: list[str]
) -> tuple[dict[str, Source], dict[str, Subscriber]]:
    """The sources and subscribers of relay.toml (none without a file), read once."""
    document = read_toml(path, problems) if path else None
    if path is None or document is None:
        return {}, {}
    _unknown_tables(path, document, problems)
    return load_sources(path, document, env, problems), load_subscribers(
        path, document, env, problems
    )


def _unknown_tables(path: Path, document: Mapping[str, Any], problems: list[str]) -> None:
    for name, value in document.items():
        if name not in CONFIG_TABLES:
            kind = "table" if isinstance(value, dict) else "key"
            shown = f"[{name}]" if kind == "table" else name
            hint = did_you_mean(name, CONFIG_TABLES)
            problems.append(
                f"{path}: unknown {kind} {shown}{hint}; relay reads "
                + ", ".join(f"[{t}.NAME]" for t in CONFIG_TABLES)
            )


def load_sources(
    path: Path, document: Mapping[str, Any], env: Mapping[str, str], problems: list[str]
) -> dict[str, Source]:
    sources = {}
    for name, table, where in named_tables(path, document, "sources", problems):
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
