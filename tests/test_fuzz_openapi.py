"""schemathesis against /openapi.json: every route, with valid, invalid and no credentials,
answers below 500 and never with a traceback."""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.credentials import API_KEY, JWT_SECRET, token
from tests.servers import RelayProcess
from tests.test_logs import SOURCE_SECRET

SENT: list[tuple[str, str]] = []
CREDENTIALS = {
    "valid-jwt": lambda: {"Authorization": f"Bearer {token()}"},
    "valid-api-key": lambda: {"Authorization": f"Bearer {API_KEY}"},
    "invalid": lambda: {"Authorization": "Bearer not-a-credential"},
    "none": lambda: {},
}


@pytest.fixture(scope="module")
def fuzzed_relay(tmp_path_factory):
    config = tmp_path_factory.mktemp("fuzz") / "relay.toml"
    config.write_text(
        '[sources.events]\nprovider = "standard_webhooks"\naccount = "acme"\n'
        'secret_env = "FUZZ_SOURCE_SECRET"\n'
    )
    relay = RelayProcess(
        {
            "RELAY_JWT_SECRET": JWT_SECRET,
            "RELAY_API_KEYS": API_KEY,
            "RELAY_CONFIG": str(config),
            "FUZZ_SOURCE_SECRET": SOURCE_SECRET,
            "RELAY_LONGPOLL_MAX_WAIT": "0.1s",  # long-polls answer quickly under fuzzing
        }
    ).start()
    yield relay
    relay.stop()


@pytest.fixture(scope="module")
def api_schema(fuzzed_relay):
    return schemathesis.openapi.from_url(f"{fuzzed_relay.url}/openapi.json")


def operations(api_schema) -> list:
    return [result.ok() for result in api_schema.get_all_operations()]


def test_every_route_is_fuzzed(api_schema):
    fuzzed = {f"{op.method.upper()} {op.path}" for op in operations(api_schema)}
    for route in (
        "GET /api/chats/check-updates/",
        "GET /api/chats/realtime-updates/",
        "POST /api/publish",
        "POST /webhooks/{source}",
        "GET /api/admin/dead-letters",
    ):
        assert route in fuzzed


def test_no_server_errors_and_no_tracebacks(api_schema, fuzzed_relay):
    # schemathesis' strategies driven by hypothesis directly (its pytest plugin does not
    # load under this pytest), one property per operation, every credential kind per case.
    for operation in operations(api_schema):

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def property_of(case):
            for credentials in CREDENTIALS.values():
                check(case, {**(case.headers or {}), **credentials()}, fuzzed_relay.url)

        property_of()


def check(case, headers: dict, base_url: str) -> None:
    # SSE never ends: read the status line and headers, then hang up.
    request = case.as_transport_kwargs(base_url=base_url, headers=headers)
    SENT.append((request["method"], request["url"]))
    response = requests.request(**request, timeout=10, stream=True, allow_redirects=False)
    try:
        assert response.status_code < 500, (case.method, case.path, response.status_code)
        if response.headers.get("Content-Type", "").startswith("text/event-stream"):
            assert response.status_code == 200
            return
        body = response.text
        assert "Traceback" not in body
        if response.status_code >= 400:
            assert set(response.json()) >= {"error", "detail"}
    finally:
        response.close()


def test_the_relay_log_has_no_traceback(fuzzed_relay):
    # Runs after the fuzzing above (same module): nothing it sent made relay fail.
    requests.get(f"{fuzzed_relay.url}/healthz", timeout=5)
    assert "Traceback" not in fuzzed_relay.log()


def test_the_fuzzing_really_sent_requests_to_every_route():
    routes = {url.split("?")[0].split("/", 3)[-1] for _, url in SENT}
    assert len(SENT) >= 500, len(SENT)
    assert {"api/publish", "api/chats/check-updates/", "api/chats/realtime-updates/"} <= routes
