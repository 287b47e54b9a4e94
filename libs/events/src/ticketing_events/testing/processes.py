"""A service's real entrypoint: start it, SIGTERM it mid-stream, check what it committed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from confluent_kafka import (
    Message,
)

from ticketing_events.producer import EventProducer
from ticketing_events.schemas import (
    Envelope,
)
from ticketing_events.testing.harness import Harness
from ticketing_events.testing.kafka import committed_offsets, end_offsets, read_from

if TYPE_CHECKING:
    pass


def start_service(entrypoint: str, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """``<entrypoint> run`` (installed next to this Python) with small batches, quiet logs."""
    defaults = {
        "CONSUMER_BATCH_SIZE": "20",
        "CONSUMER_POLL_TIMEOUT_S": "0.2",
        "CONSUMER_HEALTH_PORT": "0",
        "CONSUMER_SESSION_TIMEOUT_MS": "6000",
        "OTEL_SDK_DISABLED": "true",
        "LOG_LEVEL": "WARNING",
    }
    command = [str(Path(sys.executable).with_name(entrypoint)), "run"]
    return subprocess.Popen(
        command, env={**os.environ, **defaults, **env}, stdout=subprocess.DEVNULL
    )


def sigterm(process: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """Send SIGTERM and return the exit code; kill the process if it does not exit."""
    try:
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout)
    finally:
        process.kill()


def committed_event_ids(
    bootstrap_servers: str, group: str, topic: str, start: dict[tuple[str, int], int]
) -> set[str]:
    """Ids of the events on ``topic`` from ``start`` up to ``group``'s committed offsets."""
    committed = committed_offsets(bootstrap_servers, group, [topic])
    ends = end_offsets(bootstrap_servers, [topic])
    total = sum(ends[tp] - start[tp] for tp in start)
    messages = read_from(bootstrap_servers, start, count=total, timeout=60)
    assert len(messages) == total, f"read {len(messages)} of {total} messages"
    return {
        _event_id(m)
        for m in messages
        if (m.offset() or 0) < committed[(str(m.topic()), m.partition() or 0)]
    }


def _event_id(message: Message) -> str:
    headers: dict[str, bytes] = dict(message.headers() or ())  # type: ignore[arg-type]
    return headers.get("event_id", b"").decode()


def check_sigterm_mid_stream(
    harness: Harness,
    group: str,
    events: Sequence[Envelope],
    start: Callable[[], subprocess.Popen[bytes]],
    applied: Callable[[], set[str]],
) -> None:
    """SIGTERM the service mid-stream: it exits 0 having committed exactly the events it
    applied (nothing lost, nothing left to redo); restarted, it applies the rest.

    ``start`` runs the service in ``group``; ``applied`` tells the event ids it applied.
    """
    topic = events[0].TYPE
    start_offsets = committed_offsets(harness.bootstrap, group, [topic])
    EventProducer(harness.bootstrap, client_id="test").publish(list(events))
    ours = {e.event_id for e in events}

    def ours_applied() -> set[str]:  # other suites publish on the same topic
        return applied() & ours

    process = start()
    harness.wait_until(lambda: len(ours_applied()) >= 100, what="progress")
    assert sigterm(process) == 0
    done = ours_applied()
    assert len(done) < len(ours), "it stopped mid-stream, as asked"
    committed = committed_event_ids(harness.bootstrap, group, topic, start_offsets)
    assert committed & ours == done, "committed exactly what it applied"

    process = start()
    harness.wait_until(lambda: ours_applied() == ours, 120, "the rest")
    assert sigterm(process) == 0
