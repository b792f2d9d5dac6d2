"""The browser-facing routes: thin handlers over poll, long-poll and the SSE loop."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator

import orjson
from aiohttp import web

from relay.appkeys import LIVE, METRICS, POLL_LIMITER, SETTINGS, VERIFIER
from relay.auth import Viewer, bearer
from relay.cursor import Cursor, format_cursor, parse_cursor
from relay.errors import BadRequest, RelayError
from relay.fanout.live import Batch
from relay.fanout.sse import BatchedEventSource, event_frame
from relay.logs import get_logger
from relay.settings import Settings

log = get_logger("relay.sse")
JSON_HEADERS = {"Content-Type": "application/json"}  # cheaper than content_type= per answer
SSE_HEADERS = {"Cache-Control": "no-cache, no-transform", "Content-Encoding": "identity"}


def viewer_of(request: web.Request) -> Viewer:
    """The verified viewer, after spending one token of its per-user rate limit."""
    token = bearer(request.headers) or request.query.get("token")
    viewer = request.app[VERIFIER].verify(token)
    try:
        request.app[POLL_LIMITER].take((viewer.account, viewer.user))
    except RelayError:
        request.app[METRICS].limit_refusals.labels("poll_rate").inc()
        raise
    return viewer


def parse_limit(raw: str | None, settings: Settings) -> int:
    if raw is None or raw == "":
        return settings.poll_limit_default
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest("limit must be an integer", code="bad_limit") from None
    if not 1 <= limit <= settings.poll_limit_max:
        raise BadRequest(f"limit must be between 1 and {settings.poll_limit_max}", code="bad_limit")
    return limit


def parse_wait(raw: str | None) -> float:
    if raw is None or raw == "":
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        raise BadRequest("wait must be a number of seconds", code="bad_wait") from None
    if not 0 <= wait <= 3600:
        raise BadRequest("wait must be between 0 and 3600 seconds", code="bad_wait")
    return wait


async def check_updates_handler(request: web.Request) -> web.Response:
    app = request.app
    viewer = viewer_of(request)
    query = request.query
    since = parse_cursor(query.get("last_check"))
    limit = parse_limit(query.get("limit"), app[SETTINGS])
    wait = parse_wait(query.get("wait"))
    live = app[LIVE]
    if wait > 0:
        answer = await live.long_poll(viewer, since, limit, wait)
        mode = "longpoll"
    else:
        answer = await live.read(viewer, since, limit)
        mode = "poll"
    metrics = app[METRICS]
    metrics.child(metrics.polls, mode, answer.outcome).inc()
    live.observe_delivery(mode, answer.delivered)
    return web.Response(body=answer.body, headers=JSON_HEADERS)


def resume_cursor(request: web.Request) -> tuple[Cursor | None, bool]:
    """Last-Event-ID (a browser reconnecting) wins over last_check (a first connect)."""
    last_event_id = request.headers.get("Last-Event-ID", "").strip()
    if last_event_id:
        return parse_cursor(last_event_id), True
    return parse_cursor(request.query.get("last_check")), False


async def realtime_updates_handler(request: web.Request) -> web.StreamResponse:
    """SSE: always 200 text/event-stream, whatever Accept says (the old 406 is impossible)."""
    app = request.app
    viewer = viewer_of(request)
    since, resuming = resume_cursor(request)
    limit = parse_limit(request.query.get("limit"), app[SETTINGS])
    live, metrics, settings = app[LIVE], app[METRICS], app[SETTINGS].live
    with live.streams.hold(viewer.account, viewer.user):
        if since is None:
            # Fix the starting cursor before the headers go out: nothing appended after
            # this read can be missed, however long the handshake takes.
            since = (await live.read(viewer, None, limit)).page.cursor
        response = BatchedEventSource(headers=SSE_HEADERS, ping_interval=settings.heartbeat)
        await response.prepare(request)
        metrics.sse_streams.inc()
        try:
            async with response:
                await response.write(b"retry: %d\r\n\r\n" % settings.retry_ms)
                response.start_pushing(request)
                batches = live.stream(viewer, since, limit, response)
                async for batch in until_expired(batches, viewer):
                    if batch is None:
                        await response.send(TOKEN_EXPIRED, event="token_expired")
                        log.info("sse.ended", reason="token_expired")
                        break
                    if resuming:
                        metrics.resumes.labels("reset" if batch.page.reset else "continued").inc()
                        resuming = False
                    await write_batch(response, batch)
                    live.observe_delivery("sse", batch.stamps)
        except RelayError as error:
            # The headers are gone: end the stream, and the browser resumes with its
            # Last-Event-ID (here or on another replica) once the store answers again.
            log.warning("sse.ended", reason=error.code)
        finally:
            metrics.sse_streams.dec()
    return response


TOKEN_EXPIRED = orjson.dumps(
    {"error": "token_expired", "detail": "the token has expired: reconnect with a new one"}
).decode()


async def until_expired(
    batches: AsyncGenerator[Batch, None], viewer: Viewer
) -> AsyncIterator[Batch | None]:
    """The stream's batches until the viewer's token expires, then None once.

    Only the wait for the next batch is bounded, never a write: a frame is sent whole or
    not at all, so the browser's Last-Event-ID is exact and a reconnect loses nothing
    (a batch read but not yet sent when the token expires is read again)."""
    try:
        while True:
            remaining = viewer.expires_at - time.time()
            if remaining <= 0:
                yield None
                return
            try:
                async with asyncio.timeout(None if math.isinf(remaining) else remaining):
                    batch = await anext(batches)
            except StopAsyncIteration:
                return
            except TimeoutError:
                yield None
                return
            yield batch
    finally:
        await batches.aclose()


async def write_batch(response: BatchedEventSource, batch: Batch) -> None:
    page = batch.page
    if page.reset:
        reset = {"timestamp": format_cursor(page.cursor), "reset": True}
        await response.send(orjson.dumps(reset).decode(), event="reset")
    frames = [
        event_frame(wire, format_cursor(stamp).encode())
        for wire, stamp in zip(batch.wires, batch.stamps, strict=True)
    ]
    if not batch.stamps or batch.stamps[-1] != page.cursor:
        # Events this viewer may not see moved the cursor: an id-only frame moves the
        # browser's Last-Event-ID without dispatching anything.
        frames.append(b"id: %s\r\n\r\n" % format_cursor(page.cursor).encode())
    await response.send_frames(frames)


# The routes browsers call (RELAY_CORS_ORIGINS applies to these and nothing else).
BROWSER_PATHS = [
    "/api/chats/check-updates/",
    "/api/chats/check-updates",
    "/api/chats/realtime-updates/",
    "/api/chats/realtime-updates",
]


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/chats/check-updates/", check_updates_handler)
    # The old frontend's path has a trailing slash; tolerate clients that drop it.
    app.router.add_get("/api/chats/check-updates", check_updates_handler)
    app.router.add_get("/api/chats/realtime-updates/", realtime_updates_handler)
    app.router.add_get("/api/chats/realtime-updates", realtime_updates_handler)
