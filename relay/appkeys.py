"""The typed application keys: the one place app state is named."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from relay.auth import TokenVerifier
from relay.body_budget import BodyBudget
from relay.delivery.deliverer import Deliverer
from relay.metrics import Metrics
from relay.ratelimit import RateLimiter
from relay.settings import Settings
from relay.store.base import Store
from relay.store.dead_letters import DeadLetters

if TYPE_CHECKING:
    # Only app.py builds the fan-out (DESIGN: nothing else depends on it): the key names
    # its type without importing it.
    from relay.fanout.live import Live

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", Metrics)
VERIFIER = web.AppKey("verifier", TokenVerifier)
LIVE: web.AppKey[Live] = web.AppKey("live")
POLL_LIMITER = web.AppKey("poll_limiter", RateLimiter)
WEBHOOK_LIMITER = web.AppKey("webhook_limiter", RateLimiter)
REJECT_LIMITER = web.AppKey("reject_limiter", RateLimiter)
BODY_BUDGET = web.AppKey("body_budget", BodyBudget)
DEAD_LETTERS = web.AppKey("dead_letters", DeadLetters)
DELIVERY = web.AppKey("delivery", Deliverer)
