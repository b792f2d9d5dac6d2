"""The ceiling: the cheapest aiohttp server that answers like relay does.

`GET /ceiling` returns a constant JSON body (what an empty poll looks like); `POST /ceiling`
parses a JSON body and answers a small JSON document (what a publish looks like). Nothing
else: no auth, no middleware, no store. Runs under uvloop when importable, as relay does.
"""

from __future__ import annotations

import argparse

import orjson
from aiohttp import web

EMPTY = (
    b'{"timestamp":"2026-11-27T16:36:54.743701+00:00","updates":[],"has_updates":false,'
    b'"more":false,"reset":false}'
)


async def get_constant(request: web.Request) -> web.Response:
    return web.Response(body=EMPTY, content_type="application/json")


async def post_parse(request: web.Request) -> web.Response:
    document = orjson.loads(await request.read())
    return web.Response(
        body=orjson.dumps({"ok": True, "fields": len(document)}),
        status=201,
        content_type="application/json",
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_get("/ceiling", get_constant)
    app.router.add_post("/ceiling", post_parse)
    app.router.add_get("/healthz", get_constant)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, loop=_loop())


def _loop():
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop()


if __name__ == "__main__":
    main()
