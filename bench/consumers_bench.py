"""Throughput of each post-payment service, one instance each, on a backlog.

For every service: a fresh consumer group starts at the end of its topics, a backlog of
events is published, then the service runs as its own process (``<name> run``, the same
command a pod runs) until its group has committed the whole backlog. Events per second are
counted from the first commit to the last (process start-up and group join excluded), and
the effects are counted afterwards, so a service that skips work cannot look fast. The
figures print as a table and go to ``bench/results/consumers.json``.

Tracing is exported to the local collector (OTEL_EXPORTER_OTLP_ENDPOINT) as deployed; pass
``--no-tracing`` to measure without it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from ticketing_events.producer import EventProducer
from ticketing_events.schemas import Envelope
from ticketing_events.testing import (
    committed_offsets,
    payment_succeeded,
    reservation_created,
    start_group_at_end,
)
from ticketing_events.topics import dlq_topic, ensure_topics

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "consumers.json"
BIN = Path(sys.executable).parent


@dataclass
class Run:
    """One service's run: its group, key prefix and whatever its case set up."""

    bootstrap: str
    redis_url: str
    group: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:10]}")
    prefix: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}:")

    @property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def count_keys(self, pattern: str) -> int:
        client = self.redis
        try:
            return sum(1 for _ in client.scan_iter(match=f"{self.prefix}{pattern}", count=5000))
        finally:
            client.close()

    def drop_keys(self) -> None:
        client = self.redis
        try:
            for pattern in (f"{self.prefix}*", f"processed:{self.group}:*"):
                keys = list(client.scan_iter(match=pattern, count=5000))
                for i in range(0, len(keys), 1000):
                    client.delete(*keys[i : i + 1000])
        finally:
            client.close()


@dataclass(frozen=True)
class Case:
    """How to feed one service and how to count what it did."""

    service: str
    topics: Sequence[str]
    events: Callable[[Run, int], list[Envelope]]
    effects: Callable[[Run, list[Envelope]], int]
    env: Callable[[Run], dict[str, str]] = lambda run: {}


def _unique(template: Envelope, i: int, **payload: object) -> Envelope:
    """A new event like ``template`` for seat and reservation ``i``."""
    ids = {"reservation_id": i, "seat_id": i, "queue_token_id": f"{i:064x}"}
    update = {**ids, **payload}
    return type(template).new(template.payload.model_copy(update=update), producer="bench")


def seatlock_events(run: Run, n: int) -> list[Envelope]:
    template = reservation_created()
    until = datetime.now(UTC) + timedelta(minutes=30)
    base = random.randrange(10**9)
    return [_unique(template, base + i, hold_expires_at=until) for i in range(n)]


def cleanup_events(run: Run, n: int) -> list[Envelope]:
    template = payment_succeeded()
    base = random.randrange(10**9)
    return [_unique(template, base + i) for i in range(n)]


def seat_holds(run: Run, events: list[Envelope]) -> int:
    return run.count_keys("seat:hold:*")


def tombstones(run: Run, events: list[Envelope]) -> int:
    return run.count_keys("seat:released:*")


CASES: dict[str, Case] = {
    "seatlock-consumer": Case(
        "seatlock-consumer", ["reservation.created"], seatlock_events, seat_holds
    ),
    "cleanup-consumer": Case(
        "cleanup-consumer", ["payment.success", "payment.failed"], cleanup_events, tombstones
    ),
}


def measure(case: Case, run: Run, n: int, *, tracing: bool) -> dict[str, float]:
    start = start_group_at_end(run.bootstrap, run.group, case.topics)
    ensure_topics(run.bootstrap, [dlq_topic(t, run.group) for t in case.topics])
    events = case.events(run, n)
    producer = EventProducer(run.bootstrap, client_id="bench")
    for i in range(0, n, 10_000):
        producer.publish(events[i : i + 10_000])
    env = {
        **os.environ,
        "CONSUMER_GROUP": run.group,
        "REDIS_KEY_PREFIX": run.prefix,
        "REDIS_URL": run.redis_url,
        "KAFKA_BOOTSTRAP_SERVERS": run.bootstrap,
        "CONSUMER_HEALTH_PORT": "0",
        "LOG_LEVEL": "WARNING",
        "OTEL_SERVICE_NAME": f"{case.service}-bench",
        **({} if tracing else {"OTEL_SDK_DISABLED": "true"}),
        **case.env(run),
    }
    process = subprocess.Popen([str(BIN / case.service), "run"], env=env)
    first: tuple[float, int] | None = None
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{case.service} exited with {process.returncode}")
            committed = committed_offsets(run.bootstrap, run.group, case.topics)
            done = sum(max(0, committed[tp] - start[tp]) for tp in start)
            now = time.perf_counter()
            if first is None and done > 0:
                first = (now, done)
            if done >= n:
                break
            time.sleep(0.1)
        assert first is not None
        rss_mb = _peak_rss_mb(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    rate = (n - first[1]) / max(now - first[0], 1e-9)
    return {
        "events": n,
        "events_per_s": round(rate),
        "effects": case.effects(run, events),
        "peak_rss_mb": rss_mb,
    }


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("services", nargs="*", default=list(CASES), help="default: all")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--no-tracing", action="store_true")
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    ensure_topics(bootstrap)
    figures: dict[str, dict[str, float]] = {}
    for name in args.services:
        run = Run(bootstrap, redis_url)
        try:
            figures[name] = measure(CASES[name], run, args.events, tracing=not args.no_tracing)
        finally:
            run.drop_keys()
        f = figures[name]
        print(
            f"{name:24} {f['events_per_s']:>8,} events/s  {f['events']:>7,} events  "
            f"{f['effects']:>7,} effects  peak RSS {f['peak_rss_mb']} MB",
            flush=True,
        )
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.update({name: f["events_per_s"] for name, f in figures.items()})
    details = results.setdefault("details", {})
    details.update({name: {**f, "tracing": not args.no_tracing} for name, f in figures.items()})
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
