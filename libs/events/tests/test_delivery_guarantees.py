"""At-least-once under crashes, shutdowns and rebalances, against the real broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from ticketing_events.consumer import ConsumerRuntime, each
from ticketing_events.producer import EventProducer
from ticketing_events.schemas import PaymentSucceeded
from ticketing_events.settings import ConsumerSettings, KafkaSettings
from ticketing_events.testing import (
    committed_offsets,
    payment_succeeded,
    start_group_at_end,
)

pytestmark = pytest.mark.kafka

TOPIC = PaymentSucceeded.TYPE
WORKER = Path(__file__).with_name("worker.py")


def produce(bootstrap: str, n: int) -> list[str]:
    events = [payment_succeeded(i) for i in range(n)]
    EventProducer(bootstrap, client_id="test").publish(events)
    return [e.event_id for e in events]


def start_worker(
    bootstrap: str, group: str, out: Path, delay: float, crash_after: int = 0
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "OTEL_SDK_DISABLED": "true"}
    args = ["--group", group, "--out", str(out), "--delay", str(delay)]
    args += ["--crash-after", str(crash_after)]
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args], env=env, stdout=subprocess.DEVNULL
    )


def lines(path: Path, ours: list[str]) -> list[str]:
    """Handled event ids that this test produced (other suites share the topic)."""
    wanted = set(ours)
    return [i for i in path.read_text().split() if i in wanted] if path.exists() else []


def wait_for(check, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def progress(bootstrap: str, group: str, start: dict[tuple[str, int], int]) -> int:
    """How many messages past ``start`` the group has committed."""
    committed = committed_offsets(bootstrap, group, [TOPIC])
    return sum(max(0, committed[tp] - start[tp]) for tp in start)


def test_a_killed_consumer_loses_nothing_and_redelivers_what_it_did_not_commit(
    kafka_bootstrap, tmp_path
):
    group = f"test-kill-{uuid.uuid4().hex[:8]}"
    start = start_group_at_end(kafka_bootstrap, group, [TOPIC])
    ids = produce(kafka_bootstrap, 400)
    out = tmp_path / "handled.txt"

    worker = start_worker(kafka_bootstrap, group, out, delay=0.001, crash_after=150)
    assert worker.wait(60) == -signal.SIGKILL
    handled_at_kill = len(out.read_text().split())  # ours and other suites' messages
    committed_at_kill = progress(kafka_bootstrap, group, start)
    assert committed_at_kill < handled_at_kill, "the kill should leave handled work uncommitted"

    worker = start_worker(kafka_bootstrap, group, out, delay=0)
    try:
        wait_for(lambda: set(lines(out, ids)) >= set(ids), what="every event handled after restart")
    finally:
        worker.terminate()
        worker.wait(10)
    handled = lines(out, ids)
    assert set(handled) == set(ids)
    redelivered = len(handled) - len(ids)
    assert 0 < redelivered <= handled_at_kill - committed_at_kill


def test_sigterm_finishes_the_batch_commits_and_leaves(kafka_bootstrap, tmp_path):
    group = f"test-term-{uuid.uuid4().hex[:8]}"
    start = start_group_at_end(kafka_bootstrap, group, [TOPIC])
    ids = produce(kafka_bootstrap, 300)
    out = tmp_path / "handled.txt"

    worker = start_worker(kafka_bootstrap, group, out, delay=0.01)
    wait_for(lambda: len(lines(out, ids)) >= 20, what="work in progress")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    handled = lines(out, ids)
    assert len(handled) < 300, "it stopped early, as asked"
    assert len(handled) == len(set(handled))
    # In-flight work was finished and exactly what was handled (ours and any other
    # suite's messages on the shared topic) got committed.
    assert progress(kafka_bootstrap, group, start) == len(out.read_text().split())


def test_rebalancing_between_two_consumers_loses_nothing(kafka_bootstrap):
    group = f"test-rebalance-{uuid.uuid4().hex[:8]}"
    start_group_at_end(kafka_bootstrap, group, [TOPIC])
    seen: dict[str, set[str]] = {"a": set(), "b": set()}
    lock = threading.Lock()

    def runtime(name: str) -> ConsumerRuntime:
        def handle(delivery) -> None:
            time.sleep(0.001)
            with lock:
                seen[name].add(delivery.event.event_id)

        return ConsumerRuntime(
            group,
            {PaymentSucceeded: each(handle)},
            kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
            settings=ConsumerSettings(
                batch_size=50, poll_timeout_s=0.2, health_port=0, session_timeout_ms=6000
            ),
        )

    a, b = runtime("a"), runtime("b")
    ta = threading.Thread(target=a.run, daemon=True)
    tb = threading.Thread(target=b.run, daemon=True)
    ta.start()
    ids = produce(kafka_bootstrap, 1000)
    wait_for(lambda: len(seen["a"]) >= 200, what="a under way")
    tb.start()  # b joins: partitions move from a to b
    wait_for(lambda: bool(b.assignment), what="b assigned")
    ids += produce(kafka_bootstrap, 1000)
    wait_for(lambda: len(seen["b"]) >= 100, what="b under way")
    a.stop()  # a leaves: its partitions move to b
    ta.join(30)
    ids += produce(kafka_bootstrap, 500)
    try:
        wait_for(lambda: seen["a"] | seen["b"] >= set(ids), what="all 2500 handled")
    finally:
        b.stop()
        tb.join(30)
    assert seen["a"] & set(ids) and seen["b"] & set(ids)
