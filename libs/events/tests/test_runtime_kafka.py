"""The producer and consumer runtime against the real broker."""

from __future__ import annotations

import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import pytest
from confluent_kafka import Producer
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from ticketing_events.consumer import ConsumerRuntime, Delivery, PermanentError, each
from ticketing_events.producer import EventProducer
from ticketing_events.schemas import Envelope, PaymentFailed, PaymentSucceeded
from ticketing_events.settings import ConsumerSettings, KafkaSettings
from ticketing_events.testing import (
    committed_offsets,
    end_offsets,
    payment_failed,
    payment_succeeded,
    read_from,
    start_group_at_end,
)
from ticketing_events.topics import dlq_topic, ensure_topics

pytestmark = pytest.mark.kafka

SUCCESS = PaymentSucceeded.TYPE
FAILED = PaymentFailed.TYPE


def fast_settings(**overrides: object) -> ConsumerSettings:
    values: dict[str, object] = {
        "batch_size": 100,
        "poll_timeout_s": 0.2,
        "max_attempts": 3,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.05,
        "health_port": 0,
        "health_host": "127.0.0.1",
    }
    values.update(overrides)
    return ConsumerSettings(**values)  # type: ignore[arg-type]


def new_group(bootstrap: str, topics: Sequence[str]) -> str:
    """A fresh group that starts at the topics' ends, with its dead-letter topics."""
    group = f"test-{uuid.uuid4().hex[:10]}"
    start_group_at_end(bootstrap, group, topics)
    ensure_topics(bootstrap, [dlq_topic(t, group) for t in topics])
    return group


@contextmanager
def running(runtime: ConsumerRuntime) -> Iterator[ConsumerRuntime]:
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    try:
        yield runtime
    finally:
        runtime.stop()
        thread.join(30)
        assert not thread.is_alive(), "consumer did not stop"


