"""EventProducer against the real broker: a fatal client error costs one publish, not all."""

from __future__ import annotations

import os
import socket
import uuid

import pytest
from confluent_kafka import KafkaException, Producer
from opentelemetry import trace
from ticketing_events.producer import DeliveryError, EventProducer, OutgoingMessage, is_fatal
from ticketing_events.testing import read_from

pytestmark = pytest.mark.kafka

# With the gap-less guarantee on, a batch the broker rejects is fatal to an idempotent producer:
# a real way to reach the state other fatal errors (e.g. a sequence the broker lost) leave it in.
GAPLESS = {"enable.gapless.guarantee": True}


def message(topic: str, size: int) -> OutgoingMessage:
    """``size`` random (incompressible) bytes."""
    event_id = uuid.uuid4().hex
    return OutgoingMessage(topic, "k", os.urandom(size), event_id, "test", "1.0")


def test_a_fatal_error_fails_its_publish_and_the_next_one_goes_out(kafka_bootstrap, small_topic):
    producer = EventProducer(kafka_bootstrap, client_id="test", **GAPLESS)
    with pytest.raises(DeliveryError) as failed:
        producer.publish([message(small_topic, 5000)], timeout=10)
    assert is_fatal(failed.value.__cause__)

    after = message(small_topic, 100)
    producer.publish([after], timeout=10)
    [read] = read_from(kafka_bootstrap, {(small_topic, 0): 0}, count=1)
    assert dict(read.headers())["event_id"] == after.event_id.encode()


def test_is_fatal_tells_the_errors_of_a_dead_client_from_the_others(kafka_bootstrap, small_topic):
    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True, **GAPLESS}
    )
    with pytest.raises(KafkaException) as too_big_here:  # refused locally: not fatal
        producer.produce(small_topic, os.urandom(2_000_000))
    assert not is_fatal(too_big_here.value)

    producer.produce(small_topic, os.urandom(5000))
    with pytest.raises(KafkaException) as fatal:  # the broker refuses the batch
        producer.flush(10)
    assert is_fatal(fatal.value)
    with pytest.raises(KafkaException) as dead:  # and the client refuses to produce any more
        producer.produce(small_topic, b"small")
    assert is_fatal(dead.value)


def test_with_tracing_off_every_undelivered_message_fails_its_publish() -> None:
    """The no-op tracer gives every message the same span object; each message is still
    settled on its own, so a batch nobody acknowledged is reported whole."""
    with socket.socket() as s:  # a port where no broker listens
        s.bind(("127.0.0.1", 0))
        nowhere = f"127.0.0.1:{s.getsockname()[1]}"
    producer = EventProducer(nowhere, client_id="test", **{"message.timeout.ms": 1000})
    producer._tracer = trace.NoOpTracer()
    batch = [message("nowhere", 10) for _ in range(5)]
    with pytest.raises(DeliveryError) as failed:
        producer.publish(batch, timeout=10)
    assert sorted(e for e, _ in failed.value.failures) == sorted(m.event_id for m in batch)
