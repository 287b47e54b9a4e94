"""Helpers for tests that run against a real broker (used by every service's test suite)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from ticketing_events.schemas import (
    FailureReason,
    PaymentFailed,
    PaymentFailedPayload,
    PaymentSucceeded,
    PaymentSucceededPayload,
    ReservationCreated,
    ReservationCreatedPayload,
)

T = TypeVar("T")
_TRANSIENT = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
}


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    if meta.error is not None:
        raise RuntimeError(f"topic {topic}: {meta.error}")
    return sorted(meta.partitions)


def _retrying(call: Callable[[], T], timeout: float = 30.0) -> T:
    """Retry a broker call while Kafka says the error is temporary (a new topic electing its
    leaders, the offsets topic being created on a fresh broker, ...)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except KafkaException as exc:
            err = exc.args[0]
            if time.monotonic() > deadline or not (err.retriable() or err.code() in _TRANSIENT):
                raise
            time.sleep(0.2)


def _high_watermark(consumer: Consumer, tp: TopicPartition) -> int:
    return int(_retrying(lambda: consumer.get_watermark_offsets(tp, timeout=10))[1])


def end_offsets(bootstrap_servers: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """High watermark of every partition of ``topics``."""
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": "offset-probe"})
    try:
        return {
            (topic, p): _high_watermark(consumer, TopicPartition(topic, p))
            for topic in topics
            for p in _partitions(consumer, topic)
        }
    finally:
        consumer.close()


def start_group_at_end(
    bootstrap_servers: str, group: str, topics: Iterable[str]
) -> dict[tuple[str, int], int]:
    """Commit the group's offsets at the topics' ends, so it reads only what comes next.

    Returns the offsets committed: the group's starting point.
    """
    ends = end_offsets(bootstrap_servers, topics)
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": group})
    try:
        offsets = [TopicPartition(t, p, o) for (t, p), o in ends.items()]
        _retrying(lambda: consumer.commit(offsets=offsets, asynchronous=False))
    finally:
        consumer.close()
    return ends


def committed_offsets(
    bootstrap_servers: str, group: str, topics: Iterable[str]
) -> dict[tuple[str, int], int]:
    consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": group})
    try:
        tps = [TopicPartition(t, p) for t in topics for p in _partitions(consumer, t)]
        committed = _retrying(lambda: consumer.committed(tps, timeout=10))
        return {(tp.topic, tp.partition): tp.offset for tp in committed}
    finally:
        consumer.close()


def read_from(
    bootstrap_servers: str,
    start: dict[tuple[str, int], int],
    *,
    count: int,
    timeout: float = 30.0,
) -> list[Message]:
    """Read ``count`` messages from the given start offsets (no group, nothing committed)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap_servers, "group.id": "reader", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(t, p, o) for (t, p), o in start.items()])
    found: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < count and time.monotonic() < deadline:
            for m in consumer.consume(count - len(found), 0.5):
                if m.error() is None:
                    found.append(m)
    finally:
        consumer.close()
    return found


# -- realistic events -------------------------------------------------------------------

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _ids(n: int) -> dict[str, Any]:
    return {
        "reservation_id": 10_000 + n,
        "user_id": 500 + n,
        "concert_id": 7,
        "schedule_id": 70 + n % 3,
        "concert_date": date(2026, 12, 24),
        "seat_id": 1_000 + n,
        "queue_token_id": f"{n:064x}",
    }


def payment_succeeded(n: int = 1) -> PaymentSucceeded:
    payload = PaymentSucceededPayload(
        **_ids(n),
        payment_id=90_000 + n,
        amount=150_000,
        paid_at=NOW,
        schedule_seat_count=50,
        sale_opened_at=NOW - timedelta(minutes=10),
    )
    return PaymentSucceeded.new(payload, producer="tests")


def payment_failed(n: int = 1) -> PaymentFailed:
    payload = PaymentFailedPayload(
        **_ids(n),
        payment_id=90_000 + n,
        amount=150_000,
        points_deducted=0,
        reason=FailureReason.INSUFFICIENT_POINTS,
        failed_at=NOW,
    )
    return PaymentFailed.new(payload, producer="tests")


def reservation_created(n: int = 1) -> ReservationCreated:
    payload = ReservationCreatedPayload(
        **_ids(n),
        price=150_000,
        reserved_at=NOW,
        hold_expires_at=NOW + timedelta(minutes=5),
    )
    return ReservationCreated.new(payload, producer="tests")
