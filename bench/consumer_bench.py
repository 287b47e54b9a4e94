"""Consumer throughput: a bare confluent-kafka loop, FastStream, and our runtime, on one broker.

Produces N realistic `payment.success` envelopes with our producer, then has each contender
consume exactly those N messages (each from its own starting offsets) and prints messages per
second from the first message to the N-th:

  (a) bare       confluent-kafka consume() batches touching each message's value (the ceiling)
  (b) faststream FastStream subscriber taking the same pydantic model, OpenTelemetry middleware on
  (c) traced     our ConsumerRuntime, no-op handler, tracing on at 100% sampling
  (s) sampled    our ConsumerRuntime, no-op handler, tracing on at 10% sampling
  (d) untraced   our ConsumerRuntime, no-op handler, tracing off

and the cost per message of each (1/rate). Sampling is parent-based, as in production
(OTEL_TRACES_SAMPLER=parentbased_traceidratio): the producer decides and the consumer follows
the flag in each message's traceparent. So (s) reads N messages of its own, published with
the producer at 10%; the others read N published at 100%.

Tracing uses the SDK's BatchSpanProcessor; by default its exporter discards spans, so the
figures measure what tracing costs the consumer, not the export (`--otlp` exports to the
collector at OTEL_EXPORTER_OTLP_ENDPOINT instead).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import set_span_in_context
from ticketing_events.consumer import ConsumerRuntime, Delivery
from ticketing_events.producer import EventProducer, OutgoingMessage
from ticketing_events.schemas import PaymentSucceeded
from ticketing_events.settings import ConsumerSettings, KafkaSettings
from ticketing_events.testing import end_offsets, payment_succeeded, start_group_at_end
from ticketing_events.topics import ensure_topics
from ticketing_events.tracing import configure_tracing

TOPIC = PaymentSucceeded.TYPE
SAMPLED_RATIO = 0.1
RESULTS = Path(__file__).parent / "results" / "consumer.json"


class DiscardingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def produce(bootstrap: str, n: int, ratio: float) -> float:
    """Publish n envelopes in chunks, every one acknowledged, a share ``ratio`` of them with a
    sampled trace; returns messages/second."""
    # Each event continues a request span sampled at ``ratio``, as payment-api's outbox rows do;
    # the publish spans follow that decision (parent-based) and so will the consumers.
    requests = TracerProvider(sampler=TraceIdRatioBased(ratio)).get_tracer("bench-requests")
    events = [
        OutgoingMessage.of(
            payment_succeeded(i), set_span_in_context(requests.start_span("POST /v1/payments"))
        )
        for i in range(n)
    ]
    producer = EventProducer(bootstrap, client_id="bench")
    started = time.perf_counter()
    for i in range(0, n, 10_000):
        producer.publish(events[i : i + 10_000])
    return n / (time.perf_counter() - started)


def bare(bootstrap: str, start: dict[tuple[str, int], int], n: int) -> float:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-bare", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(t, p, o) for (t, p), o in start.items()])
    seen, first = 0, 0.0
    while seen < n:
        for message in consumer.consume(1000, 1.0):
            if message.error() is None:
                message.value()
                if not seen:
                    first = time.perf_counter()
                seen += 1
    elapsed = time.perf_counter() - first
    consumer.close()
    return (n - 1) / elapsed


def faststream(bootstrap: str, group: str, n: int, provider: TracerProvider) -> float:
    from faststream.confluent import KafkaBroker
    from faststream.confluent.opentelemetry import KafkaTelemetryMiddleware

    async def main() -> float:
        # logger=None: no log line per message, as in a production set-up (and like ours).
        broker = KafkaBroker(
            bootstrap,
            middlewares=[KafkaTelemetryMiddleware(tracer_provider=provider)],
            logger=None,
        )
        done = asyncio.Event()
        seen = 0
        first = 0.0

        @broker.subscriber(TOPIC, group_id=group, auto_offset_reset="earliest")
        async def handle(event: PaymentSucceeded) -> None:
            nonlocal seen, first
            if not seen:
                first = time.perf_counter()
            seen += 1
            if seen >= n:
                done.set()

        await broker.start()
        await done.wait()
        elapsed = time.perf_counter() - first
        await broker.stop()
        return (n - 1) / elapsed

    return asyncio.run(main())


def runtime(bootstrap: str, group: str, n: int, *, traced: bool) -> float:
    first = last = 0.0
    seen = 0

    def handle(batch: Sequence[Delivery[PaymentSucceeded]]) -> None:
        nonlocal first, last, seen
        if not seen:
            first = time.perf_counter()
        seen += len(batch)
        if seen >= n:
            last = time.perf_counter()
            consumer.stop()

    consumer = ConsumerRuntime(
        group,
        {PaymentSucceeded: handle},
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        settings=ConsumerSettings(batch_size=1000, health_port=0),
        tracing_enabled=traced,
    )
    consumer.run()
    return (n - 1) / (last - first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=200_000, help="messages (default 200000)")
    parser.add_argument("--otlp", action="store_true", help="export spans over OTLP")
    args = parser.parse_args()
    bootstrap = KafkaSettings().bootstrap_servers
    ensure_topics(bootstrap, [TOPIC])
    if args.otlp:
        provider = configure_tracing("consumer-bench")
    else:
        provider = configure_tracing(
            "consumer-bench", processor=BatchSpanProcessor(DiscardingExporter())
        )
    assert provider is not None, "tracing is disabled (OTEL_SDK_DISABLED)"

    run = uuid.uuid4().hex[:8]
    groups = {name: f"bench-{name}-{run}" for name in ("faststream", "traced", "untraced")}
    for group in groups.values():
        start_group_at_end(bootstrap, group, [TOPIC])
    start = end_offsets(bootstrap, [TOPIC])

    print(f"producing {args.n} envelopes of ~{len(payment_succeeded(0).model_dump_json())} bytes")
    results = {"producer_msgs_per_s": produce(bootstrap, args.n, 1.0)}
    # The sampled group starts after the first N: it reads the N published at 10%.
    groups["sampled"] = f"bench-sampled-{run}"
    start_group_at_end(bootstrap, groups["sampled"], [TOPIC])
    print(f"producing {args.n} more with {SAMPLED_RATIO:.0%} of them sampled")
    produce(bootstrap, args.n, SAMPLED_RATIO)
    results["bare_msgs_per_s"] = bare(bootstrap, start, args.n)
    results["faststream_msgs_per_s"] = faststream(bootstrap, groups["faststream"], args.n, provider)
    results["runtime_traced_msgs_per_s"] = runtime(bootstrap, groups["traced"], args.n, traced=True)
    results["runtime_sampled_msgs_per_s"] = runtime(
        bootstrap, groups["sampled"], args.n, traced=True
    )
    results["runtime_untraced_msgs_per_s"] = runtime(
        bootstrap, groups["untraced"], args.n, traced=False
    )
    provider.shutdown()

    a, b = results["bare_msgs_per_s"], results["faststream_msgs_per_s"]
    c, d = results["runtime_traced_msgs_per_s"], results["runtime_untraced_msgs_per_s"]
    ratios = {"c/b": c / b, "c/a": c / a, "d/a": d / a}
    targets = {"c/b": 2.0, "c/a": 0.1, "d/a": 0.25}
    cost_us = {k.removesuffix("_msgs_per_s"): 1e6 / v for k, v in results.items()}
    print(f"{'':30s} {'msgs/s':>12s} {'us/msg':>8s}")
    for key, value in results.items():
        print(f"{key:30s} {value:12,.0f} {1e6 / value:8.1f}")
    print(
        f"tracing's cost per message: {cost_us['runtime_traced'] - cost_us['runtime_untraced']:.1f}"
        f" us at 100%, {cost_us['runtime_sampled'] - cost_us['runtime_untraced']:.1f} us at"
        f" {SAMPLED_RATIO:.0%}"
    )
    for key, value in ratios.items():
        verdict = "meets" if value >= targets[key] else "MISSES"
        print(f"ratio {key:24s} {value:12.2f}   ({verdict} target >= {targets[key]})")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the bench process   {peak_mb:10.0f} MB  (cpus: {os.cpu_count()})")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                **{k: round(v) for k, v in results.items()},
                "ratios": {k: round(v, 3) for k, v in ratios.items()},
                "us_per_msg": {k: round(v, 1) for k, v in cost_us.items()},
                "sampled_ratio": SAMPLED_RATIO,
                "messages": args.n,
                "exporter": "otlp" if args.otlp else "discard",
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
