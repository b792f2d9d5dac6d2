"""`relay`: serve, token, publish, check-config. Configuration errors print one line each
and exit 1; never a traceback, never a half-configured server."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from relay import __version__
from relay.auth import mint_token
from relay.durations import parse_seconds
from relay.logs import configure_logging, get_logger
from relay.settings import ConfigError, Settings, api_keys_from, jwt_secret_problems


def load_settings() -> Settings:
    """Settings and the provider checks together; exits 1 with one line per problem."""
    from relay.ingest.providers import provider_problems

    try:
        settings = Settings.from_env()
    except ConfigError as error:
        _fail(error.problems)
    problems = provider_problems(settings.sources, settings.config_path)
    if problems:
        _fail(problems)
    return settings


def _fail(problems: list[str]) -> NoReturn:
    for line in problems:
        print(f"relay: config error: {line}", file=sys.stderr)
    raise SystemExit(1)


def serve(args: argparse.Namespace) -> int:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format, settings.secret_values())
    log = get_logger("relay")
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    if args.workers is None:
        raw = os.environ.get("RELAY_WORKERS", "").strip() or "1"
        if not raw.isdigit():
            _fail([f"RELAY_WORKERS: expected an integer, got {raw!r}"])
        args.workers = int(raw)
    if args.workers < 1:
        _fail([f"--workers must be at least 1, got {args.workers}"])
    if args.workers > 1:
        if settings.engine == "memory":
            _fail(
                [
                    "--workers needs a shared engine: the memory engine lives inside one "
                    "process, so each worker would see its own events; set RELAY_REDIS_URL"
                ]
            )
        if port == 0:
            _fail(["--workers needs a fixed port (the workers share it): set --port"])
        return supervise(args.workers, host, port, log)
    if settings.engine == "memory":
        log.info(
            "relay.engine",
            engine="memory",
            note="embedded memory engine: one process, not durable; set RELAY_REDIS_URL for Redis",
        )
    else:
        log.info("relay.engine", engine="redis")
    if not settings.jwt_secret and not settings.jwt_public_key:
        log.warning(
            "relay.no_browser_tokens",
            note="browser routes answer 401: set RELAY_JWT_SECRET or RELAY_JWT_PUBLIC_KEY",
        )
    from relay.app import REUSE_PORT, create_app
    from relay.serving import ListenError, serve_until_signalled

    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    app = create_app(settings)
    app[REUSE_PORT] = bool(args.reuse_port)
    # Everything imported and built so far lives as long as the process: move it out of the
    # collector's sight, so a full collection under load scans only what requests made
    # (an idle relay's full collection took 8.6 ms, a pause every stream and waiter felt).
    gc.freeze()
    running = serve_until_signalled(
        app,
        host,
        port,
        log,
        reuse_port=args.reuse_port,
        keepalive_timeout=settings.keepalive_timeout,
        shutdown_timeout=settings.live.shutdown_timeout,
        sources=sorted(settings.sources),
        metrics_port=settings.metrics_port,
    )
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(running)
    except ListenError as error:
        print(f"relay: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were installed
        return 130
    return 0


def supervise(workers: int, host: str, port: int, log: Any) -> int:
    """Run `workers` copies of `relay serve` sharing one port (SO_REUSEPORT), forward
    SIGTERM/SIGINT to them, and wait. If one dies on its own, stop the others and exit 1,
    so the process manager (Kubernetes, systemd) restarts the whole set."""
    command = [sys.executable, "-m", "relay.cli", "serve", "--host", host, "--port", str(port)]
    command += ["--workers", "1", "--reuse-port"]  # not RELAY_WORKERS again
    children: dict[int, subprocess.Popen[bytes]] = {}
    stopping = False

    def forward(signum: int, _frame: object = None) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.returncode is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for _ in range(workers):
        # Own sessions: a terminal's Ctrl-C reaches the parent once, which forwards it once.
        child = subprocess.Popen(command, start_new_session=True)
        children[child.pid] = child
    log.info("relay.workers", workers=workers, port=port, pids=sorted(children))
    status = 0
    while any(child.returncode is None for child in children.values()):
        pid, wait_status = os.wait()
        exited = children.get(pid)
        if exited is None:
            continue
        exited.returncode = os.waitstatus_to_exitcode(wait_status)
        if not stopping:
            log.error("relay.worker_exited", pid=pid, code=exited.returncode)
            forward(signal.SIGTERM)
            status = 1
        elif exited.returncode not in (0, -signal.SIGTERM, -signal.SIGINT):
            status = 1
    return status


def token(args: argparse.Namespace) -> int:
    # Only the secret it signs with: a source's unset provider secret is no concern here.
    secret = os.environ.get("RELAY_JWT_SECRET", "").strip()
    if not secret:
        _fail(["RELAY_JWT_SECRET is not set: relay token mints HS256 tokens from it"])
    problems = jwt_secret_problems(secret)
    if problems:
        _fail(problems)
    chats = [c for c in args.chats.split(",") if c] if args.chats else None
    current = secret.split()[0]  # the first of several is the current one
    print(mint_token(current, args.account, args.user, chats, _ttl_seconds(args.ttl)))
    return 0


def _ttl_seconds(text: str) -> int:
    try:
        seconds = parse_seconds(text)
    except ValueError:
        _fail([f"--ttl: expected e.g. 90s, 15m, 1h or 7d, got {text!r}"])
    # JWT times are whole seconds; a fraction (1.5s, 500ms) is cut off.
    return int(seconds)


def publish(args: argparse.Namespace) -> int:
    # Only an API key and where relay listens: no source or store settings are needed.
    env = os.environ
    key = args.api_key or env.get("RELAY_API_KEY") or next(iter(api_keys_from(env)), None)
    if not key:
        _fail(["no API key: set RELAY_API_KEYS (or RELAY_API_KEY, or pass --api-key)"])
    try:
        data = json.loads(args.data)
    except json.JSONDecodeError as error:
        _fail([f"--data is not JSON: {error}"])
    event = {"account": args.account, "type": args.type, "data": data}
    if args.id:
        event["id"] = args.id
    if args.chat_id:
        event["chat_id"] = args.chat_id
    port = env.get("RELAY_PORT", "").strip() or "8080"
    url = (args.url or f"http://127.0.0.1:{port}").rstrip("/") + "/api/publish"
    request = urllib.request.Request(
        url,
        data=json.dumps(event).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            print(response.read().decode())
            return 0
    except urllib.error.HTTPError as error:
        print(f"relay: publish failed: {error.code} {error.read().decode()}", file=sys.stderr)
    except (urllib.error.URLError, OSError) as error:
        print(f"relay: publish failed: cannot reach {url}: {error}", file=sys.stderr)
    return 1


def check_config(args: argparse.Namespace) -> int:
    settings = load_settings()
    print(f"engine: {settings.engine}")
    if settings.redis_url:
        print(f"redis cluster: {settings.redis_cluster}")
    print(f"listen: {settings.host}:{settings.port}")
    if settings.metrics_port is not None:
        print(f"metrics: {settings.host}:{settings.metrics_port}/metrics")
    print(f"config: {settings.config_path or '(none)'}")
    auth = "HS256" if settings.jwt_secret else "RS256" if settings.jwt_public_key else None
    if auth is None:
        auth = "off: browser routes answer 401 (set RELAY_JWT_SECRET or RELAY_JWT_PUBLIC_KEY)"
    print(f"browser tokens: {auth}")
    print(f"api keys: {len(settings.api_keys)}")
    print(f"cors origins: {', '.join(settings.cors_origins) or '(same origin only)'}")
    r = settings.retention
    print(f"retention: max_events={r.max_events} max_age={r.max_age_us // 1_000_000}s")
    for name, source in sorted(settings.sources.items()):
        print(f"source {name}: provider={source.provider} account={source.account}")
    for name, sub in sorted(settings.subscribers.items()):
        types = ",".join(sub.types) or "*"
        print(
            f"subscriber {name}: url={sub.url} accounts={','.join(sub.accounts)} types={types} "
            f"timeout={sub.timeout:g}s keys={len(sub.keys)} max_in_flight={sub.max_in_flight}"
        )
    if args.connect:
        reason = asyncio.run(_try_store(settings))
        if reason is not None:
            print(f"relay: store error: {reason}", file=sys.stderr)
            return 1
        print("store: reachable")
    print("ok")
    return 0


async def _try_store(settings: Settings) -> str | None:
    """None when the configured store answers a ping, else one line saying why not."""
    from relay.app import build_store
    from relay.store_health import probe, without_password

    store = build_store(settings)
    try:
        reason = await probe(store)
    finally:
        await store.close()
    if reason is None:
        return None
    return f"cannot reach {without_password(settings.redis_url or '')}: {reason}"


_SERVE_EPILOG = """\
Every other setting is an environment variable (RELAY_REDIS_URL, RELAY_JWT_SECRET,
RELAY_API_KEYS, ...): see the configuration table in README.md. The sources are read from
RELAY_CONFIG (default config/relay.toml). `relay check-config` shows what would run."""


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="relay", description=__doc__)
    root.add_argument("--version", action="version", version=f"relay {__version__}")
    commands = root.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "serve",
        help="run the service",
        epilog=_SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--host", help="address to listen on (default 0.0.0.0; env RELAY_HOST)")
    run.add_argument(
        "--port",
        type=int,
        help="port to listen on, 0 for any free one (default 8080; env RELAY_PORT)",
    )
    run.add_argument(
        "--workers",
        type=int,
        help="processes sharing the port (SO_REUSEPORT); more than 1 needs the redis engine "
        "(default 1; env RELAY_WORKERS)",
    )
    run.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    run.set_defaults(func=serve)
    mint = commands.add_parser("token", help="mint a browser JWT from RELAY_JWT_SECRET")
    mint.add_argument("--account", required=True)
    mint.add_argument("--user", required=True)
    mint.add_argument("--chats", help="comma-separated chat allowlist")
    mint.add_argument("--ttl", default="1h", help="lifetime, e.g. 90s, 15m, 1h, 7d (default 1h)")
    mint.set_defaults(func=token)
    pub = commands.add_parser("publish", help="append an event through the API")
    pub.add_argument("--account", required=True)
    pub.add_argument("--type", required=True)
    pub.add_argument("--data", default="{}")
    pub.add_argument("--id")
    pub.add_argument("--chat-id")
    pub.add_argument("--url", help="relay's base URL (default http://127.0.0.1:$RELAY_PORT)")
    pub.add_argument("--api-key")
    pub.set_defaults(func=publish)
    check = commands.add_parser("check-config", help="validate the configuration, exit 0/1")
    check.add_argument(
        "--connect", action="store_true", help="also try the store (RELAY_REDIS_URL) once"
    )
    check.set_defaults(func=check_config)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
