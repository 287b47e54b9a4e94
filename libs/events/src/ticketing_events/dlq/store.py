"""Reading, redriving and purging the dead-letter topics of one cluster."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from ticketing_events.dlq.records import (
    EVERYTHING,
    REDRIVE_FROM,
    DeadLetter,
    Selection,
    parse_dlq_topic,
)
from ticketing_events.producer import producer_config
from ticketing_events.topics import redrive_topic, retry_while_settling
from ticketing_events.tracing import Headers


class RedriveError(Exception):
    """A redrive that cannot be done as asked (its redrive topic is missing)."""


@dataclass
class TopicSummary:
    topic: str
    count: int = 0
    redriven: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    oldest: str = ""


@dataclass
class RedriveResult:
    selected: list[DeadLetter] = field(default_factory=list)
    already: list[DeadLetter] = field(default_factory=list)  # redriven before: skipped
    missing: list[DeadLetter] = field(default_factory=list)  # truncated, original gone
    sent: list[DeadLetter] = field(default_factory=list)


class DeadLetters:
    """The dead-letter and redrive topics of one Kafka cluster."""

    def __init__(self, bootstrap_servers: str, *, timeout: float = 30.0) -> None:
        self.bootstrap = bootstrap_servers
        self.timeout = timeout
        self.admin = AdminClient({"bootstrap.servers": bootstrap_servers})
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                "group.id": "ticketing-dlq",  # only assigned, never committed
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )

    def close(self) -> None:
        self._consumer.close()

    def topics(self, selection: Selection = EVERYTHING) -> list[str]:
        """The dead-letter topics on the cluster that ``selection`` names."""
        names = self.admin.list_topics(timeout=self.timeout).topics
        return sorted(n for n in names if selection.takes_topic(n))

    def read(self, topic: str) -> list[Message]:
        """Every record of ``topic`` now, partition by partition in offset order."""
        bounds = self.watermarks(topic)
        todo = {p: high for p, (low, high) in bounds.items() if high > low}
        if not todo:
            return []
        self._consumer.assign([TopicPartition(topic, p, bounds[p][0]) for p in sorted(todo)])
        found: list[Message] = []
        deadline = time.monotonic() + self.timeout
        try:
            while todo:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{topic}: not read in {self.timeout}s, {todo} left")
                # consume() waits for the whole batch or the timeout: keep the timeout short.
                for m in self._consumer.consume(500, 0.2):
                    if m.error() is not None:
                        raise KafkaException(m.error())
                    found.append(m)
                    p, offset = m.partition() or 0, m.offset() or 0
                    if p in todo and offset + 1 >= todo[p]:
                        del todo[p]
        finally:
            self._consumer.unassign()
        return sorted(found, key=lambda m: (m.partition() or 0, m.offset() or 0))

    def letters(self, selection: Selection = EVERYTHING) -> list[DeadLetter]:
        return [
            letter
            for topic in self.topics(selection)
            for letter in map(DeadLetter.of, self.read(topic))
            if selection.takes(letter)
        ]

    def redriven(self, dlq: str) -> set[str]:
        """Coordinates of the dead letters of ``dlq`` that its redrive topic holds already."""
        source, group = parse_dlq_topic(dlq) or ("", "")
        target = redrive_topic(source, group)
        if target not in self.admin.list_topics(timeout=self.timeout).topics:
            return set()
        marks = (DeadLetter.of(m).header(REDRIVE_FROM) for m in self.read(target))
        return {m for m in marks if m is not None and m.startswith(f"{dlq}/")}

    def summary(self, selection: Selection = EVERYTHING) -> list[TopicSummary]:
        summaries = []
        for topic in self.topics(selection):
            done = self.redriven(topic)
            row = TopicSummary(topic)
            for letter in map(DeadLetter.of, self.read(topic)):
                row.count += 1
                row.redriven += letter.coordinates in done
                row.reasons[letter.reason] += 1
                if letter.failed_at and (not row.oldest or letter.failed_at < row.oldest):
                    row.oldest = letter.failed_at
            summaries.append(row)
        return summaries

    def original(self, letter: DeadLetter) -> DeadLetter | None:
        """The record ``letter`` was made from (``dlq.original.*``), while it is still there."""
        where = letter.original
        return None if where is None else self.find(*where)

    def redrive(self, selection: Selection, *, apply: bool) -> RedriveResult:
        """Send the selected dead letters not yet redriven to their group's redrive topic."""
        result = RedriveResult()
        producer = Producer(producer_config(self.bootstrap, "ticketing-dlq")) if apply else None
        failures: list[str] = []

        def on_delivery(err: KafkaError | None, _: Message) -> None:
            if err is not None:
                failures.append(str(err))

        for topic in self.topics(selection):
            source, group = parse_dlq_topic(topic) or ("", "")
            target = redrive_topic(source, group)
            letters = [
                letter for letter in map(DeadLetter.of, self.read(topic)) if selection.takes(letter)
            ]
            if letters and target not in self.admin.list_topics(timeout=self.timeout).topics:
                raise RedriveError(f"redrive topic {target} does not exist (ticketing-topics)")
            done = self.redriven(topic)
            for letter in letters:
                result.selected.append(letter)
                if letter.coordinates in done:
                    result.already.append(letter)
                    continue
                record = self._redrive_record(letter)
                if record is None:
                    result.missing.append(letter)
                    continue
                if producer is not None:
                    key, value, headers = record
                    producer.produce(
                        target, key=key, value=value, headers=headers, on_delivery=on_delivery
                    )
                result.sent.append(letter)
        if producer is not None and (producer.flush(self.timeout) or failures):
            raise KafkaException(f"redrive publish failed: {failures or 'unacknowledged'}")
        return result

    def purge(self, selection: Selection, *, redriven_only: bool, apply: bool) -> dict[str, int]:
        """Delete the dead letters of the selected topics: all of them, or, with
        ``redriven_only``, each partition's prefix that was redriven. Returns the count per
        topic. Kafka deletes only a partition's prefix, so no finer filter applies."""
        counts: dict[str, int] = {}
        for topic in self.topics(selection):
            bounds = self.watermarks(topic)
            cut = {p: high for p, (_, high) in bounds.items()}
            if redriven_only:
                done = self.redriven(topic)
                for letter in map(DeadLetter.of, self.read(topic)):
                    if letter.coordinates not in done:
                        cut[letter.partition] = min(cut[letter.partition], letter.offset)
            deletions = [
                TopicPartition(topic, p, cut[p]) for p, (low, _) in bounds.items() if cut[p] > low
            ]
            counts[topic] = sum(cut[p] - bounds[p][0] for p in bounds if cut[p] > bounds[p][0])
            if apply and deletions:
                for future in self.admin.delete_records(deletions).values():
                    future.result(self.timeout)
        return counts

    def _redrive_record(
        self, letter: DeadLetter
    ) -> tuple[bytes | None, bytes | None, Headers] | None:
        """Key, value and headers to redrive, the original's where the consumer truncated the
        dead letter; None when that original is gone."""
        key, value, headers = letter.key, letter.value, list(letter.headers)
        if letter.truncated:
            full = self.original(letter)
            if full is None:
                return None
            value = full.value
            key = full.key if "key" in letter.truncated else key
            headers = list(full.headers) if "headers" in letter.truncated else headers
        kept: Headers = [
            (k, v) for k, v in headers if not k.startswith("dlq.") and not k.startswith("redrive.")
        ]
        return key, value, [*kept, (REDRIVE_FROM, letter.coordinates.encode())]

    def find(self, topic: str, partition: int, offset: int) -> DeadLetter | None:
        """The record at ``offset``, or None when it is not (or no longer) there."""
        low, high = self.watermarks(topic).get(partition, (0, 0))
        if not low <= offset < high:
            return None
        self._consumer.assign([TopicPartition(topic, partition, offset)])
        try:
            for m in self._consumer.consume(1, self.timeout):
                if m.error() is None and m.offset() == offset:
                    return DeadLetter.of(m)
            return None
        finally:
            self._consumer.unassign()

    def watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        """Low and high watermark of each partition of ``topic``."""
        meta = self._consumer.list_topics(topic, timeout=self.timeout).topics[topic]
        if meta.error is not None:
            raise KafkaException(meta.error)

        def bounds(tp: TopicPartition) -> tuple[int, int]:
            low, high = self._consumer.get_watermark_offsets(tp, timeout=self.timeout)
            return int(low), int(high)

        return {
            p: retry_while_settling(partial(bounds, TopicPartition(topic, p)), self.timeout)
            for p in sorted(meta.partitions)
        }
