"""The runtime against the inputs and failures that used to lose, double or stop events."""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Sequence

import pytest
import structlog.testing
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ticketing_events.consumer import ConsumerRuntime, Delivery, DeploymentError, each
from ticketing_events.producer import EventProducer
from ticketing_events.schemas import PaymentSucceeded
from ticketing_events.settings import KafkaSettings
from ticketing_events.testing import (
    KafkaServer,
    committed_offsets,
    end_offsets,
    payment_succeeded,
    read_from,
    set_topic_config,
)
from ticketing_events.topics import dlq_topic, ensure_topics

SUCCESS = PaymentSucceeded.TYPE

# -- decoding never raises ---------------------------------------------------------------------

_VALID = payment_succeeded(1).model_dump_json().encode()
_TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
_header_values = st.one_of(
    st.none(),
    st.binary(max_size=64),
    st.sampled_from([_TRACEPARENT, b"\xff\xfe", b"00-\xc3\x28-01"]),
)
_header_keys = st.one_of(
    st.text(max_size=16),
    st.sampled_from(["traceparent", "tracestate", "baggage", "event_type", "schema_version"]),
)
_bodies = st.one_of(
    st.binary(max_size=256),
    st.just(_VALID),
    st.builds(lambda cut, junk: _VALID[:cut] + junk, st.integers(0, len(_VALID)), st.binary()),
    st.builds(
        lambda old, new: _VALID.replace(old, new),
        st.sampled_from([b"1.0", b"{"]),
        st.text().map(str.encode),
    ),
)


_TEXT_HEADER_NAMES = {"traceparent", "tracestate", "baggage", "event_type", "schema_version"}


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


@pytest.fixture(scope="module")
def decoder(kafka_bootstrap: str, _tracer_provider: None) -> ConsumerRuntime:
    # Never subscribed or polled: only its decode step runs.
    return ConsumerRuntime(
        "test-decode",
        {PaymentSucceeded: each(lambda d: None)},
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
    )


@settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    headers=st.lists(st.tuples(_header_keys, _header_values), max_size=6),
    body=st.one_of(st.none(), _bodies),
    topic=st.sampled_from([SUCCESS, "payment.other"]),
)
def test_decoding_any_message_yields_an_event_or_a_dead_letter(decoder, headers, body, topic):
    message = Message(topic=topic, partition=0, offset=7, key=b"1", value=body, headers=headers)
    item = decoder._decode(message)
    assert (item.delivery is None) != (item.dead_letter is None)
    text_headers_ok = all(v is None or _is_utf8(v) for k, v in headers if k in _TEXT_HEADER_NAMES)
    if not text_headers_ok or topic != SUCCESS:
        assert item.dead_letter is not None and item.dead_letter[1]
    elif body == _VALID:
        assert item.delivery is not None, item.dead_letter
    if item.span is not None:
        item.span.end()


def test_a_header_that_is_not_utf8_is_dead_lettered_and_the_consumer_goes_on(
    kafka_bootstrap, harness
):
    group = harness.group([SUCCESS])
    dlq = dlq_topic(SUCCESS, group)
    dlq_start = end_offsets(kafka_bootstrap, [dlq])
    bad_trace, bad_type, good = (payment_succeeded(i) for i in range(3))
    raw = Producer({"bootstrap.servers": kafka_bootstrap})
    raw.produce(
        SUCCESS,
        key=b"1",
        value=bad_trace.model_dump_json().encode(),
        headers=[("traceparent", b"00-\xff\xfe-01")],
    )
    raw.produce(
        SUCCESS,
        key=b"1",
        value=bad_type.model_dump_json().encode(),
        headers=[("event_type", b"\xc3\x28")],
    )
    raw.flush(10)
    EventProducer(kafka_bootstrap, client_id="test").publish([good])
    handled: list[str] = []
    runtime = ConsumerRuntime(
        group,
        {PaymentSucceeded: each(lambda d: handled.append(d.event.event_id))},
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        settings=harness.consumer_settings(),
    )
    with harness.running(runtime):
        harness.wait_until(lambda: good.event_id in handled, what="the good event")
        harness.wait_until(lambda: runtime.stats.dead_lettered >= 2, what="two dead letters")
    letters = read_from(kafka_bootstrap, dlq_start, count=2)
    assert sorted(dict(m.headers())["dlq.error"] for m in letters) == [
        b"ValueError: header 'event_type' is not UTF-8: b'\\xc3('",
        b"ValueError: header 'traceparent' is not UTF-8: b'00-\\xff\\xfe-01'",
    ]
    assert {dict(m.headers())["dlq.reason"] for m in letters} == {b"undecodable"}
    assert bad_trace.event_id not in handled and bad_type.event_id not in handled


