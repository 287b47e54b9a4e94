"""Adapter: a consumer group's committed offsets and the partitions' ends.

The ends come from the admin API. The committed offsets come from a consumer of the group that
never subscribes (so never joins it): librdkafka's admin ``list_consumer_group_offsets``
crashes the process when the coordinator answers NOT_COORDINATOR, as a fresh broker does.
Every call blocks (librdkafka); the kopf handler runs it in a thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from lag_autoscaler.decision import PartitionOffsets


class LagUnavailable(Exception):
    """Kafka did not answer, or does not know a topic: no lag figure this time."""


class KafkaLagReader:
    def __init__(
        self, bootstrap_servers: str, *, timeout_s: float = 10.0, client_id: str = "lag-autoscaler"
    ) -> None:
        self._timeout = timeout_s
        self._config: dict[str, str | int | float | bool] = {
            "bootstrap.servers": bootstrap_servers,
            "client.id": client_id,
            "socket.timeout.ms": int(timeout_s * 1000),
        }
        self._admin = AdminClient(self._config)
        self._groups: dict[str, Consumer] = {}  # one reader of committed offsets per group
        self._lock = threading.Lock()

    def read(self, group: str, topics: Sequence[str]) -> list[PartitionOffsets]:
        """Every partition of ``topics``: the group's committed offset, the log start and end."""
        try:
            return self._read(group, topics)
        except (KafkaException, FutureTimeout) as exc:
            raise LagUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def _read(self, group: str, topics: Sequence[str]) -> list[PartitionOffsets]:
        known = self._admin.list_topics(timeout=self._timeout).topics
        unknown = [t for t in topics if t not in known]
        if unknown:
            raise LagUnavailable(f"unknown topics: {', '.join(unknown)}")
        tps = [TopicPartition(t, p) for t in topics for p in sorted(known[t].partitions)]
        high = self._offsets(tps, OffsetSpec.latest())
        low = self._offsets(tps, OffsetSpec.earliest())
        committed = self._committed(group, tps)
        return [
            PartitionOffsets(
                topic=tp.topic,
                partition=tp.partition,
                # Without a commit the broker answers OFFSET_INVALID (-1001).
                committed=c if (c := committed.get((tp.topic, tp.partition), -1)) >= 0 else None,
                high_watermark=high[(tp.topic, tp.partition)],
                log_start=low[(tp.topic, tp.partition)],
            )
            for tp in tps
        ]

    def _committed(self, group: str, tps: list[TopicPartition]) -> dict[tuple[str, int], int]:
        with self._lock:
            if group not in self._groups:
                config = {**self._config, "group.id": group, "enable.auto.commit": False}
                self._groups[group] = Consumer(config)
            answer = self._groups[group].committed(tps, timeout=self._timeout)
        for tp in answer:
            if tp.error is not None:
                raise KafkaException(tp.error)
        return {(tp.topic, tp.partition): tp.offset for tp in answer}

    def _offsets(
        self, tps: Iterable[TopicPartition], spec: OffsetSpec
    ) -> dict[tuple[str, int], int]:
        futures: dict[TopicPartition, Future[Any]] = self._admin.list_offsets(
            {tp: spec for tp in tps}, request_timeout=self._timeout
        )
        return {
            (tp.topic, tp.partition): f.result(timeout=self._timeout).offset
            for tp, f in futures.items()
        }
