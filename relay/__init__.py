"""relay: chat-provider webhooks in, exact-cursor updates out to browsers."""

__version__ = "0.1.0"
