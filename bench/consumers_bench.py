"""Throughput of each post-payment service, one instance each, on a backlog.

For every service: a fresh consumer group starts at the end of its topics, a backlog of
events is published, then the service runs as its own process (``<name> run``, the same
command a pod runs) until its group has committed the whole backlog. Events per second are
counted from the first commit to the last (process start-up and group join excluded), and
the effects are counted afterwards, so a service that skips work cannot look fast.

Beside each service, the same effect written plainly as a FastStream subscriber, one event at
a time (``bench/plain_consumers.py``), runs as its own process on a backlog of its own (its own
group, key prefix, schema and stand-in). Its events/s are timed inside it, from its first
handled event to the N-th (its Redis and database subscribers commit after each event; the data
platform's auto-commits, so commits do not say what it has handled). Its effects are counted
the same way and must equal the service's, or the run fails. The figures print as a table and
go to ``bench/results/consumers.json`` (``vs_faststream``: ours, FastStream and their ratio).

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
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
import sqlalchemy
from dataplatform_stub.control import StubControl, running_stub
from payment_api.migrations import upgrade_schema
from payment_api.seed import add_schedule, add_users
from ticketing_events.db import create_db_engine
from ticketing_events.producer import EventProducer
from ticketing_events.schemas import Envelope
from ticketing_events.testing import (
    committed_offsets,
    payment_failed,
    payment_succeeded,
    reservation_created,
    start_group_at_end,
)
from ticketing_events.topics import dlq_topic, ensure_topics

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "consumers.json"
BIN = Path(sys.executable).parent
PLAIN = ROOT / "bench" / "plain_consumers.py"


@dataclass
class Run:
    """One service's run: its group, key prefix and whatever its case set up."""

    bootstrap: str
    redis_url: str
    database_url: str
    group: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:10]}")
    prefix: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}:")
    schema: str = field(default_factory=lambda: f"bench_{uuid.uuid4().hex[:8]}")
    _engine: sqlalchemy.Engine | None = None

    stub: StubControl | None = None

    def migrate(self) -> None:
        """Create the run's own PostgreSQL schema with payment-api's migrations."""
        upgrade_schema(self.database_url, self.schema)
        self._engine = create_db_engine(self.database_url, schema=self.schema)

    @property
    def engine(self) -> sqlalchemy.Engine:
        if self._engine is None:
            raise RuntimeError("migrate() first")
        return self._engine

    def scalar(self, sql: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sqlalchemy.text(sql)).scalar_one())

    def drop_schema(self) -> None:
        if self._engine is None:
            return
        self._engine.dispose()
        admin = sqlalchemy.create_engine(self.database_url)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        admin.dispose()

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
            keys = list(client.scan_iter(match=f"{self.prefix}*", count=5000))
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
    database: bool = False
    stub_latency_ms: float | None = None  # the stand-in data platform, with this latency
    backlog: int = 50_000
    goal: float = 3.0  # the goal for ours / FastStream


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


def ranking_events(run: Run, n: int) -> list[Envelope]:
    """Payments of 100-seat schedules, each sold out by the backlog."""
    template = payment_succeeded()
    base = random.randrange(10**9)
    opened = datetime.now(UTC) - timedelta(minutes=10)
    return [
        _unique(
            template,
            base + i,
            schedule_id=base + i // 100,
            schedule_seat_count=100,
            sale_opened_at=opened,
            paid_at=opened + timedelta(milliseconds=i),
        )
        for i in range(n)
    ]


def compensator_events(run: Run, n: int) -> list[Envelope]:
    """Failed payments of reservations that exist: held seats, one user each."""
    with run.engine.begin() as conn:
        _, schedule_id, seat_ids = add_schedule(
            conn,
            seats_count=n,
            price=100,
            concert_date=datetime.now(UTC).date(),
            sale_opened_at=datetime.now(UTC),
        )
        user_ids = add_users(conn, n, points=0)
        now = datetime.now(UTC)
        reservation_ids = (
            conn.execute(
                sqlalchemy.text(
                    "insert into reservations (user_id, seat_id, schedule_id, amount, status,"
                    " queue_token_id, reserved_at, hold_expires_at)"
                    " select u, s, :schedule, 100, 'payment_failed', 'bench', :now, :now"
                    " from unnest(cast(:users as bigint[]), cast(:seats as bigint[])) as t(u, s)"
                    " returning id"
                ),
                {"schedule": schedule_id, "now": now, "users": user_ids, "seats": seat_ids},
            )
            .scalars()
            .all()
        )
        conn.execute(
            sqlalchemy.text(
                "update seats set status = 'held', reservation_id = r.id from reservations r"
                " where r.seat_id = seats.id and r.schedule_id = :schedule"
            ),
            {"schedule": schedule_id},
        )
    by_seat = dict(zip(seat_ids, zip(reservation_ids, user_ids, strict=True), strict=True))
    template = payment_failed()
    return [
        _unique(template, seat, reservation_id=r, user_id=u, schedule_id=schedule_id)
        for seat, (r, u) in by_seat.items()
    ]


def seat_holds(run: Run, events: list[Envelope]) -> int:
    return run.count_keys("seat:hold:*")


def tombstones(run: Run, events: list[Envelope]) -> int:
    return run.count_keys("seat:released:*")


def platform_receipts(run: Run, events: list[Envelope]) -> int:
    assert run.stub is not None
    return int(run.stub.received()["unique"])


def sell_outs(run: Run, events: list[Envelope]) -> int:
    return run.scalar("select count(*) from sold_out_ranking")


def cancellations(run: Run, events: list[Envelope]) -> int:
    return run.scalar(
        "select count(*) from reservations r join seats s on s.id = r.seat_id"
        " where r.status = 'cancelled' and s.status = 'available'"
    )


