"""``ConsumerRuntime``: poll in batches, decode, dispatch, retry, dead-letter, commit."""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from pydantic import ValidationError

from ticketing_events import tracing
from ticketing_events.consumer.dead_letters import SHRINK, DeadLetterReason, rejection
from ticketing_events.consumer.delivery import BatchHandler, Delivery
from ticketing_events.consumer.errors import (
    BatchFailures,
    DeploymentError,
    PermanentError,
    RetriesExhausted,
    short,
)
from ticketing_events.consumer.headers import checked_headers, header_map
from ticketing_events.health import HealthServer
from ticketing_events.metrics import ConsumerMetrics
from ticketing_events.producer import is_fatal, producer_config
from ticketing_events.schemas import SUPPORTED_PREFIX, Envelope
from ticketing_events.settings import ConsumerSettings, KafkaSettings
from ticketing_events.topics import TOPIC_EVENTS, dlq_topic, redrive_topic

_logger = logging.getLogger("ticketing_events.consumer")
log = structlog.get_logger(_logger.name)

_NO_CONTEXT = Context()
_BROKER_PROBE_INTERVAL_S = 2.0  # while the brokers are down
_IDLE_PROBE_INTERVAL_S = 5.0  # while they are up and nothing arrives


@dataclass
class ConsumerStats:
    handled: int = 0
    dead_lettered: int = 0
    retries: int = 0
    batches: int = 0
    commits_failed: int = 0
    commits_unconfirmed: int = 0  # sent again after no reply within the resend delay
    commits_overtaken: int = 0  # sent again after an older commit was confirmed after them
    by_reason: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Item:
    """One polled message on its way through a batch."""

    message: Message
    topic: str
    partition: int
    offset: int
    span: Span | None
    delivery: Delivery[Any] | None = None
    dead_letter: tuple[DeadLetterReason, str] | None = None
    attempts: int = 0
    done: bool = False  # the handler finished it
    shrink: int = 0  # how much its dead letter leaves out to fit the topic (SHRINK)


def backoff_delay(attempt: int, initial: float, maximum: float) -> float:
    """Exponential backoff with jitter: about ``initial`` at attempt 1, doubling to ``maximum``."""
    cap = min(maximum, initial * 2.0 ** (attempt - 1))
    return cap * random.uniform(0.5, 1.0)


