"""payment-api's metrics (served on ``/metrics``; see ``ticketing_events.metrics``): HTTP request
duration by route and status, and the outbox's backlog and the age of its oldest row."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime

from opentelemetry.metrics import CallbackOptions, Observation
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from ticketing_events.metrics import meter

from payment_api.adapters.outbox import OutboxStore

_meter = meter("payment_api")
_request_duration = _meter.create_histogram(
    "http.server.request.duration", unit="s", description="Duration of HTTP server requests"
)


class HttpMetrics:
    """ASGI middleware: ``http.server.request.duration`` with the semantic conventions'
    attributes (method, route template, status code), one record per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._attributes: dict[tuple[str, str, int], dict[str, str | int]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app raises before it starts a response

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            _request_duration.record(
                time.perf_counter() - started, self._attrs(scope["method"], template, status)
            )

    def _attrs(self, method: str, route: str, status: int) -> dict[str, str | int]:
        key = (method, route, status)
        attrs = self._attributes.get(key)
        if attrs is None:
            attrs = self._attributes[key] = {
                "http.request.method": method,
                "http.route": route,
                "http.response.status_code": status,
            }
        return attrs


class OutboxGauges:
    """``ticketing.outbox.backlog`` and ``ticketing.outbox.oldest.age``, read from the
    database when Prometheus scrapes. The store of the process's latest started services."""

    store: OutboxStore | None = None

    def __init__(self) -> None:
        _meter.create_observable_gauge(
            "ticketing.outbox.backlog",
            callbacks=[self._backlog],
            unit="{event}",
            description="Outbox rows not yet published to Kafka",
        )
        _meter.create_observable_gauge(
            "ticketing.outbox.oldest.age",
            callbacks=[self._oldest_age],
            unit="s",
            description="Age of the oldest unpublished outbox row (0 when there is none)",
        )
        self._read: tuple[float, int, datetime | None] = (0.0, 0, None)

    def _backlog(self, _: CallbackOptions) -> Iterable[Observation]:
        read = self._current()
        return [Observation(read[1])] if read else []

    def _oldest_age(self, _: CallbackOptions) -> Iterable[Observation]:
        read = self._current()
        if not read:
            return []
        oldest = read[2]
        return [Observation((datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0)]

    def _current(self) -> tuple[float, int, datetime | None] | None:
        """One query serves both gauges of a scrape."""
        if self.store is None:
            return None
        if time.monotonic() - self._read[0] > 1.0:
            self._read = (time.monotonic(), *self.store.backlog())
        return self._read


outbox_gauges = OutboxGauges()
