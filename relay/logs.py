"""structlog setup: JSON lines (console on a TTY) and a redactor that runs before any
renderer, so tokens, API keys, signatures and secrets never reach a log line.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import structlog

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


class Redactor:
    """A structlog processor: drops the values of secret-named keys and scrubs known
    secret values and credential patterns out of every string it finds."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, _logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
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
        return _SECRET_TEXT.sub(_keep_prefix, text)


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
    # Libraries that use the standard logging module go through the same redaction.
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_RedactingFormatter(redactor))
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


def get_logger(name: str = "relay") -> Any:
    return structlog.get_logger(name)
