"""Kafka fully down for a while (30 s by default) in the middle of steady payments.

The stack of ticketing_dev.stack runs against a Kafka of this run's own (``--brokers 1`` or 3
nodes, ticketing_events.testing.KafkaServer), PostgreSQL in a fresh schema. Fans pay at a
steady open-loop rate (bench/api_bench.py's rush) in three phases of the same length: before,
during (every Kafka node SIGKILLed when the phase starts, started again when it ends) and
after. Payments only write the outbox, so they should answer as before; the relay publishes
what piled up once Kafka is back.

Then, once the outbox is published and every group drained, it accounts from the topics, the
database, Redis and the stand-in: events published (each outbox row on its topic), keys whose
events reached Kafka out of their outbox order, events on a topic more than once, and per
effect the payments it lost or repeated (ranking sale, data platform receipt, seat hold
released). Prints the figures (nothing is asserted) and writes
bench/results/kafka_outage.json (kafka_outage_3.json for three brokers).

    uv run python bench/kafka_outage_bench.py [--rate 20] [--phase 30] [--brokers 1]

Needs Redis and PostgreSQL (``make infra-up``; its Kafka is not used) and the Kafka jars.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import redis
import sqlalchemy
from api_bench import PRICE, activate_tokens, free_port, percentile, reserve_all, rush
from confluent_kafka import Consumer, TopicPartition
from headline_bench import Lag, free_ports
from payment_api.seed import add_schedule, add_users
from ticketing_events.testing import KafkaServer, end_offsets
from ticketing_events.topics import TOPIC_EVENTS

ROOT = Path(__file__).resolve().parent.parent
from ticketing_dev.stack import CONSUMERS, Stack, infra_env  # noqa: E402

RESULTS = Path(__file__).parent / "results"
PHASES = ("before", "during", "after")


def latency_figures(results: list[tuple[float, float, float, int]]) -> dict[str, float]:
    """Latency from each payment's due time to its answer; a 201 or 402 is an answer."""
    answered = [(done - due) * 1000 for due, _, done, status in results if status in (201, 402)]
    return {
        "payments": len(results),
        "unanswered": len(results) - len(answered),
        "p50_ms": round(percentile(answered, 0.50), 1),
        "p99_ms": round(percentile(answered, 0.99), 1),
        "max_ms": round(max(answered, default=0.0), 1),
    }


async def fans(stack: Stack, engine: sqlalchemy.Engine, count: int, label: str) -> Any:
    """``count`` fans with an active token and a held reservation on a fresh schedule: the
    schedule, its seats and the (fan, reservation) pairs."""
    with engine.begin() as conn:
        users = add_users(conn, count, points=10**12, name=f"outage-{label}")
        _, schedule_id, seat_ids = add_schedule(
            conn,
            seats_count=count,
            price=PRICE,
            concert_date=date(2026, 12, 24),
            sale_opened_at=datetime.now(UTC) - timedelta(minutes=1),
            title=f"Kafka outage {label}",
        )
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=60) as client:
        # In slices: hundreds of requests gathered at once wait out httpx's pool on a busy machine.
        tokens = []
        for i in range(0, len(users), 100):
            tokens += await activate_tokens(client, users[i : i + 100])
        return schedule_id, seat_ids, await reserve_all(client, tokens, seat_ids)


def read_topics(bootstrap: str, start: dict[tuple[str, int], int]) -> list[Any]:
    """Every message from ``start`` to the topics' current ends."""
    ends = end_offsets(bootstrap, sorted({t for t, _ in start}))
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "outage-reader", "enable.auto.commit": False}
    )
    wanted = {tp: end for tp, end in ends.items() if end > start[tp]}
    consumer.assign([TopicPartition(t, p, start[(t, p)]) for t, p in wanted])
    messages: list[Any] = []
    deadline = time.monotonic() + 120
    try:
        while sum(wanted.values()) - sum(start[tp] for tp in wanted) > len(messages):
            if time.monotonic() > deadline:
                raise RuntimeError("could not read the topics back")
            messages += [m for m in consumer.consume(500, 0.5) if m.error() is None]
    finally:
        consumer.close()
    return messages


