"""The secrets every test relay is configured with, and the headers that pass its checks."""

from __future__ import annotations

from relay.auth import mint_token

JWT_SECRET = "test-jwt-secret-0123456789abcdef0123456789"
API_KEY = "test-api-key-0123456789abcdef"
API = {"Authorization": f"Bearer {API_KEY}"}


def token(account: str = "acme", user: str = "agent-1", chats=None, ttl: int = 3600) -> str:
    return mint_token(JWT_SECRET, account, user, chats, ttl)


def auth(account: str = "acme", user: str = "agent-1", chats=None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(account, user, chats)}"}
