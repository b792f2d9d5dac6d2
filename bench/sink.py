"""A subscriber that answers 204 at once to every push and counts them (`GET /count`):
what relay's delivery is measured against. Runs under uvloop when importable."""

from __future__ import annotations

import argparse

from aiohttp import web

received = 0


async def accept(request: web.Request) -> web.Response:
    global received
    await request.read()
    received += 1
    return web.Response(status=204)


async def count(request: web.Request) -> web.Response:
    return web.Response(text=str(received))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/hook", accept)
    app.router.add_get("/count", count)
    app.router.add_get("/healthz", count)
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = None
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, loop=loop)


if __name__ == "__main__":
    main()
