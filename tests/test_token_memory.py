"""The verifier remembers accepted tokens (the poll hot path), without changing answers."""

from __future__ import annotations

import time

import pytest

from relay.auth import TokenVerifier, mint_token
from relay.errors import Unauthorized
from relay.settings import Settings
from tests.credentials import JWT_SECRET


def verifier(**overrides) -> TokenVerifier:
    return TokenVerifier(Settings(jwt_secret=JWT_SECRET, jwt_leeway=0, **overrides))


def test_a_remembered_token_is_decoded_again_once_past_its_exp(monkeypatch):
    check = verifier()
    decoded = []
    decode = check._decode
    monkeypatch.setattr(check, "_decode", lambda token: decoded.append(token) or decode(token))
    now = time.time()
    token = mint_token(JWT_SECRET, "acme", "agent-1", None, 60)
    assert check.verify(token).user == "agent-1"
    assert check.verify(token).user == "agent-1"
    assert len(decoded) == 1, "the second check is answered from memory"
    # Past exp the memory does not answer: PyJWT decides again (and refuses, in real time).
    monkeypatch.setattr(time, "time", lambda: now + 61)
    check.verify(token)
    assert len(decoded) == 2


def test_an_expired_token_is_refused_even_after_a_valid_one_was_remembered():
    check = verifier()
    check.verify(mint_token(JWT_SECRET, "acme", "agent-1", None, 60))
    with pytest.raises(Unauthorized) as refused:
        check.verify(mint_token(JWT_SECRET, "acme", "agent-1", None, -1))
    assert refused.value.code == "token_expired"


def test_a_forged_signature_is_never_answered_from_memory():
    check = verifier()
    token = mint_token(JWT_SECRET, "acme", "agent-1", None, 60)
    check.verify(token)
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-4]}AAAA"
    with pytest.raises(Unauthorized):
        check.verify(forged)


def test_the_memory_is_bounded():
    check = TokenVerifier(Settings(jwt_secret=JWT_SECRET), remember=3)
    for n in range(10):
        check.verify(mint_token(JWT_SECRET, "acme", f"agent-{n}", None, 60))
        assert len(check._accepted) <= 3
