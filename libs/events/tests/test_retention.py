"""Pruning old processed-event rows, on the real PostgreSQL (and SQLite, the local default)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from ticketing_events.idempotency import (
    ProcessedRetention,
    ProcessedRetentionSettings,
    claim_each,
    processed_events_table,
    prune_processed,
    replay_group,
)


def check_pruning(engine: sa.Engine) -> None:
    """Old rows of the groups go a chunk per step; recent rows and other groups' stay, and a
    recent event is still a duplicate."""
    metadata = sa.MetaData()
    table = processed_events_table(metadata, name=f"processed_{uuid.uuid4().hex[:8]}")
    metadata.create_all(engine)
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=31), now - timedelta(days=29)
    rows = [("g", f"old-{n}", old) for n in range(5)]
    rows += [("replay", "old-replay", old), ("other", "old-other", old), ("g", "recent", recent)]
    try:
        with engine.begin() as conn:
            conn.execute(
                table.insert(),
                [{"consumer_group": g, "event_id": e, "processed_at": at} for g, e, at in rows],
            )
        settings = ProcessedRetentionSettings(processed_retention_days=30, processed_prune_chunk=3)
        clock = [0.0]
        retention = ProcessedRetention(
            engine, table, ["g", "replay"], settings, clock=lambda: clock[0]
        )
        # Due at once; after a full chunk the next step is due at once, after a short one it
        # waits for the interval.
        assert [retention.step() for _ in range(3)] == [3, 3, 0]
        with engine.connect() as conn:
            left = set(conn.execute(sa.select(table.c.consumer_group, table.c.event_id)).all())
        assert left == {("other", "old-other"), ("g", "recent")}
        with engine.begin() as conn:
            conn.execute(table.insert().values(consumer_group="g", event_id="o", processed_at=old))
        assert retention.step() == 0, "not due yet"
        clock[0] += settings.processed_prune_interval_s
        assert retention.step() == 1
        with engine.begin() as conn:
            assert claim_each(conn, table, "g", ["recent", "new"], str) == ["new"]
    finally:
        metadata.drop_all(engine)


@pytest.mark.postgres
def test_old_processed_rows_are_pruned_on_postgresql(database_url):
    engine = sa.create_engine(database_url)
    try:
        check_pruning(engine)
    finally:
        engine.dispose()


def test_old_processed_rows_are_pruned_on_sqlite(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path}/processed.db")
    check_pruning(engine)
    engine.dispose()


def test_the_retention_stays_beyond_the_topics_retention():
    with pytest.raises(ValueError, match="greater than or equal to 8"):
        ProcessedRetentionSettings(processed_retention_days=7)


def check_replay_pruning(engine: sa.Engine) -> None:
    """A group prunes the old rows of its replays too, after its own: not those of another
    group's replays, nor of a group that only looks like one (``_`` is no wildcard)."""
    metadata = sa.MetaData()
    table = processed_events_table(metadata, name=f"processed_{uuid.uuid4().hex[:8]}")
    metadata.create_all(engine)
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=31), now - timedelta(days=29)
    group = "g_1"
    first, second = replay_group(group, "2026-11-01"), replay_group(group, "2026-11-20")
    lookalike = replay_group("gx1", "2026-11-01")  # would match if `_` were a wildcard
    rows = [(group, f"own-{n}", old) for n in range(2)]
    rows += [(first, f"r1-{n}", old) for n in range(3)]
    rows += [(second, "r2-old", old), (second, "r2-recent", recent)]
    rows += [(replay_group("other", "x"), "other-old", old), (lookalike, "lookalike-old", old)]
    try:
        with engine.begin() as conn:
            conn.execute(
                table.insert(),
                [{"consumer_group": g, "event_id": e, "processed_at": at} for g, e, at in rows],
            )
        before = now - timedelta(days=30)
        assert prune_processed(engine, table, [group], before, limit=3) == 3
        with engine.connect() as conn:
            left = set(conn.execute(sa.select(table.c.event_id)).scalars())
        assert {"own-0", "own-1"}.isdisjoint(left), "the group's own rows go first"
        assert prune_processed(engine, table, [group], before, limit=100) == 3
        assert prune_processed(engine, table, [group], before, limit=100) == 0
        with engine.connect() as conn:
            left = set(conn.execute(sa.select(table.c.consumer_group, table.c.event_id)).all())
        assert left == {
            (second, "r2-recent"),
            (replay_group("other", "x"), "other-old"),
            (lookalike, "lookalike-old"),
        }
    finally:
        metadata.drop_all(engine)


@pytest.mark.postgres
def test_old_rows_of_replay_groups_are_pruned_on_postgresql(database_url):
    engine = sa.create_engine(database_url)
    try:
        check_replay_pruning(engine)
    finally:
        engine.dispose()


def test_old_rows_of_replay_groups_are_pruned_on_sqlite(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path}/processed.db")
    check_replay_pruning(engine)
    engine.dispose()
