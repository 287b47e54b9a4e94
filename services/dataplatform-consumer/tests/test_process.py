"""The real entrypoint: SIGTERM loses nothing; SIGKILL re-sends only what was not committed."""

from __future__ import annotations

import signal
import subprocess

import pytest
from ticketing_events.producer import EventProducer
from ticketing_events.schemas import PaymentSucceeded
from ticketing_events.testing import (
    check_sigterm_mid_stream,
    payment_succeeded,
    sigterm,
    start_service,
)

pytestmark = pytest.mark.kafka

TOPIC = PaymentSucceeded.TYPE
BATCH = 50


def start(harness, group: str, stub, **env: str) -> subprocess.Popen[bytes]:
    return start_service(
        "dataplatform-consumer",
        {
            "KAFKA_BOOTSTRAP_SERVERS": harness.bootstrap,
            "CONSUMER_GROUP": group,
            "DATAPLATFORM_URL": stub.payments_url,
            **env,
        },
    )


def test_sigterm_mid_stream_commits_exactly_what_was_sent_and_a_restart_sends_the_rest(
    harness, stub
):
    group = harness.group([TOPIC])
    events = [payment_succeeded(n) for n in range(3000)]
    ours = {e.event_id for e in events}
    stub.knobs(latency_ms=20)
    check_sigterm_mid_stream(
        harness,
        group,
        events,
        start=lambda: start(harness, group, stub),
        applied=lambda: set(stub.keys()),
    )
    times = stub.keys()
    assert all(times[i] == 1 for i in ours), "nothing was sent twice"


def test_a_kill_mid_flight_resends_only_the_uncommitted_batch(harness, stub):
    group = harness.group([TOPIC])
    events = [payment_succeeded(n) for n in range(2000)]
    ours = {e.event_id for e in events}
    stub.knobs(latency_ms=50)
    EventProducer(harness.bootstrap, client_id="test").publish(events)

    def sent() -> dict[str, int]:
        return {k: n for k, n in stub.keys().items() if k in ours}

    process = start(harness, group, stub, CONSUMER_BATCH_SIZE=str(BATCH))
    try:
        harness.wait_until(lambda: len(sent()) >= 300, what="progress")
        harness.wait_until(lambda: stub.received()["in_flight"] > 0, what="requests in flight")
        process.send_signal(signal.SIGKILL)
        assert process.wait(10) == -signal.SIGKILL
    finally:
        process.kill()
    assert len(sent()) < len(ours), "killed mid-stream"

    process = start(harness, group, stub, CONSUMER_BATCH_SIZE=str(BATCH))
    try:
        harness.wait_until(lambda: set(sent()) == ours, 120, "the rest")
    finally:
        assert sigterm(process) == 0
    duplicates = sum(n - 1 for n in sent().values())
    # Only the batch in flight at the kill was uncommitted; its sent events are sent again.
    assert duplicates <= BATCH, f"{duplicates} sent twice"
