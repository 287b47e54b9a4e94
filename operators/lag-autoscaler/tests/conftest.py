"""Fresh topics and groups on the real broker, and a fake of our scale adapter."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from lag_autoscaler.kube import TargetUnavailable
from ticketing_events.topics import ensure_topics


class Topics:
    """Topics and groups of one test, on the shared broker; deleted afterwards."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.topics: list[str] = []
        self.groups: list[str] = []

    def topic(self, partitions: int) -> str:
        name = f"test-lag-{uuid.uuid4().hex[:10]}"
        ensure_topics(self.bootstrap, [name], partitions=partitions)
        self.topics.append(name)
        return name

    def group(self) -> str:
        name = f"test-lag-{uuid.uuid4().hex[:10]}"
        self.groups.append(name)
        return name

    def publish(self, topic: str, per_partition: dict[int, int]) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap})
        for partition, count in per_partition.items():
            for i in range(count):
                producer.produce(topic, value=b"%d" % i, partition=partition)
        assert producer.flush(10) == 0

    def commit(self, group: str, offsets: dict[tuple[str, int], int]) -> None:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group})
        try:
            tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
            consumer.commit(offsets=tps, asynchronous=False)
        finally:
            consumer.close()

    def delete(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = []
        if self.groups:
            futures += admin.delete_consumer_groups(self.groups, request_timeout=10).values()
        if self.topics:
            futures += admin.delete_topics(self.topics, operation_timeout=10).values()
        for f in futures:
            with suppress(KafkaException):  # a group that never committed does not exist
                f.result(15)


@pytest.fixture
def kafka_topics(kafka_bootstrap: str) -> Iterator[Topics]:
    topics = Topics(kafka_bootstrap)
    yield topics
    topics.delete()


class FakeScaleTarget:
    """In-memory Deployments implementing our ``ScaleTarget`` port."""

    def __init__(self, replicas: dict[str, int] | None = None) -> None:
        self.replicas = dict(replicas or {})
        self.calls: list[tuple[str, int]] = []
        self.fail_scale: Callable[[], bool] = lambda: False

    def current_replicas(self, namespace: str, name: str) -> int:
        if name not in self.replicas:
            raise TargetUnavailable(f"deployment {namespace}/{name}: 404 Not Found")
        return self.replicas[name]

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        if self.fail_scale():
            raise TargetUnavailable(f"deployment {namespace}/{name}: 409 Conflict")
        self.calls.append((name, replicas))
        self.replicas[name] = replicas
