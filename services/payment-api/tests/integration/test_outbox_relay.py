"""The relay against a real database (embedded SQLite, and PostgreSQL for SKIP LOCKED),
publishing through a recording fake of the producer port (or the real producer and broker)."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry import trace
from payment_api.adapters.database import create_db_engine
from payment_api.adapters.outbox import OutboxListener, OutboxStore
from payment_api.config import Settings
from payment_api.migrations import upgrade
from payment_api.service_layer.relay import OutboxRelay, outgoing
from payment_api.service_layer.unit_of_work import UnitOfWork
from ticketing_events.producer import DeliveryError, EventProducer, OutgoingMessage
from ticketing_events.testing import payment_succeeded, reservation_created


@pytest.fixture
def sqlite_engine(tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path}/payment.db")
    upgrade(settings)
    engine = create_db_engine(settings)
    yield engine
    engine.dispose()


def write(engine, *events) -> list[str]:
    with UnitOfWork(engine) as tx:
        for event in events:
            tx.outbox.add(event)
        tx.commit()
    return [e.event_id for e in events]


def relay_for(engine, publisher, batch_size=100) -> OutboxRelay:
    return OutboxRelay(
        OutboxStore(engine),
        publisher,
        batch_size=batch_size,
        sweep_interval_s=0.01,
        publish_timeout_s=1,
    )


def unpublished(engine) -> int:
    return OutboxStore(engine).pending()


def test_one_event_per_key_per_batch_keeps_key_order(sqlite_engine, publisher):
    a1, b1, a2, a3 = write(
        sqlite_engine,
        reservation_created(1),
        reservation_created(2),
        payment_succeeded(1),
        payment_succeeded(1),
    )
    assert relay_for(sqlite_engine, publisher).drain() == 4
    assert [[m.event_id for m in b] for b in publisher.batches] == [[a1, b1], [a2], [a3]]
    assert unpublished(sqlite_engine) == 0


def test_a_failed_publish_marks_nothing_and_releases_the_rows(sqlite_engine, publisher):
    ids = write(sqlite_engine, reservation_created(1), reservation_created(2))
    publisher.down = True
    relay = relay_for(sqlite_engine, publisher)
    assert relay.drain() == 0
    assert unpublished(sqlite_engine) == 2
    publisher.down = False
    relay._retry_after = 0  # skip the back-off the failure started
    assert relay.drain() == 2
    assert publisher.sent == ids


def test_a_partly_failed_batch_marks_only_what_was_acknowledged(sqlite_engine, publisher):
    a1, b1, a2 = write(
        sqlite_engine, reservation_created(1), reservation_created(2), payment_succeeded(1)
    )
    publisher.failing = {a1}
    relay = relay_for(sqlite_engine, publisher)
    relay.drain()
    assert publisher.sent == [b1]  # a2 waits behind the unacknowledged a1
    publisher.failing = set()
    relay._retry_after = 0
    relay.drain()
    assert publisher.sent == [b1, a1, a2]


def test_a_leased_row_is_not_claimed_again(sqlite_engine):
    write(sqlite_engine, reservation_created(1))
    store = OutboxStore(sqlite_engine)
    now = datetime.now(UTC)
    assert len(store.claim(10, now, now + timedelta(seconds=30))) == 1
    assert store.claim(10, now, now + timedelta(seconds=30)) == []
    assert len(store.claim(10, now + timedelta(seconds=31), now + timedelta(seconds=60))) == 1


def test_the_row_keeps_the_writers_trace_context(sqlite_engine, _tracer_provider):
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("request") as span:
        write(sqlite_engine, payment_succeeded(3))
    now = datetime.now(UTC)
    (row,) = OutboxStore(sqlite_engine).claim(1, now, now)
    message = outgoing(row)
    parent = trace.get_current_span(message.context).get_span_context()
    assert parent.trace_id == span.get_span_context().trace_id
    assert parent.span_id == span.get_span_context().span_id
    assert message.key == "1003" and message.topic == "payment.success"


@pytest.mark.postgres
def test_concurrent_relays_never_claim_the_same_row(private_settings):
    engine = create_db_engine(private_settings)
    written = write(engine, *(reservation_created(n) for n in range(500, 700)))
    claimed: list[list[int]] = [[] for _ in range(4)]
    store = OutboxStore(engine)
    start = threading.Barrier(4)

    def claim_all(slot: int) -> None:
        start.wait()
        while True:
            now = datetime.now(UTC)
            rows = store.claim(7, now, now + timedelta(seconds=60))
            if not rows:
                return
            claimed[slot].extend(r.id for r in rows)

    threads = [threading.Thread(target=claim_all, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for ids in claimed for i in ids]
    assert len(everything) == len(set(everything)) == len(written)
    engine.dispose()


@pytest.mark.postgres
def test_a_relay_of_its_own_is_woken_by_another_process_commit(private_settings, publisher):
    """``payment-api relay``: no commit of its process wakes it, PostgreSQL's notification
    does (its sweep is a minute away)."""
    relay_engine = create_db_engine(private_settings)
    api_engine = create_db_engine(private_settings)
    before = write(api_engine, reservation_created(1))
    relay = OutboxRelay(
        OutboxStore(relay_engine),
        publisher,
        batch_size=100,
        sweep_interval_s=60,
        publish_timeout_s=1,
    )
    listener = OutboxListener(relay_engine, relay.notify)
    relay.start()
    listener.start()
    try:
        sent = wait_for(lambda: publisher.sent == before)
        assert sent, f"the listener's first wake published {publisher.sent}, not {before}"
        after = write(api_engine, payment_succeeded(1), reservation_created(2))
        sent = wait_for(lambda: publisher.sent == before + after)
        assert sent, f"after a commit elsewhere the relay published {publisher.sent}"
    finally:
        listener.stop()
        relay.stop()
        relay_engine.dispose()
        api_engine.dispose()


def wait_for(condition, within_s: float = 20.0) -> bool:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.kafka
def test_the_relay_keeps_publishing_after_a_fatal_producer_error(
    sqlite_engine, kafka_bootstrap, small_topic
):
    # With the gap-less guarantee on, a batch the broker rejects is fatal to the idempotent
    # producer: the state other fatal errors (e.g. a sequence the broker lost) leave it in.
    producer = EventProducer(
        kafka_bootstrap, client_id="test", **{"enable.gapless.guarantee": True}
    )
    oversized = OutgoingMessage(small_topic, "k", os.urandom(5000), "big", "test", "1.0")
    with pytest.raises(DeliveryError):
        producer.publish([oversized], timeout=10)
    write(sqlite_engine, reservation_created(1), payment_succeeded(1))
    relay = OutboxRelay(
        OutboxStore(sqlite_engine),
        producer,
        batch_size=100,
        sweep_interval_s=0.01,
        publish_timeout_s=10,
    )
    assert relay.drain() == 2
    assert unpublished(sqlite_engine) == 0
