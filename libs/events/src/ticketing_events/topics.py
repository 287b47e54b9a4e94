"""Topic registry: which event each topic carries and which consumer groups read it."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

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


T = TypeVar("T")

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


def all_topics(include_dlq: bool = True) -> list[str]:
    names = list(TOPIC_EVENTS)
    if include_dlq:
        names += [dlq_topic(t, g.name) for g in CONSUMER_GROUPS.values() for t in g.topics]
    return names


def ensure_topics(
    bootstrap_servers: str,
    names: Iterable[str] | None = None,
    *,
    partitions: int = 6,
    replication_factor: int = 1,
    timeout: float = 30.0,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    wanted = list(names) if names is not None else all_topics()
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [n for n in wanted if n not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [
            NewTopic(n, num_partitions=partitions, replication_factor=replication_factor)
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
    """``ticketing-topics``: create every topic and dead-letter topic of the registry."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--bootstrap-servers", default=None)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--replication-factor", type=int, default=1)
    args = parser.parse_args(argv)
    from ticketing_events.settings import KafkaSettings

    bootstrap = args.bootstrap_servers or KafkaSettings().bootstrap_servers
    created = ensure_topics(
        bootstrap, partitions=args.partitions, replication_factor=args.replication_factor
    )
    print(f"created {len(created)} topic(s): {', '.join(created) or '-'}")
