"""Apply an effect once per (consumer group, event id), atomically with the effect.

- Redis: ``RedisOnce`` wraps a Lua effect in a script that first sets the dedupe key with NX;
  the check and the effect run as one script, so Redis never sees one without the other.
- SQL: ``claim`` (one event) and ``claim_many`` (a batch, one statement) insert processed-event
  rows in the caller's transaction; the effect commits or rolls back with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from redis import Redis
    from sqlalchemy import Connection, MetaData, Table
    from sqlalchemy.orm import Session

DEFAULT_TTL_S = 7 * 24 * 3600  # longer than the topics' retention: a redelivery finds its key

T = TypeVar("T")

# (event id, keys, args) of one RedisOnce call.
Call = tuple[str, Sequence[str], Sequence[Any]]


class Effects(Protocol):
    """Applies script calls once per event id, in one round trip (``RedisOnce``)."""

    def apply_many(self, calls: Iterable[Call]) -> list[bool]: ...


class RedisOnce:
    """A Lua effect applied at most once per event id.

    In ``effect_lua`` the caller's keys start at ``KEYS[2]`` and its arguments at ``ARGV[3]``
    (``KEYS[1]``, ``ARGV[1..2]`` are the dedupe key, its value and TTL). The script returns 1
    when the effect ran, 0 for a duplicate.
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
        self._client = client
        self._prefix = f"{key_prefix}processed:{group}:"
        self._ttl = ttl_s
        self._script = client.register_script(
            "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then\n"
            f"{effect_lua}\n"
            "return 1\nend\nreturn 0\n"
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
    from sqlalchemy import Column, DateTime, String, Table

    return Table(
        name,
        metadata,
        Column("consumer_group", String(100), primary_key=True),
        Column("event_id", String(64), primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False),
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
) -> list[T]:
    """``claim_many`` for a batch: the items to apply now, in order, each event id once (a
    batch may hold the same event twice)."""
    items = list(items)
    claimed = claim_many(db, table, group, map(event_id, items))
    fresh = []
    for item in items:
        if event_id(item) in claimed:
            claimed.discard(event_id(item))
            fresh.append(item)
    return fresh