def wait_until(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_round_trip_carries_headers_and_continues_the_trace(kafka_bootstrap, spans):
    group = new_group(kafka_bootstrap, [SUCCESS])
    received: list[Delivery[PaymentSucceeded]] = []
    seen_parent: list[trace.SpanContext] = []

    def handle(delivery: Delivery[PaymentSucceeded]) -> None:
        seen_parent.append(trace.get_current_span().get_span_context())
        received.append(delivery)

    event = payment_succeeded(1)
    producer = EventProducer(kafka_bootstrap, client_id="test")
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("POST /v1/payments") as request_span:
        producer.publish([event])
    runtime = ConsumerRuntime(
        group,
        {PaymentSucceeded: each(handle)},
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        settings=fast_settings(),
    )
    with running(runtime):
        wait_until(lambda: any(d.event.event_id == event.event_id for d in received))

    delivery = next(d for d in received if d.event.event_id == event.event_id)
    assert delivery.event == event
    assert delivery.headers["event_type"] == b"payment.success"
    assert delivery.headers["event_id"] == event.event_id.encode()
    assert delivery.headers["traceparent"].startswith(b"00-")

    finished = spans.get_finished_spans()
    publish = next(s for s in finished if s.kind is SpanKind.PRODUCER)
    process = next(
        s
        for s in finished
        if s.kind is SpanKind.CONSUMER
        and s.attributes.get("messaging.message.id") == event.event_id
    )
    trace_id = request_span.get_span_context().trace_id
    assert publish.context.trace_id == process.context.trace_id == trace_id
    assert publish.parent.span_id == request_span.get_span_context().span_id
    assert process.parent.span_id == publish.context.span_id  # a child, not a link
    assert process.attributes["messaging.consumer.group.name"] == group
    assert seen_parent[-1].span_id == process.context.span_id  # handler runs inside it


def test_poison_messages_are_dead_lettered_with_reasons_and_the_consumer_goes_on(
    kafka_bootstrap,
):
    group = new_group(kafka_bootstrap, [SUCCESS])
    dlq = dlq_topic(SUCCESS, group)
    dlq_start = end_offsets(kafka_bootstrap, [dlq])

    rejected = payment_succeeded(2)
    failing = payment_succeeded(3)
    good = payment_succeeded(4)
    handled: list[str] = []

    def handle(delivery: Delivery[PaymentSucceeded]) -> None:
        if delivery.event.event_id == rejected.event_id:
            raise PermanentError("seat does not exist")
        if delivery.event.event_id == failing.event_id:
            raise RuntimeError("bug in handler")
        handled.append(delivery.event.event_id)

    raw = Producer({"bootstrap.servers": kafka_bootstrap})
    key = b"1"
    raw.produce(SUCCESS, key=key, value=b"{not json", headers=[("traceparent", b"garbage")])
    raw.produce(SUCCESS, key=key, value=b'{"event_id": "x"}')
    future = good.model_dump_json().replace('"schema_version":"1.0"', '"schema_version":"2.0"')
    raw.produce(SUCCESS, key=key, value=future.encode())
    raw.flush(10)
    EventProducer(kafka_bootstrap, client_id="test").publish([rejected, failing, good])

    runtime = ConsumerRuntime(
        group,
        {PaymentSucceeded: each(handle)},
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        settings=fast_settings(),
    )
    with running(runtime):
        wait_until(lambda: good.event_id in handled, what="the good event")
        wait_until(lambda: runtime.stats.dead_lettered >= 5, what="five dead letters")

    letters = read_from(kafka_bootstrap, dlq_start, count=runtime.stats.dead_lettered)
    reasons = {}
    for m in letters:
        h = dict(m.headers())
        reasons[h["dlq.reason"].decode()] = h
        assert h["dlq.original.topic"] == SUCCESS.encode()
        assert int(h["dlq.original.offset"]) >= 0
        assert h["dlq.group"] == group.encode()
    assert set(reasons) == {
        "undecodable",
        "invalid",
        "unsupported_version",
        "rejected",
        "retries_exhausted",
    }
    assert reasons["retries_exhausted"]["dlq.attempts"] == b"3"
    assert b"bug in handler" in reasons["retries_exhausted"]["dlq.error"]
    assert reasons["rejected"]["dlq.attempts"] == b"1"
    assert (
        b"seat_id" in reasons["invalid"]["dlq.error"]
        or b"Field required" in (reasons["invalid"]["dlq.error"])
    )
    ours = {rejected.event_id, failing.event_id, good.event_id}
    assert [i for i in handled if i in ours] == [good.event_id]
    # Everything was handled or dead-lettered, so the group's offsets moved past all of it.
    committed = committed_offsets(kafka_bootstrap, group, [SUCCESS])
    assert committed == end_offsets(kafka_bootstrap, [SUCCESS])


def test_batches_are_dispatched_by_type_and_a_failing_event_is_isolated(kafka_bootstrap):
    group = new_group(kafka_bootstrap, [SUCCESS, FAILED])
    events: list[Envelope] = [payment_succeeded(i) for i in range(30)]
    events += [payment_failed(i) for i in range(10)]
    bad = events[7]
    batches: dict[str, list[int]] = {SUCCESS: [], FAILED: []}
    applied: list[str] = []

    def handler(kind: str) -> Callable[[Sequence[Delivery[Envelope]]], None]:
        def handle(batch: Sequence[Delivery[Envelope]]) -> None:
            batches[kind].append(len(batch))
            assert all(d.event.event_type == kind for d in batch)
            if any(d.event.event_id == bad.event_id for d in batch):
                raise PermanentError("bad one")
            applied.extend(d.event.event_id for d in batch)

        return handle

    EventProducer(kafka_bootstrap, client_id="test").publish(events)
    runtime = ConsumerRuntime(
        group,
        {PaymentSucceeded: handler(SUCCESS), PaymentFailed: handler(FAILED)},
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        settings=fast_settings(),
    )
    with running(runtime):
        wanted = {e.event_id for e in events} - {bad.event_id}
        wait_until(lambda: wanted <= set(applied), what="39 applied events")
    assert bad.event_id not in applied
    assert max(batches[SUCCESS]) > 1  # batches really are batches
    assert runtime.stats.dead_lettered == 1


def test_dependency_outage_is_ridden_out_without_dead_letters(kafka_bootstrap):
    group = new_group(kafka_bootstrap, [SUCCESS])
    outage_until = time.monotonic() + 1.5
    handled: set[str] = set()

    def handle(delivery: Delivery[PaymentSucceeded]) -> None:
        if time.monotonic() < outage_until:
            raise ConnectionError("redis is down")
        handled.add(delivery.event.event_id)

    events = [payment_succeeded(i) for i in range(5)]
    EventProducer(kafka_bootstrap, client_id="test").publish(events)
    runtime = ConsumerRuntime(
        group,
        {PaymentSucceeded: each(handle)},
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        settings=fast_settings(max_attempts=2, backoff_max_s=0.2),
        outage_errors=(ConnectionError,),
    )
    with running(runtime):
        wait_until(lambda: {e.event_id for e in events} <= handled, what="all after the outage")
    assert runtime.stats.dead_lettered == 0
    assert runtime.stats.retries >= 3  # well past max_attempts: outages are not counted


def test_health_endpoints_report_liveness_and_readiness(kafka_bootstrap):
    group = new_group(kafka_bootstrap, [SUCCESS])
    runtime = ConsumerRuntime(
        group,
        {PaymentSucceeded: each(lambda d: None)},
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        settings=fast_settings(),
    )

    def status(path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{runtime.health_port}{path}") as r:
                return int(r.status)
        except urllib.error.HTTPError as err:
            return err.code

    with running(runtime):
        wait_until(lambda: runtime.health_port is not None, what="health server")
        assert status("/livez") == 200
        wait_until(lambda: status("/readyz") == 200, what="readiness after joining")
        assert status("/nope") == 404
