"""One duration grammar (relay/durations.py) for the environment, a subscriber's timeout in
relay.toml and `relay token --ttl`: every form README and docs/operations.md show works in
all three, and each place still refuses what it refused."""

from __future__ import annotations

import base64
import json

import pytest

from relay.durations import parse_microseconds, parse_seconds
from relay.settings import ConfigError, Settings
from tests.credentials import JWT_SECRET
from tests.test_cli import relay_cli

# Every form the documentation shows (settings tables, relay.toml, --ttl), and its value.
DOCUMENTED = {
    "500ms": 0.5,
    "2500ms": 2.5,
    "1s": 1,
    "2s": 2,
    "10s": 10,
    "90s": 90,
    "10m": 600,
    "15m": 900,
    "1h": 3600,
    "24h": 86400,
    "7d": 7 * 86400,
}


@pytest.mark.parametrize("text", sorted(DOCUMENTED))
def test_every_documented_form_parses(text):
    assert parse_seconds(text) == DOCUMENTED[text]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30), ("1.5h", 5400), (" 2 m ", 120), ("0", 0), ("0.25s", 0.25), ("7 d", 604800)],
)
def test_bare_numbers_are_seconds_and_decimals_and_spaces_are_accepted(text, seconds):
    assert parse_seconds(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "s", "-1s", "+1s", "1e3", "1.s", ".5s", "1h30m", "10 sec", "10S", "1w", "ten"]
)
def test_anything_else_is_refused(text):
    with pytest.raises(ValueError):
        parse_seconds(text)


def test_microseconds_are_whole():
    assert parse_microseconds("24h") == 86_400_000_000
    assert parse_microseconds("1.0000004s") == 1_000_000


def test_the_environment_reads_every_form():
    settings = Settings.from_env(
        {
            "RELAY_CONFIG": "",
            "RELAY_MAX_AGE": "1.5h",
            "RELAY_REDIS_TIMEOUT": "500ms",
            "RELAY_DELIVERY_RETRY_MAX": "2 m",
            "RELAY_LONGPOLL_MAX_WAIT": "45",
        }
    )
    assert settings.retention.max_age_us == 5400 * 1_000_000
    assert settings.redis_timeout == 0.5
    assert settings.delivery.retry_max == 120
    assert settings.live.max_wait == 45
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"RELAY_CONFIG": "", "RELAY_MAX_AGE": "1h30m"})
    assert raised.value.problems == [
        "RELAY_MAX_AGE: expected a duration like 90s, 15m, 24h or 7d, got '1h30m'"
    ]


def _subscriber_timeout(tmp_path, timeout: str) -> float:
    key = "whsec_" + base64.b64encode(b"k" * 32).decode()
    config = tmp_path / "relay.toml"
    config.write_text(
        '[subscribers.crm]\nurl = "https://crm.internal/in"\naccounts = ["acme"]\n'
        f'secret_env = "CRM_KEY"\ntimeout = "{timeout}"\n'
    )
    settings = Settings.from_env({"RELAY_CONFIG": str(config), "CRM_KEY": key})
    return settings.subscribers["crm"].timeout


def test_a_subscriber_timeout_reads_every_form_but_zero(tmp_path):
    assert _subscriber_timeout(tmp_path, "2500ms") == 2.5
    assert _subscriber_timeout(tmp_path, "1.5m") == 90
    assert _subscriber_timeout(tmp_path, "1h") == 3600
    for refused in ("0s", "soon"):
        with pytest.raises(ConfigError) as raised:
            _subscriber_timeout(tmp_path, refused)
        assert "timeout must be a duration like 10s or 500ms" in raised.value.problems[0]


def _token_lifetime(ttl: str) -> int:
    result = relay_cli(
        "token", "--account", "a", "--user", "u", "--ttl", ttl, env={"RELAY_JWT_SECRET": JWT_SECRET}
    )
    assert result.returncode == 0, result.stderr
    payload = result.stdout.strip().split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims["exp"] - claims["iat"]


def test_token_ttl_reads_every_form_in_whole_seconds():
    assert _token_lifetime("15m") == 900
    assert _token_lifetime("1.5h") == 5400
    assert _token_lifetime("90") == 90
    refused = relay_cli(
        "token",
        "--account",
        "a",
        "--user",
        "u",
        "--ttl",
        "1h30m",
        env={"RELAY_JWT_SECRET": JWT_SECRET},
    )
    assert refused.returncode == 1
    assert "--ttl: expected e.g. 90s, 15m, 1h or 7d, got '1h30m'" in refused.stderr
