"""Twilio signatures agree with twilio-python's RequestValidator: the official vectors,
every fixture, the bodySHA256 and SharedKey variants, and arbitrary parameters."""

from __future__ import annotations

import hashlib
import json
import time
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, MultiDict
from twilio.request_validator import RequestValidator

from relay.ingest.providers import provider_problems, twilio
from relay.ingest.providers.common.base import Delivery, Rejected
from relay.settings import Source
from tests.credentials import auth
from tests.provider_fixtures import (
    FIXTURES,
    SOURCES,
    TWILIO_PUBLIC_URL,
    TWILIO_SHARED_KEY,
    TWILIO_TOKEN,
)

VECTORS = json.loads((FIXTURES / "twilio" / "signature_test_vectors.json").read_text())
FACTS = json.loads((FIXTURES / "twilio" / "signatures.json").read_text())["facts"]
SOURCE = SOURCES["acme-twilio"]


def _delivery(url: str, body: bytes, signature: str, **headers: str) -> Delivery:
    return Delivery(
        method="POST",
        url=url,
        headers=CIMultiDict({"X-Twilio-Signature": signature, **headers}),
        query=MultiDict(),
        body=body,
        received_at=time.time(),
    )


def _vector_params(vector: dict) -> list[tuple[str, str]]:
    if "params_list" in vector:
        return [tuple(pair) for pair in vector["params_list"]]
    params = vector["params"]
    if params == "same as 'form params'":
        params = VECTORS["vectors"][0]["params"]
    return list(params.items())


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"][:40])
def test_official_vectors_verify(vector):
    token = VECTORS["auth_token"]
    source = Source("v", "twilio", "acme", {"secret": token}, {"public_url": "https://x"})
    url = vector.get("url") or vector["url_received"]
    if "body" in vector:
        body = vector["body"].encode()
        assert hashlib.sha256(body).hexdigest() == vector["body_sha256_hex"]
    else:
        params = _vector_params(vector)
        body = urlencode(params).encode()
        if "url" in vector:
            ours = twilio.signature(token, url, params, "HMAC_SHA1")
            theirs = RequestValidator(token).compute_signature(url, MultiDict(params))
            assert ours == theirs == vector["expected_signature"]
    twilio.verify(_delivery(url, body, vector["expected_signature"]), source)
    with pytest.raises(Rejected):
        twilio.verify(_delivery(url, body + b"&x=1", vector["expected_signature"]), source)


@pytest.mark.parametrize(
    "fact", [f for f in FACTS if "file" in f], ids=lambda f: f["file"] + f.get("variant", "")[:9]
)
def test_every_fixture_signature_agrees_with_the_request_validator(fact):
    body = (FIXTURES / "twilio" / fact["file"]).read_text()
    params = MultiDict(parse_qsl(body, keep_blank_values=True))
    shared = "variant" in fact
    key = TWILIO_SHARED_KEY if shared else TWILIO_TOKEN
    algorithm = "HMAC_SHA256" if shared else "HMAC_SHA1"
    signature = fact["header"]["X-Twilio-Signature"]
    assert RequestValidator(key).validate(fact["url"], params, signature, algorithm)
    assert twilio.signature(key, fact["url"], list(params.items()), algorithm) == signature


async def test_a_sharedkey_signed_delivery_is_accepted(make_settings, client_for):
    (fact,) = [f for f in FACTS if "variant" in f]
    client = await client_for(make_settings(sources=SOURCES))
    start = await (await client.get("/api/chats/check-updates/", headers=auth())).json()
    response = await client.post(
        "/webhooks/acme-twilio",
        data=(FIXTURES / "twilio" / fact["file"]).read_bytes(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": fact["header"]["X-Twilio-Signature"],
            "X-Twilio-Webhooks-Signature-Settings": "key=KS0001,algorithm=HMAC_SHA256",
        },
    )
    assert response.status == 200 and response.content_type == "text/xml"
    answer = await (
        await client.get(
            "/api/chats/check-updates/", params={"last_check": start["timestamp"]}, headers=auth()
        )
    ).json()
    assert [u["id"] for u in answer["updates"]] == ["twilio:SMfa0e5a1e000000000000000000000002"]


async def test_the_query_string_is_signed_with_the_public_url(make_settings, client_for):
    client = await client_for(make_settings(sources=SOURCES))
    body = b"MessageSid=SM1&From=%2B15550100300&To=%2B15550100200&Body=hi&NumMedia=0"
    params = MultiDict(parse_qsl(body.decode()))
    public = RequestValidator(TWILIO_TOKEN).compute_signature(f"{TWILIO_PUBLIC_URL}?rc=1", params)
    internal = RequestValidator(TWILIO_TOKEN).compute_signature(
        str(client.make_url("/webhooks/acme-twilio?rc=1")), params
    )
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    behind_proxy = await client.post(
        "/webhooks/acme-twilio?rc=1", data=body, headers={**form, "X-Twilio-Signature": public}
    )
    assert behind_proxy.status == 200
    # Signed over the URL relay itself sees: not what Twilio would have signed.
    wrong = await client.post(
        "/webhooks/acme-twilio?rc=1", data=body, headers={**form, "X-Twilio-Signature": internal}
    )
    assert wrong.status == 401


def test_a_twilio_source_needs_its_public_url():
    bare = Source("sms", "twilio", "acme", {"secret": TWILIO_TOKEN})
    (problem,) = provider_problems({"sms": bare})
    assert "[sources.sms]" in problem and "public_url" in problem


@given(
    st.lists(st.tuples(st.text(min_size=1, max_size=12), st.text(max_size=30)), max_size=12),
    st.sampled_from(["https://a.example/x", "https://a.example:8443/y?z=1", "http://b.test/"]),
)
def test_signatures_agree_with_the_request_validator_for_any_parameters(params, url):
    ours = twilio.signature(TWILIO_TOKEN, url, params, "HMAC_SHA1")
    assert ours == RequestValidator(TWILIO_TOKEN).compute_signature(url, MultiDict(params))
