"""Adapter: a consumer group's committed offsets and the partitions' log starts and ends, read
by ``ticketing_events.offsets`` (which says why never through the admin API's group offsets).

Every call blocks (librdkafka); the kopf handler runs it in a thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import TimeoutError as FutureTimeout

from confluent_kafka import KafkaException
from ticketing_events.offsets import KafkaOffsets, UnknownTopic

from lag_autoscaler.decision import PartitionOffsets


class LagUnavailable(Exception):
    """Kafka did not answer, or does not know a topic: no lag figure this time."""


class KafkaLagReader:
    def __init__(
        self, bootstrap_servers: str, *, timeout_s: float = 10.0, client_id: str = "lag-autoscaler"
    ) -> None:
        # No retries: an unanswered read is no figure this time; the next check tries again.
        self._offsets = KafkaOffsets(
            bootstrap_servers, timeout_s=timeout_s, client_id=client_id, settle=False
        )

    def read(self, group: str, topics: Sequence[str]) -> list[PartitionOffsets]:
        """Every partition of ``topics``: the group's committed offset, the log start and end."""
        try:
            high = self._offsets.ends(topics)
            low = self._offsets.starts(topics)
            committed = self._offsets.committed(group, topics)
        except (KafkaException, FutureTimeout, UnknownTopic) as exc:
            raise LagUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return [
            PartitionOffsets(
                topic=topic,
                partition=partition,
                # Without a commit the broker answers OFFSET_INVALID (-1001).
                committed=c if (c := committed.get((topic, partition), -1)) >= 0 else None,
                high_watermark=end,
                log_start=low[(topic, partition)],
            )
            for (topic, partition), end in high.items()
        ]
