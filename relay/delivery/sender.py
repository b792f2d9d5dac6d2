"""One signed POST to a subscriber, and what came of it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp

from relay import __version__
from relay.delivery.config import Subscriber
from relay.delivery.signing import webhook_headers

USER_AGENT = f"relay/{__version__} (Standard Webhooks)"


@dataclass(frozen=True, slots=True)
class Outcome:
    """`label` is the metric's outcome: delivered (2xx), rejected (any other status),
    timeout, or error (connection refused, reset, DNS...)."""

    label: str
    detail: str

    @property
    def delivered(self) -> bool:
        return self.label == "delivered"


async def post_event(
    session: aiohttp.ClientSession, subscriber: Subscriber, msg_id: str, body: bytes
) -> Outcome:
    # Signed at each attempt: receivers refuse a webhook-timestamp older than 5 minutes,
    # and a retry may come 10 minutes after the first try.
    headers = webhook_headers(subscriber.keys, msg_id, int(time.time()), body)
    headers["User-Agent"] = USER_AGENT
    try:
        async with session.post(
            subscriber.url,
            data=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=subscriber.timeout),
            allow_redirects=False,
        ) as response:
            await response.read()
            if 200 <= response.status < 300:
                return Outcome("delivered", str(response.status))
            return Outcome("rejected", f"HTTP {response.status}")
    except TimeoutError:
        return Outcome("timeout", f"no answer within {subscriber.timeout:g}s")
    except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as error:
        return Outcome("error", f"{type(error).__name__}: {error}"[:300])
