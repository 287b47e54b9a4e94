"""Broker probes: offsets, reads and topic settings of a real cluster."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from confluent_kafka import (
    Consumer,
    Message,
    TopicPartition,
)

from ticketing_events.offsets import KafkaOffsets
from ticketing_events.topics import retry_while_settling

if TYPE_CHECKING:
    pass


def end_offsets(bootstrap_servers: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """High watermark of every partition of ``topics``."""
    with KafkaOffsets(bootstrap_servers, client_id="offset-probe") as offsets:
        return offsets.ends(topics)


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
        retry_while_settling(lambda: consumer.commit(offsets=offsets, asynchronous=False))
    finally:
        consumer.close()
    return ends


def committed_offsets(
    bootstrap_servers: str, group: str, topics: Iterable[str]
) -> dict[tuple[str, int], int]:
    """The group's committed offsets; negative where it committed none."""
    with KafkaOffsets(bootstrap_servers, client_id="offset-probe") as offsets:
        return offsets.committed(group, topics)


def set_topic_config(bootstrap_servers: str, topic: str, name: str, value: str) -> None:
    """Set one config of ``topic`` on the broker, e.g. a small ``max.message.bytes``."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )

    entry = ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[entry])
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)


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
