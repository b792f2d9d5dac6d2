"""Errors as values with an HTTP status and a stable code.

One middleware (relay.http) renders any RelayError as `{"error", "detail"}`.
"""

from __future__ import annotations


class RelayError(Exception):
    status = 400
    code = "bad_request"
    headers: dict[str, str] | None = None

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code


class BadRequest(RelayError):
    status = 400


class BadLastCheck(BadRequest):
    code = "bad_last_check"


class Unauthorized(RelayError):
    status = 401
    code = "unauthorized"


class Forbidden(RelayError):
    status = 403
    code = "forbidden"


class NotFound(RelayError):
    status = 404
    code = "not_found"


class StoreUnavailable(RelayError):
    """The store did not answer in time: nothing was acknowledged, retry later."""

    status = 503
    code = "store_unavailable"
    headers = {"Retry-After": "1"}


class TooManyRequests(RelayError):
    status = 429
    code = "too_many_requests"
    headers = {"Retry-After": "5"}


class Overloaded(RelayError):
    """This process is at a configured capacity: another replica may have room."""

    status = 503
    code = "overloaded"
    headers = {"Retry-After": "2"}


class BodyTooLarge(RelayError):
    status = 413
    code = "body_too_large"


class IncompleteBody(RelayError):
    status = 400
    code = "incomplete_body"


class RequestTimeout(RelayError):
    status = 408
    code = "request_timeout"
