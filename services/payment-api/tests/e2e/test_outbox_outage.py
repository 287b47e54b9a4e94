"""Kafka unreachable: payments still answer, rows wait; a relay on the real broker then
publishes each row exactly once, in per-key order. (The shared broker is never stopped: the
API under test simply points its relay at a port where nothing listens.)"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from functools import partial

import pytest
from payment_api.adapters.database import create_db_engine
from payment_api.adapters.outbox import OutboxStore
from payment_api.bootstrap import bootstrap, build_producer, build_relay
from payment_api.config import Settings
from payment_api.service_layer import housekeeping
from payment_api.service_layer.unit_of_work import UnitOfWork
from sqlalchemy import text
from ticketing_events.producer import DeliveryError, OutgoingMessage

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.kafka]

SEATS = 8


@pytest.fixture
def outage_settings(private_settings):
    """Its own schema, so the session's healthy relay does not publish these rows."""
    return private_settings.model_copy(
        update={
            "kafka_bootstrap_servers": "127.0.0.1:9",  # discard port: no broker there
            "outbox_publish_timeout_s": 2.0,
            "outbox_sweep_interval_s": 0.2,
        }
    )


class SilentKafka:
    """The relay's producer (to a port where nothing listens) behind a gate: until ``gate``
    opens, a publish hangs, as on a broker that never answers; then it fails."""

    def __init__(self, settings: Settings) -> None:
        self.producer = build_producer(settings)
        self.gate = threading.Event()
        self.failed = threading.Event()

    def publish(self, messages: Sequence[OutgoingMessage], timeout: float = 30.0) -> None:
        self.gate.wait()
        try:
            self.producer.publish(messages, timeout)
        except DeliveryError:
            self.failed.set()
            raise


def test_payments_succeed_while_kafka_is_down_then_publish_once_in_key_order(
    outage_settings, settings, kafka, serve, client_for, world_on
):
    engine = create_db_engine(outage_settings)
    world = world_on(engine)
    _, _, seat_ids = world.schedule(seats=SEATS, price=100)
    users = world.users(SEATS, points=1_000)
    kafka_down = SilentKafka(outage_settings)
    with serve(outage_settings, bootstrap(outage_settings, publisher=kafka_down)) as server:
        api = client_for(server.url)
        # The relay's publish hangs all along: a payment waiting on Kafka would never answer.
        for user_id, seat_id in zip(users, seat_ids, strict=True):
            token = api.active_token(user_id)
            reservation_id = api.reserve(token, seat_id).json()["reservation_id"]
            paid = api.pay(token, reservation_id)
            assert paid.status_code == 201, paid.text
        kafka_down.gate.set()
        assert kafka_down.failed.wait(60), "the relay tried and failed"
        pending = world.scalar("select count(*) from outbox where published_at is null")
        assert pending == 2 * SEATS
        api.http.close()

    start = kafka.offsets()
    relay = build_relay(settings, engine, build_producer(settings))
    assert relay.drain() == 2 * SEATS
    assert world.scalar("select count(*) from outbox where published_at is null") == 0

    rows = world.rows("select id, event_id, key, event_type, published_at from outbox order by id")
    messages = kafka.read(start, [r.event_id for r in rows])
    assert Counter(dict(m.headers())["event_id"].decode() for m in messages) == Counter(
        {r.event_id: 1 for r in rows}
    )
    # Per key, the later event went out only after the earlier one was acknowledged.
    for key in {r.key for r in rows}:
        of_key = [r for r in rows if r.key == key]
        assert [r.event_type for r in of_key] == ["reservation.created", "payment.success"]
        assert of_key[0].published_at < of_key[1].published_at
    engine.dispose()


def test_housekeeping_prunes_published_rows_and_old_keys(settings, world, api):
    user_id = world.user(points=0)
    charged = api.charge(user_id, 5, Idempotency_Key="k1")
    assert charged.status_code == 200
    world.execute(
        "insert into outbox (event_id, topic, key, event_type, schema_version, payload,"
        " created_at, published_at) values (:e, 'payment.success', '1', 'payment.success',"
        " '1.0', '{}', now() - interval '2 days', now() - interval '2 days')",
        e=f"old-{user_id}",
    )
    world.execute(
        "update idempotency_keys set created_at = now() - interval '2 days' where user_id = :u",
        u=user_id,
    )
    engine = create_db_engine(settings)
    try:
        housekeeping.prune(
            OutboxStore(engine),
            partial(UnitOfWork, engine),
            outbox_retention_s=86400,
            idempotency_retention_s=86400,
            batch_size=5000,
        )
    finally:
        engine.dispose()
    assert world.scalar("select count(*) from outbox where event_id = :e", e=f"old-{user_id}") == 0
    assert world.scalar("select count(*) from idempotency_keys where user_id = :u", u=user_id) == 0


class BatchCountingStore(OutboxStore):
    """The real outbox store, noting how many rows each prune call deleted."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []

    def prune(self, published_before, limit):
        deleted = super().prune(published_before, limit)
        self.batches.append(deleted)
        return deleted


def test_housekeeping_prunes_a_backlog_in_bounded_batches(private_settings):
    """More old rows than a batch holds: deleted a batch at a time until none is left; rows
    unpublished, published recently and keys still fresh stay."""
    batch, old_events, old_keys = 5, 23, 17
    engine = create_db_engine(private_settings)
    outbox_row = (
        "insert into outbox (event_id, topic, key, event_type, schema_version, payload,"
        " created_at, published_at) values (:e, 'payment.success', '1', 'payment.success',"
        " '1.0', '{}', now() - interval '2 days', :published)"
    )
    key_row = (
        "insert into idempotency_keys (user_id, key, fingerprint, created_at)"
        " values (:u, :k, 'f', :created)"
    )
    with engine.begin() as conn:
        old = conn.execute(text("select now() - interval '2 days'")).scalar_one()
        now = conn.execute(text("select now()")).scalar_one()
        rows = [{"e": f"old-{i}", "published": old} for i in range(old_events)]
        rows += [{"e": "recent", "published": now}, {"e": "unpublished", "published": None}]
        conn.execute(text(outbox_row), rows)
        keys = [{"u": i % 3 + 1, "k": f"old-{i}", "created": old} for i in range(old_keys)]
        keys += [{"u": 1, "k": "fresh", "created": now}]
        conn.execute(text(key_row), keys)
    store = BatchCountingStore(engine)
    try:
        pruned = housekeeping.prune(
            store,
            partial(UnitOfWork, engine),
            outbox_retention_s=86400,
            idempotency_retention_s=86400,
            batch_size=batch,
        )
        with engine.connect() as conn:
            events_left = set(conn.execute(text("select event_id from outbox")).scalars())
            keys_left = set(conn.execute(text("select key from idempotency_keys")).scalars())
    finally:
        engine.dispose()
    assert pruned == (old_events, old_keys)
    assert events_left == {"recent", "unpublished"}
    assert keys_left == {"fresh"}
    assert len(store.batches) > 2 and max(store.batches) == batch
    assert sum(store.batches) == old_events
