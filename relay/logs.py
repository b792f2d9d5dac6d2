"""structlog setup: JSON lines (console on a TTY) and a redactor that runs before any
renderer, so tokens, API keys, signatures and secrets never reach a log line.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
import structlog
from aiohttp.http_exceptions import HttpProcessingError
from structlog.typing import EventDict, WrappedLogger

from relay.sampled_log import SampledLog

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(
    r"token|authorization|api_?key|apikey|secret|signature|password|cookie|jwt", re.IGNORECASE
)
# Credentials inside free text: a query string, a header dump, a URL with a password.
_SECRET_TEXT = re.compile(
    r"(?i)((?:token|api_?key|apikey|secret|signature|password|hub\.verify_token)=)[^&\s\"']+"
    r"|(bearer\s+)[A-Za-z0-9._~+/=-]+"
    r"|(://[^:/@\s]*:)[^@\s]+(@)"
)
# Anything shaped like a JWT (header.payload.signature, the header a base64url JSON object),
# wherever it sits: a path segment, `?jwt=`, an Authorization header without `Bearer`.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")


class Redactor:
    """A structlog processor: drops the values of secret-named keys and scrubs known
    secret values and credential patterns out of every string it finds."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, _logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
        return {key: self._clean(key, value) for key, value in event.items()}

    def _clean(self, key: str, value: Any) -> Any:
        if key != "event" and _SECRET_KEY.search(key):
            return REDACTED
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {k: self._clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean("", v) for v in value]
        return value

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return _JWT.sub(REDACTED, _SECRET_TEXT.sub(_keep_prefix, text))


def _keep_prefix(match: re.Match[str]) -> str:
    if match[1]:
        return match[1] + REDACTED
    if match[2]:
        return match[2] + REDACTED
    return match[3] + REDACTED + match[4]


def configure_logging(
    level: str = "info",
    fmt: str = "json",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    redactor = Redactor(secrets)
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries that use the standard logging module go through the same redaction, and
    # are JSON lines too when the format is JSON (a traceback is one escaped field).
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        _JsonRecordFormatter(redactor) if fmt == "json" else _RedactingFormatter(redactor)
    )
    handler.addFilter(_MalformedHttp(malformed_log))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(logging.getLevelNamesMapping()[level.upper()], logging.INFO))
    # aiohttp's own access log prints the raw query string (`?token=`): relay logs requests itself.
    logging.getLogger("aiohttp.access").disabled = True


class _RedactingFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__("%(levelname)s %(name)s %(message)s")
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor.scrub(super().format(record))


class _JsonRecordFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "event": self.redactor.scrub(record.getMessage()),
            "logger": record.name,
            "level": record.levelname.lower(),
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
        }
        if record.exc_info:
            document["exception"] = self.redactor.scrub(self.formatException(record.exc_info))
        return orjson.dumps(document).decode()


class _MalformedHttp(logging.Filter):
    """aiohttp logs a request it cannot parse as an error with a traceback whose message
    holds the offending bytes (a header, a path, a TLS handshake sent to plain HTTP): on
    the public internet that is noise, and the bytes may carry anything. It becomes one
    sampled `http.malformed` line with the error's type and status, and no bytes."""

    def __init__(self, sampled: SampledLog) -> None:
        super().__init__()
        self.sampled = sampled

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if record.name != "aiohttp.server" or not isinstance(error, HttpProcessingError):
            return True
        self.sampled.info(error.code or 400, error=type(error).__name__)
        return False


def get_logger(name: str = "relay") -> Any:
    return structlog.get_logger(name)


malformed_log = SampledLog(get_logger("relay.http"), "http.malformed")
