"""An operator's first hour: every mistake gets one clear line, through real `relay`
processes (issue 17). Ports in use, typos in relay.toml, short JWT secrets, a Redis that is
down at start, --version and --help, the shutdown line, JWT errors in words."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import jwt
import pytest

from relay.auth import TokenVerifier, mint_token
from relay.errors import Unauthorized
from relay.settings import PROVIDER_KEYS, Settings
from relay.store_health import without_password
from tests.credentials import API_KEY, JWT_SECRET
from tests.servers import RedisServer, RelayProcess, free_port, wait_until

ROOT = Path(__file__).parent.parent


def relay_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30):
    return subprocess.run(
        [sys.executable, "-m", "relay.cli", *args],
        env={**os.environ, "RELAY_CONFIG": "", "RELAY_LOG_FORMAT": "json", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def log_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("{")]


# -- 1. listening ----------------------------------------------------------------------


def test_a_port_in_use_is_one_line_and_exit_1_and_never_said_to_listen():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = relay_cli("serve", "--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        f"relay: cannot listen on 127.0.0.1:{port}: address already in use"
    ]
    assert "Traceback" not in result.stderr
    assert "relay.listening" not in result.stderr


def test_an_address_not_on_this_machine_is_one_line():
    # TEST-NET-1 (RFC 5737): never assigned to a local interface.
    result = relay_cli("serve", "--host", "192.0.2.1", "--port", "0")
    assert result.returncode == 1
    assert error_lines(result.stderr) == [
        "relay: cannot listen on 192.0.2.1:0: the address is not on this machine"
    ]


def _serve(env: dict[str, str], *args: str) -> tuple[subprocess.Popen, Path]:
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"relay-i17-{os.getpid()}-{time.monotonic_ns()}"
    process = subprocess.Popen(
        [sys.executable, "-m", "relay.cli", "serve", "--host", "127.0.0.1", *args],
        env={**os.environ, "RELAY_CONFIG": "", "RELAY_LOG_FORMAT": "json", **env},
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    return process, log


def _event(log: Path, name: str) -> dict | None:
    for line in log_lines(log.read_text(errors="replace")):
        if line.get("event") == name:
            return line
    return None


def test_port_0_logs_the_real_port_once_bound_and_sigterm_logs_what_was_drained():
    process, log = _serve({"RELAY_JWT_SECRET": JWT_SECRET}, "--port", "0")
    try:
        wait_until(lambda: _event(log, "relay.listening"), timeout=20, what="relay.listening")
        port = _event(log, "relay.listening")["port"]
        assert port != 0
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            assert answer.status == 200
        # One SSE stream open when the signal arrives: the shutdown line counts it.
        stream = socket.create_connection(("127.0.0.1", port))
        token = mint_token(JWT_SECRET, "acme", "u1")
        stream.sendall(
            f"GET /api/chats/realtime-updates/?token={token} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        assert b"200" in stream.recv(4096)
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        stream.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stopping, stopped = _event(log, "relay.stopping"), _event(log, "relay.stopped")
    assert stopping["signal"] == "SIGTERM" and stopping["sse_streams"] == 1
    assert stopped["drained"]["sse_streams"] == 1 and stopped["seconds"] >= 0
    assert "Traceback" not in log.read_text()


def test_sigint_logs_the_shutdown_too():
    process, log = _serve({"RELAY_JWT_SECRET": JWT_SECRET}, "--port", "0")
    try:
        wait_until(lambda: _event(log, "relay.listening"), timeout=20, what="relay.listening")
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert _event(log, "relay.stopped")["signal"] == "SIGINT"
    assert "KeyboardInterrupt" not in log.read_text()


# -- 2. token and publish need only what they use ----------------------------------------


@pytest.fixture
def config_with_unset_secrets(tmp_path) -> str:
    path = tmp_path / "relay.toml"
    path.write_text(
        '[sources.wa]\nprovider = "whatsapp_cloud"\naccount = "acme"\n'
        'secret_env = "I17_UNSET_APP_SECRET"\nverify_token_env = "I17_UNSET_VERIFY"\n'
    )
    return str(path)


def test_token_and_publish_run_though_a_source_secret_is_unset(config_with_unset_secrets):
    env = {"RELAY_CONFIG": config_with_unset_secrets, "RELAY_JWT_SECRET": JWT_SECRET}
    minted = relay_cli("token", "--account", "acme", "--user", "u1", env=env)
    assert minted.returncode == 0, minted.stderr
    assert jwt.decode(minted.stdout.strip(), JWT_SECRET, algorithms=["HS256"])["sub"] == "u1"
    relay = RelayProcess(
        {"RELAY_JWT_SECRET": JWT_SECRET, "RELAY_API_KEYS": API_KEY, "RELAY_CONFIG": ""}
    ).start()
    try:
        published = relay_cli(
            "publish",
            "--url",
            relay.url,
            "--account",
            "acme",
            "--type",
            "message.created",
            env={**env, "RELAY_API_KEYS": API_KEY},
        )
        assert published.returncode == 0, published.stderr
        assert json.loads(published.stdout)["events"][0]["duplicate"] is False
    finally:
        relay.stop()
    # serve and check-config do need them, and say so.
    checked = relay_cli("check-config", env=env)
    assert checked.returncode == 1 and "I17_UNSET_APP_SECRET" in checked.stderr


# -- 3. the store: down at start, back later, check-config --connect ---------------------


def test_a_redis_down_at_start_is_one_warning_and_one_line_when_back():
    port = free_port()
    url = f"redis://:i17-store-password@127.0.0.1:{port}/0"
    process, log = _serve({"RELAY_JWT_SECRET": JWT_SECRET, "RELAY_REDIS_URL": url}, "--port", "0")
    redis_server = RedisServer(port=port)
    try:
        wait_until(lambda: _event(log, "store.unavailable"), timeout=20, what="the warning")
        warning = _event(log, "store.unavailable")
        assert warning["level"] == "warning"
        assert warning["store"] == f"redis://127.0.0.1:{port}/0"
        assert "503" in warning["effect"] and warning["reason"]
        redis_server.start()
        # The server now wants the password the URL carries.
        redis_server.client().config_set("requirepass", "i17-store-password")
        wait_until(lambda: _event(log, "store.available"), timeout=20, what="the recovery")
        text = log.read_text()
        assert text.count('"store.unavailable"') == 1
        assert "i17-store-password" not in text
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)
        redis_server.stop()


def test_an_outage_while_running_is_one_warning_and_one_line_when_back():
    redis_server = RedisServer().start()
    env = {"RELAY_JWT_SECRET": JWT_SECRET, "RELAY_API_KEYS": API_KEY}
    process, log = _serve({**env, "RELAY_REDIS_URL": redis_server.url}, "--port", "0")
    try:
        wait_until(lambda: _event(log, "relay.listening"), timeout=20, what="relay.listening")
        port = _event(log, "relay.listening")["port"]
        assert _event(log, "store.unavailable") is None
        redis_server.stop()
        # A healthy store is never pinged in the background: a failed call prompts the check.
        publish = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/publish",
            data=json.dumps({"account": "acme", "type": "message.created", "data": {}}).encode(),
            headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(publish, timeout=10)
        assert refused.value.code == 503
        wait_until(lambda: _event(log, "store.unavailable"), timeout=20, what="the warning")
        redis_server.start()
        wait_until(lambda: _event(log, "store.available"), timeout=20, what="the recovery")
        assert log.read_text().count('"store.unavailable"') == 1
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)
        redis_server.stop()


def test_check_config_connect_tries_the_store():
    port = free_port()
    down = relay_cli(
        "check-config",
        "--connect",
        env={"RELAY_REDIS_URL": f"redis://:i17-pw-xyz@127.0.0.1:{port}/0"},
    )
    assert down.returncode == 1
    assert down.stderr.startswith(f"relay: store error: cannot reach redis://127.0.0.1:{port}/0")
    assert len(down.stderr.strip().splitlines()) == 1 and "i17-pw-xyz" not in down.stderr
    redis_server = RedisServer().start()
    try:
        up = relay_cli("check-config", "--connect", env={"RELAY_REDIS_URL": redis_server.url})
    finally:
        redis_server.stop()
    assert up.returncode == 0 and "store: reachable" in up.stdout


def test_without_password():
    assert without_password("redis://:pw@h:6379/0") == "redis://h:6379/0"
    assert without_password("rediss://user:pw@h/1") == "rediss://user@h/1"
    assert without_password("redis://h:6379/0") == "redis://h:6379/0"


# -- 4 and 5. relay.toml typos, unknown providers ----------------------------------------


def check(tmp_path, text: str, **env: str) -> subprocess.CompletedProcess:
    path = tmp_path / "relay.toml"
    path.write_text(text)
    return relay_cli("check-config", env={"RELAY_CONFIG": str(path), **env})


def test_a_singular_table_name_is_an_error_with_did_you_mean(tmp_path):
    result = check(tmp_path, '[source.wa]\nprovider = "telegram"\naccount = "acme"\n')
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"relay: config error: {tmp_path / 'relay.toml'}: unknown table [source] "
        "(did you mean sources?); relay reads [sources.NAME], [subscribers.NAME]"
    )


def test_unknown_and_misspelled_keys_are_errors_naming_file_and_table(tmp_path):
    result = check(
        tmp_path,
        '[sources.wa]\nprovider = "whatsapp_cloud"\naccount = "acme"\n'
        'secret_env = "I17_SECRET"\nverify_tokn_env = "I17_VERIFY"\ncolour = "red"\n',
        I17_SECRET="s" * 40,
        I17_VERIFY="v",
    )
    assert result.returncode == 1
    where = f"relay: config error: {tmp_path / 'relay.toml'}: [sources.wa]"
    lines = result.stderr.strip().splitlines()
    assert f"{where}: unknown key verify_tokn_env (did you mean verify_token_env?)" in lines
    assert f"{where}: unknown key colour" in lines


def test_a_key_of_another_provider_is_named_as_such(tmp_path):
    result = check(
        tmp_path,
        '[sources.tg]\nprovider = "telegram"\naccount = "acme"\nsecret_env = "I17_S"\n'
        'public_url = "https://relay.example.com/webhooks/tg"\n',
        I17_S="abc_DEF-123",
    )
    assert result.returncode == 1
    assert "[sources.tg]: public_url is not a telegram setting (it takes secret_env)" in (
        result.stderr
    )


def test_a_top_level_key_is_an_error(tmp_path):
    result = check(tmp_path, 'colour = "red"\n')
    assert result.returncode == 1 and "unknown key colour" in result.stderr


def test_subscriber_tables_are_known_and_their_keys_checked(tmp_path):
    good = (
        '[subscribers.crm]\nurl = "https://crm.internal/hooks/relay"\naccounts = ["acme"]\n'
        'secret_env = "CRM_SECRET"\ntypes = ["message.*"]\ntimeout = "10s"\n'
    )
    key = "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
    assert check(tmp_path, good, CRM_SECRET=key).returncode == 0
    bad = check(tmp_path, good + "retries = 3\n", CRM_SECRET=key)
    assert bad.returncode == 1 and "[subscribers.crm]: unknown key retries" in bad.stderr


def test_an_unknown_provider_names_the_file_and_a_close_one(tmp_path):
    result = check(tmp_path, '[sources.a]\nprovider = "telegramm"\naccount = "acme"\n')
    assert result.returncode == 1
    assert (
        f"{tmp_path / 'relay.toml'}: [sources.a]: unknown provider 'telegramm' "
        "(did you mean telegram?)" in result.stderr
    )


def test_every_provider_has_its_keys_listed():
    from relay.ingest.providers import PROVIDERS

    assert set(PROVIDER_KEYS) == set(PROVIDERS)


# -- 5. JWT secrets and browser tokens ----------------------------------------------------


@pytest.mark.parametrize(
    "command", [("check-config",), ("serve",), ("token", "--account", "a", "--user", "u")]
)
def test_a_short_hs256_secret_is_refused_with_relays_own_line(command):
    result = relay_cli(*command, env={"RELAY_JWT_SECRET": "short-secret"})
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "relay: config error: RELAY_JWT_SECRET: the secret is 12 bytes; HS256 needs at least "
        "32 (RFC 7518 3.2): make one with `openssl rand -hex 32`"
    )
    assert "InsecureKeyLengthWarning" not in result.stderr


def test_each_rotating_secret_is_checked():
    result = relay_cli("check-config", env={"RELAY_JWT_SECRET": f"{JWT_SECRET} old"})
    assert "secret 2 of 2 is 3 bytes" in result.stderr


def test_every_documented_jwt_secret_is_long_enough():
    """README, docs, compose and k8s examples all run under the 32-byte rule."""
    found = []
    documented = re.compile(r"RELAY_JWT_SECRET[=:]\s*\"?(?:\$\{RELAY_JWT_SECRET:-)?([^\s\"}]+)")
    paths = [ROOT / "README.md", ROOT / "docker-compose.yml", *ROOT.glob("docs/*.md")]
    for path in [*paths, *ROOT.glob("k8s/**/*.yaml")]:
        for value in documented.findall(path.read_text()):
            if value.startswith(("$", "...", '"')):
                continue
            found.append(value)
            assert len(value.encode()) >= 32, (path, value)
    assert found


def test_serve_without_browser_tokens_warns():
    process, log = _serve({"RELAY_JWT_SECRET": "", "RELAY_JWT_PUBLIC_KEY": ""}, "--port", "0")
    try:
        wait_until(lambda: _event(log, "relay.listening"), timeout=20, what="relay.listening")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)
    warning = _event(log, "relay.no_browser_tokens")
    assert warning["level"] == "warning" and "RELAY_JWT_SECRET" in warning["note"]


# -- 6. --version and --help ---------------------------------------------------------------


def test_version():
    from relay import __version__

    result = relay_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"relay {__version__}"


def test_serve_help_shows_every_options_default_and_variable():
    result = relay_cli("serve", "--help")
    text = " ".join(result.stdout.split())
    for option, default, variable in [
        ("--host", "0.0.0.0", "RELAY_HOST"),
        ("--port", "8080", "RELAY_PORT"),
        ("--workers", "1", "RELAY_WORKERS"),
    ]:
        described = text.split(f"{option} {option[2:].upper()} ", 1)[1]
        assert f"(default {default}; env {variable})" in described.split("--", 1)[0]


def test_relay_workers_env_is_read():
    result = relay_cli("serve", env={"RELAY_WORKERS": "many"})
    assert result.returncode == 1 and "RELAY_WORKERS" in result.stderr


# -- 8. JWT errors in words -----------------------------------------------------------------


def _verifier(**overrides) -> TokenVerifier:
    return TokenVerifier(Settings(jwt_secret=JWT_SECRET, jwt_leeway=0, **overrides))


def _detail(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthorized) as caught:
        verifier.verify(token)
    return caught.value.detail


def test_jwt_errors_say_what_is_wrong():
    good = {"sub": "u", "account": "acme", "exp": int(time.time()) + 60}
    check_ = _verifier()
    assert "malformed" in _detail(check_, "not-a-token")
    assert "signature does not match" in _detail(
        check_, jwt.encode(good, "another-secret-0123456789abcdef0123", algorithm="HS256")
    )
    assert "expired" in _detail(check_, mint_token(JWT_SECRET, "acme", "u", ttl_seconds=-60))
    assert "no exp claim" in _detail(
        check_, jwt.encode({"sub": "u", "account": "acme"}, JWT_SECRET, algorithm="HS256")
    )
    assert "not signed with HS256" in _detail(check_, jwt.encode(good, None, algorithm="none"))
    audience = _verifier(jwt_audience="inbox")
    assert "audience (aud) is not 'inbox'" in _detail(
        audience, jwt.encode({**good, "aud": "crm"}, JWT_SECRET, algorithm="HS256")
    )
    issuer = _verifier(jwt_issuer="main-app")
    assert "issuer (iss) is not 'main-app'" in _detail(
        issuer, jwt.encode({**good, "iss": "other"}, JWT_SECRET, algorithm="HS256")
    )
    assert "not valid yet" in _detail(
        check_, jwt.encode({**good, "nbf": int(time.time()) + 600}, JWT_SECRET, algorithm="HS256")
    )


def test_a_malformed_token_is_told_in_words_over_http():
    relay = RelayProcess({"RELAY_JWT_SECRET": JWT_SECRET, "RELAY_CONFIG": ""}).start()
    try:
        request = urllib.request.Request(
            f"{relay.url}/api/chats/check-updates/", headers={"Authorization": "Bearer abc"}
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        body = json.loads(caught.value.read())
    finally:
        relay.stop()
    assert caught.value.code == 401
    assert body["detail"].startswith("the token is invalid: it is malformed")
