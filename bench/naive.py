"""A naive check-updates, the way it is usually first written: aiohttp, the JWT checked on
every request, one `ZRANGEBYSCORE` per poll through redis.asyncio, every stored event
decoded and the answer re-encoded. No fast path, no cursor rules, no metrics.

It reads relay's own sorted sets (`relay:{<account>}:updates`), so both sides of a
side-by-side pair answer from the same data.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import jwt
import orjson
import redis.asyncio as redis
from aiohttp import web

from bench.ceiling import _loop

REDIS = web.AppKey("redis", redis.Redis)
SECRET = web.AppKey("secret", str)


def iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, tz=UTC).isoformat(timespec="microseconds")


async def check_updates(request: web.Request) -> web.Response:
    token = request.headers.get("Authorization", "").removeprefix("Bearer ")
    try:
        claims = jwt.decode(token, request.app[SECRET], algorithms=["HS256"])
    except jwt.PyJWTError:
        return web.json_response({"error": "unauthorized"}, status=401)
    since = datetime.fromisoformat(request.query["last_check"])
    since_us = int(since.timestamp() * 1_000_000)
    key = f"relay:{{{claims['account']}}}:updates"
    rows = await request.app[REDIS].zrangebyscore(
        key, f"({since_us}", "+inf", start=0, num=100, withscores=True
    )
    updates = []
    for member, score in rows:
        event = orjson.loads(member[member.index(b"\n") + 1 :])
        event["timestamp"] = iso(int(score))
        updates.append(event)
    cursor = iso(int(rows[-1][1])) if rows else since.isoformat(timespec="microseconds")
    body = {"timestamp": cursor, "updates": updates, "has_updates": bool(updates)}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(body=b"{}", content_type="application/json")


async def redis_ctx(app: web.Application):
    yield
    await app[REDIS].aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--jwt-secret", required=True)
    args = parser.parse_args()
    app = web.Application()
    app[REDIS] = redis.Redis.from_url(
        args.redis_url, protocol=2, decode_responses=False, max_connections=64
    )
    app[SECRET] = args.jwt_secret
    app.cleanup_ctx.append(redis_ctx)
    app.router.add_get("/api/chats/check-updates/", check_updates)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, loop=_loop())


if __name__ == "__main__":
    main()
