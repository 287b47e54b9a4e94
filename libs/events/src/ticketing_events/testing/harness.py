"""A harness for consumer tests: fresh groups, settings, a runtime in a thread."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from confluent_kafka import (
    Message,
    Producer,
)

from ticketing_events.app import ConsumerApp
from ticketing_events.consumer import ConsumerRuntime
from ticketing_events.redis_layout import RedisKeys
from ticketing_events.schemas import (
    Envelope,
)
from ticketing_events.settings import ConsumerSettings, KafkaSettings
from ticketing_events.testing.kafka import (
    committed_offsets,
    end_offsets,
    read_from,
    start_group_at_end,
)
from ticketing_events.topics import dlq_topic, ensure_topics, redrive_topic

if TYPE_CHECKING:
    pass


E = TypeVar("E", bound=Envelope)


class Harness:
    def __init__(self, bootstrap: str, redis_url: str) -> None:
        self.bootstrap = bootstrap
        self.redis_url = redis_url
        self.redis = redis.Redis.from_url(redis_url)
        self.prefix = f"test-{uuid.uuid4().hex[:10]}:"
        self.groups: list[str] = []

    def group(self, topics: Sequence[str], *, redrive: bool = False) -> str:
        """A fresh group that starts at the topics' ends, with its dead-letter topics (and its
        redrive topics when ``redrive``)."""
        group = f"test-{uuid.uuid4().hex[:10]}"
        start_group_at_end(self.bootstrap, group, topics)
        extra = [redrive_topic(t, group) for t in topics] if redrive else []
        ensure_topics(self.bootstrap, [dlq_topic(t, group) for t in topics] + extra)
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

    def runtime(
        self,
        app: ConsumerApp[Any],
        group: str,
        resources: Mapping[str, Any],
        *,
        settings: Mapping[str, Any] | None = None,
        **consumer: Any,
    ) -> ConsumerRuntime:
        """``app``'s consumer in ``group`` on this harness's Kafka and Redis key prefix;
        ``settings``: fields of the app's settings, ``consumer``: of ``ConsumerSettings``."""
        values = {"consumer_group": group, "redis_key_prefix": self.prefix, **(settings or {})}
        return app.runtime(
            app.settings(**values),
            resources,
            kafka=self.kafka,
            consumer=self.consumer_settings(**consumer),
        )

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
            # An empty partition is consumed with no offset committed.
            return all(committed[tp] >= end for tp, end in ends.items() if end > 0)

        self.wait_until(caught_up, timeout, what=f"{group} to consume {list(topics)}")

    def publish_poison(self, topic: str) -> bytes:
        """Publish a message no consumer can decode, unique to this test; returns its value."""
        value = f"not json {self.prefix}{uuid.uuid4().hex}".encode()
        producer = Producer({"bootstrap.servers": self.bootstrap})
        producer.produce(topic, key=b"poison", value=value)
        producer.flush(10)
        return value

    def dead_letters(
        self, start: dict[tuple[str, int], int], value: bytes, count: int
    ) -> list[Message]:
        """The messages of ``value`` among the first ``count`` after ``start`` (a DLQ's)."""
        return [m for m in read_from(self.bootstrap, start, count=count) if m.value() == value]

    def processed(self, group: str, event_id: str) -> bool:
        """Whether ``group`` applied ``event_id`` (RedisOnce's dedupe key exists)."""
        return bool(self.redis.exists(RedisKeys(self.prefix).processed(group) + event_id))

    def processed_ids(self, group: str, events: Sequence[Envelope]) -> set[str]:
        """The ids of ``events`` that ``group`` applied (RedisOnce), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        dedupe = RedisKeys(self.prefix).processed(group)
        for e in events:
            pipe.exists(dedupe + e.event_id)
        return {e.event_id for e, hit in zip(events, pipe.execute(), strict=True) if hit}

    def cleanup(self) -> None:
        keys = list(self.redis.scan_iter(match=f"{self.prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            self.redis.delete(*keys[i : i + 500])
        self.redis.close()
