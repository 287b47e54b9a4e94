"""Apply an effect once per (consumer group, event id), atomically with the effect.

- Redis: ``RedisOnce`` wraps a Lua effect in one script: check the dedupe key, apply the
  effect, then set the key. Redis keeps a script's writes made before an error, so the key is
  set only once the effect has run to its end: an effect that failed is applied by its retry.
- SQL: ``claim`` (one event) and ``claim_many`` (a batch, one statement) insert processed-event
  rows in the caller's transaction; the effect commits or rolls back with it. ``claim_each``
  with a ``scope`` dedupes an effect on shared state across groups (replays).
  ``ProcessedRetention`` prunes the rows older than a horizon far beyond the topics' retention,
  of its groups and of their replays (``replay_group``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import structlog
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from redis import Redis
    from sqlalchemy import Connection, Engine, MetaData, Table
    from sqlalchemy.orm import Session

DEFAULT_TTL_S = 7 * 24 * 3600  # longer than the topics' retention: a redelivery finds its key
REPLAY_PREFIX = "replay-"

log = structlog.get_logger("ticketing_events.idempotency")

T = TypeVar("T")
B = TypeVar("B")

# (event id, keys, args) of one RedisOnce call.
Call = tuple[str, Sequence[str], Sequence[Any]]


class Effects(Protocol):
    """Applies script calls once per event id, in one round trip (``RedisOnce``)."""

    def apply_many(self, calls: Iterable[Call]) -> list[bool]: ...


class RedisOnce:
    """A Lua effect applied once per event id.

    In ``effect_lua`` the caller's keys start at ``KEYS[2]`` and its arguments at ``ARGV[3]``
    (``KEYS[1]``, ``ARGV[1..2]`` are the dedupe key, its value and TTL); it must not
    ``return``. The script returns 1 when the effect ran, 0 for a duplicate.

    An effect that errors (``WRONGTYPE``...) leaves the event unmarked, and the writes it made
    before the error stay: its retry runs it whole again, so a write that may come before a
    failing command must be safe to repeat (``SET``, ``DEL``), or the effect should check
    what could fail before its first write.
    """

    def __init__(
        self,
        client: Redis,
        group: str,
        effect_lua: str,
        *,
        ttl_s: int = DEFAULT_TTL_S,
        key_prefix: str = "",
    ) -> None:
        from ticketing_events.redis_layout import RedisKeys

        self._client = client
        self._prefix = RedisKeys(key_prefix).processed(group)
        self._ttl = ttl_s
        self._script = client.register_script(
            "if redis.call('EXISTS', KEYS[1]) == 1 then\nreturn 0\nend\n"
            f"{effect_lua}\n"
            "redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])\nreturn 1\n"
        )

    def dedupe_key(self, event_id: str) -> str:
        return self._prefix + event_id

    def apply(self, event_id: str, keys: Sequence[str] = (), args: Sequence[Any] = ()) -> bool:
        return bool(self._script([self.dedupe_key(event_id), *keys], [1, self._ttl, *args]))

    def apply_many(self, calls: Iterable[Call]) -> list[bool]:
        """One pipelined round trip for a batch of ``(event_id, keys, args)``.

        Should Redis not know the script yet (a restart, SCRIPT FLUSH), it is loaded and the
        refused calls are sent again: a NOSCRIPT reply means the call did nothing.
        """
        from redis.exceptions import NoScriptError

        calls = list(calls)
        results = self._evalsha_all(calls)
        refused = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if refused:
            self._client.script_load(self._script.script)
            for i, result in zip(
                refused, self._evalsha_all([calls[i] for i in refused]), strict=True
            ):
                results[i] = result
        for result in results:
            if isinstance(result, Exception):
                raise result
        return [bool(r) for r in results]

    def _evalsha_all(self, calls: list[Call]) -> list[Any]:
        if not calls:
            return []
        pipe = self._client.pipeline(transaction=False)
        for event_id, keys, args in calls:
            pipe.evalsha(
                self._script.sha,
                len(keys) + 1,
                self.dedupe_key(event_id),
                *keys,
                1,
                self._ttl,
                *args,
            )
        return list(pipe.execute(raise_on_error=False))


def processed_events_table(metadata: MetaData, name: str = "processed_events") -> Table:
    """The processed-event table a service adds to its own schema (and migrations)."""
    from sqlalchemy import Column, DateTime, Index, String, Table

    return Table(
        name,
        metadata,
        Column("consumer_group", String(100), primary_key=True),
        Column("event_id", String(64), primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False),
        Index(f"ix_{name}_group_processed_at", "consumer_group", "processed_at"),  # pruning
    )


def claim(db: Session | Connection, table: Table, group: str, event_id: str) -> bool:
    """Insert the processed-event row in the caller's transaction; False when it was there."""
    return bool(claim_many(db, table, group, [event_id]))


