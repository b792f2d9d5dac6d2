"""Caps on open SSE streams and long-poll waiters, per process and per user."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from relay.errors import Overloaded, TooManyRequests


class Slots:
    def __init__(
        self,
        kind: str,
        per_process: int,
        per_user: int,
        refused: Callable[[str], None] = lambda limit: None,
    ) -> None:
        self.kind = kind
        # Told "<kind>_process" or "<kind>_user" at each refusal (the metric's label).
        self.refused = refused
        self.per_process = per_process
        self.per_user = per_user
        self.total = 0
        self._by_user: Counter[tuple[str, str]] = Counter()

    @contextmanager
    def hold(self, account: str, user: str) -> Iterator[None]:
        """One slot for the duration of the block, or a 503 / 429 refusal."""
        key = (account, user)
        label = self.kind.split()[-1]
        if self.total >= self.per_process:
            self.refused(f"{label}_per_process")
            raise Overloaded(f"this relay holds its maximum of {self.per_process} {self.kind}")
        if self._by_user[key] >= self.per_user:
            self.refused(f"{label}_per_user")
            raise TooManyRequests(f"at most {self.per_user} {self.kind} per user")
        self.total += 1
        self._by_user[key] += 1
        try:
            yield
        finally:
            self.total -= 1
            self._by_user[key] -= 1
            if not self._by_user[key]:
                del self._by_user[key]
