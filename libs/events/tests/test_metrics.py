"""The consumer runtime's metrics, read from its health port's ``/metrics`` as Prometheus would,
against the real broker."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer
from ticketing_events.consumer import ConsumerRuntime, Delivery, PermanentError, each
from ticketing_events.producer import EventProducer
from ticketing_events.schemas import PaymentSucceeded
from ticketing_events.settings import KafkaSettings
from ticketing_events.testing import (
    MetricSamples,
    metric_total,
    payment_succeeded,
    scrape_metrics,
)

SUCCESS = PaymentSucceeded.TYPE

pytestmark = pytest.mark.usefixtures("meter_provider")


def scrape(port: int | None, group: str) -> MetricSamples:
    """The samples of ``group`` on the runtime's ``/metrics``, without the group label."""
    return {
        (name, labels - {("messaging_consumer_group_name", group)}): value
        for (name, labels), value in scrape_metrics(f"http://127.0.0.1:{port}/metrics").items()
        if ("messaging_consumer_group_name", group) in labels
    }


def test_metrics_count_what_the_runtime_did_and_the_lag_drains_to_zero(kafka_bootstrap, harness):
    group = harness.group([SUCCESS])
    rejected = payment_succeeded(1)
    good = [payment_succeeded(i) for i in range(2, 8)]

    flaky, failed = good[0].event_id, []  # fails twice: at least once alone, then retried

    def handle(delivery: Delivery[PaymentSucceeded]) -> None:
        if delivery.event.event_id == rejected.event_id:
            raise PermanentError("seat does not exist")
        if delivery.event.event_id == flaky and len(failed) < 2:
            failed.append(flaky)
            raise RuntimeError("flaky")

    runtime = ConsumerRuntime(
        group,
        {PaymentSucceeded: each(handle)},
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        settings=harness.consumer_settings(stats_interval_ms=200),
    )
    with harness.running(runtime):
        harness.wait_until(lambda: bool(runtime.assignment), what="partitions")
        raw = Producer({"bootstrap.servers": kafka_bootstrap})
        raw.produce(SUCCESS, key=b"1", value=b"{not json")
        raw.flush(10)
        EventProducer(kafka_bootstrap, client_id="test").publish([rejected, *good])
        harness.wait_until(
            lambda: runtime.stats.handled >= len(good) and runtime.stats.dead_lettered >= 2,
            what="the events handled and dead-lettered",
        )
        port = runtime.health_port
        partitions = {str(p) for t, p in runtime.assignment if t == SUCCESS}

        def drained() -> bool:
            lag = {
                dict(ls)["messaging_destination_partition_id"]: v
                for (n, ls), v in scrape(port, group).items()
                if n == "ticketing_consumer_lag" and ("messaging_destination_name", SUCCESS) in ls
            }
            return set(lag) == partitions and not any(lag.values())

        harness.wait_until(drained, what="lag 0 on every partition of the group")
        samples = scrape(port, group)

    topic = {"messaging_destination_name": SUCCESS}
    assert metric_total(samples, "messaging_client_consumed_messages_total", **topic) == 8
    # The rejected event's batch ran once whole, so each good event's handler finished once or
    # twice; the runtime counts handler completions.
    assert (
        metric_total(samples, "ticketing_consumer_handled_total", **topic) == runtime.stats.handled
    )
    dead = "ticketing_consumer_dead_lettered_total"
    assert metric_total(samples, dead, reason="undecodable") == 1
    assert metric_total(samples, dead, reason="rejected") == 1
    failures = "ticketing_consumer_failures_total"
    assert metric_total(samples, failures, error_type="PermanentError", **topic) >= 1
    assert metric_total(samples, failures, error_type="RuntimeError", **topic) >= 1
    assert metric_total(samples, "ticketing_consumer_retries_total", reason="error", **topic) >= 1
    assert metric_total(samples, "messaging_process_duration_seconds_count", **topic) >= 1
    assert metric_total(samples, "ticketing_consumer_batch_size_count") >= 1
    assert metric_total(samples, "ticketing_consumer_paused") == 0
    assert {dict(ls)["reason"] for (n, ls) in samples if n == "ticketing_consumer_paused"} == {
        "dependency",
        "deployment",
        "brokers",
    }
