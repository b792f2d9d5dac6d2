"""Events in: the publish API and the provider webhooks (verify, normalize, append, ack)."""
