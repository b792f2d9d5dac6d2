"""The typed application keys: the one place app state is named."""

from __future__ import annotations

from aiohttp import web

from relay.auth import TokenVerifier
from relay.metrics import Metrics
from relay.settings import Settings
from relay.store.base import Store
from relay.store.dead_letters import DeadLetters

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", Metrics)
VERIFIER = web.AppKey("verifier", TokenVerifier)
DEAD_LETTERS = web.AppKey("dead_letters", DeadLetters)
