"""``payment-api relay``, the relay as a process of its own (the chart's outbox-relay): it
publishes what another process commits to the outbox, to the real broker, and serves its
metrics on RELAY_METRICS_PORT."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from payment_api.adapters.database import create_db_engine
from payment_api.adapters.outbox import OutboxStore
from payment_api.service_layer.unit_of_work import UnitOfWork
from ticketing_events.testing import payment_succeeded, reservation_created
from ticketing_events.testing.servers import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.kafka]


def test_the_relay_process_publishes_another_process_commits(private_settings, kafka):
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": private_settings.database_url,
        "DATABASE_SCHEMA": private_settings.database_schema or "",
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "RELAY_METRICS_PORT": str(port),
        # A sweep a minute away: what is published soon was woken by the notification.
        "OUTBOX_SWEEP_INTERVAL_S": "60",
        "OTEL_SDK_DISABLED": "false",
        "OTEL_TRACES_EXPORTER": "none",
        "LOG_LEVEL": "WARNING",
    }
    command = [str(Path(sys.executable).with_name("payment-api")), "relay"]
    engine = create_db_engine(private_settings)
    store = OutboxStore(engine)
    start = kafka.offsets()
    waiting = [reservation_created(40)]  # published by the relay's first drain
    write(engine, waiting)
    relay = subprocess.Popen(command, env=env)
    try:
        wait_for_metrics(f"http://127.0.0.1:{port}/metrics", relay)
        assert drained(store), "the relay did not publish what waited when it started"
        events = [payment_succeeded(41), reservation_created(42)]
        write(engine, events)
        assert drained(store), "the relay was not woken by another process's commit"
        every = waiting + events
        found = kafka.read(start, [e.event_id for e in every])
        assert sorted(dict(m.headers())["event_id"].decode() for m in found) == sorted(
            e.event_id for e in every
        )
        counted = published_lines(httpx.get(f"http://127.0.0.1:{port}/metrics").text)
        assert sum(float(line.rsplit(" ", 1)[1]) for line in counted) == len(every)
    finally:
        relay.terminate()
        relay.wait(30)
        engine.dispose()
    assert relay.returncode == 0


def write(engine, events) -> None:
    with UnitOfWork(engine) as tx:  # no relay in this process to wake
        for event in events:
            tx.outbox.add(event)
        tx.commit()


def drained(store: OutboxStore, within_s: float = 30) -> bool:
    deadline = time.monotonic() + within_s
    while store.pending() and time.monotonic() < deadline:
        time.sleep(0.1)
    return store.pending() == 0


def wait_for_metrics(url: str, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "payment-api relay exited"
        try:
            return httpx.get(url, timeout=1).text
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"no metrics at {url}")


COUNTER = "ticketing_outbox_published_total"


def published_lines(metrics: str) -> list[str]:
    """The samples of the relay's counter of acknowledged events."""
    return [line for line in metrics.splitlines() if line.startswith(COUNTER)]
