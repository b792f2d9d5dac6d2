"""Delivery to browsers: check-updates (poll and long-poll), SSE, waiters, wake-ups."""
