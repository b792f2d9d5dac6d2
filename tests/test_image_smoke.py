"""The image, built and run for real: tools/image-smoke builds the Dockerfile with podman
(or docker), from a debootstrap-built Debian base where no registry is reachable, runs it as
its non-root user on a read-only root filesystem, and checks /healthz, a publish, a poll and
a clean SIGTERM exit. And docker-compose.yml as podman-compose reads it.

Slow (about a minute with the Debian base cached, a few more to build the base once), so
it runs once per suite; CI installs podman, runc and debootstrap (.ci/run)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.servers import in_ci

ROOT = Path(__file__).resolve().parent.parent


def _engine_or_skip() -> None:
    if shutil.which("podman") or shutil.which("docker"):
        return
    assert not in_ci(), "podman is required in CI (.ci/run installs it)"
    pytest.skip("neither podman nor docker is installed")


@pytest.mark.timeout(1800)
def test_the_image_builds_runs_as_non_root_read_only_and_stops_cleanly():
    _engine_or_skip()
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools/image-smoke")],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    print(result.stdout)  # the size and the timings, for whoever reads the log
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(" image size " in line for line in lines)
    assert any("ran as uid 10001 on a read-only root filesystem" in line for line in lines)
    assert lines[-1].startswith("image-smoke: ok in ")


def test_podman_compose_reads_the_compose_file():
    if not shutil.which("podman"):
        assert not in_ci(), "podman is required in CI (.ci/run installs it)"
        pytest.skip("podman-compose config needs podman")
    compose = Path(sys.executable).parent / "podman-compose"
    result = subprocess.run(
        [str(compose), "-f", "docker-compose.yml", "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert set(resolved["services"]) == {"redis", "relay", "prometheus", "grafana"}
    relay = resolved["services"]["relay"]
    assert relay["read_only"] is True and relay["stop_signal"] == "SIGTERM"
    secret = relay["environment"]["RELAY_JWT_SECRET"]
    assert len(secret.encode()) >= 32  # the development default passes relay's own check
