"""The container image without Docker: there is no Docker daemon on this machine (nor in
CI), so the Dockerfile's two stages are rehearsed on the host, step for step.

Build stage: a fresh virtualenv, `pip install --only-binary=:all: --require-hashes -r
requirements.lock`, then `pip install --no-deps --no-binary=relay ".[fast]"` from a copy of
exactly what `.dockerignore` lets into the context, `pip check`, compileall.
Runtime stage: `relay serve` from that virtualenv (not the checkout: a real, non-editable
install, so package data that the wheel forgot would show), as uid 10001 when the tests
run as root, in a working directory it cannot write, with no home, against a real Redis:
/healthz, /readyz, a publish (the Lua scripts), the demo page (package data), a poll, then
SIGTERM and a clean exit. What it cannot show: the base image, the layer contents, the
HEALTHCHECK and USER as Docker applies them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.credentials import API, JWT_SECRET, auth
from tests.servers import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
UID = 10001  # the Dockerfile's `USER 10001:10001`


@pytest.fixture(scope="module")
def image_venv() -> Path:
    """The build stage: /opt/relay, here in a world-readable temporary directory."""
    folder = Path(tempfile.mkdtemp(prefix="relay-image-"))
    folder.chmod(0o755)
    context = folder / "context"
    context.mkdir()
    for name in (
        "pyproject.toml",
        "requirements.lock",
        "README.md",
    ):  # what .dockerignore lets through
        shutil.copy(ROOT / name, context / name)
    shutil.copytree(ROOT / "relay", context / "relay", ignore=shutil.ignore_patterns("__pycache__"))
    venv = folder / "opt-relay"
    _run([_interpreter(), "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
    lock = ["--only-binary=:all:", "--require-hashes", "-r", "requirements.lock"]
    _run([*pip, *lock], cwd=context)
    _run([*pip, "--no-deps", "--no-binary=relay", ".[fast]"], cwd=context)
    _run([str(venv / "bin" / "pip"), "check"])
    _run([str(venv / "bin" / "python"), "-m", "compileall", "-q", str(venv / "lib")])
    shutil.rmtree(context)
    yield venv
    shutil.rmtree(folder, ignore_errors=True)


def test_the_image_steps_install_and_serve_without_the_checkout(image_venv, redis_url):
    assert not (image_venv / "bin" / "pytest").exists(), "test dependencies in the image"
    app = Path(tempfile.mkdtemp(prefix="relay-app-"))
    app.chmod(0o555)  # WORKDIR /app, not writable by the relay user
    port = free_port()
    env = {
        "PATH": f"{image_venv / 'bin'}:/usr/bin:/bin",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "RELAY_HOST": "127.0.0.1",
        "RELAY_PORT": str(port),
        "RELAY_LOG_FORMAT": "json",
        "HOME": "/nonexistent",
        "RELAY_REDIS_URL": redis_url,
        "RELAY_JWT_SECRET": JWT_SECRET,
        "RELAY_API_KEYS": API["Authorization"].removeprefix("Bearer "),
        "RELAY_CONFIG": "",
        "RELAY_DEMO": "1",
    }
    as_user = {"user": UID, "group": UID, "extra_groups": []} if _can_switch_user() else {}
    process = subprocess.Popen(
        [str(image_venv / "bin" / "relay"), "serve"],
        cwd=app,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **as_user,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _get(f"{base}/healthz")[0] == 200, timeout=30, what="/healthz")
        assert _get(f"{base}/readyz")[0] == 200
        if as_user:
            uids = Path(f"/proc/{process.pid}/status").read_text().split("Uid:")[1].split()
            assert uids[:2] == [str(UID), str(UID)], "relay did not run as the image's user"
        event = {"account": "acme", "type": "message.created", "id": "image-1"}
        request = urllib.request.Request(
            f"{base}/api/publish",
            data=json.dumps(event).encode(),
            headers={**API, "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201
        status, page = _get(f"{base}/demo")
        assert status == 200 and b"<html" in page.lower()
        status, body = _get(f"{base}/api/chats/check-updates/", headers=auth())
        assert status == 200 and json.loads(body)["timestamp"]
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=20)[0].decode(errors="replace")
        written = list(app.iterdir())
        app.chmod(0o755)
        shutil.rmtree(app, ignore_errors=True)
    assert written == [], f"relay wrote into its working directory: {written}"
    assert process.returncode == 0, output
    assert "Traceback" not in output


def _interpreter() -> str:
    """A Python the image's user can run: this one, unless it lives under a directory
    closed to others (pyenv under /root, say); then the system's, as in the image."""
    if _open_to_others(Path(sys.base_prefix)):
        return sys.executable
    system = Path("/usr/bin/python3")
    if system.exists() and _open_to_others(system.resolve().parent):
        probe = subprocess.run(
            [str(system), "-c", "import ensurepip, sys; print(sys.version_info >= (3, 11))"],
            capture_output=True,
            text=True,
        )
        if probe.stdout.strip() == "True":
            return str(system)
    return sys.executable


def _can_switch_user() -> bool:
    return os.geteuid() == 0 and _open_to_others(Path(_interpreter()).resolve().parent)


def _open_to_others(path: Path) -> bool:
    return all(part.stat().st_mode & 0o001 for part in [path, *path.parents])


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _run(command: list[str], cwd: Path | None = None) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
