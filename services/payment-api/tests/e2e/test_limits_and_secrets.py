"""Open doors closed: a large body is refused before it is read, and no secret (JWT, queue
token) reaches the exported spans or the logs."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog
from payment_api.auth import mint_dev_token
from payment_api.redaction import (
    REDACTED,
    RedactingFilter,
    install_log_redaction,
    redact_event,
    redact_url,
)
from ticketing_events.logs import configure_logging

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.kafka]

PROBLEM = "application/problem+json"


def _assert_413(response) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "urn:ticketing:problem:body-too-large"


def test_a_large_body_is_413_before_it_is_read(api, world, settings):
    user_id = world.user()
    token = api.active_token(user_id)
    before = world.counts()
    big = b'{"seat_id": 1, "pad": "' + b"x" * (settings.api_max_body_bytes + 10) + b'"}'
    headers = {**api.auth(token), "Content-Type": "application/json"}
    for path in ("/v1/reservations", "/v1/payments", f"/v1/users/{user_id}/points/charge"):
        _assert_413(api.http.post(path, content=big, headers=headers))
    # refused on its Content-Length, even without credentials: nothing was read
    _assert_413(api.http.post("/v1/queue/tokens", content=b"x" * 10_000_000))

    def chunks():  # no Content-Length: chunked transfer encoding
        for _ in range(64):
            yield b"x" * 1024

    _assert_413(api.http.post("/v1/reservations", content=chunks(), headers=headers))
    assert world.counts() == before
    # a small chunked body still goes through
    _, _, seats = world.schedule(seats=1)
    small = api.http.post(
        "/v1/reservations",
        content=iter([b'{"seat_id": ', str(seats[0]).encode(), b"}"]),
        headers=headers,
    )
    assert small.status_code == 201, small.text


@pytest.fixture
def process_logs():
    """The process's logging as ``payment-api serve`` configures it, into a buffer."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("payment-api", "DEBUG")
    install_log_redaction()
    buffer = io.StringIO()
    handler = root.handlers[0]
    handler.setStream(buffer)  # type: ignore[attr-defined]
    yield buffer
    structlog.reset_defaults()
    root.handlers[:], level = saved
    root.setLevel(level)


def test_no_secret_in_exported_spans_or_logs(api, world, spans, process_logs):
    user_id = world.user(points=5000)
    _, _, seats = world.schedule(seats=1, price=10)
    token = api.active_token(user_id)
    jwt = api.user(user_id)["Authorization"].removeprefix("Bearer ")
    reservation = api.reserve(token, seats[0]).json()["reservation_id"]
    assert api.pay(token, reservation).status_code == 201
    # clients putting secrets where they do not belong
    old_path = api.http.get(f"/v1/queue/tokens/{token}", headers=api.user(user_id))
    assert old_path.status_code == 422
    api.http.get("/v1/concerts", params={"token": token, "access_token": jwt})
    bad = mint_dev_token(user_id, secret="not-the-key-of-the-server-at-all-0123456789")
    assert (
        api.http.post("/v1/queue/tokens", headers={"Authorization": f"Bearer {bad}"}).status_code
        == 401
    )
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1", "GET", f"/v1/queue/tokens/{token}", "1.1", 422
    )
    structlog.get_logger("test").warning("client sent", authorization=f"Bearer {jwt}", note=bad)

    exported = spans.get_finished_spans()
    server = [s for s in exported if s.kind.name == "SERVER"]
    assert len(server) >= 6
    text = json.dumps(
        [
            {
                "name": s.name,
                "attributes": dict(s.attributes or {}),
                "events": [dict(e.attributes or {}) for e in s.events],
                "links": [dict(link.attributes or {}) for link in s.links],
            }
            for s in exported
        ],
        default=str,
    )
    logs = process_logs.getvalue()
    assert "client sent" in logs and REDACTED in logs
    for secret in (token, jwt, bad):
        assert secret not in text
        assert secret not in logs
    targets = [
        v
        for s in server
        for k, v in (s.attributes or {}).items()
        if k in ("http.target", "url.path", "http.url", "url.full")
    ]
    assert any(REDACTED in str(v) for v in targets)


def test_redaction_rules():
    token = "A" * 43
    token_id = "a" * 64
    assert redact_url(f"/v1/queue/tokens/{token}") == f"/v1/queue/tokens/{REDACTED}"
    assert redact_url(f"/v1/queue/tokens/{token_id}") == f"/v1/queue/tokens/{token_id}"
    assert token not in redact_url(f"http://h:1/v1/x?token={token}&limit=5")
    assert "limit=5" in redact_url(f"http://h:1/v1/x?token={token}&limit=5")
    event = redact_event(None, "info", {"x_queue_token": token, "message": "Bearer abcdefgh.ijk"})
    assert event == {"x_queue_token": REDACTED, "message": f"Bearer {REDACTED}"}
    record = logging.LogRecord("u", 20, "f", 1, "%s %s", (f"/p/{token}", "eyJa.eyJb.c"), None)
    RedactingFilter().filter(record)
    assert token not in record.getMessage() and "eyJa" not in record.getMessage()