# -- rebalances, outages and deployment errors ---------------------------------------------


def test_a_rebalance_during_a_retry_rewinds_the_partitions_that_stay(kafka_bootstrap, harness):
    """A retries an event when B joins; the partitions A keeps must not skip the rest of the
    batch (every event of the batch is handled by A or B, none left behind)."""
    group = harness.group([SUCCESS])
    events = [harness.event(payment_succeeded(), seat_id=i) for i in range(60)]
    ours = {e.event_id for e in events}
    handled: dict[str, set[str]] = {"a": set(), "b": set()}
    failures = Counter[str]()
    lock = threading.Lock()
    settings = harness.consumer_settings(
        max_attempts=10_000, backoff_initial_s=0.05, backoff_max_s=0.1, session_timeout_ms=6000
    )

    def handle_a(delivery: Delivery[PaymentSucceeded]) -> None:
        # Fails until B has partitions, then on B's partitions only (stale events of the batch).
        if delivery.event.event_id in ours and (
            not b.assignment or (SUCCESS, delivery.partition) in b.assignment
        ):
            failures[delivery.event.event_id] += 1
            raise RuntimeError("a bug that a retry gets past")
        with lock:
            handled["a"].add(delivery.event.event_id)

    def handle_b(delivery: Delivery[PaymentSucceeded]) -> None:
        with lock:
            handled["b"].add(delivery.event.event_id)

    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    a = ConsumerRuntime(group, {PaymentSucceeded: each(handle_a)}, kafka=kafka, settings=settings)
    b = ConsumerRuntime(group, {PaymentSucceeded: each(handle_b)}, kafka=kafka, settings=settings)
    EventProducer(kafka_bootstrap, client_id="test").publish(events)
    with harness.running(a):
        harness.wait_until(lambda: sum(failures.values()) >= 3, what="A retrying an event")
        with harness.running(b):
            harness.wait_until(lambda: bool(b.assignment), what="B to get partitions")
            harness.wait_until(
                lambda: ours <= handled["a"] | handled["b"], timeout=60, what="every event"
            )
            harness.wait_consumed(group, [SUCCESS])
    assert handled["a"] & ours and handled["b"] & ours


def test_an_outage_uses_up_no_attempt_of_a_lone_event(kafka_bootstrap, harness):
    """Three outage rounds, then one ordinary error: still one retry left, not a dead letter."""
    group = harness.group([SUCCESS])
    event = payment_succeeded(1)
    calls = 0

    def handle(delivery: Delivery[PaymentSucceeded]) -> None:
        nonlocal calls
        if delivery.event.event_id != event.event_id:
            return
        calls += 1
        if calls <= 3:
            raise ConnectionError("redis is down")
        if calls == 4:
            raise RuntimeError("a hiccup")

    runtime = ConsumerRuntime(
        group,
        {PaymentSucceeded: each(handle)},
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        settings=harness.consumer_settings(batch_size=1, max_attempts=2),
        outage_errors=(ConnectionError,),
    )
    EventProducer(kafka_bootstrap, client_id="test").publish([event])
    with harness.running(runtime):
        harness.wait_consumed(group, [SUCCESS])
    assert calls == 5
    assert runtime.stats.dead_lettered == 0


def test_a_deployment_error_pauses_unready_and_dead_letters_nothing(kafka_bootstrap, harness):
    group = harness.group([SUCCESS])
    events = [payment_succeeded(i) for i in range(5)]
    ours = {e.event_id for e in events}
    fixed = threading.Event()
    handled: set[str] = set()

    def handle(batch: Sequence[Delivery[PaymentSucceeded]]) -> None:
        if not fixed.is_set() and any(d.event.event_id in ours for d in batch):
            raise DeploymentError('relation "schedule_sales" does not exist')
        handled.update(d.event.event_id for d in batch)

    runtime = ConsumerRuntime(
        group,
        {PaymentSucceeded: handle},
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        settings=harness.consumer_settings(max_attempts=1),
    )
    EventProducer(kafka_bootstrap, client_id="test").publish(events)
    with structlog.testing.capture_logs() as logs, harness.running(runtime):
        harness.wait_until(lambda: runtime.stats.retries >= 5, what="five paused rounds")
        assert not runtime.is_ready()
        fixed.set()
        harness.wait_until(lambda: ours <= handled, what="the events once it is fixed")
        harness.wait_until(runtime.is_ready, what="ready again")
    assert runtime.stats.dead_lettered == 0
    errors = [e for e in logs if e["log_level"] == "error"]
    assert [e["event"] for e in errors] == ["deployment error, consumption paused"]


