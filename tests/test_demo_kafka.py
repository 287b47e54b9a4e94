"""``make demo``'s Kafka step on a fresh broker, one of this test alone: the registry's groups do
not exist yet, and the first group request creates the consumer offsets topic."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from ticketing_events.testing import KafkaServer, committed_offsets, end_offsets
from ticketing_events.topics import CONSUMER_GROUPS, all_topics, ensure_topics

pytestmark = pytest.mark.kafka

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"

# What demo.py runs between seeding and starting the stack, in a process of its own: a crash
# there must not take pytest down with it.
START_AT_END = """
import json, sys
sys.path.insert(0, sys.argv[2])
from demo import start_at_end
from ticketing_events.offsets import KafkaOffsets
from rich.console import Console

start = start_at_end(KafkaOffsets(sys.argv[1]), Console(stderr=True))
print(json.dumps({group: start.lag(group) for group in start.committed}))
"""


@pytest.fixture
def fresh_kafka(tmp_path: Path) -> Iterator[str]:
    server = KafkaServer(tmp_path / "kafka")
    server.start()
    try:
        yield server.bootstrap
    finally:
        server.stop()


def publish_to_every_partition(bootstrap: str, topics: list[str]) -> None:
    """One event per partition: every topic has leaders that serve, and an end past 0."""
    producer = Producer({"bootstrap.servers": bootstrap})
    metadata = producer.list_topics(timeout=10).topics
    failed: list[str] = []
    for topic in topics:
        for partition in metadata[topic].partitions:
            producer.produce(
                topic,
                value=b"{}",
                partition=partition,
                on_delivery=lambda err, _msg: failed.append(str(err)) if err else None,
            )
    assert producer.flush(60) == 0
    assert failed == []


def test_demo_starts_the_groups_at_the_end_on_a_fresh_broker(fresh_kafka: str) -> None:
    ensure_topics(fresh_kafka)  # stack.prepare() does this before the seed
    publish_to_every_partition(fresh_kafka, all_topics())

    run = subprocess.run(
        [sys.executable, "-c", START_AT_END, fresh_kafka, str(SCRIPTS)],
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert run.returncode == 0, f"exit {run.returncode}; stderr:\n{run.stderr[-3000:]}"
    assert "warning" not in run.stderr, run.stderr
    assert json.loads(run.stdout) == dict.fromkeys(CONSUMER_GROUPS, 0)
    for group in CONSUMER_GROUPS.values():
        ends = end_offsets(fresh_kafka, group.topics)
        assert committed_offsets(fresh_kafka, group.name, group.topics) == ends
