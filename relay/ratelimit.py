"""Token-bucket rate limits per key (a user, a webhook source), per process.

Buckets live in a bounded LRU map, so a flood of distinct keys cannot grow memory.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict

from relay.errors import TooManyRequests


class RateLimited(TooManyRequests):
    code = "rate_limited"


class RateLimiter:
    def __init__(self, name: str, rate: float, burst: float, max_keys: int = 100_000) -> None:
        self.name = name
        self.rate = rate  # tokens per second; 0 disables the limit
        self.burst = max(burst, 1.0)
        self.max_keys = max_keys
        self._buckets: OrderedDict[object, tuple[float, float]] = OrderedDict()

    def take(self, key: object) -> None:
        """Spend one token for `key`, or raise a 429 that says when to come back."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        tokens, stamp = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - stamp) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            error = RateLimited(f"{self.name} rate limit: at most {self.rate:g} per second")
            error.headers = {"Retry-After": str(max(1, math.ceil((1 - tokens) / self.rate)))}
            raise error
        self._buckets[key] = (tokens - 1, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
