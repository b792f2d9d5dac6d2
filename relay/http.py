"""The HTTP edge shared by every route: JSON answers, one error middleware that turns
any failure into `{"error", "detail"}` with the right status, request ids, metrics.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web

from relay.appkeys import METRICS
from relay.body_budget import AddressOverBudget, ProcessOverBudget, Reservation
from relay.errors import BodyTooLarge, IncompleteBody, RelayError, RequestTimeout
from relay.logs import get_logger
from relay.sampled_log import SampledLog

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    411: "length_required",
    413: "body_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    429: "too_many_requests",
    431: "headers_too_large",
}
log = get_logger("relay.http")
# Refusals are sampled: a flood of them would otherwise be a flood of log lines.
refusals_log = SampledLog(log, "request.refused")

# Request ids only need to be unique, not unguessable: a random per-process prefix and a
# counter cost a fraction of uuid4(), which read 16 random bytes from the OS per request.
_ID_PREFIX = os.urandom(6).hex()
_ID_COUNTER = itertools.count(1)
# The id edge_middleware answers in X-Request-ID, for the handlers that log with it.
REQUEST_ID = web.RequestKey("request_id", str)


def new_request_id() -> str:
    return f"{_ID_PREFIX}-{next(_ID_COUNTER):x}"


def logs_request_id(handler: Handler) -> Handler:
    """`handler` with the request's id on every log line it causes. Bound per route (the
    ingest and admin ones), not in edge_middleware: binding costs microseconds that the
    empty poll must not pay. Reset on the way out, so no other line ever carries it."""

    @functools.wraps(handler)
    async def bound(request: web.Request) -> web.StreamResponse:
        tokens = structlog.contextvars.bind_contextvars(request_id=request[REQUEST_ID])
        try:
            return await handler(request)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)

    return bound


async def read_body(
    request: web.Request, max_bytes: int, timeout: float, held: Reservation | None = None
) -> bytes:
    """The whole body, refused early past `max_bytes` and given up on after `timeout`
    seconds, so a slow or oversized sender cannot hold a handler. With `held`, the bytes
    are reserved in the process's body budget before they are read (the declared length
    at once, else chunk by chunk); the caller releases the reservation."""
    refusals = request.app[METRICS].limit_refusals
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        refusals.labels("body_size").inc()
        raise BodyTooLarge(f"the body is larger than {max_bytes} bytes")
    try:
        if held is not None and declared:
            held.grow(declared)
        content = request.content
        if declared is not None and content.is_eof():
            # It all came with the headers (most publishes and webhooks): nothing to wait
            # for, so no timer and no chunk loop; the size was checked above.
            return content.read_nowait()
        chunks, size = [], 0
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    refusals.labels("body_size").inc()
                    raise BodyTooLarge(f"the body is larger than {max_bytes} bytes")
                if held is not None and size > held.size:
                    held.grow(size - held.size)
                chunks.append(chunk)
    except TimeoutError:
        refusals.labels("body_timeout").inc()
        raise RequestTimeout(f"the body did not arrive within {timeout:g} seconds") from None
    except ConnectionError:
        # The sender hung up mid-body: nobody hears the answer, but it is not a bug.
        raise IncompleteBody("the connection closed before the body was complete") from None
    except (AddressOverBudget, ProcessOverBudget) as error:
        refusals.labels(
            "body_in_flight_per_address"
            if isinstance(error, AddressOverBudget)
            else "body_in_flight"
        ).inc()
        raise
    return b"".join(chunks)


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(payload), status=status, headers=headers, content_type="application/json"
    )


def error_response(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> web.Response:
    return json_response({"error": code, "detail": detail}, status, headers)


def _route_label(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if incoming and _REQUEST_ID.fullmatch(incoming) else new_request_id()
    request[REQUEST_ID] = request_id
    try:
        response = await handler(request)
    except RelayError as error:
        response = error_response(error.status, error.code, error.detail, error.headers)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = _HTTP_CODES.get(error.status, "http_error")
        response = error_response(error.status, code, error.reason, _allow(error))
    except Exception:
        log.exception(
            "request.failed", method=request.method, path=request.path, request_id=request_id
        )
        response = error_response(500, "internal", "relay failed to answer; this is a bug")
    response.headers["X-Request-ID"] = request_id
    elapsed = time.perf_counter() - started
    request.app[METRICS].observe_request(
        _route_label(request), request.method, response.status, elapsed
    )
    if response.status >= 400:
        refusals_log.info(
            response.status, method=request.method, path=request.path, request_id=request_id
        )
    return response


def _allow(error: web.HTTPException) -> dict[str, str] | None:
    allow = error.headers.get("Allow")
    return {"Allow": allow} if allow else None
