"""The demo inbox's routes: off by default, only its own files when on, and the client it
serves is the package's client byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.demo import ASSETS, asset
from relay.settings import ConfigError, Settings
from tests.helpers import settings_for

CLIENT = Path(__file__).parent.parent / "clients" / "js" / "relay-client.js"


async def test_demo_is_a_404_json_unless_relay_demo_is_set(client_for):
    client = await client_for(settings_for("memory"))
    for path in ("/demo", "/demo/relay-client.js"):
        response = await client.get(path)
        assert response.status == 404
        assert (await response.json())["error"] == "not_found"


async def test_demo_serves_the_page_and_its_files(client_for):
    client = await client_for(settings_for("memory", demo=True))
    page = await client.get("/demo")
    assert page.status == 200 and page.content_type == "text/html"
    assert page.headers["Referrer-Policy"] == "no-referrer"  # the URL carries ?token=
    assert '<script type="module" src="/demo/demo.js">' in await page.text()
    for name, content_type in ASSETS.items():
        response = await client.get(f"/demo/{name}" if name != "index.html" else "/demo/")
        assert response.status == 200 and response.content_type == content_type
        assert await response.read() == asset(name)


@pytest.mark.parametrize(
    "path", ["/demo/index.htm", "/demo/..%2f__init__.py", "/demo/__init__.py", "/demo/static"]
)
async def test_demo_serves_nothing_else(client_for, path):
    client = await client_for(settings_for("memory", demo=True))
    response = await client.get(path)
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"


def test_served_client_is_identical_to_the_package_client():
    # clients/js's build step (npm run build) copies it; run it after editing the client.
    assert asset("relay-client.js") == CLIENT.read_bytes()


def test_relay_demo_setting():
    assert Settings.from_env({}).demo is False
    assert Settings.from_env({"RELAY_DEMO": "1"}).demo is True
    assert Settings.from_env({"RELAY_DEMO": "off"}).demo is False
    with pytest.raises(ConfigError, match="RELAY_DEMO: expected 1 or 0"):
        Settings.from_env({"RELAY_DEMO": "maybe"})
