"""Who is on the other end of a request, for per-address limits.

Behind proxies the socket's peer is the nearest proxy; each trusted proxy appends the
address it received the request from to `X-Forwarded-For`. With `hops` proxies trusted,
the client is the `hops`-th entry from the right: anything further left was written by the
client itself and can be forged, so it is never believed.
"""

from __future__ import annotations

from aiohttp import web


def client_address(request: web.Request, trusted_hops: int) -> str:
    peer = request.remote or "unknown"
    if trusted_hops <= 0:
        return peer
    chain = [
        entry.strip()
        for header in request.headers.getall("X-Forwarded-For", ())
        for entry in header.split(",")
        if entry.strip()
    ]
    if len(chain) < trusted_hops:
        # Fewer entries than proxies: the request skipped a proxy, so the peer is all we know.
        return peer
    return chain[-trusted_hops][:64]
