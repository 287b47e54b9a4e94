"""The producer and consumer runtime against the real broker."""

from __future__ import annotations

import threading
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence

import pytest
from confluent_kafka import Producer
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from ticketing_events.consumer import (
    BatchFailures,
    ConsumerRuntime,
    Delivery,
    PermanentError,
    RetriesExhausted,
    each,
)
from ticketing_events.producer import EventProducer
from ticketing_events.schemas import Envelope, PaymentFailed, PaymentSucceeded
from ticketing_events.settings import KafkaSettings
from ticketing_events.testing import (
    committed_offsets,
    end_offsets,
    payment_failed,
    payment_succeeded,
    read_from,
)
from ticketing_events.topics import dlq_topic

pytestmark = pytest.mark.kafka

SUCCESS = PaymentSucceeded.TYPE
FAILED = PaymentFailed.TYPE


def test_round_trip_carries_headers_and_continues_the_trace(kafka_bootstrap, harness, spans):
    group = harness.group([SUCCESS])
    received: list[Delivery[PaymentSucceeded]] = []
    current_span: dict[str, trace.SpanContext] = {}

    def handle(delivery: Delivery[PaymentSucceeded]) -> None:
        current_span[delivery.event.event_id] = trace.get_current_span().get_span_context()
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
        settings=harness.consumer_settings(),
    )
    with harness.running(runtime):
        harness.wait_until(lambda: any(d.event.event_id == event.event_id for d in received))

    delivery = next(d for d in received if d.event.event_id == event.event_id)
    assert delivery.event == event
    assert delivery.headers["event_type"] == b"payment.success"
    assert delivery.headers["event_id"] == event.event_id.encode()
    assert delivery.headers["traceparent"].startswith(b"00-")

    finished = spans.get_finished_spans()
    publish = next(
        s
        for s in finished
        if s.kind is SpanKind.PRODUCER
        and s.attributes.get("messaging.message.id") == event.event_id
    )
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
    assert current_span[event.event_id].span_id == process.context.span_id  # runs inside it


def test_poison_messages_are_dead_lettered_with_reasons_and_the_consumer_goes_on(
    kafka_bootstrap, harness
):
    group = harness.group([SUCCESS])
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
    produced_up_to = end_offsets(kafka_bootstrap, [SUCCESS])

    runtime = ConsumerRuntime(
        group,
        {PaymentSucceeded: each(handle)},
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        settings=harness.consumer_settings(),
    )
    with harness.running(runtime):
        harness.wait_until(lambda: good.event_id in handled, what="the good event")
        harness.wait_until(lambda: runtime.stats.dead_lettered >= 5, what="five dead letters")

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
    # (good may be applied twice: once in the failed batch, once alone; handlers are idempotent)
    assert {i for i in handled if i in ours} == {good.event_id}
    # Everything was handled or dead-lettered, so the group's offsets moved past all of it.
    committed = committed_offsets(kafka_bootstrap, group, [SUCCESS])
    assert all(committed[tp] >= end for tp, end in produced_up_to.items())


def test_batches_are_dispatched_by_type_and_a_failing_event_is_isolated(kafka_bootstrap, harness):
    group = harness.group([SUCCESS, FAILED])
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
        settings=harness.consumer_settings(),
    )
    with harness.running(runtime):
        wanted = {e.event_id for e in events} - {bad.event_id}
        harness.wait_until(lambda: wanted <= set(applied), what="39 applied events")
    assert bad.event_id not in applied
    assert max(batches[SUCCESS]) > 1  # batches really are batches
    assert runtime.stats.dead_lettered == 1


def test_a_batch_handler_reports_failures_per_event_and_only_those_are_retried(
    kafka_bootstrap, harness
):
    group = harness.group([SUCCESS])
    events = [payment_succeeded(i) for i in range(20)]
    rejected, flaky, outage, spent = (e.event_id for e in events[3:7])
    calls: Counter[str] = Counter()

    def handle(batch: Sequence[Delivery[PaymentSucceeded]]) -> None:
        failures: dict[int, Exception] = {}
        for i, delivery in enumerate(batch):
            event_id = delivery.event.event_id
            calls[event_id] += 1
            if event_id == rejected:
                failures[i] = PermanentError("never")
            elif event_id == spent:
                failures[i] = RetriesExhausted("the handler's own budget is spent")
            elif event_id == flaky and calls[event_id] == 1:
                failures[i] = RuntimeError("once")
            elif event_id == outage and calls[event_id] <= 2:
                failures[i] = ConnectionError("down")
        if failures:
            raise BatchFailures(failures)

    EventProducer(kafka_bootstrap, client_id="test").publish(events)
    runtime = ConsumerRuntime(
        group,
        {PaymentSucceeded: handle},
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        settings=harness.consumer_settings(),
        outage_errors=(ConnectionError,),
    )
    with harness.running(runtime):
        harness.wait_until(lambda: runtime.stats.dead_lettered == 2, what="two dead letters")
        harness.wait_consumed(group, [SUCCESS])
    ours = {e.event_id: calls[e.event_id] for e in events}
    assert ours == {**dict.fromkeys(ours, 1), flaky: 2, outage: 3}, "successes are not resent"
    assert runtime.stats.by_reason == {"rejected": 1, "retries_exhausted": 1}
    assert runtime.stats.handled >= 18


def test_dependency_outage_is_ridden_out_without_dead_letters(kafka_bootstrap, harness):
    group = harness.group([SUCCESS])
    down = threading.Event()
    down.set()
    handled: set[str] = set()

    def handle(delivery: Delivery[PaymentSucceeded]) -> None:
        if down.is_set():
            raise ConnectionError("redis is down")
        handled.add(delivery.event.event_id)

    events = [payment_succeeded(i) for i in range(5)]
    EventProducer(kafka_bootstrap, client_id="test").publish(events)
    runtime = ConsumerRuntime(
        group,
        {PaymentSucceeded: each(handle)},
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        settings=harness.consumer_settings(max_attempts=2, backoff_max_s=0.2),
        outage_errors=(ConnectionError,),
    )
    with harness.running(runtime):
        # The outage lasts past max_attempts retries: outages are not counted against them.
        harness.wait_until(lambda: runtime.stats.retries >= 3, what="retries in the outage")
        down.clear()
        harness.wait_until(
            lambda: {e.event_id for e in events} <= handled, what="all after the outage"
        )
    assert runtime.stats.dead_lettered == 0


def test_health_endpoints_report_liveness_and_readiness(kafka_bootstrap, harness):
    group = harness.group([SUCCESS])
    runtime = ConsumerRuntime(
        group,
        {PaymentSucceeded: each(lambda d: None)},
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        settings=harness.consumer_settings(),
    )

    def status(path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{runtime.health_port}{path}") as r:
                return int(r.status)
        except urllib.error.HTTPError as err:
            return err.code

    with harness.running(runtime):
        harness.wait_until(lambda: runtime.health_port is not None, what="health server")
        assert status("/livez") == 200
        harness.wait_until(lambda: status("/readyz") == 200, what="readiness after joining")
        assert status("/nope") == 404
