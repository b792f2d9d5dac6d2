"""The demo inbox at `/demo`, served only with RELAY_DEMO=1: a page that shows relay working
in a browser through the JS client (clients/js, copied into static/ by its build step).
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from relay.appkeys import SETTINGS
from relay.logs import get_logger

log = get_logger("relay.demo")

# The only files served: nothing else under the package can be reached from a URL.
ASSETS = {
    "index.html": "text/html",
    "demo.js": "text/javascript",
    "demo.css": "text/css",
    "relay-client.js": "text/javascript",
}
HEADERS = {
    "Cache-Control": "no-cache",
    # The page's URL carries the token (?token=): never send it on as a Referer.
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}


def add_routes(app: web.Application) -> None:
    """Register the demo routes, if RELAY_DEMO is on; otherwise /demo stays a 404."""
    if not app[SETTINGS].demo:
        return
    app.router.add_get("/demo", demo_page)
    app.router.add_get("/demo/", demo_page)
    app.router.add_get("/demo/{name}", demo_asset)
    log.info("demo.enabled", path="/demo", note="add a JWT from `relay token` as ?token")


def asset(name: str) -> bytes:
    return resources.files(__name__).joinpath("static", name).read_bytes()


async def demo_page(request: web.Request) -> web.Response:
    return _serve("index.html")


async def demo_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in ASSETS or name == "index.html":
        raise web.HTTPNotFound(reason="no such demo file")
    return _serve(name)


def _serve(name: str) -> web.Response:
    return web.Response(
        body=asset(name), content_type=ASSETS[name], charset="utf-8", headers=HEADERS
    )
