"""Parent-based sampling through Kafka: the consumer follows the producer's decision, carried
by the sampled flag of each message's ``traceparent``, so a payment is traced whole or not at
all. The producer side decides as payment-api does at ratio 0 or 1 (a request span of its own
``parentbased_traceidratio`` sampler); the consumer runs on the process-wide provider."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind
from ticketing_events.consumer import ConsumerRuntime, Delivery, each
from ticketing_events.producer import EventProducer
from ticketing_events.schemas import PaymentSucceeded
from ticketing_events.testing import Harness, payment_succeeded

pytestmark = pytest.mark.kafka

SUCCESS = PaymentSucceeded.TYPE


def publish_and_consume(
    kafka_bootstrap: str, harness: Harness, ratio: float
) -> tuple[PaymentSucceeded, trace.Span, Delivery[PaymentSucceeded], trace.Span]:
    """Publish one event under a request span sampled at ``ratio`` and consume it; the event,
    the request span, its delivery and the span current while the handler ran."""
    group = harness.group([SUCCESS])
    handled: dict[str, tuple[Delivery[PaymentSucceeded], trace.Span]] = {}

    def handle(delivery: Delivery[PaymentSucceeded]) -> None:
        handled[delivery.event.event_id] = (delivery, trace.get_current_span())

    event = harness.event(payment_succeeded(1))
    api = TracerProvider(sampler=ParentBased(TraceIdRatioBased(ratio))).get_tracer("api")
    with api.start_as_current_span("POST /v1/payments") as request:
        EventProducer(kafka_bootstrap, client_id="test").publish([event])
    runtime = ConsumerRuntime(
        group,
        {PaymentSucceeded: each(handle)},
        kafka=harness.kafka,
        settings=harness.consumer_settings(),
    )
    with harness.running(runtime):  # stopped on exit: every span of the batch has ended
        harness.wait_until(lambda: event.event_id in handled, what="the event handled")
    delivery, current = handled[event.event_id]
    return event, request, delivery, current


def sampled_flag(traceparent: bytes) -> bool:
    """The sampled bit of a W3C ``traceparent``'s flags (the SDK may set the random bit too)."""
    return bool(int(traceparent.split(b"-")[3], 16) & 0x01)


def of_event(spans: Sequence[ReadableSpan], kind: SpanKind, event_id: str) -> list[ReadableSpan]:
    return [
        s
        for s in spans
        if s.kind is kind and (s.attributes or {}).get("messaging.message.id") == event_id
    ]


def test_a_message_the_producer_did_not_sample_is_handled_but_not_traced(
    kafka_bootstrap: str, harness: Harness, spans: InMemorySpanExporter
) -> None:
    event, request, delivery, current = publish_and_consume(kafka_bootstrap, harness, 0.0)

    assert not request.is_recording()
    trace_id = request.get_span_context().trace_id
    assert not sampled_flag(delivery.headers["traceparent"])  # the decision travels with it
    assert delivery.event == event
    # The handler runs in the request's trace, in a span that records nothing.
    assert current.get_span_context().trace_id == trace_id
    assert not current.is_recording()
    finished = spans.get_finished_spans()
    assert not of_event(finished, SpanKind.PRODUCER, event.event_id)
    assert not of_event(finished, SpanKind.CONSUMER, event.event_id)
    assert not [s for s in finished if s.context is not None and s.context.trace_id == trace_id]


def test_a_message_the_producer_sampled_is_traced_as_the_child_of_its_publish(
    kafka_bootstrap: str, harness: Harness, spans: InMemorySpanExporter
) -> None:
    event, request, delivery, current = publish_and_consume(kafka_bootstrap, harness, 1.0)

    assert sampled_flag(delivery.headers["traceparent"])
    finished = spans.get_finished_spans()
    (publish,) = of_event(finished, SpanKind.PRODUCER, event.event_id)
    (process,) = of_event(finished, SpanKind.CONSUMER, event.event_id)
    assert publish.context is not None and process.context is not None
    assert process.context.trace_id == request.get_span_context().trace_id
    assert process.context.trace_flags.sampled
    assert process.parent is not None and process.parent.span_id == publish.context.span_id
    assert current.get_span_context().span_id == process.context.span_id