CASES: dict[str, Case] = {
    "seatlock-consumer": Case(
        "seatlock-consumer", ["reservation.created"], seatlock_events, seat_holds
    ),
    "cleanup-consumer": Case(
        "cleanup-consumer", ["payment.success", "payment.failed"], cleanup_events, tombstones
    ),
    "ranking-consumer": Case(
        "ranking-consumer", ["payment.success"], ranking_events, sell_outs, database=True
    ),
    "compensator": Case(
        "compensator", ["payment.failed"], compensator_events, cancellations, database=True
    ),
    "dataplatform-consumer": Case(
        "dataplatform-consumer",
        ["payment.success"],
        cleanup_events,
        platform_receipts,
        stub_latency_ms=50,
        backlog=5_000,
        goal=1.0,
    ),
}


def measure(case: Case, run: Run, n: int, *, tracing: bool, plain: bool) -> dict[str, float]:
    """Publish a backlog of ``n`` events for the run's fresh group, have the service (or, with
    ``plain``, its FastStream version) consume it, then count the effects."""
    if case.database:
        run.migrate()
    start = start_group_at_end(run.bootstrap, run.group, case.topics)
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
        "OTEL_SERVICE_NAME": f"{case.service}{'-faststream' if plain else ''}-bench",
        **({} if tracing else {"OTEL_SDK_DISABLED": "true"}),
        **(
            {"DATABASE_URL": run.database_url, "DATABASE_SCHEMA": run.schema}
            if case.database
            else {}
        ),
        **({"DATAPLATFORM_URL": run.stub.payments_url} if run.stub else {}),
    }
    figures = faststream(case, n, env) if plain else ours(case, run, n, start, env)
    rate = figures.pop("events_per_s")
    return {"events": n, "events_per_s": rate, "effects": case.effects(run, events), **figures}


def ours(
    case: Case, run: Run, n: int, start: dict[tuple[str, int], int], env: dict[str, str]
) -> dict[str, float]:
    """``<service> run`` until its group has committed the backlog: events/s from its first
    commit to its last, and its peak RSS."""
    ensure_topics(run.bootstrap, [dlq_topic(t, run.group) for t in case.topics])
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
    return {"events_per_s": round(rate), "peak_rss_mb": rss_mb}


def faststream(case: Case, n: int, env: dict[str, str]) -> dict[str, float]:
    """The FastStream version until it has handled the backlog; it times itself."""
    done = subprocess.run(
        [sys.executable, str(PLAIN), case.service, str(n)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return dict(json.loads(done.stdout.splitlines()[-1]))


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def run_case(
    case: Case, urls: tuple[str, str, str], n: int, *, tracing: bool, plain: bool
) -> dict[str, float]:
    """``measure`` in a run of its own (group, key prefix, schema, stand-in), then clean up."""
    run = Run(*urls)
    try:
        with ExitStack() as resources:
            if case.stub_latency_ms is not None:
                run.stub = resources.enter_context(running_stub(latency_ms=case.stub_latency_ms))
            figures = measure(case, run, n, tracing=tracing, plain=plain)
    finally:
        run.drop_keys()
        run.drop_schema()
    label = f"{case.service}{' (FastStream)' if plain else ''}"
    rss = f"  peak RSS {figures['peak_rss_mb']} MB" if "peak_rss_mb" in figures else ""
    print(
        f"{label:36} {figures['events_per_s']:>8,} events/s  {figures['events']:>7,} events  "
        f"{figures['effects']:>7,} effects{rss}",
        flush=True,
    )
    return figures


def print_table(vs: dict[str, dict[str, float]]) -> None:
    print(f"\n{'service':24} {'ours ev/s':>10} {'FastStream ev/s':>16} {'ratio':>7}  goal")
    for name, v in vs.items():
        verdict = "met" if v["ratio"] >= v["goal"] else "MISSED"
        print(
            f"{name:24} {v['ours']:>10,} {v['faststream']:>16,} {v['ratio']:>6.2f}x"
            f"  >= {v['goal']:g}x {verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("services", nargs="*", default=list(CASES), help="default: all")
    parser.add_argument("--events", type=int, help="backlog per service (default: its own)")
    parser.add_argument("--no-tracing", action="store_true")
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    database_url = os.environ.get(
        "DATABASE_URL", "postgresql+psycopg://ticketing:ticketing@127.0.0.1:5432/ticketing"
    )
    urls = (bootstrap, redis_url, database_url)
    tracing = not args.no_tracing
    ensure_topics(bootstrap)
    figures: dict[str, dict[str, float]] = {}
    vs: dict[str, dict[str, float]] = {}
    for name in args.services:
        case = CASES[name]
        n = args.events or case.backlog
        figures[name] = run_case(case, urls, n, tracing=tracing, plain=False)
        plain = run_case(case, urls, n, tracing=tracing, plain=True)
        if plain["effects"] != figures[name]["effects"]:
            raise SystemExit(
                f"{name}: the FastStream version made {plain['effects']} effects and the service "
                f"{figures[name]['effects']}: they did not do the same work"
            )
        ours_rate, plain_rate = figures[name]["events_per_s"], plain["events_per_s"]
        vs[name] = {
            "ours": ours_rate,
            "faststream": plain_rate,
            "ratio": round(ours_rate / plain_rate, 2),
            "goal": case.goal,
        }
    print_table(vs)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.update({name: f["events_per_s"] for name, f in figures.items()})
    details = results.setdefault("details", {})
    details.update({name: {**f, "tracing": tracing} for name, f in figures.items()})
    results.setdefault("vs_faststream", {}).update(vs)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
