"""Topic registry: which event each topic carries and which consumer groups read it."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import structlog
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ClusterMetadata,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from ticketing_events.schemas import (
    Envelope,
    PaymentFailed,
    PaymentSucceeded,
    ReservationCreated,
)

PAYMENT_SUCCESS = PaymentSucceeded.TYPE
PAYMENT_FAILED = PaymentFailed.TYPE
RESERVATION_CREATED = ReservationCreated.TYPE

# One event type per topic; the topic is named after the event type.
TOPIC_EVENTS: dict[str, type[Envelope]] = {
    PAYMENT_SUCCESS: PaymentSucceeded,
    PAYMENT_FAILED: PaymentFailed,
    RESERVATION_CREATED: ReservationCreated,
}


@dataclass(frozen=True)
class ConsumerGroup:
    name: str
    service: str
    topics: tuple[str, ...]


CONSUMER_GROUPS: dict[str, ConsumerGroup] = {
    g.name: g
    for g in (
        ConsumerGroup("ranking-update-group", "ranking-consumer", (PAYMENT_SUCCESS,)),
        ConsumerGroup("data-platform-group", "dataplatform-consumer", (PAYMENT_SUCCESS,)),
        ConsumerGroup(
            "post-payment-cleanup-group", "cleanup-consumer", (PAYMENT_SUCCESS, PAYMENT_FAILED)
        ),
        ConsumerGroup("payment-compensator-group", "compensator", (PAYMENT_FAILED,)),
        ConsumerGroup("reservation-created-group", "seatlock-consumer", (RESERVATION_CREATED,)),
    )
}


def consumers_of(topic: str) -> tuple[str, ...]:
    """The services whose groups read ``topic``, in the registry's order."""
    return tuple(g.service for g in CONSUMER_GROUPS.values() if topic in g.topics)


def group_of(service: str) -> ConsumerGroup:
    """The registry's group of a consumer service."""
    for group in CONSUMER_GROUPS.values():
        if group.service == service:
            return group
    raise KeyError(f"{service} is no consumer of the topic registry (topics.py)")


T = TypeVar("T")

log = structlog.get_logger(__name__)

# Errors of a broker still settling: new topics electing their leaders, or, on a fresh broker,
# the consumer offsets topic that the first group request creates and loads.
_SETTLING = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
}


