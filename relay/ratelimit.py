"""Token-bucket rate limits per key (a user, a webhook source), per process.

Buckets live in a bounded map, so a flood of distinct keys cannot grow memory.
"""

from __future__ import annotations

import math
import time

from relay.errors import TooManyRequests


class RateLimited(TooManyRequests):
    code = "rate_limited"


class RateLimiter:
    def __init__(self, name: str, rate: float, burst: float, max_keys: int = 100_000) -> None:
        self.name = name
        self.rate = rate  # tokens per second; 0 disables the limit
        self.burst = max(burst, 1.0)
        self.max_keys = max_keys
        # key -> [tokens, when]; mutated in place, so a take is two lookups and no allocation.
        self._buckets: dict[object, list[float]] = {}

    def check(self, key: object) -> None:
        """Raise the 429 `take` would, without spending: for refusing early, before the
        work whose outcome decides whether a token is spent at all."""
        if self.rate <= 0:
            return
        bucket = self._buckets.get(key)
        if bucket is None:
            return
        tokens = min(self.burst, bucket[0] + (time.monotonic() - bucket[1]) * self.rate)
        if tokens < 1:
            raise self._refusal(tokens)

    def take(self, key: object) -> None:
        """Spend one token for `key`, or raise a 429 that says when to come back."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                # Keys are users, sources and client addresses; a flood of addresses ends here:
                # forgetting every bucket at once only ever errs on the generous side.
                self._buckets.clear()
            self._buckets[key] = [self.burst - 1, now]
            return
        tokens = bucket[0] + (now - bucket[1]) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        bucket[1] = now
        if tokens < 1:
            bucket[0] = tokens
            raise self._refusal(tokens)
        bucket[0] = tokens - 1

    def _refusal(self, tokens: float) -> RateLimited:
        error = RateLimited(f"{self.name} rate limit: at most {self.rate:g} per second")
        error.headers = {"Retry-After": str(max(1, math.ceil((1 - tokens) / self.rate)))}
        return error