def claim_many(
    db: Session | Connection, table: Table, group: str, event_ids: Iterable[str]
) -> set[str]:
    """Insert the processed-event rows of ``event_ids`` with one statement in the caller's
    transaction; return the ids that were not there yet, the ones to apply now."""
    from ticketing_events.db import upsert

    ids = sorted(set(event_ids))  # the same order in every replica: no deadlock between them
    if not ids:
        return set()
    now = datetime.now(UTC)
    rows = [{"consumer_group": group, "event_id": i, "processed_at": now} for i in ids]
    dialect = db.get_bind().dialect.name if hasattr(db, "get_bind") else db.dialect.name
    stmt = upsert(dialect, table).values(rows).on_conflict_do_nothing()
    return set(db.execute(stmt.returning(table.c.event_id)).scalars())


def claim_each(
    db: Session | Connection,
    table: Table,
    group: str,
    items: Iterable[T],
    event_id: Callable[[T], str],
    *,
    scope: str | None = None,
) -> list[T]:
    """``claim_many`` for a batch: the items to apply now, in order, each event id once (a
    batch may hold the same event twice).

    ``scope`` is for an effect on state that every group shares (the registry group that owns
    it): the items to apply are the ones ``scope`` has not claimed, whichever group consumes
    them, so a replay under another group applies nothing twice. That group's own rows are
    claimed too, the record of what it consumed.
    """
    items = list(items)
    ids = [event_id(i) for i in items]
    claimed = claim_many(db, table, scope or group, ids)
    if scope is not None and scope != group:
        claim_many(db, table, group, ids)
    fresh = []
    for item in items:
        if event_id(item) in claimed:
            claimed.discard(event_id(item))
            fresh.append(item)
    return fresh


class ProcessedRetentionSettings(BaseSettings):
    """``PROCESSED_*``: how long a consumer keeps its processed-event rows."""

    model_config = SettingsConfigDict(extra="ignore")

    # Far beyond the topics' retention (Kafka's default, 7 days) and any replay window: an
    # event that can still be delivered finds its row.
    processed_retention_days: int = Field(default=30, ge=8)
    processed_prune_interval_s: float = Field(default=600.0, gt=0)
    processed_prune_chunk: int = Field(default=10_000, ge=1)


def replay_group(group: str, run: str) -> str:
    """The consumer group of a replay of ``group``'s topics (``CONSUMER_GROUP`` of the replaying
    consumer; ``run`` tells replays apart, e.g. a date). A group of its own, so it reads from
    offsets of its own; ``group``'s consumers prune its processed-event rows with theirs, since
    nothing runs under it once the replay is over."""
    return f"{REPLAY_PREFIX}{group}-{run}"


def prune_processed(
    engine: Engine, table: Table, groups: Iterable[str], before: datetime, limit: int
) -> int:
    """Delete at most ``limit`` rows claimed before ``before`` of ``groups``, then of their
    replays (``replay_group``), in one transaction; returns how many. Rows another replica is
    deleting are skipped (PostgreSQL ``SKIP LOCKED``), not waited for."""
    from sqlalchemy import ColumnElement, delete, or_, select, tuple_

    names = sorted(set(groups))
    key = tuple_(table.c.consumer_group, table.c.event_id)

    def prune(conn: Connection, of_groups: ColumnElement[bool], limit: int) -> int:
        old = (
            select(table.c.consumer_group, table.c.event_id)
            .where(of_groups, table.c.processed_at < before)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return int(conn.execute(delete(table).where(key.in_(old))).rowcount)

    # Replay groups are found by prefix, which the index may not narrow: only once the groups'
    # own rows (found by name, through the index) leave room in this chunk.
    replays = or_(
        *(table.c.consumer_group.startswith(replay_group(g, ""), autoescape=True) for g in names)
    )
    with engine.begin() as conn:
        deleted = prune(conn, table.c.consumer_group.in_(names), limit)
        if deleted < limit:
            deleted += prune(conn, replays, limit - deleted)
        return deleted


class ProcessedRetention:
    """Prunes the processed-event rows of ``groups`` older than the retention, between batches.

    A ``step`` deletes one chunk. It is due at once, then every interval; after a full chunk
    (a backlog) the next step is due at once again, so a backlog goes a chunk per batch and
    never holds the consumer long.
    """

    def __init__(
        self,
        engine: Engine,
        table: Table,
        groups: Iterable[str],
        settings: ProcessedRetentionSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._table = table
        self._groups = sorted(set(groups))
        self._keep = timedelta(days=settings.processed_retention_days)
        self._interval_s = settings.processed_prune_interval_s
        self._chunk = settings.processed_prune_chunk
        self._clock = clock
        self._due = clock()

    def step(self) -> int:
        """Prune a chunk if due; returns the rows deleted."""
        now = self._clock()
        if now < self._due:
            return 0
        self._due = now + self._interval_s  # set first: a failed prune waits its turn
        before = datetime.now(UTC) - self._keep
        deleted = prune_processed(self._engine, self._table, self._groups, before, self._chunk)
        if deleted == self._chunk:
            self._due = now
        if deleted:
            log.info("processed events pruned", rows=deleted, groups=self._groups)
        return deleted

    def after(self, handler: Callable[[B], None]) -> Callable[[B], None]:
        """``handler``, then a ``step``: batch handlers prune between batches. A failed step
        is logged, not raised: the batch is applied, and retrying it would not help."""

        def handle(batch: B) -> None:
            handler(batch)
            try:
                self.step()
            except Exception:
                log.exception("processed events not pruned", groups=self._groups)

        return handle
