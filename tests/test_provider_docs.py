"""docs/providers.md's curl examples, run as written against a real `relay serve` with the
page's own [sources.*] tables: each provider's signed webhook is accepted and stored, and
Meta's handshake answers the challenge."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.credentials import JWT_SECRET, token
from tests.servers import RelayProcess, in_ci

ROOT = Path(__file__).parent.parent
PAGE = ROOT / "docs" / "providers.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)


def blocks(kind: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(PAGE.read_text()) if lang == kind]


def setup_block() -> str:
    (setup,) = [b for b in blocks("sh") if b.startswith("# providers: setup")]
    return setup


def exported(setup: str) -> dict[str, str]:
    exports = setup[setup.index("export ") : setup.index("\nRELAY_CONFIG")]
    return dict(re.findall(r"([A-Z_]+)=(\S+)", exports.replace("\\\n", " ")))


def examples() -> list[str]:
    return [b for b in blocks("sh") if "$RELAY/webhooks/" in b]


@pytest.fixture(scope="module")
def relay(tmp_path_factory):
    for tool in ("curl", "openssl"):
        if shutil.which(tool) is None:
            assert not in_ci(), f"{tool} is required in CI"
            pytest.skip(f"{tool} is not installed")
    config = tmp_path_factory.mktemp("providers-docs") / "relay.toml"
    # The page's own sed line writes the config, as a reader would run it.
    sed = next(line for line in setup_block().splitlines() if line.startswith("sed "))
    sed = sed.replace("/tmp/relay-providers.toml", str(config))
    subprocess.run(["bash", "-c", sed], cwd=ROOT, check=True, timeout=30)
    env = exported(setup_block())
    process = RelayProcess({**env, "RELAY_CONFIG": str(config), "RELAY_JWT_SECRET": JWT_SECRET})
    yield process.start(), env
    process.stop()


def test_every_provider_has_an_example():
    providers = {"whatsapp_cloud", "telegram", "twilio", "evolution", "zapi", "standard_webhooks"}
    sources = set(re.findall(r"\$RELAY/webhooks/([\w-]+)", "".join(examples())))
    configured = dict(
        re.findall(r'\[sources\.([\w-]+)\]\nprovider = "(\w+)"', "".join(blocks("toml")))
    )
    assert {configured[s] for s in sources} == providers


@pytest.mark.parametrize("example", examples(), ids=lambda b: re.search(r"webhooks/([\w-]+)", b)[1])
def test_the_example_runs_and_its_event_is_stored(relay, example):
    process, env = relay
    before = updates(process)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", example],
        env={**os.environ, **env, "RELAY": process.url},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Every "# <expected answer>" line of the example is what curl printed.
    expected = [
        line[2:] for line in example.splitlines() if line.startswith("# ") and "(" not in line
    ]
    for answer in expected:
        assert answer in result.stdout, (answer, result.stdout)
    source = re.search(r"\$RELAY/webhooks/([\w-]+)", example)[1]
    stored = [u for u in updates(process) if u not in before and u["source"] == source]
    assert len(stored) == 1, updates(process)
    assert stored[0]["type"] == "message.created" and stored[0]["account"] == "acme"


def updates(process: RelayProcess) -> list[dict]:
    request = urllib.request.Request(
        f"{process.url}/api/chats/check-updates/?last_check=0&limit=1000",
        headers={"Authorization": f"Bearer {token('acme', 'docs')}"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())["updates"]
