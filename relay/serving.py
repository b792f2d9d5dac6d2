"""Run one `relay serve` process: bind, say where, wait for SIGTERM/SIGINT, drain, say so.

aiohttp's `run_app` logs nothing we can use and turns a port in use into a traceback
after the point where we would have said "listening"; this does the same steps in an
order an operator can read: `relay.listening` only once the socket is bound (with the
real port when asked for port 0), one line and exit 1 when it cannot be, and one
`relay.stopped` line with what was drained and how long it took.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import socket
import time
from typing import Any

from aiohttp import web

from relay.appkeys import LIVE, METRICS
from relay.gc_pacing import GcPacer


class ListenError(Exception):
    """The socket could not be bound: one line for the operator, exit 1."""


def listen_problem(host: str, port: int, error: OSError) -> str:
    reason = os.strerror(error.errno) if error.errno else str(error)
    if isinstance(error, socket.gaierror):
        reason = "the host name does not resolve"
    elif error.errno == errno.EADDRINUSE:
        reason = "address already in use"
    elif error.errno == errno.EADDRNOTAVAIL:
        reason = "the address is not on this machine"
    elif error.errno == errno.EACCES:
        reason = "permission denied (ports below 1024 need privileges)"
    return f"cannot listen on {host}:{port}: {reason.lower()}"


async def serve_until_signalled(
    app: web.Application,
    host: str,
    port: int,
    log: Any,
    *,
    reuse_port: bool = False,
    keepalive_timeout: float,
    shutdown_timeout: float,
    **fields: Any,
) -> None:
    """Serve `app` on host:port until SIGTERM or SIGINT; raises ListenError if unbound."""
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        # A long-poll or SSE client that disconnects frees its waiter at once.
        handler_cancellation=True,
        # Also the header timeout: a connection that has not completed a request this long
        # after connecting (or after its last answer) is closed, which ends slowloris.
        keepalive_timeout=keepalive_timeout,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    # --workers: every worker listens on the same port; the kernel spreads connections.
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        raise ListenError(listen_problem(host, port, error)) from None
    bound = runner.addresses[0][1] if runner.addresses else port
    log.info("relay.listening", host=host, port=bound, pid=os.getpid(), **fields)
    pauses = app[METRICS].gc_pauses
    with GcPacer(on_pause=lambda generation, seconds: pauses.labels(generation).observe(seconds)):
        received, drained, started = await _until_signalled(app, runner, log)
    log.info(
        "relay.stopped",
        signal=signal.Signals(received).name,
        seconds=round(time.monotonic() - started, 3),
        drained=drained,
    )


async def _until_signalled(
    app: web.Application, runner: web.AppRunner, log: Any
) -> tuple[int, dict[str, int], float]:
    """Wait for SIGTERM/SIGINT, then drain: the signal, what was drained, and when."""
    stop: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if not stop.done():
            stop.set_result(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    received = await stop
    started = time.monotonic()
    live = app.get(LIVE)
    server = runner.server
    drained = {
        "connections": len(server.connections) if server is not None else 0,
        "sse_streams": live.streams.total if live is not None else 0,
        "long_poll_waiters": live.waiters.total if live is not None else 0,
    }
    log.info("relay.stopping", signal=signal.Signals(received).name, **drained)
    await runner.cleanup()
    return received, drained, started