class ConsumerRuntime:
    """Runs one consumer group over its topics with typed batch handlers.

    ``handlers`` maps an event class to a function taking a batch of its deliveries.
    ``outage_errors`` are exception types that mean a dependency is down (not that the event is
    bad): those, and any ``DeploymentError``, are retried with consumption paused for as long as
    the outage lasts, and never dead-lettered. Any other exception is retried ``max_attempts``
    times, then the event is dead-lettered. ``consumer_config`` and ``dlq_producer_config`` add
    librdkafka settings to the consumer and to the dead-letter producer.
    """

    def __init__(
        self,
        group: str,
        handlers: Mapping[type[Envelope], BatchHandler],
        *,
        kafka: KafkaSettings | None = None,
        settings: ConsumerSettings | None = None,
        outage_errors: tuple[type[BaseException], ...] = (),
        tracing_enabled: bool = True,
        consumer_config: Mapping[str, Any] | None = None,
        dlq_producer_config: Mapping[str, Any] | None = None,
    ) -> None:
        self.group = group
        self.kafka = kafka or KafkaSettings()
        self.settings = settings or ConsumerSettings()
        self.stats = ConsumerStats()
        self._handlers = {cls.TYPE: h for cls, h in handlers.items()}
        self._models = {t: cls for t, cls in TOPIC_EVENTS.items() if cls.TYPE in self._handlers}
        self.topics = list(self._models)
        # Each topic read, with the registry topic it carries: itself, or the source of this
        # group's redrive topic (its dead letters sent back by ``ticketing-dlq redrive``).
        self._source = {t: t for t in self.topics} | {
            redrive_topic(t, group): t for t in self.topics
        }
        self._outage_errors: tuple[type[BaseException], ...] = (*outage_errors, DeploymentError)
        self._tracer = trace.get_tracer("ticketing_events.consumer") if tracing_enabled else None
        self._span_attributes = {
            tracing.MESSAGING_SYSTEM: "kafka",
            tracing.MESSAGING_OPERATION_TYPE: "process",
            tracing.MESSAGING_GROUP: group,
        }
        self._stop = threading.Event()
        self._handled: dict[tuple[str, int], int] = {}  # next offset to commit per partition
        # What Kafka holds, as far as its replies tell: the last offset confirmed per partition.
        self._acked: dict[tuple[str, int], int] = {}
        # Sent, not yet confirmed: the offset and when it was sent.
        self._committing: dict[tuple[str, int], tuple[int, float]] = {}
        self._assigned: set[tuple[str, int]] = set()
        self._joined = False
        self._brokers_down = False
        self._next_broker_probe = 0.0
        self._deployment_error: str | None = None  # while paused on one: not ready
        self._waiting_out_outage = False
        self.metrics = ConsumerMetrics(group, paused=self._pause_reason)
        self.metrics.start_at_zero(self._source, [r.value for r in DeadLetterReason])
        self.last_loop_at = time.monotonic()
        self._consumer = Consumer(
            {
                "bootstrap.servers": self.kafka.bootstrap_servers,
                "client.id": f"{self.kafka.client_id}-{group}",
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": self.settings.auto_offset_reset,
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": self.settings.session_timeout_ms,
                "max.poll.interval.ms": self.settings.max_poll_interval_ms,
                "topic.metadata.refresh.interval.ms": self.settings.metadata_refresh_ms,
                "error_cb": self._on_error,
                "on_commit": self._on_commit,
                "statistics.interval.ms": self.settings.stats_interval_ms,
                "stats_cb": self.metrics.librdkafka_stats,
                "logger": logging.getLogger("librdkafka"),
                **(consumer_config or {}),
            }
        )
        self._dlq_config = dict(dlq_producer_config or {})
        self._dlq = self._dlq_producer()
        self._health: HealthServer | None = None

    def _dlq_producer(self) -> Producer:
        client_id = f"{self.group}-dlq"
        return Producer(
            producer_config(self.kafka.bootstrap_servers, client_id, **self._dlq_config)
        )

    # -- lifecycle ------------------------------------------------------------------------

    def run(self, *, install_signal_handlers: bool = False, serve_health: bool = True) -> None:
        """Consume until ``stop()`` (or SIGTERM/SIGINT when ``install_signal_handlers``)."""
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop())
        if serve_health:
            self._health = HealthServer(
                self.settings.health_host, self.settings.health_port, self.is_live, self.is_ready
            )
            self._health.start()
        # The redrive topics by pattern: a group whose redrive topic was never created (ad hoc
        # groups) subscribes to nothing there, where a missing name would be an error.
        redrive = [
            "^" + redrive_topic(t, self.group).replace(".", "\\.") + "$" for t in self.topics
        ]
        self._consumer.subscribe(
            self.topics + redrive,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info("consumer started", group=self.group, topics=self.topics)
        try:
            while not self._stop.is_set():
                self.poll_once()
        finally:
            self._shutdown()

    def stop(self) -> None:
        self._stop.set()

    def is_live(self) -> bool:
        return time.monotonic() - self.last_loop_at < self.settings.liveness_stale_s

    def is_ready(self) -> bool:
        return self._joined and not self._brokers_down and self._deployment_error is None

    def _pause_reason(self) -> str | None:
        if self._brokers_down:
            return "brokers"
        if self._deployment_error is not None:
            return "deployment"
        return "dependency" if self._waiting_out_outage else None

    @property
    def assignment(self) -> frozenset[tuple[str, int]]:
        return frozenset(self._assigned)

    @property
    def health_port(self) -> int | None:
        return self._health.port if self._health else None

    def _shutdown(self) -> None:
        try:
            self._commit(asynchronous=False)
        finally:
            self._consumer.close()  # leaves the group so partitions move at once
            self._dlq.flush(10)
            self.metrics.close()
            if self._health:
                self._health.stop()
            log.info("consumer stopped", group=self.group, **vars(self.stats))

    # -- the loop -------------------------------------------------------------------------

    def poll_once(self) -> int:
        """Poll one batch and see it through; returns how many messages it held."""
        self.last_loop_at = time.monotonic()
        # Wait for the first message only, then take what is already fetched: consume() with a
        # timeout waits for a full batch, which held every event up to poll_timeout_s below a
        # few thousand events/s (make bench-e2e). Under a backlog the batch fills all the same.
        first = self._consumer.poll(self.settings.poll_timeout_s)
        messages = [] if first is None else [first]
        if first is not None and self.settings.batch_size > 1:
            messages += self._consumer.consume(self.settings.batch_size - 1, 0)
        items = [self._decode(m) for m in messages if m.error() is None or self._usable(m)]
        if not items:
            self._probe_brokers()
            self._commit(asynchronous=True)  # what an earlier commit failed to confirm
            return 0
        self._brokers_down = False
        self.stats.batches += 1
        self.metrics.consumed(Counter(item.topic for item in items))
        try:
            self._dispatch(items)
            self._dead_letter_until_acked([i for i in items if i.dead_letter is not None])
            self._mark_handled(items)
            if _logger.isEnabledFor(logging.DEBUG):
                self._log_handled(items)
        except _Abandoned:
            self._rewind(items)
        finally:
            if self._tracer is not None:
                for item in items:
                    self._end_span(item)
        self._commit(asynchronous=True)
        return len(items)

    def _usable(self, message: Message) -> bool:
        err = message.error()
        if err is None:
            return True
        if err.fatal():
            raise KafkaException(err)
        log.warning("consume error", error=str(err))
        return False

    def _decode(self, message: Message) -> _Item:
        """Decode and validate one message; whatever is wrong with it becomes a dead letter."""
        topic, partition, offset = str(message.topic()), message.partition(), message.offset()
        assert partition is not None and offset is not None  # set on every non-error message
        try:
            return self._decode_item(message, topic, partition, offset)
        except Exception as exc:  # an input no check above foresaw: never stop the group on it
            item = _Item(message, topic, partition, offset, None)
            item.dead_letter = (DeadLetterReason.UNDECODABLE, short(exc))
            return item

    def _decode_item(self, message: Message, topic: str, partition: int, offset: int) -> _Item:
        bad_headers = None
        try:
            headers = checked_headers(message)
        except ValueError as exc:
            headers, bad_headers = {}, short(exc)
        span = None
        parent = _NO_CONTEXT
        if self._tracer is not None:
            parent = tracing.extract(headers)
            span = self._tracer.start_span(
                f"{topic} process", context=parent, kind=SpanKind.CONSUMER
            )
            # Attributes only for a span the sampler kept (our samplers never read them): an
            # unsampled message, most of them at production rates, builds none.
            if span.is_recording():
                span.set_attributes(
                    {
                        **self._span_attributes,
                        tracing.MESSAGING_DESTINATION: topic,
                        tracing.MESSAGING_PARTITION: str(partition),
                        tracing.MESSAGING_KAFKA_OFFSET: offset,
                    }
                )
        item = _Item(message, topic, partition, offset, span)
        model = self._models.get(self._source.get(topic, ""))
        if model is None:
            item.dead_letter = (DeadLetterReason.UNKNOWN_TOPIC, f"no handler for topic {topic}")
            return item
        if bad_headers is not None:
            item.dead_letter = (DeadLetterReason.UNDECODABLE, bad_headers)
            return item
        value = message.value() or b""
        try:
            event = model.model_validate_json(value)
        except ValidationError as exc:
            item.dead_letter = rejection(value, exc)
            return item
        if not event.schema_version.startswith(SUPPORTED_PREFIX):
            item.dead_letter = (
                DeadLetterReason.UNSUPPORTED_VERSION,
                f"schema_version {event.schema_version!r}",
            )
            return item
        if span is not None:
            span.set_attribute(tracing.MESSAGING_MESSAGE_ID, event.event_id)
            parent = trace.set_span_in_context(span, parent)
        item.delivery = Delivery(event, topic, partition, offset, parent, message)
        return item

    # -- handling, retries and dead letters ----------------------------------------------

    def _dispatch(self, items: list[_Item]) -> None:
        by_type: dict[str, list[_Item]] = {}
        for item in items:
            if item.delivery is not None:
                by_type.setdefault(item.delivery.event.event_type, []).append(item)
        for event_type, batch in by_type.items():
            self._handle(self._handlers[event_type], batch)

    def _handle(self, handler: BatchHandler, batch: list[_Item]) -> None:
        """Run the batch, then retry what failed: the events a ``BatchFailures`` named, or,
        after an error of the whole batch, each event alone to isolate the bad one."""
        error = self._attempt(handler, batch)
        if error is None:
            return
        if isinstance(error, _Failed):
            for item, item_error in error.items:
                self._retry_single(handler, item, item_error)
        elif len(batch) == 1:
            self._retry_single(handler, batch[0], error)
        else:
            for item in batch:
                self._handle(handler, [item])

    def _attempt(self, handler: BatchHandler, batch: list[_Item]) -> Exception | None:
        """Call the handler, riding out dependency outages; return the error it ended with.

        After a ``BatchFailures`` only its failed events stay in play, and the error returned
        names each failed event (``_Failed``; for a batch of one, that event's own error).
        """
        single = len(batch) == 1
        failed: list[tuple[_Item, Exception]] = []  # events settled with an error
        outage_attempt = 0
        while True:
            started = time.perf_counter()
            try:
                try:
                    handler([item.delivery for item in batch])  # type: ignore[misc]
                finally:
                    self.metrics.handler_time(batch[0].topic, time.perf_counter() - started)
            except BatchFailures as exc:
                named = [(batch[i], e) for i, e in exc.failures.items() if 0 <= i < len(batch)]
                if len(named) != len(exc.failures):
                    self._count_attempt(batch)
                    return self._settle(single, failed, batch, exc)  # not this batch's indices
                failing = {id(item) for item, _ in named}
                self._mark_done([item for item in batch if id(item) not in failing])
                settled = [(i, e) for i, e in named if not isinstance(e, self._outage_errors)]
                for item, error in settled:
                    self.metrics.failed(item.topic, error)
                for item, _ in settled:
                    item.attempts += 1
                failed += settled
                outages = [(i, e) for i, e in named if isinstance(e, self._outage_errors)]
                if not outages:
                    self._outage_over()
                    return self._settle(single, failed)
                batch = [i for i, _ in outages]
                outage: BaseException = outages[0][1]
            except self._outage_errors as exc:
                outage = exc
            except Exception as exc:
                self.metrics.failed(batch[0].topic, exc)
                self._outage_over()
                self._count_attempt(batch)
                return self._settle(single, failed, batch, exc)
            else:
                self._mark_done(batch)
                self._outage_over()
                return self._settle(single, failed)
            # An outage uses up no attempt and lasts as long as it lasts: pause, then retry.
            outage_attempt += 1
            self.stats.retries += 1
            self.metrics.retried(batch[0].topic, "outage")
            self._report_outage(outage)
            delay = backoff_delay(
                outage_attempt, self.settings.backoff_initial_s, self.settings.backoff_max_s
            )
            self._waiting_out_outage = True
            try:
                if not self._wait(delay) or not self._still_assigned(batch):
                    raise _Abandoned() from outage
            finally:
                self._waiting_out_outage = False

    @staticmethod
    def _count_attempt(batch: list[_Item]) -> None:
        """A handler error counts against each event only when it is that event's own:
        the event ran alone, or a ``BatchFailures`` named it."""
        if len(batch) == 1:
            batch[0].attempts += 1

    def _mark_done(self, items: list[_Item]) -> None:
        for item in items:
            item.done = True
        self.stats.handled += len(items)
        for topic, n in Counter(item.topic for item in items).items():
            self.metrics.handled(topic, n)

    def _report_outage(self, error: BaseException) -> None:
        if isinstance(error, DeploymentError):
            if self._deployment_error is None:  # once per episode, loudly
                log.error("deployment error, consumption paused", error=short(error))
            self._deployment_error = short(error)
        else:
            log.warning("dependency unavailable, pausing", error=short(error), group=self.group)

    def _outage_over(self) -> None:
        if self._deployment_error is not None:
            log.info("deployment error resolved, consuming again", group=self.group)
            self._deployment_error = None

    @staticmethod
    def _settle(
        single: bool,
        failed: list[tuple[_Item, Exception]],
        batch: list[_Item] | None = None,
        error: Exception | None = None,
    ) -> Exception | None:
        """The outcome of ``_attempt``: ``error`` of the whole ``batch`` stays one error while
        no event was singled out; otherwise every failed event is named with its own error."""
        if error is not None and batch is not None:
            if not failed:
                return error
            failed = failed + [(item, error) for item in batch]
        if not failed:
            return None
        return failed[0][1] if single else _Failed(failed)

    def _retry_single(self, handler: BatchHandler, item: _Item, error: Exception) -> None:
        while not isinstance(error, PermanentError) and item.attempts < self.settings.max_attempts:
            self.stats.retries += 1
            self.metrics.retried(item.topic, "error")
            delay = backoff_delay(
                item.attempts, self.settings.backoff_initial_s, self.settings.backoff_max_s
            )
            if not self._wait(delay) or not self._still_assigned([item]):
                raise _Abandoned() from error
            next_error = self._attempt(handler, [item])
            if next_error is None:
                return
            error = next_error
        reason = (
            DeadLetterReason.REJECTED
            if isinstance(error, PermanentError) and not isinstance(error, RetriesExhausted)
            else DeadLetterReason.RETRIES_EXHAUSTED
        )
        item.dead_letter = (reason, short(error))
        if item.span is not None:
            item.span.record_exception(error)

    def _dead_letter_until_acked(self, items: list[_Item]) -> None:
        """Dead-letter ``items``; a failed publish is an outage: wait and try again."""
        attempt = 0
        while items:
            try:
                self._dead_letter(items)
            except Exception as exc:
                fatal = is_fatal(exc)
                if not fatal and not isinstance(exc, KafkaException):
                    raise
                attempt += 1
                log.error("dead-letter publish failed, retrying", error=str(exc), group=self.group)
                if fatal:  # an idempotent producer cannot go on: replace it
                    log.error("dead-letter producer failed fatally, replacing it", group=self.group)
                    self._dlq = self._dlq_producer()
                delay = backoff_delay(
                    attempt, self.settings.backoff_initial_s, self.settings.backoff_max_s
                )
                if not self._wait(delay):
                    raise _Abandoned() from exc
                continue
            for item in items:
                assert item.dead_letter is not None
                reason, detail = item.dead_letter
                self.stats.dead_lettered += 1
                self.metrics.dead_lettered(item.topic, reason.value)
                self.stats.by_reason[reason.value] = self.stats.by_reason.get(reason.value, 0) + 1
                log.warning(
                    "dead-lettered",
                    reason=reason.value,
                    error=detail,
                    topic=item.topic,
                    partition=item.partition,
                    offset=item.offset,
                )
            return

    def _dead_letter(self, items: list[_Item]) -> None:
        """Publish to the dead-letter topics and wait for Kafka's acknowledgement.

        A record the topic refuses as too large is published again with less of the original
        (``SHRINK``): a dead letter that never fits would stall its partition for good. The
        original stays where ``dlq.original.*`` points, to be fetched from there.
        """
        for item in items:  # each attempt starts from the whole record
            item.shrink = 0
        pending = items
        while pending:
            pending = self._publish_dead_letters(pending)

    def _publish_dead_letters(self, items: list[_Item]) -> list[_Item]:
        """Publish ``items``' dead letters; return those refused as too large, shrunk further.
        Any other failure raises."""
        failures: list[str] = []
        too_large: list[_Item] = []

        def refused(item: _Item, err: KafkaError) -> None:
            if err.code() == KafkaError.MSG_SIZE_TOO_LARGE and item.shrink < len(SHRINK):
                item.shrink += 1
                too_large.append(item)
            else:
                failures.append(str(err))

        for item in items:
            assert item.dead_letter is not None
            value, key, headers = self._dead_letter_record(item)

            def on_delivery(err: KafkaError | None, _: Message, item: _Item = item) -> None:
                if err is not None:
                    refused(item, err)

            try:
                self._dlq.produce(
                    dlq_topic(self._source[item.topic], self.group),
                    value=value,
                    key=key,
                    headers=headers,
                    on_delivery=on_delivery,
                )
            except KafkaException as exc:  # over the producer's own message.max.bytes
                if exc.args[0].code() != KafkaError.MSG_SIZE_TOO_LARGE:
                    raise
                refused(item, exc.args[0])
        remaining = self._dlq.flush(30)
        if failures or remaining:
            raise KafkaException(f"dead-letter publish failed: {failures or remaining}")
        return too_large

    def _dead_letter_record(
        self, item: _Item
    ) -> tuple[bytes | None, bytes | None, tracing.Headers]:
        """Value, key and headers of ``item``'s dead letter, less what ``item.shrink`` drops."""
        assert item.dead_letter is not None
        reason, detail = item.dead_letter
        dropped = SHRINK[item.shrink - 1] if item.shrink else ()
        headers: tracing.Headers = []
        if "headers" not in dropped:
            headers += [
                (k, v) for k, v in header_map(item.message).items() if not k.startswith("dlq.")
            ]
        headers += [
            ("dlq.reason", reason.value.encode()),
            ("dlq.error", detail.encode(errors="backslashreplace")),
            ("dlq.attempts", str(item.attempts).encode()),
            ("dlq.group", self.group.encode()),
            ("dlq.original.topic", item.topic.encode()),
            ("dlq.original.partition", str(item.partition).encode()),
            ("dlq.original.offset", str(item.offset).encode()),
            ("dlq.failed_at", datetime.now(UTC).isoformat().encode()),
        ]
        value = item.message.value()
        if dropped:
            headers += [
                ("dlq.truncated", ",".join(dropped).encode()),
                ("dlq.original.bytes", str(len(value or b"")).encode()),
            ]
        return (
            None if "value" in dropped else value,
            None if "key" in dropped else item.message.key(),
            headers,
        )

    # -- offsets and rebalancing ----------------------------------------------------------

    def _mark_handled(self, items: Iterable[_Item]) -> None:
        for item in items:
            tp = (item.topic, item.partition)
            if tp in self._assigned:
                self._handled[tp] = item.offset + 1

    def _commit(self, *, asynchronous: bool, only: set[tuple[str, int]] | None = None) -> None:
        """Commit the handled offsets Kafka has not confirmed holding (``_acked``), so a failed
        commit, or one an older commit overwrote, is sent again."""
        now = time.monotonic()
        offsets = [
            TopicPartition(t, p, o)
            for (t, p), o in self._handled.items()
            if (t, p) in self._assigned
            and self._acked.get((t, p)) != o
            and (only is None or (t, p) in only)
            and not (asynchronous and self._in_flight((t, p), o, now))
        ]
        if not offsets:
            return
        try:
            if asynchronous:
                self._consumer.commit(offsets=offsets, asynchronous=True)
                self._committing.update(
                    {(tp.topic, tp.partition): (tp.offset, now) for tp in offsets}
                )
            else:
                self._confirm(None, self._consumer.commit(offsets=offsets, asynchronous=False))
        except KafkaException as exc:
            self.stats.commits_failed += 1
            self.metrics.commit_failed()
            log.warning("commit failed", error=str(exc), group=self.group)

    def _in_flight(self, tp: tuple[str, int], offset: int, now: float) -> bool:
        """``offset`` of ``tp`` was sent and may still be confirmed. Past the resend delay its
        reply counts as lost, and the offset is sent again (committing it twice is harmless)."""
        sent = self._committing.get(tp)
        if sent is None or sent[0] != offset:
            return False
        if now - sent[1] < self.settings.commit_resend_s:
            return True
        self.stats.commits_unconfirmed += 1
        self.metrics.commit_failed()
        log.warning("commit not confirmed, sending it again", partition=tp, offset=offset)
        return False

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if err is not None and err.code() == KafkaError._NO_OFFSET:
            return
        self._confirm(err, partitions)

    def _confirm(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """Kafka keeps a partition's last commit, and replies come in the order it applied
        them: an older commit retried after a newer one (librdkafka does, when the group
        coordinator crashed before answering) leaves ``_acked`` below ``_handled``."""
        failed = []
        for tp in partitions:
            key = (tp.topic, tp.partition)
            if self._committing.get(key, (None,))[0] == tp.offset:
                del self._committing[key]  # settled either way; a failure is sent again
            if err is None and tp.error is None:
                if tp.offset < self._acked.get(key, tp.offset):
                    self._overtaken(key, tp.offset)
                self._acked[key] = tp.offset
            else:
                self._acked.pop(key, None)  # unknown: it may have been written or not
                failed.append(f"{tp.topic}[{tp.partition}]@{tp.offset}")
        if failed:
            self.stats.commits_failed += 1
            self.metrics.commit_failed()
            error = str(err) if err is not None else str(partitions[0].error)
            log.warning("commit failed, will retry", error=error, offsets=failed, group=self.group)

    def _overtaken(self, tp: tuple[str, int], offset: int) -> None:
        self.stats.commits_overtaken += 1
        self.metrics.commit_failed()
        log.warning(
            "an older commit landed last, sending the newer again", partition=tp, offset=offset
        )

    def _on_assign(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        self._joined = True
        self._brokers_down = False
        self._assigned |= {(tp.topic, tp.partition) for tp in partitions}
        log.info("partitions assigned", group=self.group, partitions=_names(partitions))

    def _on_revoke(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        self._commit(asynchronous=False, only=revoked)
        self._drop(revoked)
        log.info("partitions revoked", group=self.group, partitions=_names(partitions))

    def _on_lost(self, _: Consumer, partitions: list[TopicPartition]) -> None:
        self._drop({(tp.topic, tp.partition) for tp in partitions})
        log.warning("partitions lost", group=self.group, partitions=_names(partitions))

    def _drop(self, partitions: set[tuple[str, int]]) -> None:
        self._assigned -= partitions
        for tp in partitions:
            self._handled.pop(tp, None)
            self._acked.pop(tp, None)
            self._committing.pop(tp, None)

    def _rewind(self, items: list[_Item]) -> None:
        """After an abandoned batch: on each partition still ours, mark handled what was
        finished in order and seek back to the first event that was not, to read it again."""
        first_open: dict[tuple[str, int], int] = {}
        for item in items:
            tp = (item.topic, item.partition)
            if tp in self._assigned and tp not in first_open and not item.done:
                first_open[tp] = item.offset
            elif tp in self._assigned and tp not in first_open:
                self._handled[tp] = item.offset + 1
        for (topic, partition), offset in first_open.items():
            self._consumer.seek(TopicPartition(topic, partition, offset))
        log.info(
            "batch abandoned, rewound",
            group=self.group,
            size=len(items),
            rewound=[f"{t}[{p}]@{o}" for (t, p), o in first_open.items()],
        )

    def _still_assigned(self, items: Iterable[_Item]) -> bool:
        return any((i.topic, i.partition) in self._assigned for i in items)

    def _wait(self, seconds: float) -> bool:
        """Sleep with consumption paused, still serving rebalances; False when stopping."""
        deadline = time.monotonic() + seconds
        self._consumer.pause(self._consumer.assignment())
        try:
            while not self._stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return True
                self.last_loop_at = time.monotonic()
                message = self._consumer.poll(min(remaining, 0.2))
                if message is not None and message.error() is None:
                    # From a partition assigned during the wait: rewind it for later.
                    tp = TopicPartition(
                        str(message.topic()), message.partition() or 0, message.offset() or 0
                    )
                    self._consumer.seek(tp)
                    self._consumer.pause([tp])
            return False
        finally:
            self._consumer.resume(self._consumer.assignment())

    def _probe_brokers(self) -> None:
        """While nothing arrives, ask for metadata now and then. No answer means the brokers
        are down: librdkafka's ``_ALL_BROKERS_DOWN`` does not always come (a CI run saw a
        consumer stay ready for 30 s with its only broker stopped). An answer while they were
        down means they are back, and readiness returns with no traffic."""
        now = time.monotonic()
        if now < self._next_broker_probe:
            return
        timeout = _BROKER_PROBE_INTERVAL_S if self._brokers_down else _IDLE_PROBE_INTERVAL_S
        try:
            self._consumer.list_topics(self.topics[0], timeout=timeout)
        except KafkaException as exc:
            if not self._brokers_down:
                log.warning("brokers unreachable", error=str(exc), group=self.group)
                self._brokers_down = True
            return
        finally:
            self._next_broker_probe = time.monotonic() + timeout
        if self._brokers_down:
            log.info("brokers reachable again", group=self.group)
            self._brokers_down = False

    def _on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._TRANSPORT:
            return  # librdkafka retries connections itself and logs them
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._brokers_down = True
        log.warning("kafka client error", error=str(err), group=self.group)

    @staticmethod
    def _log_handled(items: list[_Item]) -> None:
        """One debug line per event handled, with its trace: find a payment in the logs."""
        for item in items:
            if item.delivery is None or item.dead_letter is not None:
                continue
            ids = {}
            if item.span is not None:
                ctx = item.span.get_span_context()
                ids = {
                    "trace_id": format(ctx.trace_id, "032x"),
                    "span_id": format(ctx.span_id, "016x"),
                }
            log.debug(
                "event handled",
                event_id=item.delivery.event.event_id,
                event_type=item.delivery.event.event_type,
                partition=item.partition,
                offset=item.offset,
                **ids,
            )

    def _end_span(self, item: _Item) -> None:
        if item.span is None:
            return
        if item.dead_letter is not None:
            reason, detail = item.dead_letter
            item.span.set_attribute("messaging.dead_letter.reason", reason.value)
            item.span.set_status(Status(StatusCode.ERROR, detail))
        item.span.end()


class _Abandoned(Exception):
    """The batch's partitions moved away, or we are stopping: leave it uncommitted."""


class _Failed(Exception):
    """The events of a batch that failed, each with its own error."""

    def __init__(self, items: list[tuple[_Item, Exception]]) -> None:
        super().__init__(f"{len(items)} event(s) failed")
        self.items = items


def _names(partitions: list[TopicPartition]) -> list[str]:
    return [f"{tp.topic}[{tp.partition}]" for tp in partitions]
