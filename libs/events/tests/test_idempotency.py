"""Effects applied once per event, against the real Redis and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
import redis
import sqlalchemy as sa
from ticketing_events.idempotency import (
    RedisOnce,
    claim,
    claim_each,
    claim_many,
    processed_events_table,
)
from ticketing_events.testing import redis_clock_ms


@pytest.mark.redis
def test_redis_effect_applies_once_per_event_even_within_one_pipeline(redis_url):
    client = redis.Redis.from_url(url=redis_url)
    group = f"test-{uuid.uuid4().hex[:8]}"
    counter = f"{group}:sold"
    once = RedisOnce(client, group, "redis.call('INCRBY', KEYS[2], ARGV[3])", ttl_s=60)

    assert once.apply("e1", [counter], [2]) is True
    assert once.apply("e1", [counter], [2]) is False
    client.script_flush()  # a pipeline cannot reload a flushed script by itself
    calls = [("e2", [counter], [5]), ("e1", [counter], [2]), ("e2", [counter], [5])]
    before = redis_clock_ms(client)
    assert once.apply_many(calls) == [True, False, False]
    after = redis_clock_ms(client)
    assert int(client.get(counter)) == 7
    expires = client.pexpiretime(once.dedupe_key("e2"))
    assert before + 60_000 <= expires <= after + 60_000


@pytest.mark.redis
def test_the_dedupe_keys_live_under_the_key_prefix(redis_url):
    """Two deployments on one Redis, told apart by REDIS_KEY_PREFIX, dedupe apart too."""
    client = redis.Redis.from_url(url=redis_url)
    group = f"test-{uuid.uuid4().hex[:8]}"
    blue, green = (RedisOnce(client, group, "", ttl_s=60, key_prefix=p) for p in ("b:", "g:"))
    try:
        assert blue.apply("e1", [], []) is True
        assert green.apply("e1", [], []) is True
        assert blue.apply("e1", [], []) is False
        assert client.exists(f"b:processed:{group}:e1", f"g:processed:{group}:e1") == 2
    finally:
        client.delete(blue.dedupe_key("e1"), green.dedupe_key("e1"))


@pytest.mark.redis
def test_a_redis_effect_that_fails_is_applied_by_its_retry(redis_url):
    client = redis.Redis.from_url(url=redis_url)
    group = f"test-{uuid.uuid4().hex[:8]}"
    counter = f"{group}:sold"
    once = RedisOnce(client, group, "redis.call('INCRBY', KEYS[2], ARGV[3])", ttl_s=60)
    try:
        client.hset(counter, "not", "a counter")  # INCRBY on a hash fails with WRONGTYPE
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            once.apply("e1", [counter], [2])
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            once.apply_many([("e2", [counter], [5])])
        client.delete(counter)  # the key is fixed: the retries apply the effects, once
        assert once.apply_many([("e1", [counter], [2]), ("e2", [counter], [5])]) == [True, True]
        assert once.apply("e1", [counter], [2]) is False
        assert int(client.get(counter)) == 7
    finally:
        client.delete(counter, once.dedupe_key("e1"), once.dedupe_key("e2"))
        client.close()


@pytest.mark.postgres
def test_sql_claim_commits_and_rolls_back_with_the_effect(database_url):
    engine = sa.create_engine(database_url)
    metadata = sa.MetaData()
    suffix = uuid.uuid4().hex[:8]
    processed = processed_events_table(metadata, name=f"processed_{suffix}")
    effects = sa.Table(f"effects_{suffix}", metadata, sa.Column("event_id", sa.String))
    metadata.create_all(engine)
    try:
        with engine.begin() as conn:
            assert claim(conn, processed, "g", "e1") is True
            conn.execute(effects.insert().values(event_id="e1"))
        with engine.begin() as conn:
            assert claim(conn, processed, "g", "e1") is False  # duplicate: skip the effect
            assert claim(conn, processed, "other-group", "e1") is True  # groups are separate

        with pytest.raises(RuntimeError), engine.begin() as conn:
            assert claim(conn, processed, "g", "e2") is True
            raise RuntimeError("effect failed")
        with engine.begin() as conn:  # the claim rolled back with the effect: a retry applies
            assert claim(conn, processed, "g", "e2") is True
            rows = conn.execute(sa.select(effects.c.event_id)).scalars().all()
        assert rows == ["e1"]
    finally:
        metadata.drop_all(engine)
        engine.dispose()


def test_sql_claim_each_takes_a_batch_once_per_event_id(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path}/processed.db")
    metadata = sa.MetaData()
    processed = processed_events_table(metadata)
    metadata.create_all(engine)
    with engine.begin() as conn:
        assert claim_each(conn, processed, "g", ["b", "a", "b"], str) == ["b", "a"]
        assert claim_each(conn, processed, "g", ["a", "c"], str) == ["c"]
        assert claim_many(conn, processed, "other-group", ["a", "c"]) == {"a", "c"}
    engine.dispose()


def test_sql_claim_each_with_a_scope_applies_once_whichever_group_consumes(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path}/processed.db")
    metadata = sa.MetaData()
    processed = processed_events_table(metadata)
    metadata.create_all(engine)
    with engine.begin() as conn:
        assert claim_each(conn, processed, "owner", ["a"], str, scope="owner") == ["a"]
        assert claim_each(conn, processed, "replay", ["a", "b"], str, scope="owner") == ["b"]
        assert claim_each(conn, processed, "owner", ["b", "c"], str, scope="owner") == ["c"]
        assert claim_many(conn, processed, "replay", ["a", "b"]) == set(), "the replay's rows"
        assert claim_many(conn, processed, "owner", ["a", "b", "c"]) == set()
    engine.dispose()
