"""Kafka as it runs in production, on a three-node cluster of this module's own: topics with 3
replicas of which 2 must be in sync, and a crash of a partition's leader in the middle of a
rush of payments that costs no payment and no effect."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    ConfigResource,
    NewTopic,
    ResourceType,
)
from e2e_stack import running_stack
from sqlalchemy import Engine, text
from test_end_to_end import PRICE, Fans, assert_every_effect_once
from ticketing_dev.stack import Stack
from ticketing_events.producer import producer_config
from ticketing_events.testing import Harness, KafkaServer, end_offsets, read_from
from ticketing_events.topics import PAYMENT_FAILED, PAYMENT_SUCCESS, all_topics, ensure_topics

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.postgres, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaServer]:
    server = KafkaServer(tmp_path_factory.mktemp("kafka-cluster"), nodes=3)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster_stack(
    cluster: KafkaServer,
    redis_url: str,
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    no_jaeger = {"OTEL_SDK_DISABLED": "true"}  # traces are not what this module checks
    with running_stack(cluster.bootstrap, tmp_path_factory.mktemp("stack"), no_jaeger) as stack:
        yield stack


def min_insync(admin: AdminClient, topics: list[str]) -> dict[str, str]:
    """``min.insync.replicas`` of each topic, as the brokers report it."""
    described = admin.describe_configs([ConfigResource(ResourceType.TOPIC, t) for t in topics])
    return {r.name: f.result()["min.insync.replicas"].value for r, f in described.items()}


def test_topics_have_three_replicas_and_writes_need_two(
    cluster: KafkaServer, cluster_stack: Stack
) -> None:
    """The registry's topics (created by the stack's ensure_topics on three brokers) have 3
    replicas and min.insync.replicas 2, and the producers wait for all in-sync replicas."""
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    topics = admin.list_topics(timeout=10).topics
    for name in all_topics():
        assert {len(p.replicas) for p in topics[name].partitions.values()} == {3}, name
    assert set(min_insync(admin, all_topics()).values()) == {"2"}
    config = producer_config(cluster.bootstrap, "test")
    assert (config["acks"], config["enable.idempotence"]) == ("all", True)


def test_an_existing_topic_gets_two_in_sync_replicas(cluster: KafkaServer) -> None:
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    name = f"test-isr-{uuid.uuid4().hex[:10]}"
    topic = NewTopic(name, num_partitions=1, replication_factor=3)
    topic.config = {"min.insync.replicas": "1"}
    admin.create_topics([topic])[name].result(30)

    # Each broker answers describe_configs from its copy of the metadata, which lags a moment
    # behind the controller: ensure_topics must not see the default of a broker not caught up.
    def everywhere(value: str) -> bool:
        try:
            return all(min_insync(admin, [name]) == {name: value} for _ in range(6))
        except KafkaException:  # a broker that does not know the topic yet
            return False

    Harness.wait_until(lambda: everywhere("1"), 30, "min.insync.replicas 1 on every broker")

    assert ensure_topics(cluster.bootstrap, [name]) == []  # nothing created, one topic aligned
    Harness.wait_until(lambda: everywhere("2"), 30, "min.insync.replicas 2 on every broker")


def in_sync(cluster: KafkaServer, topics: list[str]) -> bool:
    """Every partition of ``topics`` has all three replicas in sync."""
    metadata = AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics(timeout=10)
    return all(len(p.isrs) == 3 for t in topics for p in metadata.topics[t].partitions.values())


def test_a_leader_crash_mid_rush_loses_and_doubles_nothing(
    cluster: KafkaServer, cluster_stack: Stack
) -> None:
    """A third of the payments, then SIGKILL of the leader of the busiest payment.success
    partition; a third while it is gone, a third while it comes back. Every payment answers,
    every event reaches its topic, every effect happens once, and the broker catches up.

    A publish that times out while the leader is gone is sent again, so an event may be on its
    topic twice: the consumers drop the copy, the data platform by its Idempotency-Key."""
    stack, bootstrap = cluster_stack, cluster.bootstrap
    paying, short = 36, 12
    fans = Fans(stack, seats=paying + short, points=[PRICE] * paying + [PRICE - 1] * short)
    reservations = fans.reserve_each()
    payment_topics = [PAYMENT_SUCCESS, PAYMENT_FAILED]
    start = end_offsets(bootstrap, payment_topics)
    # The thirds mix payers and fans who are short, so each third publishes on both topics.
    order = list(range(paying + short))
    thirds = [order[i::3] for i in range(3)]
    statuses: dict[int, int] = {}
    wait_until = Harness.wait_until

    def pay(fans_to_pay: list[int]) -> None:
        with ThreadPoolExecutor(8) as pool:
            answers = pool.map(lambda f: fans.pay(f, reservations[f]).status_code, fans_to_pay)
            statuses.update(zip(fans_to_pay, answers, strict=True))

    pay(thirds[0])
    first = set(thirds[0]) & set(range(paying))
    wait_until(
        lambda: (
            sum(end_offsets(bootstrap, [PAYMENT_SUCCESS]).values())
            - sum(v for (t, _), v in start.items() if t == PAYMENT_SUCCESS)
            >= len(first)
        ),
        120,
        "the first third on payment.success",
    )
    sent = {
        p: end - start[(t, p)] for (t, p), end in end_offsets(bootstrap, [PAYMENT_SUCCESS]).items()
    }
    busiest = max(sent, key=lambda p: sent[p])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    leader = admin.list_topics(timeout=10).topics[PAYMENT_SUCCESS].partitions[busiest].leader
    cluster.kill(leader)
    killed_at = datetime.now(UTC)

    pay(thirds[1])
    wait_until(
        lambda: (
            admin.list_topics(timeout=10).topics[PAYMENT_SUCCESS].partitions[busiest].leader
            not in (leader, -1)
        ),
        120,
        f"a new leader of partition {busiest}",
    )
    cluster.start_node(leader)
    pay(thirds[2])

    assert [statuses[f] for f in order] == [201] * paying + [402] * short

    # Every payment's event reaches its topic once the outbox is published...
    engine = stack.engine()
    try:
        wait_until(lambda: not unpublished(engine), 300, "the outbox to be published")
        events = outbox_events(engine, fans.schedule_id)
    finally:
        engine.dispose()
    assert len(events) == paying + short
    total = sum(end - start[tp] for tp, end in end_offsets(bootstrap, payment_topics).items())
    on_topics = {
        dict(m.headers() or ())["event_id"].decode()  # type: ignore[arg-type]
        for m in read_from(bootstrap, start, count=total, timeout=120)
    }
    lost = {e: published for e, published in events.items() if e not in on_topics}
    assert not lost, f"published (at) but not on the topics, kill at {killed_at}: {lost}"
    # ... and every effect happens once.
    assert_every_effect_once(stack, fans, reservations, paying, timeout=300, redelivered=True)

    wait_until(lambda: cluster.brokers() == {1, 2, 3}, 120, "the broker back in the cluster")
    wait_until(
        lambda: in_sync(cluster, [*all_topics(), "__consumer_offsets"]),
        300,
        f"broker {leader} to catch up every partition",
    )


def unpublished(engine: Engine) -> int:
    with engine.connect() as conn:
        query = "select count(*) from outbox where published_at is null"
        return int(conn.execute(text(query)).scalar_one())


def outbox_events(engine: Engine, schedule_id: int) -> dict[str, str]:
    """The payment events of ``schedule_id`` in the outbox: id and when it was published."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "select event_id, published_at from outbox where event_type like 'payment.%'"
                " and cast(payload as jsonb) -> 'payload' ->> 'schedule_id' = :s"
            ),
            {"s": str(schedule_id)},
        ).all()
    return {event_id: str(published) for event_id, published in rows}