# -- commits and the brokers ---------------------------------------------------------------


def test_a_commit_reported_failed_is_sent_again_with_no_new_traffic(kafka_bootstrap, harness):
    """Kafka's verdict on the first commit is replaced by a failure (as a rebalance can
    cause); the runtime must send those offsets again on its own, though nothing new arrives."""
    group = harness.group([SUCCESS])
    events = [payment_succeeded(i) for i in range(5)]
    reports: list[list[tuple[int, int]]] = []
    lock = threading.Lock()

    def on_commit(err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        with lock:
            reports.append([(tp.partition, tp.offset) for tp in partitions])
            first = len(reports) == 1
        runtime._on_commit(
            KafkaError(KafkaError.REBALANCE_IN_PROGRESS) if first else err, partitions
        )

    runtime = ConsumerRuntime(
        group,
        {PaymentSucceeded: lambda batch: None},
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        settings=harness.consumer_settings(),
        consumer_config={"on_commit": on_commit},
    )
    with harness.running(runtime):
        harness.wait_until(lambda: bool(runtime.assignment), what="partitions")
        EventProducer(kafka_bootstrap, client_id="test").publish(events)
        harness.wait_until(lambda: len(reports) >= 1, what="a first commit")
        harness.wait_until(
            lambda: any(set(reports[0]) <= set(later) for later in reports[1:]),
            what="the failed offsets committed again",
        )
    assert runtime.stats.commits_failed == 1


class _LosesFirstCommit:
    """The runtime's consumer, but its first asynchronous commit vanishes: not sent and never
    reported on, as when librdkafka loses it while the group coordinator moves."""

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer
        self.lost: list[list[TopicPartition]] = []

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> object:
        if asynchronous and not self.lost:
            self.lost.append(offsets)
            return None
        return self._consumer.commit(offsets=offsets, asynchronous=asynchronous)

    def __getattr__(self, name: str) -> object:
        return getattr(self._consumer, name)


def test_a_commit_never_confirmed_is_sent_again(kafka_bootstrap, harness):
    """The first commit gets no reply at all: after the resend delay the runtime sends those
    offsets again, and the group's committed offsets reach the end with no new traffic."""
    group = harness.group([SUCCESS])
    runtime = ConsumerRuntime(
        group,
        {PaymentSucceeded: lambda batch: None},
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        settings=harness.consumer_settings(commit_resend_s=1.0),
    )
    consumer = runtime._consumer = _LosesFirstCommit(runtime._consumer)  # type: ignore[assignment]
    with harness.running(runtime):
        harness.wait_until(lambda: bool(runtime.assignment), what="partitions")
        EventProducer(kafka_bootstrap, client_id="test").publish(
            [payment_succeeded(i) for i in range(5)]
        )
        harness.wait_until(lambda: bool(consumer.lost), what="a first commit, lost")
        ends = end_offsets(kafka_bootstrap, [SUCCESS])
        harness.wait_until(
            lambda: committed_offsets(kafka_bootstrap, group, [SUCCESS]) == ends,
            what="every offset committed",
        )
    assert runtime.stats.commits_unconfirmed >= 1
    assert runtime.stats.commits_failed == 0


class _DelaysFirstCommit:
    """The runtime's consumer, but its first asynchronous commit is held back and sent right
    after the next one, as librdkafka retries a request the crashed coordinator never answered:
    the older offsets land last, and Kafka keeps the last write."""

    def __init__(self, consumer: Consumer) -> None:
        self._consumer = consumer
        self.held: list[TopicPartition] = []
        self.released = False

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> object:
        if asynchronous and not self.held:
            self.held = offsets
            return None
        result = self._consumer.commit(offsets=offsets, asynchronous=asynchronous)
        if asynchronous and not self.released and self._overtakes(offsets):
            self.released = True
            self._consumer.commit(offsets=self.held, asynchronous=True)
        return result

    def _overtakes(self, offsets: list[TopicPartition]) -> bool:
        held = {(tp.topic, tp.partition): tp.offset for tp in self.held}
        return any(tp.offset > held.get((tp.topic, tp.partition), tp.offset) for tp in offsets)

    def __getattr__(self, name: str) -> object:
        return getattr(self._consumer, name)


def test_an_older_commit_landing_after_a_newer_one_is_overwritten(kafka_bootstrap, harness):
    """A commit overtaken by an older one of the same partitions (a three-broker chaos run
    stopped a group that way, its lag stuck): the runtime sends the newer offsets again, and
    the group's committed offsets reach the end with no new traffic."""
    group = harness.group([SUCCESS])
    runtime = ConsumerRuntime(
        group,
        {PaymentSucceeded: lambda batch: None},
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        settings=harness.consumer_settings(commit_resend_s=600.0),
    )
    consumer = runtime._consumer = _DelaysFirstCommit(runtime._consumer)  # type: ignore[assignment]
    producer = EventProducer(kafka_bootstrap, client_id="test")
    with harness.running(runtime):
        harness.wait_until(lambda: bool(runtime.assignment), what="partitions")
        producer.publish([payment_succeeded(i) for i in range(5)])
        harness.wait_until(lambda: bool(consumer.held), what="a first commit, held")
        producer.publish([payment_succeeded(i) for i in range(5)])  # the same partitions
        harness.wait_until(lambda: consumer.released, what="the held commit, sent last")
        ends = end_offsets(kafka_bootstrap, [SUCCESS])
        harness.wait_until(
            lambda: committed_offsets(kafka_bootstrap, group, [SUCCESS]) == ends,
            what="every offset committed",
        )
    assert runtime.stats.commits_overtaken >= 1


def test_readiness_returns_after_a_broker_outage_with_no_traffic(tmp_path, harness):
    server = KafkaServer(tmp_path / "kafka")
    server.start()
    try:
        ensure_topics(server.bootstrap, [SUCCESS])
        runtime = ConsumerRuntime(
            "test-ready-again",
            {PaymentSucceeded: lambda batch: None},
            kafka=KafkaSettings(bootstrap_servers=server.bootstrap),
            settings=harness.consumer_settings(),
        )
        with harness.running(runtime):
            harness.wait_until(runtime.is_ready, what="ready after joining")
            server.stop()
            harness.wait_until(lambda: not runtime.is_ready(), what="unready, brokers down")
            server.start()
            harness.wait_until(runtime.is_ready, timeout=60, what="ready again, idle topic")
    finally:
        server.stop()


def test_a_dead_letter_producer_that_failed_fatally_is_replaced(kafka_bootstrap, harness):
    """The broker refuses a dead letter while the gap-less guarantee is on: a fatal error of
    the idempotent producer. Once the topic takes it, a new producer must deliver it."""
    group = harness.group([SUCCESS])
    dlq = dlq_topic(SUCCESS, group)

    def max_message_bytes(n: int) -> None:
        set_topic_config(kafka_bootstrap, dlq, "max.message.bytes", str(n))

    max_message_bytes(1000)
    dlq_start = end_offsets(kafka_bootstrap, [dlq])
    poison = b"not json " + os.urandom(4000)
    raw = Producer({"bootstrap.servers": kafka_bootstrap})
    raw.produce(SUCCESS, key=b"1", value=poison)
    raw.flush(10)
    runtime = ConsumerRuntime(
        group,
        {PaymentSucceeded: lambda batch: None},
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        settings=harness.consumer_settings(),
        dlq_producer_config={"enable.gapless.guarantee": True},
    )
    with structlog.testing.capture_logs() as logs, harness.running(runtime):
        replaced = "dead-letter producer failed fatally, replacing it"
        harness.wait_until(
            lambda: any(e["event"] == replaced for e in logs), what="the producer replaced"
        )
        max_message_bytes(1_000_000)
        harness.wait_until(lambda: runtime.stats.dead_lettered == 1, what="the dead letter")
    [letter] = read_from(kafka_bootstrap, dlq_start, count=1)
    assert letter.value() == poison
