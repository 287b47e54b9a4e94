"""dataplatform-consumer against the real Kafka and the stub platform (a real HTTP server)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from confluent_kafka import Producer
from dataplatform_consumer.app import app
from opentelemetry.trace import SpanKind
from ticketing_events.consumer import ConsumerRuntime
from ticketing_events.producer import EventProducer
from ticketing_events.schemas import PaymentSucceeded
from ticketing_events.testing import end_offsets, payment_succeeded, read_from
from ticketing_events.topics import dlq_topic

pytestmark = pytest.mark.kafka

SUCCESS = PaymentSucceeded.TYPE


def publish(harness, *events: PaymentSucceeded) -> None:
    EventProducer(harness.bootstrap, client_id="test").publish(list(events))


@contextmanager
def consumer(
    harness, group: str, url: str, consumer: dict[str, Any] | None = None, **platform: Any
) -> Iterator[ConsumerRuntime]:
    """The consumer in a thread, sending to ``url``; ``platform``: ``Settings`` fields."""
    settings = app.settings(consumer_group=group, dataplatform_url=url, **platform)
    with ExitStack() as stack:
        runtime = app.runtime(
            settings,
            app.open(settings, stack),
            kafka=harness.kafka,
            consumer=harness.consumer_settings(**(consumer or {})),
        )
        with harness.running(runtime):
            yield runtime


def dead_letters(harness, group: str, start: dict[tuple[str, int], int], count: int) -> dict:
    """Headers of the dead letters from ``start``, by event id."""
    letters = [dict(m.headers() or ()) for m in read_from(harness.bootstrap, start, count=count)]
    return {h.get("event_id", b"").decode(): h for h in letters}


def test_a_payment_reaches_the_platform_once_with_its_id_as_key_in_the_same_trace(
    harness, stub, spans
):
    group = harness.group([SUCCESS])
    event = harness.event(payment_succeeded())
    with consumer(harness, group, stub.payments_url):
        publish(harness, event)
        harness.wait_until(lambda: stub.payment(event.event_id) is not None, what="the payment")
    received = stub.payment(event.event_id)
    assert received == {"body": event.model_dump(mode="json"), "received": 1}

    finished = spans.get_finished_spans()
    (process,) = [
        s
        for s in finished
        if s.kind is SpanKind.CONSUMER and s.attributes["messaging.message.id"] == event.event_id
    ]
    (call,) = [
        s for s in finished if s.kind is SpanKind.CLIENT and s.parent == process.get_span_context()
    ]
    assert call.name == "POST"
    assert call.context.trace_id == process.context.trace_id
    assert call.attributes["url.full"] == stub.payments_url
    assert call.attributes["http.response.status_code"] == 201


def test_a_duplicate_delivery_changes_nothing_at_the_platform(harness, stub):
    group = harness.group([SUCCESS])
    event = harness.event(payment_succeeded())
    with consumer(harness, group, stub.payments_url):
        publish(harness, event)
        harness.wait_until(lambda: stub.payment(event.event_id) is not None, what="the payment")
        publish(harness, event)  # redelivered, as after a crash
        harness.wait_consumed(group, [SUCCESS])
    assert stub.payment(event.event_id) == {
        "body": event.model_dump(mode="json"),
        "received": 2,  # the second one counted as a duplicate, not stored again
    }
    assert stub.received()["duplicates"] >= 1


def test_a_poison_message_is_dead_lettered_and_the_consumer_goes_on(harness, stub):
    group = harness.group([SUCCESS])
    dlq = dlq_topic(SUCCESS, group)
    dlq_start = end_offsets(harness.bootstrap, [dlq])
    poison = f"not json {harness.prefix}".encode()
    raw = Producer({"bootstrap.servers": harness.bootstrap})
    raw.produce(SUCCESS, value=poison)
    raw.flush(10)
    event = harness.event(payment_succeeded())
    publish(harness, event)
    with consumer(harness, group, stub.payments_url) as runtime:
        harness.wait_until(lambda: stub.payment(event.event_id) is not None, what="the payment")
        harness.wait_until(lambda: runtime.stats.dead_lettered >= 1, what="a dead letter")
    letters = read_from(harness.bootstrap, dlq_start, count=runtime.stats.dead_lettered)
    ours = [m for m in letters if m.value() == poison]
    assert len(ours) == 1
    assert dict(ours[0].headers())["dlq.reason"] == b"undecodable"


def test_a_payment_the_platform_refuses_is_dead_lettered_at_once(harness, scripted):
    group = harness.group([SUCCESS])
    dlq = dlq_topic(SUCCESS, group)
    dlq_start = end_offsets(harness.bootstrap, [dlq])
    events = [harness.event(payment_succeeded(i)) for i in range(3)]
    publish(harness, *events)
    scripted.answer_status(422)
    with consumer(harness, group, scripted.url) as runtime:
        harness.wait_consumed(group, [SUCCESS])
    letters = dead_letters(harness, group, dlq_start, runtime.stats.dead_lettered)
    for event in events:
        headers = letters[event.event_id]
        assert headers["dlq.reason"] == b"rejected"
        assert headers["dlq.attempts"] == b"1", "not retried"
        assert b"HTTP 422" in headers["dlq.error"]


def test_a_wrong_url_pauses_the_consumer_unready_and_the_right_one_sends_everything(harness, stub):
    group = harness.group([SUCCESS])
    events = [harness.event(payment_succeeded(i)) for i in range(5)]
    ours = {e.event_id for e in events}
    publish(harness, *events)
    wrong = f"{stub.base_url}/no-such-path"  # 404: a deployment error, not the events' fault
    with consumer(harness, group, wrong, dataplatform_breaker_reset_s=0.2) as runtime:
        harness.wait_until(lambda: runtime.stats.retries >= 3, what="pauses on the deployment")
        assert not runtime.is_ready()
    # (other suites publish poison on the topic: only the platform's reasons count here)
    assert not {"rejected", "retries_exhausted"} & set(runtime.stats.by_reason)
    assert not stub.keys()
    with consumer(harness, group, stub.payments_url) as runtime:  # redeployed, URL fixed
        harness.wait_until(lambda: ours <= set(stub.keys()), what="every payment")
        harness.wait_consumed(group, [SUCCESS])
        assert runtime.is_ready()
    assert not {"rejected", "retries_exhausted"} & set(runtime.stats.by_reason)


@pytest.mark.parametrize("failure", ["error_rate", "hang_rate"])
def test_a_platform_failing_for_a_while_opens_the_breaker_pauses_and_loses_nothing(
    harness, stub, failure
):
    group = harness.group([SUCCESS])
    events = [harness.event(payment_succeeded(i)) for i in range(40)]
    ours = {e.event_id for e in events}
    reset_s = 0.5
    stub.knobs(**{failure: 1})  # every request answered 500/503, or never
    with consumer(
        harness,
        group,
        stub.payments_url,
        dataplatform_breaker_reset_s=reset_s,
        dataplatform_backoff_initial_s=0.01,
        dataplatform_backoff_max_s=0.05,
        dataplatform_timeout_s=0.3,
    ) as runtime:
        publish(harness, *events)
        harness.wait_until(lambda: runtime.stats.retries >= 3, what="pauses for the outage")
        before, rounds = stub.received()["requests"], runtime.stats.retries
        harness.wait_until(lambda: runtime.stats.retries >= rounds + 10, what="10 paused rounds")
        during = stub.received()["requests"] - before
        stub.knobs(**{failure: 0})
        harness.wait_until(lambda: ours <= set(stub.keys()), what="every payment, once back")
        harness.wait_consumed(group, [SUCCESS])
    # Open, the breaker lets a probe through now and then instead of every event's retries:
    # 10 rounds of 40 paused events sent fewer requests than there are events.
    assert during < len(events), f"{during} requests in 10 paused rounds"
    # (other suites publish poison on the topic: only the platform's reasons count here)
    assert not {"rejected", "retries_exhausted"} & set(runtime.stats.by_reason)
    assert stub.received()["errors" if failure == "error_rate" else "hung"] > 0


def test_a_slow_platform_gets_exactly_the_configured_concurrency(harness, stub):
    group = harness.group([SUCCESS])
    events = [harness.event(payment_succeeded(i)) for i in range(200)]
    ours = {e.event_id for e in events}
    stub.knobs(hang_rate=1)  # every request waits, in flight, until the knob changes
    publish(harness, *events)  # a backlog waits
    with consumer(
        harness,
        group,
        stub.payments_url,
        dataplatform_concurrency=16,
        dataplatform_timeout_s=60,
        dataplatform_breaker_reset_s=0.2,
    ):
        harness.wait_until(lambda: stub.received()["hung"] == 16, what="16 requests in flight")
        assert stub.received()["in_flight"] == 16
        stub.knobs(hang_rate=0)  # they fail; the breaker opens, then lets the backlog through
        harness.wait_until(lambda: ours <= set(stub.keys()), what="the backlog")
    assert stub.received()["max_in_flight"] == 16
