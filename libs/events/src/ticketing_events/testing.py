"""Helpers for tests that run against a real broker (used by every service's test suite)."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from ticketing_events.consumer import ConsumerRuntime
from ticketing_events.schemas import (
    Envelope,
    FailureReason,
    PaymentFailed,
    PaymentFailedPayload,
    PaymentSucceeded,
    PaymentSucceededPayload,
    ReservationCreated,
    ReservationCreatedPayload,
)
from ticketing_events.settings import ConsumerSettings, KafkaSettings
from ticketing_events.topics import dlq_topic, ensure_topics

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


# -- a harness for consumer tests ---------------------------------------------------------

E = TypeVar("E", bound=Envelope)


class Harness:
    def __init__(self, bootstrap: str, redis_url: str) -> None:
        self.bootstrap = bootstrap
        self.redis_url = redis_url
        self.redis = redis.Redis.from_url(redis_url)
        self.prefix = f"test-{uuid.uuid4().hex[:10]}:"
        self.groups: list[str] = []

    def group(self, topics: Sequence[str]) -> str:
        """A fresh group that starts at the topics' ends, with its dead-letter topics."""
        group = f"test-{uuid.uuid4().hex[:10]}"
        start_group_at_end(self.bootstrap, group, topics)
        ensure_topics(self.bootstrap, [dlq_topic(t, group) for t in topics])
        self.groups.append(group)
        return group

    @staticmethod
    def ids() -> dict[str, Any]:
        """Fresh reservation, seat and queue token ids. Other suites publish the factories'
        fixed ids on the same topics, and this test's consumers see those events too."""
        n = random.randrange(10**9, 2 * 10**9)
        return {"reservation_id": n, "seat_id": n, "queue_token_id": uuid.uuid4().hex * 2}

    @staticmethod
    def event(template: E, **payload: Any) -> E:
        """A new event (new id) like ``template`` with some payload fields replaced."""
        return type(template).new(template.payload.model_copy(update=payload), producer="tests")

    @property
    def kafka(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=self.bootstrap)

    @staticmethod
    def consumer_settings(**overrides: Any) -> ConsumerSettings:
        values: dict[str, Any] = {
            "batch_size": 100,
            "poll_timeout_s": 0.2,
            "max_attempts": 3,
            "backoff_initial_s": 0.01,
            "backoff_max_s": 0.2,
            "health_port": 0,
            "health_host": "127.0.0.1",
        }
        return ConsumerSettings(**{**values, **overrides})

    @contextmanager
    def running(self, runtime: ConsumerRuntime) -> Iterator[ConsumerRuntime]:
        thread = threading.Thread(target=runtime.run, daemon=True)
        thread.start()
        try:
            yield runtime
        finally:
            runtime.stop()
            thread.join(30)
            assert not thread.is_alive(), "consumer did not stop"

    @staticmethod
    def wait_until(check: Callable[[], bool], timeout: float = 30.0, what: str = "it") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")

    def wait_consumed(self, group: str, topics: Sequence[str], timeout: float = 30.0) -> None:
        """Wait until ``group`` committed past everything on ``topics`` now."""
        ends = end_offsets(self.bootstrap, topics)

        def caught_up() -> bool:
            committed = committed_offsets(self.bootstrap, group, topics)
            return all(committed[tp] >= end for tp, end in ends.items())

        self.wait_until(caught_up, timeout, what=f"{group} to consume {list(topics)}")

    def processed(self, group: str, event_id: str) -> bool:
        """Whether ``group`` applied ``event_id`` (RedisOnce's dedupe key exists)."""
        return bool(self.redis.exists(f"processed:{group}:{event_id}"))

    def cleanup(self) -> None:
        patterns = [f"{self.prefix}*", *(f"processed:{g}:*" for g in self.groups)]
        for pattern in patterns:
            keys = list(self.redis.scan_iter(match=pattern, count=1000))
            for i in range(0, len(keys), 500):
                self.redis.delete(*keys[i : i + 500])
        self.redis.close()


class RedisServer:
    """A ``redis-server`` of this test alone, on a free port, without persistence."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (make infra-install)")
        self.binary = binary
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self.answers():
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)

    def answers(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.exceptions.ConnectionError:
            return False
        finally:
            client.close()

    def command(self) -> list[str]:
        port = str(self.port)
        no_persistence = ["--save", "", "--appendonly", "no"]
        return [self.binary, "--port", port, "--bind", "127.0.0.1", *no_persistence]

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


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


def payment_failed(
    n: int = 1, reason: FailureReason = FailureReason.INSUFFICIENT_POINTS
) -> PaymentFailed:
    payload = PaymentFailedPayload(
        **_ids(n),
        payment_id=90_000 + n,
        amount=150_000,
        points_deducted=0,
        reason=reason,
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
