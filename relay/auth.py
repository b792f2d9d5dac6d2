"""Who is asking: browser JWTs (HS256 or RS256, issued by the main application) and the
server-to-server API keys of the publish and admin routes.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import jwt

from relay.errors import Unauthorized
from relay.events import ACCOUNT_PATTERN
from relay.rotated_keys import matches_any
from relay.settings import Settings


@dataclass(frozen=True, slots=True)
class Viewer:
    """The browser user a token speaks for."""

    user: str
    account: str
    chats: frozenset[str] | None = None
    # Unix seconds after which the token is refused (exp + leeway): a stream opened with
    # it ends then, as a poll with it would be refused.
    expires_at: float = field(default=math.inf, compare=False)

    def may_see(self, chat_id: str | None, audience: list[str] | None) -> bool:
        if self.chats is not None and chat_id not in self.chats:
            return False
        return audience is None or self.user in audience


class TokenVerifier:
    """Checks browser JWTs, remembering the ones it has accepted until they expire.

    A browser polls every few seconds with the same token, and decoding plus an HMAC
    check was a third of an empty poll's cost (bench/RESULTS.md). A remembered token is
    the exact string that once passed every check; only `exp` can change its answer, and
    it is checked again on every hit. Rejections are never remembered.
    """

    def __init__(self, settings: Settings, remember: int = 10_000) -> None:
        # Several keys verify during a rotation: the new one first, the old until it retires.
        self.keys = jwt_keys(settings)
        # One algorithm, pinned: an HS256 token can never be checked against an RSA key.
        self.algorithms = ["HS256"] if settings.jwt_secret else ["RS256"]
        self.audience = settings.jwt_audience
        self.issuer = settings.jwt_issuer
        self.leeway = settings.jwt_leeway
        self.remember = remember
        self._accepted: dict[str, tuple[Viewer, float]] = {}

    def verify(self, token: str | None) -> Viewer:
        if not self.keys:
            raise Unauthorized("browser tokens are not configured on this relay")
        if not token:
            raise Unauthorized("a Bearer token (or ?token=) is required")
        known = self._accepted.get(token)
        if known is not None:
            viewer, expires = known
            if time.time() < expires:
                return viewer
            del self._accepted[token]
        claims = self._decode(token)
        # PyJWT accepts a token until exp + leeway; so do the memory of it and its streams.
        expires = float(claims["exp"]) + self.leeway
        viewer = replace(_viewer(claims), expires_at=expires)
        if len(self._accepted) >= self.remember:
            # Bounded: forget everything rather than track recency on the hot path.
            self._accepted.clear()
        self._accepted[token] = (viewer, expires)
        return viewer

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            claims = self._decode_with_any_key(token)
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired", code="token_expired") from None
        except jwt.PyJWTError as error:
            raise Unauthorized(
                f"the token is invalid: {_reason(error, self)}", code="bad_token"
            ) from None
        return claims

    def _decode_with_any_key(self, token: str) -> dict[str, Any]:
        for key in self.keys[:-1]:
            try:
                return self._decode_with(token, key)
            except jwt.InvalidSignatureError:
                continue
        return self._decode_with(token, self.keys[-1])

    def _decode_with(self, token: str, key: str) -> dict[str, Any]:
        return jwt.decode(
            token,
            key,
            algorithms=self.algorithms,
            audience=self.audience,
            issuer=self.issuer,
            leeway=self.leeway,
            options={"require": ["exp", "sub", "account"], "verify_aud": bool(self.audience)},
        )


_PEM_BLOCK = re.compile(r"-----BEGIN [A-Z ]+-----.+?-----END [A-Z ]+-----", re.S)


def jwt_keys(settings: Settings) -> list[str]:
    """RELAY_JWT_SECRET holds one or more whitespace-separated secrets; RELAY_JWT_PUBLIC_KEY
    one or more PEM blocks. The first is current; the others are accepted while rotating."""
    if settings.jwt_secret:
        return settings.jwt_secret.split()
    if settings.jwt_public_key:
        return _PEM_BLOCK.findall(settings.jwt_public_key) or [settings.jwt_public_key]
    return []


def _reason(error: jwt.PyJWTError, verifier: TokenVerifier) -> str:
    """What is wrong with the token, in words. PyJWT's own messages never echo the token,
    but their class names (`Decode`) say nothing to whoever debugs a 401."""
    if isinstance(error, jwt.InvalidSignatureError):
        return "the signature does not match (signed with another secret or key?)"
    if isinstance(error, jwt.InvalidAlgorithmError):
        return f"it is not signed with {verifier.algorithms[0]}, the one algorithm accepted"
    if isinstance(error, jwt.DecodeError):
        return "it is malformed (expected three base64url parts: header.claims.signature)"
    if isinstance(error, jwt.InvalidAudienceError):
        return f"its audience (aud) is not {verifier.audience!r}"
    if isinstance(error, jwt.InvalidIssuerError):
        return f"its issuer (iss) is not {verifier.issuer!r}"
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"it has no {error.claim} claim"
    if isinstance(error, jwt.ImmatureSignatureError):
        return "it is not valid yet (nbf is in the future)"
    if isinstance(error, jwt.InvalidIssuedAtError):
        return "its iat (issued at) is in the future or not a number"
    return "it could not be verified"


def _viewer(claims: Mapping[str, object]) -> Viewer:
    user, account, chats = claims.get("sub"), claims.get("account"), claims.get("chats")
    if not isinstance(user, str) or not user:
        raise Unauthorized("the token's sub must be a non-empty string", code="bad_token")
    if not isinstance(account, str) or not ACCOUNT_PATTERN.fullmatch(account):
        raise Unauthorized("the token's account claim is not a valid account", code="bad_token")
    if chats is None:
        return Viewer(user, account)
    if not isinstance(chats, list) or not all(isinstance(c, str | int) for c in chats):
        raise Unauthorized("the token's chats claim must be a list of chat ids", code="bad_token")
    return Viewer(user, account, frozenset(str(c) for c in chats))


def mint_token(
    secret: str,
    account: str,
    user: str,
    chats: list[str] | None = None,
    ttl_seconds: int = 3600,
    algorithm: str = "HS256",
) -> str:
    """A browser token as the main application would issue it (CLI and tests)."""
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": user,
        "account": account,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if chats is not None:
        claims["chats"] = chats
    return jwt.encode(claims, secret, algorithm=algorithm)


def bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("Authorization", "")
    scheme, _, credentials = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


def check_api_key(headers: Mapping[str, str], keys: tuple[str, ...]) -> None:
    """Server-to-server auth; only from the header, so keys never sit in access logs."""
    if not keys:
        raise Unauthorized("no API keys are configured (RELAY_API_KEYS)")
    given = bearer(headers)
    if not given:
        raise Unauthorized("an API key is required: Authorization: Bearer <key>")
    if not matches_any([given.encode()], (key.encode() for key in keys)):
        raise Unauthorized("the API key is not valid", code="bad_api_key")
