"""Where a consumer group is and where its topics end: the one reader of offsets and lag.

Log starts and ends come from the admin API. A group's committed offsets come from a consumer
of that group that never subscribes (so never joins it), not from the admin API's
``list_consumer_group_offsets``: when that answer is a coordinator error, as on a fresh
broker, librdkafka (2.16) dereferences a consumer group handle an admin client has not, and
the process dies of SIGSEGV. Every call blocks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from ticketing_events.topics import retry_while_settling

Offsets = dict[tuple[str, int], int]
T = TypeVar("T")


class UnknownTopic(LookupError):
    """A topic the cluster does not know (yet)."""


def raise_partition_error(tps: list[TopicPartition]) -> list[TopicPartition]:
    """``tps``, unless one carries an error: a call can succeed while partitions failed (the
    first commit on a fresh broker answers NOT_COORDINATOR that way)."""
    for tp in tps:
        if tp.error is not None:
            raise KafkaException(tp.error)
    return tps


class KafkaOffsets:
    """Offsets of topics and groups on one cluster; safe to share between threads.

    ``settle``: retry what a cluster still settling refuses (a fresh broker, a topic just
    created); without it every error reaches the caller at once (the operator reports the
    lag as unavailable and tries again later).
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        timeout_s: float = 10.0,
        client_id: str = "offsets",
        settle: bool = True,
    ) -> None:
        self.bootstrap = bootstrap
        self._timeout = timeout_s
        self._settle = settle
        self._config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "client.id": client_id,
            "socket.timeout.ms": int(timeout_s * 1000),
        }
        self.admin = AdminClient(self._config)
        self._readers: dict[str, Consumer] = {}
        self._lock = threading.Lock()

    def _call(self, call: Callable[[], T]) -> T:
        return retry_while_settling(call) if self._settle else call()

    def partitions(self, topics: Iterable[str]) -> list[TopicPartition]:
        """Every partition of ``topics``, from fresh metadata."""
        topics = list(topics)
        known = self._call(lambda: self.admin.list_topics(timeout=self._timeout).topics)
        unknown = [t for t in topics if t not in known]
        if unknown:
            raise UnknownTopic(f"unknown topics: {', '.join(unknown)}")
        return [TopicPartition(t, p) for t in topics for p in sorted(known[t].partitions)]

    def ends(self, topics: Iterable[str]) -> Offsets:
        """The high watermark of every partition."""
        return self._list(self.partitions(topics), OffsetSpec.latest())  # type: ignore[no-untyped-call]

    def starts(self, topics: Iterable[str]) -> Offsets:
        """The log start of every partition."""
        return self._list(self.partitions(topics), OffsetSpec.earliest())  # type: ignore[no-untyped-call]

    def _list(self, tps: list[TopicPartition], spec: OffsetSpec) -> Offsets:
        def call() -> Offsets:
            futures = self.admin.list_offsets(
                {tp: spec for tp in tps}, request_timeout=self._timeout
            )
            return {
                (tp.topic, tp.partition): f.result(timeout=self._timeout).offset
                for tp, f in futures.items()
            }

        return self._call(call)

    def committed(self, group: str, topics: Iterable[str]) -> Offsets:
        """The group's committed offset of every partition; negative where it committed none
        (OFFSET_INVALID)."""
        tps = self.partitions(topics)

        def call() -> list[TopicPartition]:
            with self._lock:
                reader = self._readers.get(group)
                if reader is None:
                    config = {**self._config, "group.id": group, "enable.auto.commit": False}
                    reader = self._readers[group] = Consumer(config)
                return raise_partition_error(reader.committed(tps, timeout=self._timeout))

        return {(tp.topic, tp.partition): tp.offset for tp in self._call(call)}

    def move_to_end(self, group: str, topics: Iterable[str]) -> Offsets:
        """Commit the group's offsets at the topics' ends (the group must have no members);
        returns them."""
        ends = self.ends(topics)
        request = ConsumerGroupTopicPartitions(
            group, [TopicPartition(t, p, o) for (t, p), o in ends.items()]
        )

        def call() -> list[TopicPartition]:
            answer = self.admin.alter_consumer_group_offsets([request])[group]
            return raise_partition_error(answer.result().topic_partitions)

        self._call(call)
        return ends

    def close(self) -> None:
        with self._lock:
            for reader in self._readers.values():
                reader.close()
            self._readers.clear()

    def __enter__(self) -> KafkaOffsets:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
