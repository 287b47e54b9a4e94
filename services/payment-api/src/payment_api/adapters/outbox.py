"""The outbox table: written in the business transaction, read and marked by the relay.

Per-key order across relays: a relay claims only rows that have no older unpublished row
with the same key, so a key's next event waits until its previous one is acknowledged.
Claiming is ``SELECT ... FOR UPDATE SKIP LOCKED`` in small batches plus a lease, so two
relays never take the same row while its publish is in flight.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import structlog
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy import Connection, Engine, Update, bindparam, exists, func, insert, select, update
from ticketing_events.schemas import Envelope

from payment_api.adapters.tables import OutboxMessage, table_of

if TYPE_CHECKING:
    import psycopg

log = structlog.get_logger(__name__)

outbox = table_of(OutboxMessage)
_W3C = TraceContextTextMapPropagator()
_INSERT = insert(outbox)


class OutboxWriter:
    """Adds events to the outbox in the caller's transaction, with the current trace context."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.written = 0

    def add(self, event: Envelope) -> None:
        carrier: dict[str, str] = {}
        _W3C.inject(carrier)
        row = {
            "event_id": event.event_id,
            "topic": event.TYPE,
            "key": event.key,
            "event_type": event.event_type,
            "schema_version": event.schema_version,
            "payload": event.model_dump_json(),
            "traceparent": carrier.get("traceparent"),
            "tracestate": carrier.get("tracestate"),
            "created_at": datetime.now(UTC),
        }
        self._conn.execute(_INSERT, row)
        self.written += 1


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    event_id: str
    topic: str
    key: str
    event_type: str
    schema_version: str
    payload: str
    traceparent: str | None
    tracestate: str | None
    created_at: datetime


def _claim_statement() -> Update:
    """Lease publishable rows (bind ``limit``, ``now``, ``lease_until``), at most one per key."""
    candidate = outbox.alias("candidate")
    older = outbox.alias("older")
    has_older_pending = exists().where(
        older.c.key == candidate.c.key,
        older.c.published_at.is_(None),
        older.c.id < candidate.c.id,
    )
    ids = (
        select(candidate.c.id)
        .where(
            candidate.c.published_at.is_(None),
            candidate.c.lease_until.is_(None) | (candidate.c.lease_until < bindparam("now")),
            ~has_older_pending,
        )
        .order_by(candidate.c.id)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
    )
    return (
        update(outbox)
        .where(outbox.c.id.in_(ids.scalar_subquery()))
        .values(lease_until=bindparam("lease_until"))
        .returning(*(outbox.c[f] for f in OutboxRow.__slots__))
    )


# Built once: the relay runs these all the time.
_CLAIM = _claim_statement()
_MARK = (
    update(outbox)
    .where(outbox.c.id.in_(bindparam("ids", expanding=True)))
    .values(published_at=bindparam("at"), lease_until=None)
)
_RELEASE = (
    update(outbox).where(outbox.c.id.in_(bindparam("ids", expanding=True))).values(lease_until=None)
)


class OutboxStore:
    """The relay's side of the outbox; each call is its own short transaction."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def claim(
        self,
        limit: int,
        now: datetime,
        lease_until: datetime,
        published: Sequence[int] = (),
    ) -> list[OutboxRow]:
        """Lease up to ``limit`` publishable rows, oldest first, at most one per key.

        ``published`` (the ids the previous batch got acknowledged) are marked first in the
        same transaction, which saves the relay a round of its own per batch.
        """
        with self._engine.begin() as conn:
            if published:
                conn.execute(_MARK, {"ids": list(published), "at": now})
            params = {"limit": limit, "now": now, "lease_until": lease_until}
            rows = [OutboxRow(*r) for r in conn.execute(_CLAIM, params)]
        return sorted(rows, key=lambda r: r.id)

    def mark_published(self, ids: Sequence[int], now: datetime) -> None:
        if ids:
            with self._engine.begin() as conn:
                conn.execute(_MARK, {"ids": list(ids), "at": now})

    def release(self, ids: Sequence[int]) -> None:
        """Give rows back at once after a failed publish, for the next attempt."""
        if ids:
            with self._engine.begin() as conn:
                conn.execute(_RELEASE, {"ids": list(ids)})

    def prune(self, published_before: datetime, limit: int) -> int:
        """Delete up to ``limit`` rows published before then, lowest ids first, in a
        transaction of their own; the number deleted."""
        batch = (
            select(outbox.c.id)
            .where(outbox.c.published_at < published_before)
            .order_by(outbox.c.id)
            .limit(limit)
        )
        with self._engine.begin() as conn:
            return conn.execute(outbox.delete().where(outbox.c.id.in_(batch))).rowcount

    def pending(self) -> int:
        """How many rows wait for Kafka."""
        return self.backlog()[0]

    def backlog(self) -> tuple[int, datetime | None]:
        """How many rows wait for Kafka, and when the oldest of them was written."""
        stmt = select(func.count(), func.min(outbox.c.created_at)).where(
            outbox.c.published_at.is_(None)
        )
        with self._engine.connect() as conn:
            count, oldest = conn.execute(stmt).one()
        return int(count), oldest


class OutboxListener:
    """PostgreSQL only: calls ``wake`` when another process commits outbox rows in this
    engine's schema (LISTEN on the channel of migration 0004), and once on every (re)connect
    for what was written meanwhile. A thread of its own, on one connection taken out of the
    engine's pool; a lost connection is made again after ``retry_s``."""

    CHANNEL = "ticketing_outbox"

    def __init__(self, engine: Engine, wake: Callable[[], None], retry_s: float = 1.0) -> None:
        self._engine = engine
        self._wake = wake
        self._retry = retry_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outbox-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as exc:
                log.warning("outbox listener lost its connection", error=str(exc)[:200])
                self._stop.wait(self._retry)

    def _listen(self) -> None:
        pooled = self._engine.raw_connection()
        conn = cast("psycopg.Connection[Any]", pooled.driver_connection)
        pooled.detach()  # held for as long as it lives; closed, not handed back
        try:
            conn.autocommit = True
            row = conn.execute("select current_schema()").fetchone()
            schema = row[0] if row else None
            conn.execute(f"LISTEN {self.CHANNEL}")
            self._wake()
            while not self._stop.is_set():
                for note in conn.notifies(timeout=0.5):
                    if note.payload == schema:
                        self._wake()
        finally:
            pooled.close()
