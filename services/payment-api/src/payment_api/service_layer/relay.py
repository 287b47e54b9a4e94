"""The outbox relay: publish committed events to Kafka, mark them only once acknowledged.

It wakes right after a commit that wrote events (low latency) and sweeps every interval
for anything left behind (a crash, a broker outage). It runs in a thread of its own, so a
slow or absent broker never holds up a request.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog
from opentelemetry.instrumentation.utils import suppress_instrumentation
from ticketing_events import tracing
from ticketing_events.metrics import meter
from ticketing_events.producer import DeliveryError, OutgoingMessage

from payment_api.adapters.outbox import OutboxRow, OutboxStore
from payment_api.service_layer.background import BackgroundLoop

log = structlog.get_logger(__name__)

_meter = meter("payment_api.relay")
_publish_duration = _meter.create_histogram(
    "ticketing.outbox.publish.duration",
    unit="s",
    description="Time from a batch's publish to Kafka's acknowledgement of all of it",
)
_published = _meter.create_counter(
    "ticketing.outbox.published", unit="{event}", description="Outbox events Kafka acknowledged"
)
_publish_failures = _meter.create_counter(
    "ticketing.outbox.publish.failures",
    unit="{batch}",
    description="Batches Kafka did not acknowledge whole (given back, published again)",
)


class Publisher(Protocol):
    """``ticketing_events.producer.EventProducer``: returns once Kafka acknowledged all."""

    def publish(self, messages: Sequence[OutgoingMessage], timeout: float = ...) -> None: ...


def outgoing(row: OutboxRow) -> OutgoingMessage:
    """The row as a Kafka message whose publish span continues the writer's trace."""
    carrier = {"traceparent": row.traceparent, "tracestate": row.tracestate}
    context = tracing.extract({k: v.encode() for k, v in carrier.items() if v})
    return OutgoingMessage(
        topic=row.topic,
        key=row.key,
        value=row.payload.encode(),
        event_id=row.event_id,
        event_type=row.event_type,
        schema_version=row.schema_version,
        context=context,
    )


class OutboxRelay:
    def __init__(
        self,
        store: OutboxStore,
        publisher: Publisher,
        *,
        batch_size: int,
        sweep_interval_s: float,
        publish_timeout_s: float,
        coalesce_s: float = 0.0,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._batch_size = batch_size
        self._publish_timeout = publish_timeout_s
        # A lease outlives the publish call, so a live relay never loses its rows.
        self._lease = timedelta(seconds=publish_timeout_s * 2 + 5)
        self._coalesce = coalesce_s
        self._retry_after = 0.0
        self._backoff = sweep_interval_s
        self.loop = BackgroundLoop("outbox-relay", self.drain, sweep_interval_s)

    def notify(self) -> None:
        """Called after a commit that wrote events."""
        self.loop.wake()

    def start(self) -> None:
        self.loop.start()

    def stop(self) -> None:
        self.loop.stop(timeout=self._publish_timeout + 5)

    def drain(self) -> int:
        """Publish until nothing publishable is left (or a publish fails); how many went out."""
        if time.monotonic() < self._retry_after:
            return 0  # backing off after a failed publish; the sweep comes back
        if self._coalesce:
            time.sleep(self._coalesce)
        sent = 0
        acked: list[int] = []
        while True:
            now = datetime.now(UTC)
            limit = 0 if self.loop.stopping else self._batch_size  # 0: only mark the last batch
            with suppress_instrumentation():
                rows = self._store.claim(limit, now, now + self._lease, published=acked)
            if not rows:
                return sent
            started = time.perf_counter()
            try:
                self._publisher.publish(
                    [outgoing(r) for r in rows], timeout=self._publish_timeout + 1
                )
            except DeliveryError as exc:
                _publish_failures.add(1)
                self._settle_failure(rows, {event_id for event_id, _ in exc.failures})
                self._retry_after = time.monotonic() + self._backoff
                log.warning("outbox publish failed; will retry", error=str(exc)[:300])
                return sent
            _publish_duration.record(time.perf_counter() - started)
            _published.add(len(rows))
            acked = [r.id for r in rows]
            sent += len(rows)

    def _settle_failure(self, rows: list[OutboxRow], failed: set[str]) -> None:
        """Mark what Kafka acknowledged despite the failure; give the rest back at once."""
        acked = [] if "*" in failed else [r.id for r in rows if r.event_id not in failed]
        with suppress_instrumentation():
            self._store.mark_published(acked, datetime.now(UTC))
            self._store.release([r.id for r in rows if r.id not in set(acked)])
