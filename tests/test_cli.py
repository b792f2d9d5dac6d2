"""The `relay` command: check-config errors, token, publish, and `relay serve` answering the
seed's own curl verbatim."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from urllib.parse import quote

import pytest

from tests.credentials import API_KEY, JWT_SECRET
from tests.servers import RelayProcess, in_ci


def relay_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "relay.cli", *args],
        env={**os.environ, "RELAY_CONFIG": "", **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_check_config_passes_on_defaults():
    result = relay_cli("check-config")
    assert result.returncode == 0 and "engine: memory" in result.stdout


def test_config_errors_print_one_clear_line_each(tmp_path):
    config = tmp_path / "relay.toml"
    config.write_text(
        '[sources.a]\nprovider = "carrier_pigeon"\naccount = "acme"\n\n'
        '[sources.b]\nprovider = "standard_webhooks"\naccount = "acme"\n'
        'secret_env = "UNSET_VAR_X"\n\n'
        '[sources.c]\nprovider = "standard_webhooks"\naccount = "acme"\nsecret = "inline!"\n'
    )
    result = relay_cli("check-config", env={"RELAY_CONFIG": str(config), "RELAY_PORT": "http"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert any("RELAY_PORT" in line for line in lines)
    assert any("[sources.b]" in line and "UNSET_VAR_X" in line for line in lines)
    assert any("[sources.c]" in line and "secret" in line for line in lines)
    assert "inline!" not in result.stderr


def test_unknown_provider_is_named(tmp_path):
    config = tmp_path / "relay.toml"
    config.write_text('[sources.a]\nprovider = "carrier_pigeon"\naccount = "acme"\n')
    result = relay_cli("serve", env={"RELAY_CONFIG": str(config)})
    assert result.returncode == 1
    assert "[sources.a]: unknown provider 'carrier_pigeon'" in result.stderr


def test_malformed_file_is_one_line(tmp_path):
    config = tmp_path / "relay.toml"
    config.write_text("[sources.a\n")
    result = relay_cli("check-config", env={"RELAY_CONFIG": str(config)})
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def served():
    relay = RelayProcess(
        {"RELAY_JWT_SECRET": JWT_SECRET, "RELAY_API_KEYS": API_KEY, "RELAY_CONFIG": ""}
    ).start()
    yield relay
    relay.stop()


def test_serve_says_memory_engine_in_its_first_log_line(served):
    first = json.loads(served.log().splitlines()[0])
    assert first["engine"] == "memory" and "not durable" in first["note"]


def test_the_seeds_own_curl_works_verbatim(served):
    curl = shutil.which("curl")
    if curl is None:
        assert not in_ci(), "curl is required in CI"
        pytest.skip("curl is not installed")
    token = relay_cli(
        "token", "--account", "acme", "--user", "u1", env={"RELAY_JWT_SECRET": JWT_SECRET}
    ).stdout.strip()
    published = relay_cli(
        "publish",
        "--url",
        served.url,
        "--account",
        "acme",
        "--type",
        "message.created",
        "--data",
        '{"text": "oi"}',
        env={"RELAY_API_KEYS": API_KEY},
    )
    assert published.returncode == 0, published.stderr
    result = subprocess.run(
        [
            "bash",
            "-c",
            f'curl -s -H "Authorization: Bearer $TOKEN" '
            f'"http://localhost:{served.port}/api/chats/check-updates/?last_check=2025-07-18T23:00:00Z"',
        ],
        env={**os.environ, "TOKEN": token},
        capture_output=True,
        text=True,
        timeout=30,
    )
    answer = json.loads(result.stdout)
    assert set(answer) >= {"timestamp", "updates", "has_updates"}
    assert answer["has_updates"] and answer["updates"][0]["data"] == {"text": "oi"}
    # The cursor predates what this store knows of the account: the client is told so.
    assert answer["reset"] is True
    # ... and carrying on from the answered timestamp, as the old client does, is no reset.
    again = urllib.request.Request(
        f"{served.url}/api/chats/check-updates/?last_check={quote(answer['timestamp'])}",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(again, timeout=10) as response:
        assert json.loads(response.read())["reset"] is False


def test_token_needs_a_secret():
    result = relay_cli("token", "--account", "a", "--user", "u", env={"RELAY_JWT_SECRET": ""})
    assert result.returncode == 1 and "RELAY_JWT_SECRET" in result.stderr
