"""Secrets stay out of traces and logs: bearer JWTs, queue tokens, ``Authorization`` values.

The API never puts a secret in a URL (the queue token travels in ``X-Queue-Token``, its state
is read by the token's public id), but a client may still send one there, e.g. an old client
asking ``GET /v1/queue/tokens/<token>``. So:

- the server span's URL attributes get token-like path segments and ``*token*`` query values
  replaced (``server_request_hook``), and captured headers, when enabled with the standard
  OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_* variables, are sanitized (``SECRET_HEADERS``);
- log lines, structlog's and the standard library's, get JWTs, bearer values and secret
  fields replaced (``redact_event``, ``RedactingFilter``, ``install_log_redaction``).
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode

import structlog

REDACTED = "[redacted]"
SECRET_HEADERS = ["authorization", "x-queue-token", "cookie", "set-cookie", "proxy-authorization"]
SECRET_FIELDS = frozenset(
    {"authorization", "x-queue-token", "x_queue_token", "token", "queue_token", "jwt", "secret"}
)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/-]{8,}=*")
# A queue token is 43 URL-safe characters; a token id (sha256 hex, public) is not redacted.
_TOKEN_SEGMENT = re.compile(r"^[A-Za-z0-9_-]{32,}$")
_TOKEN_ID = re.compile(r"^[0-9a-f]{64}$")
_URL_ATTRIBUTES = ("http.target", "http.url", "url.path", "url.full", "url.query")


def redact_text(text: str) -> str:
    return _BEARER.sub(rf"\1 {REDACTED}", _JWT.sub(REDACTED, text))


def redact_path(path: str) -> str:
    return "/".join(
        REDACTED if _TOKEN_SEGMENT.match(part) and not _TOKEN_ID.match(part) else part
        for part in path.split("/")
    )


def redact_query(query: str) -> str:
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode(
        [
            (k, REDACTED if "token" in k.lower() or k.lower() in SECRET_FIELDS else v)
            for k, v in pairs
        ],
        safe="[]",
    )


def redact_url(value: str) -> str:
    """A URL, a path or a path with its query, with the secrets in them replaced."""
    head, sep, query = value.partition("?")
    scheme, sep2, rest = head.partition("://")
    if sep2:
        host, slash, path = rest.partition("/")
        head = f"{scheme}://{host}{slash}{redact_path(path)}"
    else:
        head = redact_path(head)
    return head + sep + redact_query(query) if sep else head


def server_request_hook(span: Any, scope: dict[str, Any]) -> None:
    """FastAPIInstrumentor's hook: rewrite the URL attributes of the server span."""
    if span is None or not span.is_recording():
        return
    attributes = getattr(span, "attributes", None) or {}
    for key in _URL_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str):
            clean = redact_query(value) if key == "url.query" else redact_url(value)
            if clean != value:
                span.set_attribute(key, clean)


def redact_event(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """A structlog processor."""
    for key, value in event.items():
        if key.lower() in SECRET_FIELDS:
            event[key] = REDACTED
        elif isinstance(value, str):
            event[key] = redact_text(value)
    return event


class RedactingFilter(logging.Filter):
    """Rewrites standard-library records (uvicorn's, libraries') before any handler: JWTs
    and bearer values anywhere, token-like parts of a path argument (an access log line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(_redact_arg(a) for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact_text(record.msg)
        return True


def _redact_arg(value: Any) -> Any:
    if value is None or isinstance(value, int | float | bool):
        return value
    text = str(value)  # e.g. an httpx.URL
    clean = redact_text(text)
    if clean.startswith("/") or "://" in clean:
        clean = redact_url(clean)
    return value if clean == text else clean


def install_log_redaction() -> None:
    """After ``configure_logging``: redact in structlog's chain and on the root handlers."""
    config = structlog.get_config()
    processors = list(config["processors"])
    if redact_event not in processors:
        # before the last processor, which renders or hands the event to the stdlib
        processors.insert(max(len(processors) - 1, 0), redact_event)
        structlog.configure(processors=processors)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
