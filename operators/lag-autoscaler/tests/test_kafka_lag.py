"""The lag reader against the real broker, on topics of the test's own."""

from __future__ import annotations

import subprocess
import sys

import pytest
from lag_autoscaler.decision import lag_by_topic, partition_lag
from lag_autoscaler.kafka_lag import KafkaLagReader, LagUnavailable
from lag_autoscaler.spec import OffsetResetPolicy
from ticketing_events.testing import KafkaServer, start_group_at_end
from ticketing_events.topics import ensure_topics

from .conftest import Topics

pytestmark = pytest.mark.kafka
LATEST, EARLIEST = OffsetResetPolicy.LATEST, OffsetResetPolicy.EARLIEST


def test_lag_per_topic_and_partition(kafka_topics: Topics) -> None:
    a, b = kafka_topics.topic(3), kafka_topics.topic(2)
    kafka_topics.publish(a, {0: 2})  # before the group starts: not lag
    group = kafka_topics.group()
    start_group_at_end(kafka_topics.bootstrap, group, [a, b])
    kafka_topics.publish(a, {0: 4, 1: 3, 2: 0})
    kafka_topics.publish(b, {0: 5, 1: 1})
    reader = KafkaLagReader(kafka_topics.bootstrap)

    offsets = reader.read(group, [a, b])
    assert {(p.topic, p.partition): (p.committed, p.high_watermark) for p in offsets} == {
        (a, 0): (2, 6),
        (a, 1): (0, 3),
        (a, 2): (0, 0),
        (b, 0): (0, 5),
        (b, 1): (0, 1),
    }
    assert lag_by_topic(offsets, LATEST) == {a: 7, b: 6}

    kafka_topics.commit(group, {(a, 0): 5, (b, 0): 5})
    offsets = reader.read(group, [a, b])
    assert lag_by_topic(offsets, LATEST) == {a: 4, b: 1}
    assert [partition_lag(p, LATEST) for p in offsets if p.topic == a] == [1, 3, 0]


def test_group_without_commits(kafka_topics: Topics) -> None:
    topic = kafka_topics.topic(3)
    kafka_topics.publish(topic, {0: 4, 1: 2})
    group = kafka_topics.group()  # never commits

    offsets = KafkaLagReader(kafka_topics.bootstrap).read(group, [topic])
    assert [p.committed for p in offsets] == [None, None, None]
    assert [p.log_start for p in offsets] == [0, 0, 0]
    assert lag_by_topic(offsets, LATEST) == {topic: 3}  # 1 per partition, even an empty one
    assert lag_by_topic(offsets, EARLIEST) == {topic: 6}  # the whole log


def test_partly_committed_group(kafka_topics: Topics) -> None:
    topic = kafka_topics.topic(2)
    kafka_topics.publish(topic, {0: 4, 1: 5})
    group = kafka_topics.group()
    kafka_topics.commit(group, {(topic, 0): 3})

    offsets = KafkaLagReader(kafka_topics.bootstrap).read(group, [topic])
    assert [p.committed for p in offsets] == [3, None]
    assert [partition_lag(p, LATEST) for p in offsets] == [1, 1]
    assert [partition_lag(p, EARLIEST) for p in offsets] == [1, 5]


def test_unknown_topic(kafka_topics: Topics) -> None:
    reader = KafkaLagReader(kafka_topics.bootstrap)
    with pytest.raises(LagUnavailable, match="unknown topics: no-such-topic-"):
        reader.read(kafka_topics.group(), [f"no-such-topic-{kafka_topics.group()}"])


def test_unreachable_broker() -> None:
    reader = KafkaLagReader("127.0.0.1:1", timeout_s=1.0)
    with pytest.raises(LagUnavailable):
        reader.read("g", ["t"])


# The first group request to a fresh broker answers NOT_COORDINATOR while it creates the
# offsets topic. In a process of its own: librdkafka's admin client crashed on that answer.
READ_ON_FRESH_BROKER = """
import sys, time
from lag_autoscaler.kafka_lag import KafkaLagReader, LagUnavailable
reader = KafkaLagReader(sys.argv[1], timeout_s=10.0)
for attempt in range(60):  # as the operator's polls do, while the broker settles
    try:
        print(sum(p.high_watermark for p in reader.read("fresh-group", [sys.argv[2]])))
        break
    except LagUnavailable as exc:
        print("unavailable:", exc, file=sys.stderr)
        time.sleep(0.5)
"""


def test_the_lag_of_a_group_on_a_fresh_broker_is_read_without_crashing(tmp_path) -> None:
    server = KafkaServer(tmp_path / "kafka")
    server.start()
    try:
        ensure_topics(server.bootstrap, ["payment.success"])
        run = subprocess.run(
            [sys.executable, "-c", READ_ON_FRESH_BROKER, server.bootstrap, "payment.success"],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        server.stop()
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["0"], run.stderr[-2000:]
