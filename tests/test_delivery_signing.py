"""relay's Standard Webhooks signatures, cross-checked against the `standardwebhooks`
package: one signature per key while keys rotate, each verifiable on its own."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from relay.delivery.signing import signature, webhook_headers

NEW = base64.b64encode(b"new-key-0123456789abcdef01234567").decode()
OLD = base64.b64encode(b"old-key").decode()
BODY = b'{"id":"wamid.1","type":"message.created","account":"acme","text":"ol\xc3\xa1"}'


def test_the_package_signs_exactly_as_relay_does():
    now = int(time.time())
    ours = signature([base64.b64decode(NEW)], "wamid.1", now, BODY)

    theirs = Webhook(f"whsec_{NEW}").sign(
        "wamid.1", datetime.fromtimestamp(now, UTC), BODY.decode()
    )
    assert ours == theirs


def test_while_keys_rotate_a_receiver_with_either_key_verifies():
    headers = webhook_headers(
        [base64.b64decode(NEW), base64.b64decode(OLD)], "wamid.1", int(time.time()), BODY
    )
    assert len(headers["webhook-signature"].split(" ")) == 2
    for key in (NEW, OLD):
        assert Webhook(f"whsec_{key}").verify(BODY, headers)["id"] == "wamid.1"
    other = base64.b64encode(b"someone-else").decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(f"whsec_{other}").verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(f"whsec_{NEW}").verify(BODY + b" ", headers)
