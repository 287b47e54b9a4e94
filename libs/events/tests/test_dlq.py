"""``ticketing-dlq`` and the dead letters it works on, against the real broker."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from ticketing_events.asyncapi import DLQ_HEADERS, EVENT_HEADERS, REDRIVE_HEADERS
from ticketing_events.consumer import ConsumerRuntime, Delivery, PermanentError, each
from ticketing_events.dlq import REDRIVE_FROM, DeadLetter, DeadLetters, Selection, main
from ticketing_events.idempotency import RedisOnce
from ticketing_events.producer import EventProducer
from ticketing_events.schemas import PaymentSucceeded
from ticketing_events.testing import (
    Harness,
    end_offsets,
    payment_succeeded,
    read_from,
    set_topic_config,
)
from ticketing_events.topics import (
    CONSUMER_GROUPS,
    REDRIVE_PARTITIONS,
    TOPIC_EVENTS,
    dlq_topic,
    redrive_topic,
)

pytestmark = [pytest.mark.kafka, pytest.mark.redis]

SUCCESS = PaymentSucceeded.TYPE


class Service:
    """A group's handler that applies a Redis effect once per event (``RedisOnce``) and can
    be poisoned: while ``broken``, it rejects one event before its effect and fails another
    after it (as a handler that crashes past its write)."""

    def __init__(self, harness: Harness, group: str) -> None:
        self.harness = harness
        self.group = group
        self.once = RedisOnce(
            harness.redis, group, "redis.call('INCR', KEYS[2])", key_prefix=harness.prefix
        )
        self.broken = threading.Event()
        self.reject_before: set[str] = set()
        self.fail_after: set[str] = set()
        self.topics: list[tuple[str, str]] = []  # (topic, event id) of every delivery

    def handle(self, delivery: Delivery[PaymentSucceeded]) -> None:
        event_id = delivery.event.event_id
        self.topics.append((delivery.topic, event_id))
        if self.broken.is_set() and event_id in self.reject_before:
            raise PermanentError("poisoned before the effect")
        self.once.apply(event_id, [self.effect_key(event_id)])
        if self.broken.is_set() and event_id in self.fail_after:
            raise RuntimeError("poisoned after the effect")

    def effect_key(self, event_id: str) -> str:
        return f"{self.harness.prefix}effect:{self.group}:{event_id}"

    def effects(self, events: list[PaymentSucceeded]) -> list[int]:
        """How many times the effect ran for each of ``events``."""
        return [int(self.harness.redis.get(self.effect_key(e.event_id)) or 0) for e in events]

    def runtime(self) -> ConsumerRuntime:
        return ConsumerRuntime(
            self.group,
            {PaymentSucceeded: each(self.handle)},
            kafka=self.harness.kafka,
            settings=self.harness.consumer_settings(),
        )


@pytest.fixture
def dead(kafka_bootstrap: str) -> Iterator[DeadLetters]:
    letters = DeadLetters(kafka_bootstrap)
    yield letters
    letters.close()


def test_each_groups_redrive_topic_has_one_partition_and_its_source_topics_keep_theirs(
    kafka_bootstrap: str,
) -> None:
    from confluent_kafka.admin import AdminClient

    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
    for group in CONSUMER_GROUPS.values():
        for topic in group.topics:
            assert len(topics[redrive_topic(topic, group.name)].partitions) == REDRIVE_PARTITIONS
    assert all(len(topics[t].partitions) == 6 for t in TOPIC_EVENTS)


def run_cli(bootstrap: str, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["--bootstrap-servers", bootstrap, *args], out=out)
    return code, out.getvalue()


def test_redrive_sends_back_to_the_failing_group_only_once_and_its_effect_applies_once(
    kafka_bootstrap, harness, dead, monkeypatch, spans
):
    failing = Service(harness, harness.group([SUCCESS], redrive=True))
    other = Service(harness, harness.group([SUCCESS], redrive=True))
    dlq = dlq_topic(SUCCESS, failing.group)
    target = redrive_topic(SUCCESS, failing.group)
    events = [harness.event(payment_succeeded(n), **harness.ids()) for n in range(3)]
    rejected, crashed, _ = events
    failing.reject_before.add(rejected.event_id)
    failing.fail_after.add(crashed.event_id)
    failing.broken.set()
    EventProducer(kafka_bootstrap, client_id="test").publish(events)

    with harness.running(failing.runtime()) as runtime, harness.running(other.runtime()):
        harness.wait_until(lambda: runtime.stats.dead_lettered == 2, what="two dead letters")
        harness.wait_until(lambda: failing.effects(events) == [0, 1, 1], what="the third's effect")
        harness.wait_consumed(other.group, [SUCCESS])
        assert other.effects(events) == [1, 1, 1]

        failing.broken.clear()  # the handler is fixed
        letters = dead.letters(Selection(group=failing.group))
        assert {(ltr.event_id, ltr.reason) for ltr in letters} == {
            (rejected.event_id, "rejected"),
            (crashed.event_id, "retries_exhausted"),
        }
        redrive_start = end_offsets(kafka_bootstrap, [target])

        # A dry run changes nothing.
        code, out = run_cli(kafka_bootstrap, "redrive", "--group", failing.group)
        assert code == 0
        assert "dry run (--apply to act): selected 2, to redrive 2" in out
        assert end_offsets(kafka_bootstrap, [target]) == redrive_start

        # By reason, then the rest: each dead letter goes back once.
        code, out = run_cli(
            kafka_bootstrap, "redrive", "--group", failing.group, "--reason", "rejected", "--apply"
        )
        assert (code, out.count("redriven: ")) == (0, 1)
        code, out = run_cli(kafka_bootstrap, "redrive", "--group", failing.group, "--apply")
        assert "redriven 1, already redriven 1" in out
        harness.wait_until(lambda: failing.effects(events) == [1, 1, 1], what="redriven effects")
        harness.wait_consumed(failing.group, [target])

        # Twice changes nothing.
        code, out = run_cli(kafka_bootstrap, "redrive", "--group", failing.group, "--apply")
        assert "redriven 0, already redriven 2" in out
        assert sum(end_offsets(kafka_bootstrap, [target]).values()) == 2 + sum(
            redrive_start.values()
        )

        monkeypatch.setenv("JAEGER_QUERY_URL", "http://jaeger.example:16686")
        code, out = run_cli(
            kafka_bootstrap, "show", "--group", failing.group, "--event-id", crashed.event_id
        )

    assert failing.effects(events) == [1, 1, 1]
    assert runtime.stats.dead_lettered == 2, "the fixed handler took both"
    assert other.effects(events) == [1, 1, 1]
    ours = {e.event_id for e in events}
    assert {t for t, e in other.topics if e in ours} == {SUCCESS}, "no redrive reached it"
    redriven = [(t, e) for t, e in failing.topics if t == target]
    assert sorted(e for _, e in redriven) == sorted([rejected.event_id, crashed.event_id])

    # The redriven records keep key, value and headers (event id, trace context).
    originals = {
        DeadLetter.of(m).event_id: m
        for m in read_from(
            kafka_bootstrap, {tp: 0 for tp in end_offsets(kafka_bootstrap, [dlq])}, count=2
        )
    }
    copies = read_from(kafka_bootstrap, redrive_start, count=2)
    for copy in copies:
        headers = dict(copy.headers())
        letter = originals[headers["event_id"].decode()]
        assert copy.key() == letter.key() and copy.value() == letter.value()
        assert headers["traceparent"] == dict(letter.headers())["traceparent"]
        assert not any(k.startswith("dlq.") for k in headers)
        assert headers[REDRIVE_FROM] == f"{dlq}/{letter.partition()}/{letter.offset()}".encode()
        assert set(headers) <= set(EVENT_HEADERS) | set(REDRIVE_HEADERS), "as documented"
        assert set(dict(letter.headers())) <= set(EVENT_HEADERS) | set(DLQ_HEADERS)

    trace_id = dict(originals[crashed.event_id].headers())["traceparent"].split(b"-")[1].decode()
    [process] = [
        s
        for s in spans.get_finished_spans()
        if s.attributes.get("messaging.destination.name") == target
        and s.attributes.get("messaging.message.id") == crashed.event_id
    ]
    assert format(process.context.trace_id, "032x") == trace_id, "the original trace goes on"
    assert code == 0
    assert f"trace: {trace_id}" in out
    assert f"http://jaeger.example:16686/trace/{trace_id}" in out
    assert f'"event_id": "{crashed.event_id}"' in out
    assert "dlq.reason: retries_exhausted" in out


def test_purge_deletes_only_what_is_asked_and_list_counts_what_is_left(
    kafka_bootstrap, harness, dead
):
    group = harness.group([SUCCESS], redrive=True)
    dlq = dlq_topic(SUCCESS, group)
    raw = Producer({"bootstrap.servers": kafka_bootstrap})
    for n in range(3):
        headers = [("dlq.reason", b"invalid" if n else b"rejected"), ("dlq.group", group.encode())]
        headers.append(("dlq.failed_at", f"2026-12-0{n + 1}T00:00:00+00:00".encode()))
        raw.produce(dlq, key=b"k", value=f"not json {n}".encode(), partition=2, headers=headers)
    assert raw.flush(10) == 0

    [row] = dead.summary(Selection(group=group))
    assert (row.count, row.redriven, dict(row.reasons)) == (3, 0, {"invalid": 2, "rejected": 1})
    assert row.oldest.startswith("2026-12-01")

    selection = Selection(group=group, partition=2, from_offset=0, to_offset=0)
    assert len(dead.redrive(selection, apply=True).sent) == 1

    # A dry run deletes nothing.
    assert dead.purge(Selection(group=group), redriven_only=True, apply=False) == {dlq: 1}
    assert dead.watermarks(dlq)[2] == (0, 3)
    assert dead.purge(Selection(group=group), redriven_only=True, apply=True) == {dlq: 1}
    assert dead.watermarks(dlq)[2] == (1, 3)
    assert [ltr.offset for ltr in dead.letters(Selection(group=group))] == [1, 2]

    # The console script, as an operator runs it.
    script = Path(sys.executable).with_name("ticketing-dlq")
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    run = subprocess.run(
        [str(script), "purge", "--group", group, "--apply"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert f"purged: {dlq}: 2 record(s)" in run.stdout
    listed = subprocess.run(
        [str(script), "list", "--group", group], env=env, capture_output=True, text=True
    )
    assert f"{dlq}: 0 dead letter(s)" in listed.stdout


def test_a_dead_letter_too_large_for_its_topic_is_truncated_and_the_original_redriven(
    kafka_bootstrap, harness
):
    """The dead-letter topic takes at most 1000 bytes: a dead letter over it used to stall
    the partition. It goes out without what does not fit, pointing at the original."""
    service = Service(harness, harness.group([SUCCESS], redrive=True))
    dlq = dlq_topic(SUCCESS, service.group)
    set_topic_config(kafka_bootstrap, dlq, "max.message.bytes", "1000")
    dlq_start = end_offsets(kafka_bootstrap, [dlq])
    huge_token = os.urandom(6000).hex()  # random: lz4 cannot shrink it below the limit
    big = harness.event(payment_succeeded(1), **harness.ids() | {"queue_token_id": huge_token})
    after = harness.event(payment_succeeded(2), **harness.ids())
    service.reject_before.add(big.event_id)
    service.broken.set()
    source_start = end_offsets(kafka_bootstrap, [SUCCESS])
    EventProducer(kafka_bootstrap, client_id="test").publish([big, after])

    with harness.running(service.runtime()) as runtime:
        harness.wait_until(lambda: service.effects([after]) == [1], what="the next event")
        harness.wait_consumed(service.group, [SUCCESS])
        # Even the headers too large: a poison with a huge header loses them and its key.
        raw = Producer({"bootstrap.servers": kafka_bootstrap})
        huge_header = ("x", os.urandom(3000))
        raw.produce(SUCCESS, key=b"poison", value=b"not json", headers=[huge_header])
        assert raw.flush(10) == 0
        harness.wait_until(lambda: runtime.stats.dead_lettered == 2, what="two dead letters")
        harness.wait_consumed(service.group, [SUCCESS])  # it went on past both

        letters = [DeadLetter.of(m) for m in read_from(kafka_bootstrap, dlq_start, count=2)]
        by_reason = {ltr.reason: ltr for ltr in letters}
        letter = by_reason["rejected"]
        assert letter.value is None and letter.truncated == ["value"]
        assert letter.key == big.key.encode() and letter.event_id == big.event_id
        assert letter.header("traceparent") is not None
        assert int(letter.header("dlq.original.bytes") or 0) == len(big.model_dump_json())
        topic, partition, offset = letter.original or ("", 0, 0)
        [original] = read_from(kafka_bootstrap, {(topic, partition): offset}, count=1)
        assert PaymentSucceeded.model_validate_json(original.value()) == big
        assert source_start[(topic, partition)] <= offset
        assert set(dict(letter.headers)) <= set(EVENT_HEADERS) | set(DLQ_HEADERS)
        stripped = by_reason["undecodable"]
        assert stripped.truncated == ["value", "key", "headers"]
        assert stripped.key is None and stripped.header("x") is None

        where = f"{letter.partition}", f"{letter.offset}"
        code, out = run_cli(kafka_bootstrap, "show", dlq, *where)
        assert code == 0
        assert f"original at {topic}/{partition}/{offset}: read from there" in out
        assert f'"event_id": "{big.event_id}"' in out and huge_token in out

        service.broken.clear()
        code, out = run_cli(kafka_bootstrap, "redrive", "--group", service.group, "--apply")
        assert (code, "redriven 2" in out) == (0, True)
        harness.wait_until(lambda: service.effects([big]) == [1], what="the redriven original")
        target = redrive_topic(SUCCESS, service.group)
        harness.wait_consumed(service.group, [target])

    copies = {
        m.key(): m for m in read_from(kafka_bootstrap, {(target, p): 0 for p in range(6)}, count=2)
    }
    assert PaymentSucceeded.model_validate_json(copies[big.key.encode()].value()) == big
    assert copies[b"poison"].value() == b"not json"
    assert dict(copies[b"poison"].headers())["x"] == huge_header[1], "the original's headers"
    assert service.effects([big, after]) == [1, 1]