def retry_while_settling(call: Callable[[], T], timeout: float = 30.0) -> T:
    """``call()``, repeated while the broker answers that it is still settling."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except KafkaException as exc:
            err = exc.args[0]
            if time.monotonic() > deadline or not (err.retriable() or err.code() in _SETTLING):
                raise
            time.sleep(0.2)


def topic_for(event: type[Envelope] | Envelope) -> str:
    return event.TYPE


def dlq_topic(topic: str, group: str) -> str:
    """Dead-letter topic of one group for one source topic."""
    return f"{topic}.{group}.dlq"


# A redrive topic carries a trickle. One partition, because the group's assignment balances
# partition counts over all its topics: six idle redrive partitions could be a Pod's whole share.
REDRIVE_PARTITIONS = 1


def redrive_topic(topic: str, group: str) -> str:
    """Where ``ticketing-dlq redrive`` sends one group's dead letters of ``topic`` back: only
    that group reads it, so the other groups of the topic never see a redriven event."""
    return f"{topic}.{group}.redrive"


def all_topics(include_dlq: bool = True) -> list[str]:
    names = list(TOPIC_EVENTS)
    if include_dlq:
        pairs = [(t, g.name) for g in CONSUMER_GROUPS.values() for t in g.topics]
        names += [dlq_topic(t, g) for t, g in pairs] + [redrive_topic(t, g) for t, g in pairs]
    return names


def durability(
    brokers: int, replication_factor: int | None = None, min_insync_replicas: int | None = None
) -> tuple[int, int]:
    """Replication factor and ``min.insync.replicas`` for new topics: the arguments, else
    ``TOPIC_*`` (TopicSettings), else the cluster's size up to 3 and one less, at least 1.
    Producers write with acks=all: on three brokers a write needs two, so one may be down."""
    from ticketing_events.settings import TopicSettings

    settings = TopicSettings()
    replication = replication_factor or settings.replication_factor or min(brokers, 3)
    min_insync = min_insync_replicas or settings.min_insync_replicas or max(replication - 1, 1)
    return replication, min_insync


def ensure_topics(
    bootstrap_servers: str,
    names: Iterable[str] | None = None,
    *,
    partitions: int = 6,
    replication_factor: int | None = None,
    min_insync_replicas: int | None = None,
    timeout: float = 30.0,
) -> list[str]:
    """Create the topics that do not exist yet, replicated as ``durability()`` says, and align
    ``min.insync.replicas`` of those that do; return the names created."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    wanted = list(names) if names is not None else all_topics()
    metadata = admin.list_topics(timeout=timeout)
    replication, min_insync = durability(
        len(metadata.brokers), replication_factor, min_insync_replicas
    )
    existing = [n for n in wanted if n in metadata.topics]
    _align_min_insync(admin, metadata, existing, min_insync, timeout)
    missing = [n for n in wanted if n not in metadata.topics]
    if not missing:
        return []
    config = {"min.insync.replicas": str(min_insync)}
    redrive = {redrive_topic(t, g.name) for g in CONSUMER_GROUPS.values() for t in g.topics}
    futures = admin.create_topics(
        [
            NewTopic(
                n, REDRIVE_PARTITIONS if n in redrive else partitions, replication, config=config
            )
            for n in missing
        ],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":  # another replica raced us
                raise
    _wait_for_leaders(admin, missing, timeout)
    return created


def _align_min_insync(
    admin: AdminClient, metadata: ClusterMetadata, names: list[str], value: int, timeout: float
) -> None:
    """Set ``min.insync.replicas`` of existing topics to ``value`` (incremental alter, nothing
    else changes), capped at each topic's replica count: above it every write would fail."""
    wanted: dict[str, str] = {}
    for name in names:
        partitions = metadata.topics[name].partitions.values()
        replicas = min((len(p.replicas) for p in partitions), default=value)
        wanted[name] = str(min(value, replicas))
    if not wanted:
        return
    described = admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, n) for n in wanted], request_timeout=timeout
    )
    changes = []
    for resource, future in described.items():
        current = future.result()["min.insync.replicas"].value
        if current != wanted[resource.name]:
            entry = ConfigEntry(
                "min.insync.replicas",
                wanted[resource.name],
                incremental_operation=AlterConfigOpType.SET,
            )
            changes.append(
                ConfigResource(ResourceType.TOPIC, resource.name, incremental_configs=[entry])
            )
    if not changes:
        return
    for resource, future in admin.incremental_alter_configs(
        changes, request_timeout=timeout
    ).items():
        future.result()
        log.info("min.insync.replicas aligned", topic=resource.name, value=wanted[resource.name])


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout: float) -> None:
    """New topics answer produce and offset requests only once every partition has a leader."""
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=timeout).topics
        if all(
            n in topics
            and topics[n].partitions
            and all(p.leader >= 0 for p in topics[n].partitions.values())
            for n in names
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics without leaders after {timeout}s: {names}")
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> None:
    """``ticketing-topics``: create every topic, dead-letter and redrive topic of the registry."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--bootstrap-servers", default=None)
    parser.add_argument("--partitions", type=int, default=6)
    # Unset: TOPIC_REPLICATION_FACTOR and TOPIC_MIN_INSYNC_REPLICAS, else from the cluster.
    parser.add_argument("--replication-factor", type=int, default=None)
    parser.add_argument("--min-insync-replicas", type=int, default=None)
    args = parser.parse_args(argv)
    from ticketing_events.settings import KafkaSettings

    bootstrap = args.bootstrap_servers or KafkaSettings().bootstrap_servers
    created = ensure_topics(
        bootstrap,
        partitions=args.partitions,
        replication_factor=args.replication_factor,
        min_insync_replicas=args.min_insync_replicas,
    )
    print(f"created {len(created)} topic(s): {', '.join(created) or '-'}")
