"""config/relay.toml documents an example of every source kind (and a subscriber):
uncommented, they load and pass the providers' own checks."""

from __future__ import annotations

import re
from pathlib import Path

from relay.ingest.providers import PROVIDERS, provider_problems
from relay.settings import Settings
from tests.provider_fixtures import STANDARD_SECRET

CONFIG = Path(__file__).parent.parent / "config" / "relay.toml"


def test_every_commented_source_example_is_valid(tmp_path):
    lines = CONFIG.read_text().splitlines()
    uncommented = [
        line[2:] if re.match(r"^# (\[sources\.|\[subscribers\.|[a-z_]+ = )", line) else line
        for line in lines
    ]
    path = tmp_path / "relay.toml"
    path.write_text("\n".join(uncommented))
    variables = re.findall(r'_env = "([A-Z0-9_]+)"', path.read_text())
    env = {name: "example-secret-0123456789abcdef0123" for name in variables}
    env["ACME_EVENTS_SECRET"] = STANDARD_SECRET
    env["CRM_WEBHOOK_SECRET"] = STANDARD_SECRET  # a whsec_ key too
    settings = Settings.from_env({"RELAY_CONFIG": str(path), **env})
    assert {s.provider for s in settings.sources.values()} == set(PROVIDERS)
    assert provider_problems(settings.sources) == []
    assert settings.subscribers["crm"].types == ("message.*", "chat.*")
