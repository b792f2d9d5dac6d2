"""Delivery to the main application: signed Standard Webhooks pushes to the subscribers of
`relay.toml`, with durable cursors and fenced leases in the store."""
