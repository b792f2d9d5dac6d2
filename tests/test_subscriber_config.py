"""`[subscribers.NAME]` in relay.toml: what check-config shows, and one clear line per
mistake at start (bad URL, unset or malformed secret, unknown key)."""

from __future__ import annotations

import base64

from relay.settings import ConfigError, Settings
from tests.test_cli import relay_cli

KEY = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
GOOD = """
[subscribers.crm]
url = "https://crm.internal/hooks/relay"
accounts = ["acme", "globex"]
secret_env = "CRM_WEBHOOK_SECRET"
types = ["message.*", "chat.*"]
timeout = "2500ms"

[subscribers.audit]
url = "http://audit:9000/in"
accounts = ["*"]
secret_env = "AUDIT_SECRET"
"""


def test_check_config_shows_each_subscriber(tmp_path):
    config = tmp_path / "relay.toml"
    config.write_text(GOOD)
    env = {"RELAY_CONFIG": str(config), "CRM_WEBHOOK_SECRET": KEY, "AUDIT_SECRET": KEY}
    result = relay_cli("check-config", env=env)
    assert result.returncode == 0, result.stderr
    assert (
        "subscriber crm: url=https://crm.internal/hooks/relay accounts=acme,globex "
        "types=message.*,chat.* timeout=2.5s keys=1 max_in_flight=16"
    ) in result.stdout
    assert "subscriber audit: url=http://audit:9000/in accounts=* types=*" in result.stdout
    assert KEY not in result.stdout + result.stderr


def test_rotating_keys_are_all_kept_current_first(tmp_path):
    config = tmp_path / "relay.toml"
    config.write_text(GOOD)
    old = "whsec_" + base64.b64encode(b"old-key-old-key-old-key!").decode()
    settings = Settings.from_env(
        {"RELAY_CONFIG": str(config), "CRM_WEBHOOK_SECRET": f"{KEY} {old}", "AUDIT_SECRET": KEY}
    )
    crm = settings.subscribers["crm"]
    assert crm.keys == (b"0123456789abcdef0123456789abcdef", b"old-key-old-key-old-key!")
    assert crm.wants("message.created") and crm.wants("chat.updated")
    assert not crm.wants("connection.updated")
    assert settings.subscribers["audit"].every_account
    assert KEY in settings.secret_values()


def test_each_mistake_is_one_line_naming_the_table_and_key(tmp_path):
    config = tmp_path / "relay.toml"
    config.write_text(
        '[subscribers.a]\nurl = "ftp://x/y"\naccounts = ["acme"]\nsecret_env = "A_KEY"\n\n'
        '[subscribers.b]\nurl = "https://b/in"\naccounts = ["acme"]\nsecret_env = "UNSET_X"\n\n'
        '[subscribers.c]\nurl = "https://c/in"\naccounts = ["acme"]\nsecret_env = "A_KEY"\n'
        'timout = "5s"\n\n'
        '[subscribers.d]\nurl = "https://d/in"\naccounts = ["acme"]\nsecret_env = "PLAIN"\n'
    )
    try:
        Settings.from_env({"RELAY_CONFIG": str(config), "A_KEY": KEY, "PLAIN": "hunter2"})
    except ConfigError as error:
        problems = error.problems
    else:
        raise AssertionError("the configuration must be refused")
    where = f"{config}: [subscribers."
    assert problems == [
        f"{where}c]: unknown key timout (did you mean timeout?)",
        f"{where}a]: url must be an http:// or https:// URL, got 'ftp://x/y'",
        f"{where}b]: secret_env names 'UNSET_X', which is not set",
        f"{where}d]: PLAIN must hold whsec_<base64> keys",
    ]
    result = relay_cli("serve", env={"RELAY_CONFIG": str(config), "A_KEY": KEY})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "relay: config error: " in result.stderr and "unknown key timout" in result.stderr


def test_a_subscribers_table_of_the_wrong_shape_is_one_line(tmp_path):
    config = tmp_path / "relay.toml"
    for text, line in (
        ("subscribers = 3\n", "[subscribers] must be a table of tables"),
        ("[subscribers]\nx = 3\n", "[subscribers.x] must be a table"),
    ):
        config.write_text(text)
        try:
            Settings.from_env({"RELAY_CONFIG": str(config)})
        except ConfigError as error:
            assert error.problems == [f"{config}: {line}"]
        else:
            raise AssertionError("the configuration must be refused")