def account(
    stack: Stack,
    engine: sqlalchemy.Engine,
    schedules: list[int],
    seats: list[int],
    messages: list[Any],
) -> dict[str, Any]:
    """Lost and repeated events and effects of this run's payments."""
    with engine.connect() as conn:
        rows = conn.execute(
            sqlalchemy.text(
                "select id, event_id, event_type, key, published_at from outbox"
                " where cast(cast(payload as jsonb) -> 'payload' ->> 'schedule_id' as bigint)"
                " = any(:s) order by id"
            ),
            {"s": schedules},
        ).all()
        sold = conn.execute(
            sqlalchemy.text(
                "select coalesce(sum(sold), 0) from schedule_sales where schedule_id = any(:s)"
            ),
            {"s": schedules},
        ).scalar_one()
    first_seen: dict[str, int] = {}  # event id -> timestamp (ms) of its first copy
    copies: Counter[str] = Counter()
    for m in messages:
        event_id = dict(m.headers() or ())["event_id"].decode()
        copies[event_id] += 1
        first_seen.setdefault(event_id, m.timestamp()[1])
    by_key: dict[str, list[str]] = defaultdict(list)
    for _, event_id, _, key, _ in rows:
        by_key[key].append(event_id)
    # The relay sends a key's next event only once Kafka acknowledged the previous one, so its
    # first copy must carry a later timestamp.
    out_of_order = sum(
        1
        for ids in by_key.values()
        if any(
            a in first_seen and b in first_seen and first_seen[b] < first_seen[a]
            for a, b in pairwise(ids)
        )
    )
    success = [event_id for _, event_id, kind, _, _ in rows if kind == "payment.success"]
    with httpx.Client(base_url=stack.stub_url) as stub:
        received = [stub.get(f"/payments/{e}").json().get("received", 0) for e in success]
    r = redis.Redis.from_url(stack.env["REDIS_URL"])
    held = sum(bool(r.exists(f"{stack.redis_prefix}seat:hold:{seat}")) for seat in seats)
    r.close()
    return {
        "outbox_events": len(rows),
        "unpublished": sum(1 for *_, published in rows if published is None),
        "missing_on_topics": sum(1 for _, e, *_ in rows if e not in copies),
        "published_more_than_once": sum(1 for _, e, *_ in rows if copies[e] > 1),
        "keys_out_of_order": out_of_order,
        "successful_payments": len(success),
        "ranking_sales_lost": max(len(success) - sold, 0),
        "ranking_sales_doubled": max(sold - len(success), 0),
        "data_platform_lost": sum(1 for n in received if n == 0),
        "data_platform_redelivered": sum(1 for n in received if n > 1),
        "seat_holds_left": held,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    state = Path(tempfile.mkdtemp(prefix=f"kafka-outage-{run}-"))
    kafka = KafkaServer(state / "kafka", nodes=args.brokers)
    print(f"kafka outage bench {run}: {args.brokers} broker(s), {args.rate:.0f} payments/s,")
    print(
        f"  {args.phase:.0f} s before, during (Kafka down) and after; logs in {state}", flush=True
    )
    kafka.start()
    stack = Stack(
        {**infra_env(), "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap},
        db="postgres",
        state_dir=state,
        api_port=free_port(),
        health_port=free_ports(len(CONSUMERS)),
        stub_port=free_port(),
        stub_admin_port=free_port(),
        schema=f"outage_{run}",
        redis_prefix=f"outage:{run}:",
        group_prefix=f"outage-{run}-",
        extra_env={
            "QUEUE_ACTIVE_TTL_S": "3600",
            "QUEUE_ACTIVATE_BATCH": "2000",
            "QUEUE_ACTIVATE_INTERVAL_S": "0.2",
            "LOG_LEVEL": "WARNING",
            "OTEL_SDK_DISABLED": "true",
        },
        say=lambda line: print(f"  stack: {line}", flush=True),
    )
    engine = None
    try:
        await asyncio.to_thread(stack.prepare)
        await asyncio.to_thread(stack.up)
        engine = stack.engine()
        start = end_offsets(kafka.bootstrap, list(TOPIC_EVENTS))
        count = int(args.rate * args.phase)
        prepared = {p: await fans(stack, engine, count, f"{run}-{p}") for p in PHASES}
        figures: dict[str, Any] = {}
        for phase in PHASES:
            if phase == "during":
                for node in kafka.node_ids:
                    kafka.kill(node)
                down_at = time.monotonic()
                print(f"  Kafka down ({args.brokers} node(s) SIGKILLed)", flush=True)
            results = await rush(stack.api_url, prepared[phase][2], args.rate, args.in_flight)
            figures[phase] = latency_figures(results)
            print(f"  {phase:6}: {figures[phase]}", flush=True)
            if phase == "during":
                await asyncio.to_thread(kafka.start)  # until every broker answers again
                down_for = time.monotonic() - down_at
                print(f"  Kafka back after {down_for:.1f} s down", flush=True)
        waited = time.monotonic()
        await asyncio.to_thread(wait_outbox, engine, args.drain_timeout)
        lags = await asyncio.to_thread(Lag(stack).wait_drained, args.drain_timeout)
        drained_s = round(time.monotonic() - waited, 1)
        messages = await asyncio.to_thread(read_topics, kafka.bootstrap, start)
        schedules = [prepared[p][0] for p in PHASES]
        seats = [seat for p in PHASES for seat in prepared[p][1]]
        accounting = await asyncio.to_thread(account, stack, engine, schedules, seats, messages)
    finally:
        if engine is not None:
            engine.dispose()
        await asyncio.to_thread(stack.down)
        await asyncio.to_thread(stack.reset)
        kafka.stop()
    print(f"  outbox published and groups drained {drained_s} s after the last phase: {lags}")
    for key, value in accounting.items():
        print(f"  {key:26} {value}")
    return {
        "brokers": args.brokers,
        "rate_per_s": args.rate,
        "phase_s": args.phase,
        "kafka_down_s": round(down_for, 1),
        "latency": figures,
        "drained_after_s": drained_s,
        "lag_left": lags,
        "accounting": accounting,
        "load_average": round(os.getloadavg()[0], 2),
    }


def wait_outbox(engine: sqlalchemy.Engine, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    query = sqlalchemy.text("select count(*) from outbox where published_at is null")
    with engine.connect() as conn:
        while conn.execute(query).scalar() and time.monotonic() < deadline:
            conn.commit()
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="payments per second")
    parser.add_argument("--phase", type=float, default=30.0, help="seconds per phase")
    parser.add_argument("--brokers", type=int, default=1, choices=(1, 3))
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    path = RESULTS / ("kafka_outage.json" if args.brokers == 1 else "kafka_outage_3.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
