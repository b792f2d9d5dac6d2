"""Body bytes in flight: how much of the request bodies being read this process holds.

A body is held in memory until it is complete, and a sender decides how long that takes:
100 uploads stalled one byte short of 4 MiB held 400 MiB. Every body being read reserves
its declared length (or, chunked, what has arrived) before it is read, against a process
total and a per-client-address share; past either the request is refused at once, with
Retry-After, instead of being buffered. Bodies not yet authenticated (a signature that
covers the body can only be checked once it is all there) may fill only part of the total,
so deliveries a header already authenticated always find room.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

from relay.errors import Overloaded, TooManyRequests

UNAUTHENTICATED_SHARE = 0.75
# Bodies are read in chunks of up to 64 KiB, which glibc's malloc serves from its heap and
# keeps after they are freed: without a trim, RSS stays at its high-water mark for good.
TRIM_AFTER = 8 * 1024 * 1024


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
        return trim
    except (OSError, AttributeError):
        return None  # not glibc (musl, macOS): nothing to trim, or nothing to trim with


MALLOC_TRIM = _malloc_trim()


class AddressOverBudget(TooManyRequests):
    code = "too_many_bytes_in_flight"
    headers = {"Retry-After": "5"}


class ProcessOverBudget(Overloaded):
    code = "too_many_bytes_in_flight"


class BodyBudget:
    def __init__(self, total: int, per_address: int) -> None:
        self.total = total
        self.per_address = per_address
        self.in_flight = 0
        self._by_address: dict[str, int] = {}
        self._peak = 0  # since the last trim

    def hold(self, address: str, authenticated: bool) -> Reservation:
        return Reservation(self, address, authenticated)

    def _reserve(self, address: str, size: int, authenticated: bool) -> None:
        ceiling = self.total if authenticated else int(self.total * UNAUTHENTICATED_SHARE)
        if self.in_flight + size > ceiling:
            raise ProcessOverBudget(
                "relay is reading as many request bodies as it may hold; retry shortly"
            )
        held = self._by_address.get(address, 0)
        # Authenticated senders (a provider's few egress addresses) are not held to the
        # per-address share: only the total bounds them.
        if not authenticated and held + size > self.per_address:
            raise AddressOverBudget(
                "this address has too many request bodies in flight; retry shortly"
            )
        self.in_flight += size
        self._by_address[address] = held + size
        self._peak = max(self._peak, self.in_flight)

    def _release(self, address: str, size: int) -> None:
        self.in_flight -= size
        left = self._by_address.get(address, 0) - size
        if left > 0:
            self._by_address[address] = left
        else:
            self._by_address.pop(address, None)
        if self.in_flight == 0 and self._peak >= TRIM_AFTER:
            # Every body is gone: hand the memory they used back to the system (a few ms,
            # and only after a large peak, so at most once per burst of big bodies).
            self._peak = 0
            if MALLOC_TRIM is not None:
                MALLOC_TRIM(0)


class Reservation:
    """What one body being read holds; released, all of it, when the read is over."""

    def __init__(self, budget: BodyBudget, address: str, authenticated: bool) -> None:
        self.budget = budget
        self.address = address
        self.authenticated = authenticated
        self.size = 0

    def grow(self, size: int) -> None:
        self.budget._reserve(self.address, size, self.authenticated)
        self.size += size

    def release(self) -> None:
        if self.size:
            self.budget._release(self.address, self.size)
            self.size = 0

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()
