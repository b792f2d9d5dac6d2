"""Cross-origin access (RELAY_CORS_ORIGINS) for the browser routes only: an inbox served
from another origin may poll and stream; server routes (publish, admin, webhooks) never
answer a browser's preflight, and credentials (cookies) are never allowed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp_cors
from aiohttp import hdrs, web

# Chromium caps a cached preflight at 2 h and Firefox at 24 h: one hour saves a preflight
# per poll on every browser, and an operator's change of origins takes effect within it.
PREFLIGHT_MAX_AGE = 3600
ALLOWED_HEADERS = ("Authorization", "Content-Type", "Last-Event-ID", "X-Request-ID")
# What a page's script may read of an answer: the retry advice of a 429/503 and the id
# to quote in a support request.
EXPOSED_HEADERS = ("Retry-After", "X-Request-ID")


def allow_browser_origins(app: web.Application, origins: tuple[str, ...], paths: list[str]) -> None:
    """Let pages of `origins` (or any, with `*`) call the GET routes at `paths`.

    Unlisted origins get no Access-Control-* header at all (their preflight is a 403), so
    the browser refuses the answer."""
    if not origins:
        return
    options = aiohttp_cors.ResourceOptions(
        allow_credentials=False,
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        allow_methods=("GET",),
        max_age=PREFLIGHT_MAX_AGE,
    )
    cors = aiohttp_cors.setup(app, defaults={origin: options for origin in origins})
    cors_paths = set(paths)
    for resource in app.router.resources():
        if resource.canonical in cors_paths:
            cors.add(resource)
    app.on_response_prepare.append(_vary_on_origin(cors_paths))


def _vary_on_origin(
    paths: set[str],
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """aiohttp-cors echoes the request's Origin without `Vary: Origin` (aiohttp-cors#351):
    a shared cache could hand one origin's answer to another. Said here for its routes."""

    async def add_vary(request: web.Request, response: web.StreamResponse) -> None:
        resource = request.match_info.route.resource
        if resource is None or resource.canonical not in paths:
            return
        vary = response.headers.get(hdrs.VARY, "")
        if "origin" not in vary.lower():
            response.headers[hdrs.VARY] = f"{vary}, Origin" if vary else "Origin"

    return add_vary
